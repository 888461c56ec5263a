//! The server's command line, shared by `imserver-mio` and the comparison variant so both
//! take the same flags. Parsing happens in each binary's `main`; this only describes.

use crate::config::RedisUrl;
use crate::config::{
    self, Access, ClusterSettings, Coalesce, Config, Limits, OfflineSettings, TlsSettings,
};
use crate::text::Lang;
use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::time::Duration;

/// imserver-mio: a chat server on one mio event loop. It speaks the line protocol of the Go
/// TCP chat server of the tutorials it follows (`nc` is a client), WebSocket and HTTP.
///
/// A flag given twice counts as given last, so a script (or the `--workers` supervisor)
/// can append to a command line to override it.
#[derive(Debug, Parser)]
#[command(name = "imserver-mio", version, args_override_self = true)]
pub struct MioArgs {
    /// The flags both servers take.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Worker processes: N single-threaded servers of this binary sharing the ports (implies --reuse-port; more than 1 needs --redis), restarted when one dies. More cores for fan-out and users, at the price of a Redis hop for every broadcast and for whispers between workers.
    #[arg(long, value_name = "N", default_value_t = 1, env = "IMSERVER_WORKERS", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=config::MAX_WORKERS).map(|v| v as usize))]
    pub workers: usize,
}

/// The flags of the chat server itself, which the comparison variant takes too.
#[derive(Debug, Parser)]
#[command(version)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = config::DEFAULT_HOST)]
    #[arg(env = "IMSERVER_HOST")]
    pub host: String,
    /// TCP port for the line protocol; 0 picks a free port (printed first on stdout).
    #[arg(long, value_name = "PORT", default_value_t = config::DEFAULT_PORT,
          allow_negative_numbers = true, value_parser = parse_port)]
    #[arg(env = "IMSERVER_PORT")]
    pub port: u16,
    /// Listen with SO_REUSEPORT: several processes on one machine share the ports and the kernel spreads new connections over them (join them with --redis). The trade-off: any process of the same user with this flag can then join the ports and take a share of the connections.
    #[arg(long, env = "IMSERVER_REUSE_PORT", value_parser = clap::builder::BoolishValueParser::new())]
    pub reuse_port: bool,
    /// Seconds a user may stay silent before being kicked; 0 = never.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    #[arg(env = "IMSERVER_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,
    /// Longest accepted line in bytes (newline excluded); longer lines are discarded.
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_LINE_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 24)).map(|v| v as usize))]
    #[arg(env = "IMSERVER_MAX_LINE")]
    pub max_line: usize,
    /// Unsent output in bytes past which a slow reader is disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_OUTBUF_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 40)).map(|v| v as usize))]
    #[arg(env = "IMSERVER_MAX_OUTBUF")]
    pub max_outbuf: usize,
    /// Most connections held at once; newcomers beyond it are refused.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNS,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 24)).map(|v| v as usize))]
    #[arg(env = "IMSERVER_MAX_CONNS")]
    pub max_conns: usize,
    /// Seconds to flush goodbyes on SIGINT/SIGTERM before exiting.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    #[arg(env = "IMSERVER_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
    /// Language of the server's texts: zh (the Chinese texts of the Go chat server it follows) or en.
    #[arg(long, default_value = "zh")]
    #[arg(env = "IMSERVER_LANG")]
    pub lang: Lang,
    /// Port for WebSocket clients (/im, /acc, /ws/{id}); off unless given; 0 picks one.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true, value_parser = parse_port)]
    #[arg(env = "IMSERVER_WS_PORT")]
    pub ws_port: Option<u16>,
    /// Port for the HTTP API and the chat page; off unless given; may equal --ws-port.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true, value_parser = parse_port)]
    #[arg(env = "IMSERVER_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Largest WebSocket message in bytes; bigger ones are closed with 1009.
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_WS_MAX_MESSAGE_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)).map(|v| v as usize))]
    #[arg(env = "IMSERVER_WS_MAX_MESSAGE")]
    pub ws_max_message: usize,
    /// Seconds a WebSocket user may send nothing (no heartbeat) before being closed; 0 = never.
    #[arg(long, value_name = "SECS", default_value = "360", value_parser = parse_secs)]
    #[arg(env = "IMSERVER_HEARTBEAT_TIMEOUT")]
    pub heartbeat_timeout: Duration,
    /// Seconds a WebSocket may take to log in (/im login, /ws/{id} claim) and an HTTP request to arrive; then 1008 / 408.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_login_timeout,
          env = "IMSERVER_LOGIN_TIMEOUT")]
    pub login_timeout: Duration,
    /// Bearer token(s) that HTTP API writes (sendMessage, sendMessageAll) require; comma-separated for rotation.
    #[arg(
        long,
        value_name = "TOKEN[,TOKEN...]",
        env = "IMSERVER_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Serve HTTP API writes without a token on a non-loopback --host (refused otherwise).
    #[arg(long, env = "IMSERVER_API_OPEN", value_parser = clap::builder::BoolishValueParser::new())]
    pub api_open: bool,
    /// Secret of the HS256 JWTs that WebSocket logins must then carry (/im login "token", /ws/{id}?token=).
    #[arg(
        long,
        value_name = "SECRET",
        env = "IMSERVER_AUTH_SECRET",
        hide_env_values = true
    )]
    pub auth_secret: Option<String>,
    /// Browser origins accepted besides the server's own (comma-separated, e.g. https://chat.example.com).
    #[arg(
        long,
        value_name = "ORIGIN[,ORIGIN...]",
        env = "IMSERVER_ALLOWED_ORIGINS"
    )]
    pub allowed_origins: Option<String>,
    /// Join a cluster of servers through this Redis: redis://[user:password@]HOST[:PORT][/DB] (port 6379, db 0 if left out; AUTH on every connect if given).
    // The text is also --help's, so it keeps its brackets rather than rustdoc's escapes.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "URL")]
    #[arg(env = "IMSERVER_REDIS", hide_env_values = true)] // it may hold a password
    pub redis: Option<RedisUrl>,
    /// This server's id in the cluster (letters, digits, '-', '_'); default: random.
    #[arg(long, value_name = "ID", value_parser = parse_node_id)]
    #[arg(env = "IMSERVER_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds after which the others declare a silent server dead (its users offline).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_node_timeout)]
    #[arg(env = "IMSERVER_NODE_TIMEOUT")]
    pub node_timeout: Duration,
    /// PEM file of the TLS certificate chain (for --tls-port and --wss-port).
    #[arg(long, value_name = "PEM", env = "IMSERVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the TLS private key.
    #[arg(long, value_name = "PEM", env = "IMSERVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Also serve the line protocol over TLS on this port (like IRC's 6697).
    #[arg(long, value_name = "PORT", allow_negative_numbers = true, value_parser = parse_port, env = "IMSERVER_TLS_PORT")]
    pub tls_port: Option<u16>,
    /// Also serve HTTP and WebSocket over TLS on this port (https:// and wss://).
    #[arg(long, value_name = "PORT", allow_negative_numbers = true, value_parser = parse_port, env = "IMSERVER_WSS_PORT")]
    pub wss_port: Option<u16>,
    /// Commands a connection may send in a burst before flood control slows it down.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_FLOOD_BURST,
          value_parser = clap::value_parser!(u32).range(1..), env = "IMSERVER_FLOOD_BURST")]
    pub flood_burst: u32,
    /// Commands per second a connection may send, sustained; 0 turns flood control off.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_FLOOD_RATE, env = "IMSERVER_FLOOD_RATE")]
    pub flood_rate: u32,
    /// Seconds a sender may stay over the flood limit before it is disconnected.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs, env = "IMSERVER_FLOOD_KICK")]
    pub flood_kick: Duration,
    /// Connections one address (IPv4, IPv6 /64) may hold at once; loopback is exempt.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNS_PER_IP,
          value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize), env = "IMSERVER_MAX_CONNS_PER_IP")]
    pub max_conns_per_ip: usize,
    /// New connections one address may open per minute; loopback is exempt.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_CONN_RATE_PER_IP,
          value_parser = clap::value_parser!(u32).range(1..), env = "IMSERVER_CONN_RATE_PER_IP")]
    pub conn_rate_per_ip: u32,
    /// Apply the per-address and flood limits to loopback clients too.
    #[arg(long, env = "IMSERVER_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,
    /// Unsent output of all connections together, in bytes; past it the largest backlogs
    /// are disconnected first.
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_OUTBUF_TOTAL_BYTES,
          value_parser = clap::value_parser!(u64).range(1024..).map(|v| v as usize), env = "IMSERVER_MAX_OUTBUF_TOTAL")]
    pub max_outbuf_total: usize,
    /// Messages each room keeps for `history` and the page's recovery; 0 keeps none. More lets a client come back later without a gap, at up to N x (--max-line + 216) bytes per room.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_HISTORY, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000).map(|v| v as usize), env = "IMSERVER_HISTORY")]
    pub history: usize,
    /// Bytes all rooms' histories keep together; past it the largest histories lose their
    /// oldest messages first. A lower cap bounds memory under many busy rooms, at the cost of
    /// shorter histories there.
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_HISTORY_BYTES, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 40)).map(|v| v as usize), env = "IMSERVER_HISTORY_BYTES")]
    pub history_bytes: usize,
    /// Private messages kept per signed-in user while offline (with --auth-secret); more are refused and the sender told. A bigger mailbox costs memory (or Redis) per absent user.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_OFFLINE_MAX, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=10_000).map(|v| v as usize),
          env = "IMSERVER_OFFLINE_MAX")]
    pub offline_max: usize,
    /// How long an offline private message, and a signed login, is remembered: 7d, 12h, 30m, 90s or seconds. Longer reaches users who come back later, at the cost of holding more.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_ttl, allow_negative_numbers = true,
          env = "IMSERVER_OFFLINE_TTL")]
    pub offline_ttl: Duration,
    /// Under load, a connection's output is held back until it has this many bytes (or
    /// --coalesce-us passed). Larger means fewer, bigger writes under load; smaller means
    /// less waiting for a user who receives a lot.
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_COALESCE_BYTES, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)).map(|v| v as usize), env = "IMSERVER_COALESCE_BYTES")]
    pub coalesce_bytes: usize,
    /// Under load, the longest a connection's output is held back to be sent with later
    /// output, in microseconds; 0 = never (flush every turn). Longer means fewer sends per
    /// message, at up to that much more latency under load (idle, output leaves at once).
    #[arg(long, value_name = "MICROS", default_value = "500", allow_negative_numbers = true,
          value_parser = parse_micros, env = "IMSERVER_COALESCE_US")]
    pub coalesce_us: Duration,
}

impl ServerArgs {
    /// The settings these flags ask for.
    pub fn config(&self) -> Config {
        Config {
            host: self.host.clone(),
            port: self.port,
            reuse_port: self.reuse_port,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            max_line_bytes: self.max_line,
            max_outbuf_bytes: self.max_outbuf,
            max_conns: self.max_conns,
            shutdown_grace: self.shutdown_grace,
            lang: self.lang,
            ws_port: self.ws_port,
            http_port: self.http_port,
            ws_max_message_bytes: self.ws_max_message,
            heartbeat_timeout: self.heartbeat_timeout,
            login_timeout: self.login_timeout,
            access: Access {
                api_tokens: config::comma_list(self.api_token.as_deref()),
                api_open: self.api_open,
                auth_secret: self.auth_secret.clone(),
                allowed_origins: config::comma_list(self.allowed_origins.as_deref()),
            },
            cluster: ClusterSettings {
                redis: self.redis.clone(),
                node_id: self.node_id.clone(),
                node_timeout: self.node_timeout,
            },
            tls: TlsSettings {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                port: self.tls_port,
                wss_port: self.wss_port,
            },
            limits: Limits {
                flood_burst: self.flood_burst,
                flood_rate: self.flood_rate,
                flood_kick: self.flood_kick,
                max_conns_per_ip: self.max_conns_per_ip,
                conn_rate_per_ip: self.conn_rate_per_ip,
                limit_loopback: self.limit_loopback,
                max_outbuf_total_bytes: self.max_outbuf_total,
            },
            history: self.history,
            history_bytes: self.history_bytes,
            offline: OfflineSettings {
                max_per_user: self.offline_max,
                ttl: self.offline_ttl,
            },
            coalesce: Coalesce {
                bytes: self.coalesce_bytes,
                wait: self.coalesce_us,
            },
        }
    }
}

/// Parses the command line into `A` (the server's flags, or a binary's that flattens
/// them), exiting as clap does on a usage error, except that a bad value which came from an
/// `IMSERVER_*` variable is one line naming the variable, and exit code 2.
pub fn parse_args<A: Parser>() -> A {
    match A::try_parse() {
        Ok(args) => args,
        Err(e) => match bad_variable::<A>(&e) {
            Some(line) => {
                eprintln!("{line}");
                std::process::exit(2) // clap's code for a usage error
            }
            None => e.exit(),
        },
    }
}

/// When clap refused a value that came from an `IMSERVER_*` variable rather than from the
/// command line, one line that names the variable (clap's own message names only the flag,
/// which the user never typed), e.g. `error: invalid value 'http' in IMSERVER_PORT (for
/// --port): the port must be a number 0-65535`. `None` for every other error.
fn bad_variable<A: CommandFactory>(e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    // "--port <PORT>" -> "port"
    let long = arg.strip_prefix("--")?.split(' ').next()?;
    let command = A::command();
    let var = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()?;
    let flag = format!("--{long}");
    let typed = std::env::args_os()
        .skip(1)
        .filter_map(|a| a.into_string().ok())
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if typed || std::env::var_os(var).is_none_or(|v| v.to_str() != Some(value.as_str())) {
        return None;
    }
    let why = std::error::Error::source(e)
        .map(|why| format!(": {why}"))
        .unwrap_or_default();
    Some(format!(
        "error: invalid value '{value}' in {} (for {flag}){why}",
        var.to_string_lossy()
    ))
}

/// A TCP port, 0-65535. The port flags let a negative number through to here, so that
/// `--port -1` is told what a port is instead of that `-1` is an unknown argument.
///
/// # Errors
///
/// Anything but a decimal number 0-65535, with a message saying so.
pub fn parse_port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| "the port must be a number 0-65535".to_owned())
}

/// A node id: 1–32 of letters, digits, `-` and `_` (it is part of Redis keys and names).
fn parse_node_id(s: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_owned())
        .ok_or_else(|| format!("{s:?} is not 1-32 letters, digits, '-' or '_'"))
}

/// The node timeout: at least a second, since a fifth of it is the heartbeat period.
fn parse_node_timeout(s: &str) -> Result<Duration, String> {
    let timeout = parse_secs(s)?;
    if timeout < Duration::from_secs(1) {
        return Err(format!("{s:?}: the node timeout must be at least 1 second"));
    }
    Ok(timeout)
}

/// The login timeout: more than zero, since every HTTP request must end some time.
fn parse_login_timeout(s: &str) -> Result<Duration, String> {
    let timeout = parse_secs(s)?;
    if timeout.is_zero() {
        return Err(format!(
            "{s:?}: the login timeout must be more than 0 seconds"
        ));
    }
    Ok(timeout)
}

/// The longest `--offline-ttl`: ten years (Redis takes it in milliseconds).
const MAX_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A duration with a unit, `7d`, `12h`, `30m`, `90s`, or plain seconds (`3600`, `0.5`):
/// the number is read as [`parse_secs`] reads seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (7d, 12h, 30m, 90s or seconds)");
    let (number, unit_secs) = match s.char_indices().last() {
        Some((i, 'd')) => (s.get(..i), 24 * 3600),
        Some((i, 'h')) => (s.get(..i), 3600),
        Some((i, 'm')) => (s.get(..i), 60),
        Some((i, 's')) => (s.get(..i), 1),
        _ => (Some(s), 1),
    };
    let secs = parse_secs(number.ok_or_else(bad)?).map_err(|_| bad())?;
    secs.checked_mul(unit_secs).ok_or_else(bad)
}

/// The offline TTL: more than zero and at most ten years.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_duration(s)?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!(
            "{s:?}: the TTL must be more than 0 and at most 3650d"
        ));
    }
    Ok(ttl)
}

/// Microseconds, a whole number 0-1000000 (a second: longer would be a delay, not a batch).
fn parse_micros(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(us) if us <= 1_000_000 => Ok(Duration::from_micros(us)),
        _ => Err(format!("{s:?} is not a number of microseconds 0-1000000")),
    }
}

/// Seconds as a non-negative decimal number (`1`, `0.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a valid number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_config_defaults() {
        let c = ServerArgs::parse_from(["imserver-mio"]).config();
        let d = Config::default();
        assert_eq!(c.port, d.port);
        assert_eq!(c.idle_timeout, d.idle_timeout);
        assert_eq!(c.max_line_bytes, d.max_line_bytes);
        assert_eq!(c.max_outbuf_bytes, d.max_outbuf_bytes);
        assert_eq!(c.max_conns, d.max_conns);
        assert_eq!(c.shutdown_grace, d.shutdown_grace);
        assert_eq!(c.login_timeout, d.login_timeout);
        assert_eq!((c.history, c.history_bytes), (d.history, d.history_bytes));
        assert_eq!(c.coalesce.bytes, d.coalesce.bytes);
        assert_eq!(c.coalesce.wait, d.coalesce.wait);
    }

    #[test]
    fn access_flags_split_their_lists() {
        let c = ServerArgs::parse_from([
            "x",
            "--api-token",
            "a,b",
            "--allowed-origins",
            "https://x.example",
        ])
        .config();
        assert_eq!(c.access.api_tokens, ["a", "b"]);
        assert_eq!(c.access.allowed_origins, ["https://x.example"]);
        assert!(ServerArgs::try_parse_from(["x", "--login-timeout", "0"]).is_err());
    }

    #[test]
    fn idle_timeout_zero_means_never() {
        let c = ServerArgs::parse_from(["x", "--idle-timeout", "0"]).config();
        assert_eq!(c.idle_timeout, None);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(ServerArgs::try_parse_from(["x", "--idle-timeout", "-1"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--lang", "fr"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--max-line", "0"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--port", "70000"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--history", "-1"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--history-bytes", "10"]).is_err());
        let off = ServerArgs::parse_from(["x", "--history", "0"]).config();
        assert_eq!(off.history, 0);
        assert!(ServerArgs::try_parse_from(["x", "--coalesce-us", "-1"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--coalesce-us", "0.5"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--coalesce-us", "1000001"]).is_err());
        assert!(ServerArgs::try_parse_from(["x", "--coalesce-bytes", "0"]).is_err());
        let off = ServerArgs::parse_from(["x", "--coalesce-us", "0"]).config();
        assert!(off.coalesce.wait.is_zero());
    }

    #[test]
    fn durations_take_a_unit_or_seconds() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(parse_duration("7d"), Ok(7 * day));
        assert_eq!(parse_duration("12h"), Ok(day / 2));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "d", "7w", "-1s", "1 d", "abc", "7dd"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let c = ServerArgs::parse_from(["x", "--offline-ttl", "12h", "--offline-max", "2"]);
        assert_eq!(c.config().offline.ttl, day / 2);
        assert_eq!(c.config().offline.max_per_user, 2);
        assert_eq!(
            ServerArgs::parse_from(["x"]).config().offline,
            OfflineSettings::default()
        );
        for bad in ["0", "0s", "3651d", "7w"] {
            assert!(
                ServerArgs::try_parse_from(["x", "--offline-ttl", bad]).is_err(),
                "{bad:?}"
            );
        }
        assert!(ServerArgs::try_parse_from(["x", "--offline-max", "0"]).is_err());
    }

    #[test]
    fn a_negative_port_is_refused_as_a_port() {
        for flag in ["--port", "--ws-port", "--http-port"] {
            let err = ServerArgs::try_parse_from(["x", flag, "-1"])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("the port must be a number 0-65535"),
                "{flag}: {err}"
            );
        }
    }
}
