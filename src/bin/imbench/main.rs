//! `imbench`: a load generator for imserver-mio (and anything speaking its line protocol,
//! or, with `--ws`, the hub protocol of `/ws/{id}` over WebSocket), and, with `--target
//! redis|nats`, for Redis pub/sub and NATS on the same fanout and private workloads.
//!
//! One thread and one `mio::Poll` hold every simulated user, so thousands of connections
//! cost no thread each. It knows nothing of the server's internals: a user is a TCP
//! connection known by its local `ip:port`, it has joined once it hears its own
//! `[ip:port]NAME:…` online notice (in any language), which tells the name the server gave
//! it (`ip:port` again, or `ip:port@NODE` in a cluster), and its traffic is payloads that
//! carry sender, sequence number and send time (see `track.rs`). Over WebSocket a user is
//! `/ws/ID`, joined once it hears its own type 0 presence message, and the same payloads
//! travel as the `content` of hub messages (see `transport.rs`); the accounting is the same.
//!
//! With `--target redis` or `--target nats` a user is a connection subscribed to one channel
//! (the run's room in a fanout run, its own in a private run), online once the subscription
//! is confirmed; a broadcast is a publish to the room, a whisper a publish to the partner's
//! channel. The payloads, windows and completeness checks are the same, so the numbers sit
//! beside imserver's. Only fanout and private are offered: idle and churn measure presence
//! notices, which a pub/sub server does not send.
//!
//! With several `--addr` (servers of one cluster, `--redis`), user `i` connects to the
//! `i % k`-th: a fanout run checks that every user on every server gets every broadcast
//! once and in order, and a private run pairs users on different servers.
//!
//! ```text
//! imbench idle    --conns 1000 --pid $SERVER   # e.g. SERVER=$! after starting it with &
//! imbench fanout  --conns 1000 --senders 1 --msgs 200 --size 64 --window 16
//! imbench private --pairs 500 --msgs 200 --size 64 --window 16
//! imbench churn   --conns 500 --rate 200 --duration 10
//! imbench --ws --addr 127.0.0.1:8080 fanout --conns 1000   # against --ws-port 8080
//! imbench --addr 127.0.0.1:8888,127.0.0.1:8889 --pid $A,$B,$REDIS fanout --conns 1000
//! imbench --target redis --addr 127.0.0.1:6379 --pid $REDIS fanout --conns 1000
//! imbench --target nats --addr 127.0.0.1:4222 private --pairs 100
//! ```
//!
//! Exit status: 0 when the run completed, 1 when it failed (incomplete delivery, a timeout,
//! a connection the server closed, no server), 2 for bad arguments.
//!
//! # Layout
//! - `main.rs`: flags, checks before the run, printing, exit status.
//! - `modes.rs`: each mode's phases and report.
//! - `engine.rs`: the poll loop, the users' sockets and buffers, splitting input into
//!   messages.
//! - `transport.rs`: line or WebSocket: names, wrapping payloads, reading messages.
//! - `ws.rs`: pure RFC 6455 client framing and the upgrade handshake.
//! - `track.rs`: pure bookkeeping: payload format, windows, completeness, latency
//!   percentiles (`hdrhistogram`).
//! - `report.rs`: the report as a table or one JSON line.
//! - `sys.rs`: /proc samples, the open-file limit, source-address binding.

mod engine;
mod modes;
mod report;
mod sys;
mod track;
mod transport;
mod ws;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use modes::{Churn, Common, Outcome, Traffic};
use transport::Transport;

/// Ephemeral ports one source address is given for one server address (Linux's default
/// range 32768–60999 holds about 28,000; keep a margin).
const SOCKETS_PER_SOURCE_ADDR: usize = 25_000;
/// Descriptors imbench needs besides its users' sockets (poll, stdio, /proc reads).
const SPARE_FDS: u64 = 50;
/// Longest time any flag may ask for (a year): keeps every `Instant + Duration` in range.
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;
/// Largest receivers × senders table of a fanout run (8 bytes each).
const MAX_FANOUT_CELLS: usize = 50_000_000;

#[derive(Parser)]
#[command(
    name = "imbench",
    version,
    about = "Load generator for imserver-mio: many chat users on one thread and one mio poll",
    long_about = "Load generator for imserver-mio: many chat users on one thread and one mio poll.\n\n\
        It speaks the line protocol (or, with --ws, the WebSocket hub protocol of /ws/{id}) \
        to servers on 127.0.0.0/8 or ::1 only (one, or several of one cluster), and reports \
        a table (or one JSON object with --json). With --target redis or --target nats it \
        runs the same fanout and private workloads against Redis pub/sub or NATS, for \
        comparison (idle and churn are refused there: they measure imserver's presence \
        notices). Exit status: 0 complete, 1 failed (incomplete delivery, timeout, server \
        closed a connection, no server), 2 bad arguments.",
    after_help = "Every run stops by itself after --timeout. Run under a raised open-file limit \
        (e.g. `ulimit -n 20000`) for thousands of users; imbench refuses a run that would not \
        fit under its soft limit. Above 25,000 sockets it binds \
        them round-robin to 127.0.0.1..127.0.0.N (or always, with --src-addrs N)."
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args)]
struct CommonArgs {
    /// Server address, or several, comma-separated (servers of one cluster: user i
    /// connects to the (i mod k)-th); only loopback (127.0.0.0/8, ::1, localhost) is
    /// accepted. With --ws, the servers' WebSocket addresses (their --ws-port).
    #[arg(long, global = true, value_name = "ADDR[,ADDR…]", value_delimiter = ',',
          default_value = "127.0.0.1:8888", value_parser = parse_addr)]
    addr: Vec<SocketAddr>,
    /// Speak WebSocket: each user opens /ws/ID (the hub protocol) and sends masked frames.
    #[arg(long, global = true)]
    ws: bool,
    /// What --addr is: imserver (or anything speaking its protocols), or a pub/sub peer
    /// measured on the same workload: Redis (SUBSCRIBE/PUBLISH over RESP3, Redis 6 or
    /// newer) or NATS (SUB/PUB). Peers run fanout and private only.
    #[arg(long, global = true, value_enum, default_value_t = Target::Imserver)]
    target: Target,
    /// Seconds the whole run may take; then it reports what it measured and exits 1.
    #[arg(long, global = true, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    timeout: Duration,
    /// Print one JSON object on one line instead of the table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long, global = true)]
    quiet: bool,
    /// The server's pid: report its resident memory before, after and at its peak during
    /// this run (sampled every 100 ms), and its CPU time. Several, comma-separated (the
    /// servers, Redis): sums, and each one's CPU time in `…_each` lists.
    #[arg(long, global = true, value_name = "PID[,PID…]", value_delimiter = ',',
          value_parser = parse_pid)]
    pid: Vec<u32>,
    /// Most connects in flight (started, own online notice not yet heard). The default fits
    /// the smallest common listen backlog, std's and mio's 128 (imserver-mio raises its own
    /// to 4096): past a server's backlog the kernel drops SYNs and the run would measure
    /// its 1 s retry timer.
    #[arg(long, global = true, value_name = "K", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    connect_burst: u32,
    /// Bind users round-robin to 127.0.0.1..=127.0.0.N before connecting; 0 = only when
    /// more than 25,000 sockets are needed.
    #[arg(long, global = true, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=254))]
    src_addrs: u8,
}

/// The kind of server imbench drives.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// imserver-mio, imserver-tokio, or anything speaking the line (or, with --ws, hub)
    /// protocol.
    Imserver,
    /// Redis pub/sub: each user SUBSCRIBEs to one channel, senders PUBLISH.
    Redis,
    /// NATS: each user SUBs to one subject, senders PUB.
    Nats,
}

#[derive(Subcommand)]
enum Mode {
    /// Open N users and wait until each has heard its own online notice; report the time to
    /// join everyone (and with --pid the server's memory per connection and CPU time).
    Idle(IdleArgs),
    /// S of N users broadcast M messages of B bytes; each sender keeps at most W messages not
    /// yet delivered to all N. Reports deliveries/s, latency and completeness.
    Fanout(FanoutArgs),
    /// P pairs whisper M messages of B bytes each way with `to|NAME|…`, window W.
    Private(PrivateArgs),
    /// Keep N users online; RATE times a second the longest-online one leaves and a new one
    /// joins and says one line, for SECS. Reports joins/s and join latency.
    Churn(ChurnArgs),
}

#[derive(Args)]
struct IdleArgs {
    /// Users to open.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = count)]
    conns: usize,
    /// Seconds to stay connected after everyone joined, before the final sample.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs_or_zero)]
    hold: Duration,
}

#[derive(Args)]
struct TrafficArgs {
    /// Messages each sender sends.
    #[arg(long, value_name = "M", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    msgs: u64,
    /// Payload bytes per message (at least its ~25-byte header: sender, sequence, send time).
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    size: u64,
    /// Messages a sender may have sent but not yet seen delivered to every receiver.
    #[arg(long, value_name = "W", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    window: u64,
}

#[derive(Args)]
struct FanoutArgs {
    /// Users online, all of them receivers.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = count)]
    conns: usize,
    /// How many of the users send (at most N).
    #[arg(long, value_name = "S", default_value_t = 1, value_parser = count)]
    senders: usize,
    #[command(flatten)]
    traffic: TrafficArgs,
}

#[derive(Args)]
struct PrivateArgs {
    /// Pairs of users (2P connections).
    #[arg(long, value_name = "P", default_value_t = 50, value_parser = count)]
    pairs: usize,
    #[command(flatten)]
    traffic: TrafficArgs,
}

#[derive(Args)]
struct ChurnArgs {
    /// Users kept online.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = count)]
    conns: usize,
    /// Leave-and-join pairs per second.
    #[arg(long, value_name = "R", default_value = "100", value_parser = parse_rate)]
    rate: f64,
    /// Seconds to churn (after the first N joined); must be less than --timeout.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Bytes of each newcomer's line.
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    size: u64,
}

/// A loopback socket address: `IP:PORT`, `[::1]:PORT` or `localhost:PORT`. No name lookup.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = match s.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse(),
        None => s.parse::<SocketAddr>(),
    }
    .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 127.0.0.1:8888 or [::1]:8888)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address: imbench only sends traffic to 127.0.0.0/8 or ::1",
            addr.ip()
        ));
    }
    Ok(addr)
}

fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if (0.0..=MAX_SECS).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "{s:?} is not a number of seconds from 0 to {MAX_SECS}"
        )),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let d = parse_secs_or_zero(s)?;
    if d.is_zero() {
        return Err("must be more than 0 seconds".to_owned());
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e6 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate between 0 and 1000000 per second"
        )),
    }
}

fn count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a count from 1 to 1000000")),
    }
}

fn parse_pid(s: &str) -> Result<u32, String> {
    let pid: u32 = s.parse().map_err(|_| format!("{s:?} is not a pid"))?;
    sys::sample(&pid.to_string()).map_err(|e| format!("cannot read /proc/{pid}: {e}"))?;
    Ok(pid)
}

/// Exits 2 with clap's usage error.
fn usage_error(kind: ErrorKind, msg: String) -> ! {
    Cli::command().error(kind, msg).exit()
}

/// Sockets the run holds at once.
fn sockets_needed(mode: &Mode, burst: usize) -> usize {
    match mode {
        Mode::Idle(a) => a.conns,
        Mode::Fanout(a) => a.conns,
        Mode::Private(a) => 2 * a.pairs,
        Mode::Churn(a) => a.conns + burst,
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let c = &cli.common;
    if let Mode::Fanout(a) = &cli.mode {
        if a.senders > a.conns {
            usage_error(
                ErrorKind::ArgumentConflict,
                format!("--senders {} is more than --conns {}", a.senders, a.conns),
            );
        }
        if a.senders.saturating_mul(a.conns) > MAX_FANOUT_CELLS {
            usage_error(
                ErrorKind::ValueValidation,
                format!("--conns × --senders is over {MAX_FANOUT_CELLS}"),
            );
        }
    }
    if let Mode::Churn(a) = &cli.mode {
        if a.duration >= c.timeout {
            usage_error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--duration {} s does not fit in --timeout {} s (the whole run's limit)",
                    a.duration.as_secs_f64(),
                    c.timeout.as_secs_f64()
                ),
            );
        }
    }
    if let Some(twice) = c
        .addr
        .iter()
        .enumerate()
        .find_map(|(i, a)| c.addr[..i].contains(a).then_some(a))
    {
        usage_error(
            ErrorKind::ValueValidation,
            format!("--addr lists {twice} twice"),
        );
    }
    let transport = match (c.target, c.ws) {
        (Target::Imserver, false) => Transport::Line,
        (Target::Imserver, true) => Transport::Ws,
        (Target::Redis, false) => Transport::Redis,
        (Target::Nats, false) => Transport::Nats,
        (_, true) => usage_error(
            ErrorKind::ArgumentConflict,
            "--ws speaks imserver's WebSocket protocol: it does not go with --target redis|nats"
                .to_owned(),
        ),
    };
    if transport.is_peer() && matches!(cli.mode, Mode::Idle(_) | Mode::Churn(_)) {
        usage_error(
            ErrorKind::ArgumentConflict,
            format!(
                "--target {} runs fanout and private only: idle and churn measure presence \
                 notices, which a pub/sub server does not send",
                transport.name()
            ),
        );
    }
    let burst = c.connect_burst as usize;
    let needed = sockets_needed(&cli.mode, burst);
    let mut src_addrs = c.src_addrs;
    if src_addrs == 0 {
        src_addrs = u8::try_from(needed.div_ceil(SOCKETS_PER_SOURCE_ADDR)).unwrap_or(u8::MAX);
    }
    if src_addrs > 1 && !c.addr.iter().all(SocketAddr::is_ipv4) {
        usage_error(
            ErrorKind::ArgumentConflict,
            format!(
                "{needed} sockets need {src_addrs} source addresses, which needs IPv4 server \
                 addresses (127.0.0.1)"
            ),
        );
    }
    // The limit is the caller's to raise (`ulimit -n`); imbench only refuses a run that
    // would not fit rather than failing halfway with EMFILE.
    if let Some(limit) = sys::open_file_limit() {
        if needed as u64 + SPARE_FDS > limit {
            say(&format!(
                "{needed} connections need more than the open-file limit of {limit}; \
                 raise it (e.g. `ulimit -n {}`) and run again",
                needed as u64 + SPARE_FDS
            ));
            return ExitCode::FAILURE;
        }
    }
    let common = Common {
        addrs: c.addr.clone(),
        transport,
        timeout: c.timeout,
        pids: c.pid.clone(),
        connect_burst: burst,
        src_addrs,
        progress: !c.quiet,
    };
    let traffic = |t: &TrafficArgs| Traffic {
        msgs: t.msgs,
        size: t.size as usize,
        window: t.window,
    };
    let outcome = match &cli.mode {
        Mode::Idle(a) => modes::idle(&common, a.conns, a.hold),
        Mode::Fanout(a) => modes::fanout(&common, a.conns, a.senders, &traffic(&a.traffic)),
        Mode::Private(a) => modes::private(&common, a.pairs, &traffic(&a.traffic)),
        Mode::Churn(a) => modes::churn(
            &common,
            &Churn {
                conns: a.conns,
                rate: a.rate,
                duration: a.duration,
                size: a.size as usize,
            },
        ),
    };
    finish(outcome, c.json)
}

/// Prints the report (stdout) and the failure line (stderr); the exit status.
fn finish(outcome: Outcome, json: bool) -> ExitCode {
    // Write errors (a closed pipe) are ignored: the exit status still tells the outcome.
    if let Some(r) = &outcome.report {
        let text = if json {
            r.to_json() + "\n"
        } else {
            r.to_table()
        };
        let _ = io::stdout().lock().write_all(text.as_bytes());
    }
    match outcome.failure {
        Some(msg) => {
            say(&msg);
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// One `imbench: …` line on stderr, ignoring write errors.
pub fn say(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "imbench: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(parse_addr("127.0.0.1:8888").is_ok());
        assert!(parse_addr("127.1.2.3:1").is_ok());
        assert!(parse_addr("[::1]:8888").is_ok());
        assert_eq!(
            parse_addr("localhost:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_addr("10.0.0.1:8888")
            .unwrap_err()
            .contains("not a loopback"));
        assert!(parse_addr("[::2]:8888").is_err());
        assert!(parse_addr("example.com:80").is_err());
        assert!(parse_addr("127.0.0.1").is_err());
    }

    #[test]
    fn flags_go_before_or_after_the_mode() {
        let a = Cli::try_parse_from([
            "imbench",
            "--json",
            "fanout",
            "--conns",
            "3",
            "--timeout",
            "2",
        ])
        .unwrap();
        assert!(a.common.json);
        assert!(!a.common.ws);
        assert_eq!(a.common.timeout, Duration::from_secs(2));
        assert!(matches!(a.mode, Mode::Fanout(FanoutArgs { conns: 3, .. })));
    }

    #[test]
    fn ws_is_a_global_flag() {
        let a = Cli::try_parse_from(["imbench", "idle", "--ws", "--addr", "127.0.0.1:9"]).unwrap();
        assert!(a.common.ws);
        assert!(
            Cli::try_parse_from(["imbench", "--ws", "churn"])
                .unwrap()
                .common
                .ws
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["imbench"][..],
            &["imbench", "idle", "--conns", "0"],
            &["imbench", "fanout", "--window", "0"],
            &["imbench", "fanout", "--timeout", "0"],
            &["imbench", "churn", "--rate", "-1"],
            &["imbench", "private", "--pairs", "x"],
            &["imbench", "nonsense"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn addr_and_pid_take_comma_separated_lists() {
        let a = Cli::try_parse_from([
            "imbench",
            "--addr",
            "127.0.0.1:1,localhost:2",
            "idle",
            "--pid",
            &std::process::id().to_string(),
        ])
        .unwrap();
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        assert_eq!(a.common.addr, want);
        assert_eq!(a.common.pid, vec![std::process::id()]);
        let one = Cli::try_parse_from(["imbench", "idle"]).unwrap();
        assert_eq!(one.common.addr, vec!["127.0.0.1:8888".parse().unwrap()]);
        assert!(one.common.pid.is_empty());
        assert!(
            Cli::try_parse_from(["imbench", "--addr", "127.0.0.1:1,10.0.0.1:2", "idle"]).is_err()
        );
        assert!(Cli::try_parse_from(["imbench", "--addr", "127.0.0.1:1,", "idle"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
