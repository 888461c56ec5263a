//! Counting what comes in storms (refused connections, slow readers cut off), so the log
//! gets one warning per episode with a count, not one line per connection: at 10,000
//! connections a line each would itself be the bottleneck.

use std::time::{Duration, Instant};

/// An episode ends after this long without a new occurrence.
const QUIET: Duration = Duration::from_secs(1);
/// A long episode is reported this often while it lasts.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Occurrences of one kind of event, grouped into episodes.
#[derive(Debug, Default)]
pub struct Storm {
    /// Occurrences in the current episode.
    count: u64,
    /// `count` as last seen by [`Storm::tick`].
    seen: u64,
    /// When the episode began and when the last occurrence was seen.
    began: Option<Instant>,
    last: Option<Instant>,
}

impl Storm {
    /// One more occurrence.
    pub fn hit(&mut self) {
        self.count += 1;
    }

    /// `n` more occurrences.
    pub fn hit_n(&mut self, n: u64) {
        self.count += n;
    }

    /// Once per turn: the count to report when an episode has ended (a quiet second) or has
    /// gone on for [`REPORT_EVERY`]; the count starts again after a report.
    pub fn tick(&mut self, now: Instant) -> Option<u64> {
        if self.count > self.seen {
            self.seen = self.count;
            self.last = Some(now);
            self.began.get_or_insert(now);
        }
        let (Some(began), Some(last)) = (self.began, self.last) else {
            return None;
        };
        if now < last + QUIET && now < began + REPORT_EVERY {
            return None;
        }
        let count = self.count;
        *self = Storm::default();
        Some(count)
    }

    /// When [`Storm::tick`] may next report.
    pub fn next_deadline(&self) -> Option<Instant> {
        Some(self.last? + QUIET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_reported_once_after_a_quiet_second() {
        let t0 = Instant::now();
        let mut s = Storm::default();
        assert_eq!(s.tick(t0), None);
        for _ in 0..812 {
            s.hit();
        }
        assert_eq!(s.tick(t0), None);
        assert_eq!(s.tick(t0 + Duration::from_millis(500)), None);
        assert_eq!(s.tick(t0 + Duration::from_millis(1000)), Some(812));
        assert_eq!(s.tick(t0 + Duration::from_millis(3000)), None);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_long_episode_is_reported_every_ten_seconds() {
        let t0 = Instant::now();
        let mut s = Storm::default();
        let mut reports = Vec::new();
        for ms in (0..12_000).step_by(100) {
            s.hit();
            reports.extend(s.tick(t0 + Duration::from_millis(ms)));
        }
        assert_eq!(reports, vec![101]);
    }
}
