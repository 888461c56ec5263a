//! Side-by-side comparison: imserver-mio against imserver-tokio on one worker and on tokio's
//! default multi-thread runtime, against Redis pub/sub and NATS (when `redis-server` and
//! `nats-server` are on PATH; left out with a note otherwise), and against the floor
//! (`imserver-floor`: the fan-out's system calls and nothing else, with `send` and with
//! `writev`), all driven by `imbench`, our builds in release.
//!
//! ```text
//! cargo bench --features variants --bench compare
//! IMBENCH_RUNS=5 IMBENCH_CASES='fanout 1000,1|private' cargo bench --features variants --bench compare
//! ```
//!
//! For run in 0..R, for case, for server (interleaved, so a noisy moment hits every server
//! alike): start a fresh server on port 0 and read its address from its first stdout line
//! (Redis and NATS: on a free port, `redis-server --save '' --appendonly no`, `nats-server
//! -a 127.0.0.1`, ready once they accept a connection), run `imbench --json --quiet --pid
//! PID --addr ADDR …` against it (`--target redis|nats` for the peers), keep the JSON
//! line, kill the server. A server runs only the cases it can: the peers fanout and
//! private, the floor fanout. Both run under `sh -c 'ulimit -n <hard limit>; exec …'` so they may hold 19,000+
//! sockets. Every imbench run is bounded by its own `--timeout` (and killed 30 s past it); a
//! failed run is counted and shown, never a panic. Then one table of medians with ratios is
//! printed and written to `<target>/bench-compare.md`, the raw JSON lines to
//! `<target>/bench-compare.jsonl`.
//!
//! Before/after a change: build the old commit's `imserver-mio` elsewhere and name it in
//! `IMBENCH_BASELINE=/path/to/imserver-mio`; the table then compares this build ("mio")
//! with that one ("before"), interleaved the same way, and leaves the tokio servers out.
//!
//! `IMBENCH_RUNS` (default 3) sets R; `IMBENCH_CASES` keeps only the cases whose name contains
//! one of its parts, separated by `|` or by a comma not followed by a digit (case names hold
//! commas: `IMBENCH_CASES=fanout,private` is two parts, `fanout 100,1` one).
//! `IMBENCH_CASES=19000` also runs the extra case `fanout 19000,1,20,64,16`, left out by
//! default (about 3.5 minutes per run). Outside `cargo bench` (no `--bench` flag, e.g.
//! `cargo test --benches`) it does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a panic is the failure report

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MIO: &str = env!("CARGO_BIN_EXE_imserver-mio");
const TOKIO: &str = env!("CARGO_BIN_EXE_imserver-tokio");
const IMBENCH: &str = env!("CARGO_BIN_EXE_imbench");
const FLOOR: &str = env!("CARGO_BIN_EXE_imserver-floor");

/// Raises the soft open-file limit to the hard one, then becomes the program (`$0`).
const RAISE_LIMIT: &str = r#"h=$(ulimit -Hn); [ "$h" = unlimited ] && h=1048576
ulimit -n "$h" 2>/dev/null || ulimit -n 20000 2>/dev/null; exec "$0" "$@""#;

/// Flags every server gets.
const SERVER_FLAGS: &[&str] = &[
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--idle-timeout",
    "0",
    "--max-conns",
    "19500",
];
/// How long after its timeout a hung imbench is killed.
const KILL_GRACE: Duration = Duration::from_secs(30);
/// Pause after each run, for the kernel to tear the last run's sockets down.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a server gets to come up.
const STARTUP: Duration = Duration::from_secs(10);
/// Every imbench mode.
const ALL_MODES: &[&str] = &["idle", "fanout", "private", "churn"];

/// How a server is started and found.
#[derive(Clone, Copy)]
enum Launch {
    /// Its flags plus `--port 0`; it prints the bound address as its first stdout line.
    PrintsAddr,
    /// Given a free port (`{PORT}` in its flags); ready once it accepts a connection.
    OnPort,
}

struct Server {
    label: &'static str,
    /// What it is, for the table's legend (`{N}`: the number of cores).
    about: &'static str,
    bin: String,
    /// Its flags; `{PORT}` is replaced by the port of a [`Launch::OnPort`] server.
    flags: Vec<&'static str>,
    launch: Launch,
    /// What imbench is told about it besides its address (`--target redis`).
    target: &'static [&'static str],
    /// The imbench modes it takes part in.
    modes: &'static [&'static str],
}

impl Server {
    /// One of ours: imserver-mio's flags ([`SERVER_FLAGS`]) plus `extra`.
    fn ours(label: &'static str, about: &'static str, bin: &str, extra: &[&'static str]) -> Server {
        Server {
            label,
            about,
            bin: bin.to_owned(),
            flags: extra.iter().chain(SERVER_FLAGS).copied().collect(),
            launch: Launch::PrintsAddr,
            target: &[],
            modes: ALL_MODES,
        }
    }

    /// The floor: fanout only (it has no directory to whisper through).
    fn floor(label: &'static str, about: &'static str, write: &'static str) -> Server {
        Server {
            label,
            about,
            bin: FLOOR.to_owned(),
            flags: vec!["--host", "127.0.0.1", "--port", "0", "--write", write],
            launch: Launch::PrintsAddr,
            target: &[],
            modes: &["fanout"],
        }
    }

    /// A pub/sub peer on a free port: fanout and private (it sends no presence notices,
    /// which idle and churn measure).
    fn peer(
        (label, about): (&'static str, &'static str),
        bin: &str,
        flags: &[&'static str],
        target: &'static [&'static str],
    ) -> Server {
        Server {
            label,
            about,
            bin: bin.to_owned(),
            flags: flags.to_vec(),
            launch: Launch::OnPort,
            target,
            modes: &["fanout", "private"],
        }
    }

    /// Whether it takes part in `case`.
    fn runs(&self, case: &Case) -> bool {
        case.args.first().is_some_and(|m| self.modes.contains(m))
    }
}

/// The servers compared: imserver-mio against imserver-tokio on one worker and on tokio's
/// default runtime, Redis and NATS when installed, and the floor; or, with
/// `IMBENCH_BASELINE=PATH` (another build of imserver-mio, e.g. an older commit's),
/// imserver-mio against that build alone: a before/after run.
fn servers() -> Vec<Server> {
    let mio = Server::ours("mio", "this build of imserver-mio (one thread)", MIO, &[]);
    if let Ok(path) = std::env::var("IMBENCH_BASELINE") {
        let before = "the build of imserver-mio named by IMBENCH_BASELINE";
        return vec![mio, Server::ours("before", before, &path, &[])];
    }
    let mut all = vec![
        mio,
        Server::ours(
            "tokio-1",
            "imserver-tokio --workers 1",
            TOKIO,
            &["--workers", "1"],
        ),
        Server::ours(
            "tokio-N",
            "imserver-tokio on tokio's default runtime ({N} workers here)",
            TOKIO,
            &[],
        ),
    ];
    // `--maxclients` as imserver's `--max-conns`; no persistence, as a chat relay has none.
    let redis = &[
        "--port",
        "{PORT}",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxclients",
        "19500",
    ];
    let nats = &["-a", "127.0.0.1", "-p", "{PORT}"];
    let peers: [(_, _, &[&str], &[&str]); 2] = [
        (
            ("redis", "Redis pub/sub (redis-server, one thread)"),
            "redis-server",
            redis,
            &["--target", "redis"],
        ),
        (
            ("nats", "NATS (nats-server, Go: every core)"),
            "nats-server",
            nats,
            &["--target", "nats"],
        ),
    ];
    for (named, bin, flags, target) in peers {
        match on_path(bin) {
            Some(path) => all.push(Server::peer(named, &path, flags, target)),
            None => eprintln!("compare: {bin} is not on PATH: {} is left out", named.0),
        }
    }
    all.push(Server::floor(
        "floor",
        "imserver-floor: the fan-out's system calls alone, one send per recipient per turn",
        "send",
    ));
    all.push(Server::floor(
        "floor-wv",
        "imserver-floor --write writev: one writev per recipient per turn, a segment per line",
        "writev",
    ));
    all
}

/// The full path of `bin` if an executable of that name is on PATH.
fn on_path(bin: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.display().to_string())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Users join and stay: join time and memory per user.
    Idle,
    /// Messages flow: deliveries/s, latency, CPU per delivery.
    Traffic,
}

struct Case {
    name: &'static str,
    kind: Kind,
    /// imbench's mode and its flags.
    args: &'static [&'static str],
    /// imbench --timeout, seconds.
    timeout_s: u64,
    /// Only run when `IMBENCH_CASES` names it (too long for the default set).
    extra: bool,
}

/// `--hold 2` on idle runs: the server gives the join storm's buffers back to the OS when it
/// goes quiet (at most once a second), and the memory sample should see the settled heap.
/// The default set takes about 14 minutes on a 2-core machine at R = 3, most of it the
/// 19,000-user joins (every join is announced to everyone online: 180 M notices).
const CASES: &[Case] = &[
    Case {
        name: "idle 1000",
        kind: Kind::Idle,
        args: &["idle", "--conns", "1000", "--hold", "2"],
        timeout_s: 60,
        extra: false,
    },
    Case {
        name: "idle 10000",
        kind: Kind::Idle,
        args: &["idle", "--conns", "10000", "--hold", "2"],
        timeout_s: 180,
        extra: false,
    },
    Case {
        name: "fanout 100,1,2000,64,16",
        kind: Kind::Traffic,
        args: &[
            "fanout",
            "--conns",
            "100",
            "--senders",
            "1",
            "--msgs",
            "2000",
            "--size",
            "64",
            "--window",
            "16",
        ],
        timeout_s: 120,
        extra: false,
    },
    Case {
        name: "fanout 1000,1,200,64,16",
        kind: Kind::Traffic,
        args: &[
            "fanout",
            "--conns",
            "1000",
            "--senders",
            "1",
            "--msgs",
            "200",
            "--size",
            "64",
            "--window",
            "16",
        ],
        timeout_s: 120,
        extra: false,
    },
    Case {
        name: "fanout 5000,4,50,64,16",
        kind: Kind::Traffic,
        args: &[
            "fanout",
            "--conns",
            "5000",
            "--senders",
            "4",
            "--msgs",
            "50",
            "--size",
            "64",
            "--window",
            "16",
        ],
        timeout_s: 180,
        extra: false,
    },
    Case {
        name: "private 100 pairs,2000,64,16",
        kind: Kind::Traffic,
        args: &[
            "private", "--pairs", "100", "--msgs", "2000", "--size", "64", "--window", "16",
        ],
        timeout_s: 120,
        extra: false,
    },
    Case {
        name: "idle 19000",
        kind: Kind::Idle,
        args: &["idle", "--conns", "19000", "--hold", "2"],
        timeout_s: 240,
        extra: false,
    },
    Case {
        name: "fanout 19000,1,20,64,16",
        kind: Kind::Traffic,
        args: &[
            "fanout",
            "--conns",
            "19000",
            "--senders",
            "1",
            "--msgs",
            "20",
            "--size",
            "64",
            "--window",
            "16",
        ],
        timeout_s: 240,
        extra: true,
    },
];

/// One metric row of the table.
struct Metric {
    label: &'static str,
    /// imbench's JSON key.
    key: &'static str,
    /// The key's value is multiplied by this for display…
    scale: f64,
    /// …and printed with this many decimals.
    decimals: usize,
}

const IDLE_METRICS: &[Metric] = &[
    Metric {
        label: "join time, s",
        key: "join_s",
        scale: 1.0,
        decimals: 2,
    },
    Metric {
        label: "join p99, ms",
        key: "join_p99_us",
        scale: 1e-3,
        decimals: 1,
    },
    Metric {
        label: "server RSS per user, B",
        key: "rss_per_conn_bytes",
        scale: 1.0,
        decimals: 0,
    },
    Metric {
        label: "server CPU, ms",
        key: "server_cpu_ms",
        scale: 1.0,
        decimals: 0,
    },
    Metric {
        label: "imbench CPU, ms",
        key: "imbench_cpu_ms",
        scale: 1.0,
        decimals: 0,
    },
];

const TRAFFIC_METRICS: &[Metric] = &[
    Metric {
        label: "deliveries/s, M",
        key: "deliveries_per_s",
        scale: 1e-6,
        decimals: 3,
    },
    // The headline: less bent than deliveries/s by a generator that shares the cores.
    Metric {
        label: "deliveries per server CPU-s, M",
        key: "deliveries_per_server_cpu_s",
        scale: 1e-6,
        decimals: 2,
    },
    Metric {
        label: "p99 latency, ms",
        key: "p99_us",
        scale: 1e-3,
        decimals: 2,
    },
    Metric {
        label: "server CPU ms per M deliveries",
        key: "server_cpu_ms_per_m_deliveries",
        scale: 1.0,
        decimals: 0,
    },
    Metric {
        label: "server RSS peak, MB",
        key: "rss_peak_kb",
        scale: 1.0 / 1024.0,
        decimals: 1,
    },
    Metric {
        label: "imbench CPU, ms",
        key: "imbench_cpu_ms",
        scale: 1.0,
        decimals: 0,
    },
];

/// What one imbench run against one server left.
struct Run {
    /// imbench exited 0 (complete delivery, no timeout).
    ok: bool,
    /// Its JSON line, if it printed one.
    json: String,
    /// Why it failed.
    error: String,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches`: check the filter parsing, run nothing.
        assert_eq!(filter_parts("fanout,private"), ["fanout", "private"]);
        assert_eq!(
            filter_parts(" fanout 100,1 | idle 1000 "),
            ["fanout 100,1", "idle 1000"]
        );
        assert_eq!(
            filter_parts("19000,fanout 5000,4,"),
            ["19000", "fanout 5000,4"]
        );
        assert!(filter_parts(" , |").is_empty());
        println!(
            "compare: a benchmark; run it with `cargo bench --features variants --bench compare`"
        );
        return;
    }
    let runs: usize = match std::env::var("IMBENCH_RUNS") {
        Ok(v) => v.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("compare: IMBENCH_RUNS={v:?} is not a positive count");
            std::process::exit(2)
        }),
        Err(_) => 3,
    };
    let filter = std::env::var("IMBENCH_CASES")
        .map(|v| filter_parts(&v))
        .unwrap_or_default();
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| {
            if filter.is_empty() {
                !c.extra
            } else {
                filter.iter().any(|f| c.name.contains(f.as_str()))
            }
        })
        .collect();
    if cases.is_empty() {
        eprintln!("compare: IMBENCH_CASES={filter:?} matches none of the cases:");
        for c in CASES {
            eprintln!("  {}", c.name);
        }
        std::process::exit(2);
    }

    let target = target_dir();
    let _ = std::fs::create_dir_all(&target);
    let jsonl_path = target.join("bench-compare.jsonl");
    let md_path = target.join("bench-compare.md");
    let mut jsonl = String::new();

    let servers = servers();
    let started = Instant::now();
    let load = load_average();
    let limit = shell(RAISE_LIMIT, &["sh", "-c", "ulimit -n"]);
    eprintln!(
        "compare: {} case(s) × {} servers ({}) × {runs} run(s), interleaved; load average \
         {load}; open-file limit for the processes: {limit}",
        cases.len(),
        servers.len(),
        servers
            .iter()
            .map(|s| s.label)
            .collect::<Vec<_>>()
            .join(", ")
    );

    // results[case][server] = runs
    let mut results: Vec<Vec<Vec<Run>>> = cases
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();
    for run in 0..runs {
        for (ci, case) in cases.iter().enumerate() {
            for (si, server) in servers.iter().enumerate() {
                if !server.runs(case) {
                    continue;
                }
                let t = Instant::now();
                let r = run_one(server, case);
                eprintln!(
                    "compare: run {}/{runs} {:<30} {:<8} {:>6.1} s  {}",
                    run + 1,
                    case.name,
                    server.label,
                    t.elapsed().as_secs_f64(),
                    if r.ok {
                        headline(case, &r.json)
                    } else {
                        format!("FAILED: {}", r.error)
                    }
                );
                let _ = writeln!(
                    jsonl,
                    "{{\"run\":{},\"case\":\"{}\",\"server\":\"{}\",\"ok\":{},\"imbench\":{}}}",
                    run + 1,
                    case.name,
                    server.label,
                    r.ok,
                    if r.json.is_empty() { "null" } else { &r.json }
                );
                results[ci][si].push(r);
                thread::sleep(SETTLE);
            }
        }
    }

    let table = render(&servers, &cases, &results, runs, started.elapsed(), &load);
    print!("{table}");
    if let Err(e) = std::fs::write(&md_path, &table) {
        eprintln!("compare: cannot write {}: {e}", md_path.display());
    }
    if let Err(e) = std::fs::write(&jsonl_path, &jsonl) {
        eprintln!("compare: cannot write {}: {e}", jsonl_path.display());
    }
    eprintln!(
        "compare: table in {}, raw runs in {}",
        md_path.display(),
        jsonl_path.display()
    );
}

/// `IMBENCH_CASES` split at `|` and at commas not followed by a digit, so that
/// `fanout,private` is two parts and `fanout 100,1` one (case names hold commas).
fn filter_parts(v: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_digit = chars.peek().is_some_and(char::is_ascii_digit);
        if c == '|' || (c == ',' && !next_is_digit) {
            parts.push(std::mem::take(&mut part));
        } else {
            part.push(c);
        }
    }
    parts.push(part);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The target directory: the bench runs as `<target>/release/deps/compare-HASH`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The 1-minute load average, as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Runs `cmd` under `sh -c SCRIPT` and returns its trimmed stdout.
fn shell(script: &str, cmd: &[&str]) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .args(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("? ({e})"))
}

/// A command that runs `bin args…` with the raised file limit.
fn raised(bin: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(RAISE_LIMIT).arg(bin);
    c
}

/// A fresh server, its address, and the thread draining its stdout.
struct Started {
    child: Child,
    addr: String,
}

fn start_server(server: &Server) -> Result<Started, String> {
    match server.launch {
        Launch::PrintsAddr => start_printing(server),
        // Another process may take the port between the probe and the server's bind: retry.
        Launch::OnPort => {
            let mut last = String::new();
            for _ in 0..3 {
                match start_on_port(server) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

fn start_printing(server: &Server) -> Result<Started, String> {
    let mut child = raised(&server.bin)
        .args(&server.flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.bin))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reads the address line, then keeps draining so a later print cannot hit a closed pipe.
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines.map_while(Result::ok) {}
    });
    match rx.recv_timeout(STARTUP) {
        Ok(Some(Ok(line))) if !line.trim().is_empty() => Ok(Started {
            child,
            addr: line.trim().to_owned(),
        }),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} printed no address line ({other:?})",
                server.label
            ))
        }
    }
}

/// Starts a peer on a free port of 127.0.0.1; ready once a connect succeeds while it runs
/// (one that lost the port to another process exits at once).
fn start_on_port(server: &Server) -> Result<Started, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let port_text = port.to_string();
    let flags = server.flags.iter().map(|f| {
        if *f == "{PORT}" {
            port_text.as_str()
        } else {
            f
        }
    });
    let mut child = raised(&server.bin)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.bin))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} exited at start ({status})", server.label));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            thread::sleep(Duration::from_millis(50));
            if child.try_wait().ok().flatten().is_none() {
                return Ok(Started {
                    child,
                    addr: addr.to_string(),
                });
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{} did not listen on {addr}", server.label))
}

fn run_one(server: &Server, case: &Case) -> Run {
    let failed = |error: String| Run {
        ok: false,
        json: String::new(),
        error,
    };
    let mut started = match start_server(server) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let pid = started.child.id().to_string();
    let timeout = case.timeout_s.to_string();
    let mut common = vec![
        "--json",
        "--quiet",
        "--pid",
        &pid,
        "--addr",
        &started.addr,
        "--timeout",
        &timeout,
    ];
    common.extend(server.target);
    let run = run_imbench(&common, case);
    // The server may have died under load: that is the run's failure, whatever imbench said.
    let died = started.child.try_wait().ok().flatten();
    let _ = started.child.kill();
    let _ = started.child.wait();
    match (run, died) {
        (Ok(r), None) => r,
        (Ok(mut r), Some(status)) => {
            r.ok = false;
            r.error = format!("server exited during the run ({status}); {}", r.error);
            r
        }
        (Err(e), _) => failed(e),
    }
}

fn run_imbench(common: &[&str], case: &Case) -> Result<Run, String> {
    let mut child = raised(IMBENCH)
        .args(common)
        .args(case.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start imbench: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(case.timeout_s) + KILL_GRACE;
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let json = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default()
        .to_owned();
    let last_err = stderr.lines().last().unwrap_or_default().to_owned();
    Ok(match status {
        Some(s) if s.success() => Run {
            ok: true,
            json,
            error: String::new(),
        },
        Some(s) => Run {
            ok: false,
            json,
            error: format!("imbench {s}: {last_err}"),
        },
        None => Run {
            ok: false,
            json,
            error: format!("imbench hung past --timeout {} s; killed", case.timeout_s),
        },
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// The number after `"key":` in a one-line JSON object of plain values.
fn field(json: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// The progress line's summary of one good run.
fn headline(case: &Case, json: &str) -> String {
    let metrics = metrics_of(case.kind);
    metrics[..3]
        .iter()
        .map(|m| match field(json, m.key) {
            Some(v) => format!("{} {:.*}", m.label, m.decimals, v * m.scale),
            None => format!("{} ?", m.label),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn metrics_of(kind: Kind) -> &'static [Metric] {
    match kind {
        Kind::Idle => IDLE_METRICS,
        Kind::Traffic => TRAFFIC_METRICS,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn render(
    servers: &[Server],
    cases: &[&Case],
    results: &[Vec<Vec<Run>>],
    runs: usize,
    took: Duration,
    load: &str,
) -> String {
    let workers = thread::available_parallelism().map_or(0, |n| n.get());
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Medians of {runs} interleaved run(s) per cell (fresh server per run); {:.0} s in all, \
         load average {load} at the start.",
        took.as_secs_f64()
    );
    let legend: Vec<String> = servers
        .iter()
        .map(|s| {
            format!(
                "{} = {}",
                s.label,
                s.about.replace("{N}", &workers.to_string())
            )
        })
        .collect();
    let _ = writeln!(t, "{}.", legend.join("; "));
    let _ = writeln!(
        t,
        "Ratios are mio ÷ the other: above 1 is better for the two deliveries rows, below 1 for \
         everything else (mio/floor on the CPU row: imserver-mio's CPU per delivery as a \
         multiple of the floor's). (k/R) marks cells where only k of R runs completed; failed = \
         none did; – = not run (the peers run fanout and private, the floor fanout)."
    );
    t.push('\n');
    let ratio_heads: Vec<String> = servers
        .iter()
        .skip(1)
        .map(|s| format!("mio/{}", s.label))
        .collect();
    let head: Vec<&str> = ["case", "metric"]
        .into_iter()
        .chain(servers.iter().map(|s| s.label))
        .chain(ratio_heads.iter().map(String::as_str))
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        for (si, server) in servers.iter().enumerate() {
            for (ri, r) in results[ci][si].iter().enumerate() {
                if !r.ok {
                    failures.push(format!(
                        "{} · {} · run {}: {}",
                        case.name,
                        server.label,
                        ri + 1,
                        r.error
                    ));
                }
            }
        }
        for (mi, m) in metrics_of(case.kind).iter().enumerate() {
            let medians: Vec<Option<f64>> = results[ci]
                .iter()
                .map(|runs| {
                    median(
                        runs.iter()
                            .filter(|r| r.ok)
                            .filter_map(|r| field(&r.json, m.key))
                            .map(|v| v * m.scale)
                            .collect(),
                    )
                })
                .collect();
            let mut row = vec![
                if mi == 0 {
                    case.name.to_owned()
                } else {
                    String::new()
                },
                m.label.to_owned(),
            ];
            for (si, med) in medians.iter().enumerate() {
                let ok = results[ci][si].iter().filter(|r| r.ok).count();
                let total = results[ci][si].len();
                row.push(match med {
                    None if total == 0 => "–".to_owned(),
                    None if ok == 0 => "failed".to_owned(),
                    None => "?".to_owned(),
                    Some(v) if ok < total => format!("{v:.*} ({ok}/{total})", m.decimals),
                    Some(v) => format!("{v:.*}", m.decimals),
                });
            }
            for other in medians.iter().skip(1) {
                row.push(match (medians[0], *other) {
                    (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                    _ => "–".to_owned(),
                });
            }
            rows.push(row);
        }
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i < 2 {
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{c} |", " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    t.push_str(&line(&head));
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            if i < 2 {
                "-".repeat(w)
            } else {
                format!("{}:", "-".repeat(w - 1))
            }
        })
        .collect();
    t.push_str(&line(&rule.iter().map(String::as_str).collect::<Vec<_>>()));
    for r in &rows {
        t.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    t.push_str("\nServers:\n");
    for s in servers {
        let bin = std::path::Path::new(&s.bin)
            .file_name()
            .map_or_else(|| s.bin.clone(), |f| f.to_string_lossy().into_owned());
        let flags: Vec<String> = s
            .flags
            .iter()
            .map(|f| {
                if f.is_empty() {
                    "''".to_owned()
                } else {
                    (*f).to_owned()
                }
            })
            .collect();
        let _ = writeln!(t, "- {}: `{bin} {}`", s.label, flags.join(" "));
    }
    let _ = writeln!(
        t,
        "\nimbench: `imbench --json --quiet --pid PID --addr ADDR --timeout T` (the peers also \
         `--target redis|nats`) plus:"
    );
    for case in cases {
        let _ = writeln!(
            t,
            "- {}: `{}` (T = {})",
            case.name,
            case.args.join(" "),
            case.timeout_s
        );
    }
    if !failures.is_empty() {
        t.push_str("\nFailed runs:\n");
        for f in failures {
            let _ = writeln!(t, "- {f}");
        }
    }
    t
}
