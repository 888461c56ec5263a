//! Connection limits per source address (IPv4 /32, IPv6 /64), as Ergo and ngircd have
//! them: at most `--max-conns-per-ip` at once and `--conn-rate-per-ip` new ones per minute
//! (a token bucket: a burst of that many, refilled over a minute). Loopback clients are
//! exempt unless `--limit-loopback`, so local load tests are not throttled; only limited
//! connections are tracked, so they alone cost memory here.

use mio::Token;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The rate window: `--conn-rate-per-ip` new connections per this long.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// An address as the limits see it: IPv4 whole, IPv6 by its /64 prefix (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// One address's connections and its allowance of new ones.
#[derive(Debug)]
struct Usage {
    open: usize,
    /// New connections it may still open now (a bucket refilled over [`RATE_WINDOW`]).
    allowance: f64,
    at: Instant,
}

impl Usage {
    /// Brings the allowance up to `now`: `burst` new connections per [`RATE_WINDOW`].
    fn refill(&mut self, burst: f64, now: Instant) {
        let windows =
            now.saturating_duration_since(self.at).as_secs_f64() / RATE_WINDOW.as_secs_f64();
        self.allowance = (self.allowance + windows * burst).min(burst);
        self.at = now;
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address holds `--max-conns-per-ip` already.
    TooMany,
    /// The address opened `--conn-rate-per-ip` in the last minute.
    TooFast,
}

/// The limits' memory of limited addresses.
#[derive(Debug, Default)]
pub struct PerIp {
    by_source: HashMap<Source, Usage>,
    of_conn: HashMap<Token, Source>,
}

impl PerIp {
    /// Counts a new connection from `ip` under `token`, or refuses it.
    ///
    /// # Errors
    /// [`Refused`] when the address is over either limit; nothing is counted then.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        token: Token,
        (max_open, per_minute): (usize, u32),
        now: Instant,
    ) -> Result<(), Refused> {
        let source = Source::of(ip);
        let burst = f64::from(per_minute);
        let usage = self.by_source.entry(source).or_insert(Usage {
            open: 0,
            allowance: burst,
            at: now,
        });
        usage.refill(burst, now);
        if usage.open >= max_open {
            return Err(Refused::TooMany);
        }
        if usage.allowance < 1.0 {
            return Err(Refused::TooFast);
        }
        usage.allowance -= 1.0;
        usage.open += 1;
        self.of_conn.insert(token, source);
        Ok(())
    }

    /// A counted connection closed.
    pub fn release(&mut self, token: Token, now: Instant, per_minute: u32) {
        let Some(source) = self.of_conn.remove(&token) else {
            return;
        };
        let Some(usage) = self.by_source.get_mut(&source) else {
            return;
        };
        usage.open = usage.open.saturating_sub(1);
        // Forget an address once it holds nothing and its allowance is whole again
        // (brought up to now first: a short connection must not pin its entry forever).
        let burst = f64::from(per_minute);
        usage.refill(burst, now);
        if usage.open == 0 && usage.allowance >= burst {
            self.by_source.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_may_hold_so_many_at_once() {
        let mut p = PerIp::default();
        let now = Instant::now();
        for t in 0..3 {
            p.admit(ip("10.0.0.1"), Token(t), (3, 100), now).unwrap();
        }
        assert_eq!(
            p.admit(ip("10.0.0.1"), Token(9), (3, 100), now),
            Err(Refused::TooMany)
        );
        assert!(p.admit(ip("10.0.0.2"), Token(10), (3, 100), now).is_ok());
        p.release(Token(0), now, 100);
        assert!(p.admit(ip("10.0.0.1"), Token(11), (3, 100), now).is_ok());
    }

    #[test]
    fn new_connections_per_minute_refill_over_the_minute() {
        let mut p = PerIp::default();
        let t0 = Instant::now();
        for t in 0..4 {
            p.admit(ip("10.0.0.1"), Token(t), (100, 4), t0).unwrap();
            p.release(Token(t), t0, 4);
        }
        assert_eq!(
            p.admit(ip("10.0.0.1"), Token(5), (100, 4), t0),
            Err(Refused::TooFast)
        );
        let later = t0 + Duration::from_secs(15);
        assert!(p.admit(ip("10.0.0.1"), Token(6), (100, 4), later).is_ok());
    }

    #[test]
    fn an_address_is_forgotten_once_it_holds_nothing_and_its_allowance_is_back() {
        let mut p = PerIp::default();
        let t0 = Instant::now();
        p.admit(ip("10.0.0.1"), Token(1), (10, 60), t0).unwrap();
        p.release(Token(1), t0, 60);
        assert_eq!(p.by_source.len(), 1); // one of its 60 a minute is still spent
        p.admit(ip("10.0.0.1"), Token(2), (10, 60), t0).unwrap();
        p.release(Token(2), t0 + Duration::from_secs(3), 60);
        assert!(p.by_source.is_empty());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let mut p = PerIp::default();
        let now = Instant::now();
        p.admit(ip("2001:db8::1"), Token(1), (1, 100), now).unwrap();
        let same_host = p.admit(ip("2001:db8::ffff"), Token(2), (1, 100), now);
        assert_eq!(same_host, Err(Refused::TooMany));
        assert!(p
            .admit(ip("2001:db8:0:1::1"), Token(3), (1, 100), now)
            .is_ok());
    }
}
