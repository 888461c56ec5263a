//! What this server holds for offline private messages (`--auth-secret`): the in-memory
//! mailbox when there is no Redis, the letters due for delivery this turn, and the wall
//! clock letters are dated by. The flows that use them live on `State` (`host.rs`).

use crate::chat::offline::{Delivery, Offline};
use crate::config::Config;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Offline private messages on this server.
#[derive(Debug)]
pub struct Mail {
    /// The in-memory mailbox: with `--auth-secret` and without `--redis` (with Redis the
    /// letters live there).
    pub store: Option<Offline>,
    /// Letters taken for a signed login, delivered once the login is answered (this turn).
    pub due: Vec<Delivery>,
    /// The wall clock at `epoch`, in milliseconds since the Unix epoch: letters cross
    /// servers dated so, and the loop's monotonic clock carries it on (one clock read per
    /// turn; a wall clock stepped later is not followed, which a TTL of days can afford).
    epoch_unix_ms: u64,
    /// The loop's clock when the wall clock was read.
    epoch: Instant,
}

impl Mail {
    /// What `config` asks for, the wall clock read now.
    pub fn new(config: &Config, now: Instant) -> Self {
        let in_memory = config.access.auth_secret.is_some() && config.cluster.redis.is_none();
        let offline = config.offline;
        let wall = SystemTime::now().duration_since(UNIX_EPOCH);
        Mail {
            store: in_memory.then(|| Offline::new(offline.max_per_user, offline.ttl)),
            due: Vec::new(),
            epoch_unix_ms: wall.map_or(0, millis),
            epoch: now,
        }
    }

    /// The wall clock at `now`, in milliseconds since the Unix epoch.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let since = millis(now.saturating_duration_since(self.epoch));
        self.epoch_unix_ms.saturating_add(since)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
