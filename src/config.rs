//! The server's settings and their defaults, as named constants with units.
//!
//! `main.rs` fills a [`Config`] from the command line; tests and benches build one directly.
//! Nothing here reads flags or the environment.

use crate::text::Lang;
use std::fmt;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Default TCP port, the seeds' 8888.
pub const DEFAULT_PORT: u16 = 8888;
/// Most worker processes `--workers` starts (far above any core count it is meant for).
pub const MAX_WORKERS: u64 = 256;
/// Default bind address: loopback, so a first run exposes nothing.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// A user silent this long is kicked (the seed used 10 s; 300 s suits people typing).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest line accepted, newline excluded.
pub const DEFAULT_MAX_LINE_BYTES: usize = 4096;
/// Unsent output past which a slow reader is disconnected.
pub const DEFAULT_MAX_OUTBUF_BYTES: usize = 8 * 1024 * 1024;
/// Connections held at once; more are refused with a line.
pub const DEFAULT_MAX_CONNS: usize = 10_000;
/// How long shutdown waits for goodbyes to flush.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A WebSocket user silent this long is closed (seed 003's heartbeat timeout).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(360);
/// Largest WebSocket message accepted (sum of its fragments).
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A WebSocket must log in, and an HTTP request arrive, within this (the old fixed HTTP
/// request timeout).
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A server whose heartbeat key is this old is declared dead, its users offline.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages each room keeps for `history` (Ergo keeps 2048 per channel; a page shows
/// about a screenful).
pub const DEFAULT_HISTORY: usize = 100;
/// Bytes all rooms' histories keep together.
pub const DEFAULT_HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// Private messages kept per signed-in user while offline.
pub const DEFAULT_OFFLINE_MAX: usize = 100;
/// How long a private message, and a signed login, is remembered for offline delivery.
pub const DEFAULT_OFFLINE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Output held back under load is sent once it has this many bytes...
pub const DEFAULT_COALESCE_BYTES: usize = 16 * 1024;
/// ...or has waited this long.
pub const DEFAULT_COALESCE_WAIT: Duration = Duration::from_micros(500);

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (a host name or IP).
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Bind every listener with `SO_REUSEPORT`, so other processes (one per core) can
    /// listen on the same ports and the kernel spreads new connections over them.
    pub reuse_port: bool,
    /// Idle users are kicked after this long; `None` never kicks.
    pub idle_timeout: Option<Duration>,
    /// Longest accepted line in bytes, newline excluded.
    pub max_line_bytes: usize,
    /// Unsent output in bytes past which a connection is dropped.
    pub max_outbuf_bytes: usize,
    /// Most connections held at once.
    pub max_conns: usize,
    /// How long shutdown waits for output to drain.
    pub shutdown_grace: Duration,
    /// Language of every text the server says.
    pub lang: Lang,
    /// Port of the WebSocket listener, if any (it serves HTTP too).
    pub ws_port: Option<u16>,
    /// Port of the HTTP API and page listener, if any (it accepts WebSocket upgrades
    /// too); the same non-zero port as `ws_port` means one listener for both.
    pub http_port: Option<u16>,
    /// Largest WebSocket message in bytes.
    pub ws_max_message_bytes: usize,
    /// WebSocket users silent this long are closed.
    pub heartbeat_timeout: Duration,
    /// A WebSocket not logged in this long after its upgrade is closed (1008), and an HTTP
    /// request not complete this long after it began is answered 408.
    pub login_timeout: Duration,
    /// Who may use the HTTP API and log in over WebSocket, and from which pages.
    pub access: Access,
    /// The Redis that joins several servers into one chat.
    pub cluster: ClusterSettings,
    /// TLS listeners and their certificate.
    pub tls: TlsSettings,
    /// What one client may take: commands per second, connections per address, output.
    pub limits: Limits,
    /// Messages each room keeps (`history`); 0 keeps none.
    pub history: usize,
    /// Bytes all rooms' histories keep together.
    pub history_bytes: usize,
    /// Private messages kept for signed-in users who are offline (with `--auth-secret`).
    pub offline: OfflineSettings,
    /// Write coalescing under load.
    pub coalesce: Coalesce,
}

/// Private messages kept for signed-in users who are offline (`--auth-secret` only: a
/// name without a token can be taken by anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineSettings {
    /// Letters kept per user; a letter beyond them is refused.
    pub max_per_user: usize,
    /// How long a letter, and a signed login, is remembered.
    pub ttl: Duration,
}

impl Default for OfflineSettings {
    fn default() -> Self {
        OfflineSettings {
            max_per_user: DEFAULT_OFFLINE_MAX,
            ttl: DEFAULT_OFFLINE_TTL,
        }
    }
}

/// Write coalescing: under load, a connection's output is held back until it has `bytes`
/// or has waited `wait`, whichever comes first, so one send carries more messages.
#[derive(Debug, Clone, Copy)]
pub struct Coalesce {
    /// Held output this large goes out at once.
    pub bytes: usize,
    /// The longest output is held; zero never holds (every turn flushes, as before).
    pub wait: Duration,
}

impl Default for Coalesce {
    fn default() -> Self {
        Coalesce {
            bytes: DEFAULT_COALESCE_BYTES,
            wait: DEFAULT_COALESCE_WAIT,
        }
    }
}

/// Who may use the HTTP API and log in over WebSocket, and from which pages.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Bearer tokens the HTTP API's writes require (any one of them: several allow a
    /// rotation); empty: the writes are open.
    pub api_tokens: Vec<String>,
    /// Whether open API writes are meant, on a host that is not loopback.
    pub api_open: bool,
    /// The HS256 secret WebSocket logins must be signed with; `None`: logins are unsigned.
    pub auth_secret: Option<String>,
    /// Browser origins accepted besides the server's own, as given (compared ignoring case).
    pub allowed_origins: Vec<String>,
}

/// Many servers, one chat.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The Redis that joins several servers into one chat; `None` runs alone.
    pub redis: Option<RedisUrl>,
    /// This server's id in the cluster; `None` picks a random one.
    pub node_id: Option<String>,
    /// How soon the others notice that a server died.
    pub node_timeout: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            redis: None,
            node_id: None,
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// TLS: the certificate and key, and the listeners that speak it.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file of the certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM file of the private key.
    pub key: Option<PathBuf>,
    /// Port of a line-protocol listener over TLS.
    pub port: Option<u16>,
    /// Port of an HTTP + WebSocket listener over TLS.
    pub wss_port: Option<u16>,
}

/// Commands a connection may send in a burst.
pub const DEFAULT_FLOOD_BURST: u32 = 20;
/// Commands a connection may send per second, sustained.
pub const DEFAULT_FLOOD_RATE: u32 = 10;
/// A sender held back by flood control this long is disconnected.
pub const DEFAULT_FLOOD_KICK: Duration = Duration::from_secs(30);
/// Connections one address may hold at once.
pub const DEFAULT_MAX_CONNS_PER_IP: usize = 16;
/// New connections one address may open per minute.
pub const DEFAULT_CONN_RATE_PER_IP: u32 = 60;
/// Unsent output of all connections together past which the largest backlogs are cut.
pub const DEFAULT_MAX_OUTBUF_TOTAL_BYTES: usize = 1 << 30;

/// What one client may take from the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Commands a connection may send at once before it is slowed down.
    pub flood_burst: u32,
    /// Commands per second a connection may send, sustained; 0 turns flood control off.
    pub flood_rate: u32,
    /// How long a sender may stay over the limit before it is disconnected.
    pub flood_kick: Duration,
    /// Connections one address (IPv4, or IPv6 /64) may hold at once.
    pub max_conns_per_ip: usize,
    /// New connections one address may open per minute.
    pub conn_rate_per_ip: u32,
    /// Whether loopback clients are limited too (they are exempt by default).
    pub limit_loopback: bool,
    /// Unsent output of all connections together.
    pub max_outbuf_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flood_burst: DEFAULT_FLOOD_BURST,
            flood_rate: DEFAULT_FLOOD_RATE,
            flood_kick: DEFAULT_FLOOD_KICK,
            max_conns_per_ip: DEFAULT_MAX_CONNS_PER_IP,
            conn_rate_per_ip: DEFAULT_CONN_RATE_PER_IP,
            limit_loopback: false,
            max_outbuf_total_bytes: DEFAULT_MAX_OUTBUF_TOTAL_BYTES,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            reuse_port: false,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_outbuf_bytes: DEFAULT_MAX_OUTBUF_BYTES,
            max_conns: DEFAULT_MAX_CONNS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            lang: Lang::Zh,
            ws_port: None,
            http_port: None,
            ws_max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            access: Access::default(),
            cluster: ClusterSettings::default(),
            tls: TlsSettings::default(),
            limits: Limits::default(),
            history: DEFAULT_HISTORY,
            history_bytes: DEFAULT_HISTORY_BYTES,
            offline: OfflineSettings::default(),
            coalesce: Coalesce::default(),
        }
    }
}

impl Config {
    /// Checks the access settings before anything is bound: no empty token or secret, every
    /// allowed origin an origin, and no API open to the network by accident.
    ///
    /// # Errors
    /// [`AccessError`], whose `Display` is the one line the server prints before exiting.
    pub fn check(&self) -> Result<(), AccessError> {
        if self.access.api_tokens.iter().any(String::is_empty) {
            return Err(AccessError::EmptyToken);
        }
        if self.access.auth_secret.as_deref() == Some("") {
            return Err(AccessError::EmptySecret);
        }
        if let Some(bad) = self.access.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(AccessError::BadOrigin(bad.clone()));
        }
        let web = self.ws_port.is_some() || self.http_port.is_some() || self.tls.wss_port.is_some();
        if web
            && self.access.api_tokens.is_empty()
            && !self.access.api_open
            && !is_loopback(&self.host)
        {
            return Err(AccessError::OpenApi(self.host.clone()));
        }
        Ok(())
    }
}

/// The items of a comma-separated flag, trimmed (an empty item is kept, for
/// [`Config::check`] to refuse).
pub fn comma_list(list: Option<&str>) -> Vec<String> {
    list.map(|l| l.split(',').map(|item| item.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Whether `host` is a loopback address, or `localhost`: nobody else can connect there.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `o` is a browser origin: `http://` or `https://`, then a host (and maybe a
/// port), nothing after.
fn is_origin(o: &str) -> bool {
    let lower = o.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '?', '#', ' ', '@']))
}

/// Access settings that refuse to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// `--api-token ""`, or an empty item in its list.
    EmptyToken,
    /// `--auth-secret ""`.
    EmptySecret,
    /// An `--allowed-origins` item that is not `scheme://host[:port]`.
    BadOrigin(String),
    /// A web listener on this non-loopback host with open API writes, not asked for.
    OpenApi(String),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::EmptyToken => f.write_str(
                "--api-token (IMSERVER_API_TOKEN) holds an empty token: give one or more tokens, comma-separated",
            ),
            AccessError::EmptySecret => {
                f.write_str("--auth-secret (IMSERVER_AUTH_SECRET) is empty: give a secret")
            }
            AccessError::BadOrigin(o) => write!(
                f,
                "--allowed-origins: {o:?} is not an origin such as https://chat.example.com"
            ),
            AccessError::OpenApi(host) => write!(
                f,
                "refusing to start: --host {host} is not loopback, so anyone could send through \
                 the HTTP API; set --api-token (or IMSERVER_API_TOKEN), or --api-open to allow it"
            ),
        }
    }
}

impl std::error::Error for AccessError {}

/// Where Redis is, and who to log in as, from `redis://[user:password@]HOST[:PORT][/DB]`.
///
/// Its `Debug` and `Display` never show the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP.
    pub host: String,
    /// TCP port (6379 when not given).
    pub port: u16,
    /// Database number for `SELECT` (0 when not given).
    pub db: u32,
    /// The credentials sent with `AUTH` on every connect, if any.
    pub auth: Option<RedisAuth>,
}

/// Credentials for Redis's `AUTH [user] password`: a password alone (`requirepass`, or the
/// `default` user), or an ACL user and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAuth {
    /// The ACL user; `None` sends `AUTH password`.
    pub user: Option<String>,
    /// The password, kept out of `Debug` and `Display` so it never reaches a log.
    pub password: String,
}

/// What logs and `Debug` show instead of a password.
const REDACTED: &str = "***";

impl fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAuth")
            .field("user", &self.user)
            .field("password", &REDACTED)
            .finish()
    }
}

impl fmt::Display for RedisUrl {
    /// The URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if let Some(auth) = &self.auth {
            write!(f, "{}:{REDACTED}@", auth.user.as_deref().unwrap_or(""))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// A `--redis` value that is not `redis://[user:password@]HOST[:PORT][/DB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUrl(pub String);

impl fmt::Display for BadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not redis://[user:password@]HOST[:PORT][/DB]",
            self.0
        )
    }
}

impl std::error::Error for BadUrl {}

impl std::str::FromStr for RedisUrl {
    type Err = BadUrl;
    fn from_str(s: &str) -> Result<Self, BadUrl> {
        let bad = || BadUrl(s.to_owned());
        let rest = s.strip_prefix("redis://").ok_or_else(bad)?;
        // The last '@': a password may hold an unencoded '@' or '/', a host never does.
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (parse_userinfo(userinfo).ok_or_else(bad)?, rest),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) => (hp, 0),
            Some((hp, db)) => (hp, db.parse().map_err(|_| bad())?),
            None => (rest, 0),
        };
        // `[IPv6]` or `[IPv6]:PORT`, else `HOST` or `HOST:PORT`.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']').ok_or_else(bad)? {
                (h, "") => (h, None),
                (h, p) => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            },
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 6379,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            db,
            auth,
        })
    }
}

/// `user:password` (either may be empty, both percent-decoded): `Some(None)` when both are
/// empty, `None` when there is no ':' (a lone word could be either) or bad UTF-8.
fn parse_userinfo(userinfo: &str) -> Option<Option<RedisAuth>> {
    let (user, password) = userinfo.split_once(':')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    let (user, password) = (decode(user)?, decode(password)?);
    if user.is_empty() && password.is_empty() {
        return Some(None);
    }
    Some(Some(RedisAuth {
        user: (!user.is_empty()).then_some(user),
        password,
    }))
}

impl RedisUrl {
    /// Resolves the address once, at start (resolving is blocking; reconnects reuse it).
    ///
    /// # Errors
    /// The resolver's error, or `NotFound` when the name has no address.
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| ErrorKind::NotFound.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_settings_are_checked() {
        let ok = Config::default();
        assert_eq!(ok.check(), Ok(()));
        let open = Config {
            host: "0.0.0.0".into(),
            http_port: Some(0),
            ..Config::default()
        };
        assert!(matches!(open.check(), Err(AccessError::OpenApi(_))));
        let line_only = Config {
            host: "0.0.0.0".into(),
            ..Config::default()
        };
        assert_eq!(line_only.check(), Ok(()));
        let with = |access: Access, base: &Config| Config {
            access,
            ..base.clone()
        };
        let tokens = with(
            Access {
                api_tokens: comma_list(Some("a, b")),
                ..Access::default()
            },
            &open,
        );
        assert_eq!(tokens.access.api_tokens, ["a", "b"]);
        assert_eq!(tokens.check(), Ok(()));
        let on_purpose = with(
            Access {
                api_open: true,
                ..Access::default()
            },
            &open,
        );
        assert_eq!(on_purpose.check(), Ok(()));
        let empty = with(
            Access {
                api_tokens: comma_list(Some("")),
                ..Access::default()
            },
            &ok,
        );
        assert_eq!(empty.check(), Err(AccessError::EmptyToken));
        let origins = with(
            Access {
                allowed_origins: comma_list(Some("https://a.example, http://b:8080, ftp://c")),
                ..Access::default()
            },
            &ok,
        );
        assert_eq!(
            origins.check(),
            Err(AccessError::BadOrigin("ftp://c".into()))
        );
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "example.com", "10.0.0.1"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn urls() {
        let u: RedisUrl = "redis://127.0.0.1:6380/2".parse().unwrap();
        assert_eq!(
            u,
            RedisUrl {
                host: "127.0.0.1".into(),
                port: 6380,
                db: 2,
                auth: None,
            }
        );
        let u: RedisUrl = "redis://localhost".parse().unwrap();
        assert_eq!((u.port, u.db), (6379, 0));
        let u: RedisUrl = "redis://[::1]:7000".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert!("http://x".parse::<RedisUrl>().is_err());
        assert!("redis://:70".parse::<RedisUrl>().is_err());
        assert!("redis://h:notaport".parse::<RedisUrl>().is_err());
        assert!("redis://h:1/x".parse::<RedisUrl>().is_err());
        assert!("redis://[::1".parse::<RedisUrl>().is_err());
        assert!("redis://[::1]x".parse::<RedisUrl>().is_err());
    }
    #[test]
    fn urls_with_a_password() {
        let u: RedisUrl = "redis://:secret@127.0.0.1:6380/2".parse().unwrap();
        let auth = u.auth.clone().unwrap();
        assert_eq!((auth.user, auth.password.as_str()), (None, "secret"));
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
        let u: RedisUrl = "redis://alice:p%40ss:w/rd@[::1]".parse().unwrap();
        let auth = u.auth.clone().unwrap();
        assert_eq!(auth.user.as_deref(), Some("alice"));
        assert_eq!(auth.password, "p@ss:w/rd");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 6379, 0));
        // An unencoded '@' in the password: the last '@' ends it.
        let u: RedisUrl = "redis://:a@b@h".parse().unwrap();
        assert_eq!(u.auth.unwrap().password, "a@b");
        let u: RedisUrl = "redis://:@h".parse().unwrap();
        assert_eq!(u.auth, None);
        assert!("redis://secret@h".parse::<RedisUrl>().is_err());
        assert!("redis://:pw@".parse::<RedisUrl>().is_err());
        assert!("redis://:%ff@h".parse::<RedisUrl>().is_err());
    }

    #[test]
    fn the_password_never_shows() {
        let u: RedisUrl = "redis://alice:s3cret@h:1/2".parse().unwrap();
        assert_eq!(u.to_string(), "redis://alice:***@h:1/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(!format!("{u:#?}").contains("s3cret"));
        let u: RedisUrl = "redis://:s3cret@[::1]".parse().unwrap();
        assert_eq!(u.to_string(), "redis://:***@[::1]:6379/0");
        let err = "redis://:s3cret".parse::<RedisUrl>().unwrap_err();
        assert!(err
            .to_string()
            .contains("redis://[user:password@]HOST[:PORT][/DB]"));
    }
}
