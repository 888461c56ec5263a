//! Flood control that slows, not kills (Ergo's "fakelag"): each connection has a token
//! bucket of commands. A command takes a token; with none left the loop stops reading that
//! socket until the bucket refills (a timer, never a sleep), so the flooder's own TCP
//! window fills and the cost falls on it. Nothing is dropped and nobody else waits. A
//! sender whose backlog lasts past the kick time is disconnected.
//!
//! Time is kept as milliseconds since the server started, in `u32`s with wrapping
//! arithmetic, so the bucket costs a connection 16 bytes, not three `Instant`s.

use std::time::{Duration, Instant};

/// One token, in the bucket's thousandths.
const TOKEN: u32 = 1000;

/// Milliseconds since `epoch`, wrapping after 49 days (only differences are used).
pub fn millis(epoch: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(epoch).as_millis() as u32
}

/// A connection's command allowance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    /// Tokens left, in thousandths.
    level: u32,
    /// When `level` was last brought up to date.
    at: u32,
    /// When the backlog began, if `backlogged`.
    over: u32,
    /// Whether commands have been waiting since `over`.
    backlogged: bool,
    /// Whether this connection is limited at all (loopback is exempt by default).
    pub limited: bool,
    /// Whether reading is paused until the bucket refills.
    pub throttled: bool,
}

/// The rate and burst a bucket follows.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Tokens per second; 0 turns flood control off.
    pub rate: u32,
    /// Most tokens held.
    pub burst: u32,
}

/// What a command attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Go,
    /// Wait: reading pauses; the backlog has lasted this long.
    Wait(Duration),
}

impl Bucket {
    /// A full bucket for a new connection, limited or not.
    pub fn new(rule: Rule, limited: bool, now_ms: u32) -> Self {
        Bucket {
            level: rule.burst.saturating_mul(TOKEN),
            at: now_ms,
            over: 0,
            backlogged: false,
            limited,
            throttled: false,
        }
    }

    fn refill(&mut self, rule: Rule, now_ms: u32) {
        let elapsed = now_ms.wrapping_sub(self.at);
        let gained = u64::from(elapsed) * u64::from(rule.rate);
        let cap = u64::from(rule.burst) * u64::from(TOKEN);
        self.level = (u64::from(self.level) + gained).min(cap) as u32;
        self.at = now_ms;
    }

    /// Counts one command.
    pub fn take(&mut self, rule: Rule, now_ms: u32) -> Verdict {
        if !self.limited || rule.rate == 0 {
            return Verdict::Go;
        }
        self.refill(rule, now_ms);
        if self.level >= TOKEN {
            self.level -= TOKEN;
            return Verdict::Go;
        }
        self.throttled = true;
        if !self.backlogged {
            self.backlogged = true;
            self.over = now_ms;
        }
        Verdict::Wait(Duration::from_millis(u64::from(
            now_ms.wrapping_sub(self.over),
        )))
    }

    /// Gives back a token taken for a command that was not there yet.
    pub fn refund(&mut self, rule: Rule) {
        if self.limited && rule.rate != 0 {
            self.level = (self.level + TOKEN).min(rule.burst.saturating_mul(TOKEN));
        }
    }

    /// The backlog is gone (everything the sender sent has run).
    fn caught_up(&mut self) {
        self.backlogged = false;
    }

    /// The socket was read dry: everything the sender sent has run, unless reading paused
    /// with lines held (a sender whose socket still holds lines is not caught up, however
    /// often its held lines run out: that is what `--flood-kick` measures).
    pub fn drained(&mut self) {
        if !self.throttled {
            self.caught_up();
        }
    }

    /// Milliseconds from `now_ms` until a token is back.
    pub fn refill_in(&self, rule: Rule, now_ms: u32) -> u64 {
        if rule.rate == 0 {
            return 0;
        }
        let mut b = *self;
        b.refill(rule, now_ms);
        let missing = u64::from(TOKEN.saturating_sub(b.level));
        missing.div_ceil(u64::from(rule.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        rate: 10,
        burst: 20,
    };

    #[test]
    fn a_burst_goes_through_then_the_rate_holds() {
        let mut b = Bucket::new(RULE, true, 0);
        for _ in 0..20 {
            assert_eq!(b.take(RULE, 0), Verdict::Go);
        }
        assert_eq!(b.take(RULE, 0), Verdict::Wait(Duration::ZERO));
        assert!(b.throttled);
        assert_eq!(b.refill_in(RULE, 0), 100);
        assert_eq!(b.refill_in(RULE, 40), 60);
        assert_eq!(b.take(RULE, 100), Verdict::Go);
        assert_eq!(b.take(RULE, 150), Verdict::Wait(Duration::from_millis(150)));
        b.caught_up();
        assert_eq!(b.take(RULE, 150), Verdict::Wait(Duration::ZERO));
    }

    #[test]
    fn unlimited_connections_and_rate_zero_never_wait() {
        let mut b = Bucket::new(RULE, false, 0);
        let off = Rule { rate: 0, burst: 20 };
        let mut c = Bucket::new(off, true, 0);
        for _ in 0..1000 {
            assert_eq!(b.take(RULE, 0), Verdict::Go);
            assert_eq!(c.take(off, 0), Verdict::Go);
        }
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_burst() {
        let mut b = Bucket::new(RULE, true, 0);
        for _ in 0..20 {
            b.take(RULE, 0);
        }
        // An hour later: still only 20.
        let later = 3_600_000;
        for _ in 0..20 {
            assert_eq!(b.take(RULE, later), Verdict::Go);
        }
        assert!(matches!(b.take(RULE, later), Verdict::Wait(_)));
    }
}
