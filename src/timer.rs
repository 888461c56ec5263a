//! A hashed timer wheel (Varghese & Lauck, "Hashed and Hierarchical Timing Wheels", scheme 6)
//! of idle deadlines.
//!
//! Time is cut into ticks of [`TICK`]; a deadline lands in slot `tick % WHEEL_SLOTS`, so
//! scheduling is O(1) whatever the number of timers, and a slot may hold entries for later
//! rotations, which stay put until their tick comes. An occupancy bitmap finds the next
//! non-empty slot without touching the empty ones.
//!
//! Reset and cancel are lazy, as in tokio's wheel: the wheel never looks an entry up. The
//! owner keeps the real deadline (a connection's `last_active + timeout`) and, when an entry
//! fires, decides whether it is stale (connection gone), early (activity moved the deadline:
//! schedule again) or due. So a busy connection costs the wheel nothing per line, and each
//! connection has exactly one entry at any time.
//!
//! Invariants: an entry fires at or after its deadline, never before, and at most one tick
//! late once `poll` is called; `now` is always passed in, so tests never sleep.

use std::time::{Duration, Instant};

/// The wheel's resolution: deadlines are rounded up to a multiple of it.
pub const TICK: Duration = Duration::from_millis(100);
/// Slots in one rotation (a power of two, a multiple of 64 for the bitmap). 512 slots of
/// 100 ms cover 51.2 s; longer deadlines wait out whole rotations in their slot.
pub const WHEEL_SLOTS: usize = 512;
const BITMAP_WORDS: usize = WHEEL_SLOTS / 64;

#[derive(Debug)]
struct Entry<T> {
    tick: u64,
    item: T,
}

/// Timers carrying a `T` each (the server uses connection tokens).
#[derive(Debug)]
pub struct Wheel<T> {
    origin: Instant,
    /// Every tick up to and including this one has been expired.
    done_tick: u64,
    slots: Vec<Vec<Entry<T>>>,
    occupied: [u64; BITMAP_WORDS],
    len: usize,
}

impl<T> Wheel<T> {
    /// An empty wheel whose tick 0 starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Wheel {
            origin,
            done_tick: 0,
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; BITMAP_WORDS],
            len: 0,
        }
    }

    /// Timers pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` to fire at `deadline` (rounded up to the next tick; a deadline
    /// already past fires on the next tick). O(1).
    pub fn schedule(&mut self, deadline: Instant, item: T) {
        let since = deadline.saturating_duration_since(self.origin);
        let tick = ceil_ticks(since).max(self.done_tick + 1);
        let slot = slot_of(tick);
        self.slots[slot].push(Entry { tick, item });
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
    }

    /// Moves every entry due at `now` into `fired`, in no particular order.
    pub fn poll(&mut self, now: Instant, fired: &mut Vec<T>) {
        let now_tick = floor_ticks(now.saturating_duration_since(self.origin));
        if now_tick <= self.done_tick {
            return;
        }
        // After a long stall every slot is visited once, not once per missed tick.
        let first = self.done_tick + 1;
        let last = now_tick.min(self.done_tick + WHEEL_SLOTS as u64);
        for tick in first..=last {
            let slot = slot_of(tick);
            if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let entries = &mut self.slots[slot];
            let before = entries.len();
            let mut i = 0;
            while i < entries.len() {
                if entries[i].tick <= now_tick {
                    fired.push(entries.swap_remove(i).item);
                } else {
                    i += 1;
                }
            }
            self.len -= before - entries.len();
            if entries.is_empty() {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        }
        self.done_tick = now_tick;
    }

    /// When `poll` next has something to do: the start of the next occupied tick within one
    /// rotation, or one rotation ahead when the only entries are further out. `None` when
    /// the wheel is empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let rotation = WHEEL_SLOTS as u64;
        let mut ahead = rotation;
        let mut step = 1;
        while step <= rotation {
            let slot = slot_of(self.done_tick + step);
            let word = self.occupied[slot / 64] >> (slot % 64);
            if word != 0 {
                ahead = step + u64::from(word.trailing_zeros());
                break;
            }
            // Nothing in the rest of this bitmap word: jump to the next word.
            step += (64 - slot % 64) as u64;
        }
        let tick = self.done_tick + ahead.min(rotation);
        Some(self.origin + TICK * u32::try_from(tick).unwrap_or(u32::MAX))
    }
}

fn slot_of(tick: u64) -> usize {
    (tick % WHEEL_SLOTS as u64) as usize
}

fn floor_ticks(d: Duration) -> u64 {
    (d.as_nanos() / TICK.as_nanos()) as u64
}

fn ceil_ticks(d: Duration) -> u64 {
    d.as_nanos().div_ceil(TICK.as_nanos()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn poll(w: &mut Wheel<u32>, at: Instant) -> Vec<u32> {
        let mut v = Vec::new();
        w.poll(at, &mut v);
        v.sort();
        v
    }

    #[test]
    fn fires_at_or_after_the_deadline_never_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.schedule(t0 + ms(250), 1);
        assert!(poll(&mut w, t0 + ms(249)).is_empty());
        assert_eq!(poll(&mut w, t0 + ms(300)), vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn fires_in_deadline_order_across_polls() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for (i, d) in [(3u32, 900u64), (1, 100), (2, 500)] {
            w.schedule(t0 + ms(d), i);
        }
        assert_eq!(poll(&mut w, t0 + ms(100)), vec![1]);
        assert_eq!(poll(&mut w, t0 + ms(500)), vec![2]);
        assert_eq!(poll(&mut w, t0 + ms(900)), vec![3]);
    }

    #[test]
    fn a_past_deadline_fires_on_the_next_tick() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        assert!(poll(&mut w, t0 + ms(1000)).is_empty());
        w.schedule(t0 + ms(10), 7);
        assert!(poll(&mut w, t0 + ms(1000)).is_empty());
        assert_eq!(poll(&mut w, t0 + ms(1100)), vec![7]);
    }

    #[test]
    fn deadlines_beyond_one_rotation_wait_their_turn() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let rotation = TICK * WHEEL_SLOTS as u32;
        w.schedule(t0 + rotation * 2 + ms(300), 1); // same slot as tick 3, two rotations on
        w.schedule(t0 + ms(300), 2);
        assert_eq!(poll(&mut w, t0 + ms(300)), vec![2]);
        assert!(poll(&mut w, t0 + rotation + ms(300)).is_empty());
        assert_eq!(w.len(), 1);
        assert_eq!(poll(&mut w, t0 + rotation * 2 + ms(300)), vec![1]);
    }

    #[test]
    fn wrap_around_after_a_long_stall_fires_everything_due() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for i in 0..2000u32 {
            w.schedule(t0 + ms(u64::from(i) * 37), i);
        }
        let fired = poll(&mut w, t0 + ms(2000 * 37));
        assert_eq!(fired, (0..2000).collect::<Vec<_>>());
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn many_timers_fire_exactly_once() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let n = 50_000u32;
        for i in 0..n {
            w.schedule(t0 + ms(u64::from(i % 3000)), i);
        }
        let mut seen = vec![0u8; n as usize];
        let mut t = t0;
        for _ in 0..40 {
            t += ms(100);
            for i in poll(&mut w, t) {
                seen[i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
    }

    #[test]
    fn lazy_reset_is_the_owners_choice_to_schedule_again() {
        // The owner moved the deadline to 800 ms; the entry fires at 500 ms, the owner sees
        // it is early and schedules again: the wheel only ever holds one entry.
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.schedule(t0 + ms(500), 1);
        let real_deadline = t0 + ms(800);
        let fired = poll(&mut w, t0 + ms(500));
        assert_eq!(fired, vec![1]);
        w.schedule(real_deadline, 1);
        assert_eq!(w.len(), 1);
        assert!(poll(&mut w, t0 + ms(700)).is_empty());
        assert_eq!(poll(&mut w, t0 + ms(800)), vec![1]);
    }

    #[test]
    fn cancel_is_dropping_the_stale_entry_when_it_fires() {
        // A connection closed before its deadline: the entry still fires, and the owner
        // ignores it because the token's generation no longer matches. Nothing else to do.
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.schedule(t0 + ms(100), 42);
        assert_eq!(poll(&mut w, t0 + ms(100)), vec![42]);
        assert!(w.is_empty());
    }

    #[test]
    fn next_deadline_is_the_next_occupied_tick() {
        let t0 = Instant::now();
        let mut w: Wheel<u32> = Wheel::new(t0);
        assert_eq!(w.next_deadline(), None);
        w.schedule(t0 + ms(7_050), 1); // tick 71
        assert_eq!(w.next_deadline(), Some(t0 + ms(7_100)));
        w.schedule(t0 + ms(200), 2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(200)));
    }

    #[test]
    fn next_deadline_caps_at_one_rotation_for_far_timers() {
        let t0 = Instant::now();
        let mut w: Wheel<u32> = Wheel::new(t0);
        w.schedule(t0 + Duration::from_secs(300), 1);
        let next = w.next_deadline().unwrap();
        assert!(next <= t0 + TICK * WHEEL_SLOTS as u32);
        assert!(next > t0);
    }
}
