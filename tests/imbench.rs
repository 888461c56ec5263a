//! `imbench`, the load generator, run as a real binary: against the real server with small
//! numbers, against fake servers that lose or repeat a broadcast (so the completeness check
//! is shown to fail when it should), and with bad arguments, no server, and a server killed
//! mid-run. Every run has an `--timeout` and a watchdog, and traffic goes to 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::imbench::{finish, spawn as spawn_imbench, Run};

fn imbench(args: &[&str]) -> Run {
    common::imbench::run(args)
}

/// `args` plus `--addr ADDR --json --quiet --timeout 20`.
fn json_run(addr: SocketAddr, args: &[&str]) -> Run {
    let addr = addr.to_string();
    let mut all = args.to_vec();
    all.extend(["--addr", &addr, "--json", "--quiet", "--timeout", "20"]);
    imbench(&all)
}

fn assert_ok(run: &Run) {
    run.assert_ok();
}

#[test]
fn idle_reports_every_user_joined() {
    let server = common::start(&["--idle-timeout", "0"]);
    let run = json_run(server.addr, &["idle", "--conns", "40"]);
    assert_ok(&run);
    assert!(run.has("\"mode\":\"idle\""), "{}", run.stdout);
    assert_eq!(run.num("conns"), Some(40));
    assert_eq!(run.num("joined"), Some(40));
    assert!(run.stdout.starts_with('{') && run.stdout.trim_end().ends_with('}'));
}

#[test]
fn idle_with_pid_reports_the_servers_memory_and_cpu() {
    let server = common::start(&["--idle-timeout", "0"]);
    let pid = server.child.id().to_string();
    let run = json_run(server.addr, &["idle", "--conns", "20", "--pid", &pid]);
    assert_ok(&run);
    assert!(
        run.num("rss_before_kb").is_some_and(|kb| kb > 0),
        "{}",
        run.stdout
    );
    assert!(
        run.num("rss_after_kb").is_some_and(|kb| kb > 0),
        "{}",
        run.stdout
    );
    assert!(run.has("\"rss_per_conn_bytes\":"), "{}", run.stdout);
    assert!(run.num("server_cpu_ms").is_some(), "{}", run.stdout);
}

/// A `kB` line of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line[key.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Raises the server's lifetime peak (VmHWM) by several MB and gives the memory back: a
/// user that never reads (with a small receive buffer) is sent ~12 MB of broadcasts, of
/// which the server's socket send buffer takes up to 4 MiB (`tcp_wmem`) and the rest waits
/// in the server's output buffer (the server runs with a `--max-outbuf` above that). Then
/// it hangs up, and the server frees that buffer (an allocation this large is its own
/// mapping, so RSS drops at once) while VmHWM keeps the peak.
fn raise_the_lifetime_peak(addr: SocketAddr) {
    const LINES: usize = 3000;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let sleeper = TcpStream::from(sock);
    let gone = sleeper.local_addr().unwrap();
    let mut talker = common::connect(addr);
    let talker_addr = talker.addr.clone();
    let mut out = talker.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let line = format!("{}\n", "x".repeat(4000));
        for _ in 0..LINES {
            out.write_all(line.as_bytes()).unwrap();
        }
    });
    let echo = format!("[{talker_addr}]{talker_addr}:");
    let deadline = Instant::now() + Duration::from_secs(30);
    for echoes in 0..LINES {
        assert!(Instant::now() < deadline, "only {echoes} of {LINES} echoes");
        let line = talker.read_line();
        assert!(line.starts_with(&echo) && line.len() > 4000, "{line:.80}");
    }
    writer.join().unwrap();
    drop(sleeper);
    // The sleeper's offline notice shows the server has closed it and freed its buffer.
    talker.expect_line(&format!("[{gone}]{gone}:已下线\n"));
}

#[test]
fn the_peak_memory_reported_is_this_runs_not_the_servers_lifetime_peak() {
    let server = common::start(&["--idle-timeout", "0", "--max-outbuf", "33554432"]);
    let pid = server.child.id();
    raise_the_lifetime_peak(server.addr);
    let settled = (0..100).any(|_| {
        thread::sleep(Duration::from_millis(100));
        status_kb(pid, "VmRSS:") + 4096 < status_kb(pid, "VmHWM:")
    });
    assert!(
        settled,
        "the server kept the non-reader's memory (VmRSS {} kB, VmHWM {} kB), so this test \
         cannot tell this run's peak from the lifetime one",
        status_kb(pid, "VmRSS:"),
        status_kb(pid, "VmHWM:")
    );

    let run = json_run(
        server.addr,
        &[
            "idle",
            "--conns",
            "10",
            "--hold",
            "0.3",
            "--pid",
            &pid.to_string(),
        ],
    );
    assert_ok(&run);
    let lifetime = status_kb(pid, "VmHWM:");
    let peak = run.num("rss_peak_kb").unwrap();
    let (before, after) = (
        run.num("rss_before_kb").unwrap(),
        run.num("rss_after_kb").unwrap(),
    );
    assert!(peak >= before && peak >= after, "{}", run.stdout);
    assert!(
        peak + 2048 < lifetime,
        "rss_peak_kb {peak} is not this run's but near the lifetime peak {lifetime}: {}",
        run.stdout
    );
}

#[test]
fn fanout_delivers_every_message_to_every_user() {
    let server = common::start(&["--idle-timeout", "0"]);
    let run = json_run(
        server.addr,
        &[
            "fanout",
            "--conns",
            "20",
            "--senders",
            "2",
            "--msgs",
            "50",
            "--size",
            "64",
            "--window",
            "8",
        ],
    );
    assert_ok(&run);
    assert_eq!(run.num("deliveries"), Some(20 * 2 * 50));
    assert_eq!(run.num("missing"), Some(0));
    assert_eq!(run.num("duplicates"), Some(0));
    for key in [
        "p50_us",
        "p99_us",
        "max_us",
        "deliveries_per_s",
        "join_s",
        "elapsed_s",
    ] {
        assert!(run.has(&format!("\"{key}\":")), "{key} in {}", run.stdout);
    }
}

#[test]
fn private_delivers_both_ways_in_every_pair() {
    let server = common::start(&["--idle-timeout", "0"]);
    let run = json_run(
        server.addr,
        &[
            "private", "--pairs", "6", "--msgs", "40", "--size", "100", "--window", "4",
        ],
    );
    assert_ok(&run);
    assert!(run.has("\"mode\":\"private\""));
    assert_eq!(run.num("conns"), Some(12));
    assert_eq!(run.num("deliveries"), Some(6 * 2 * 40));
}

#[test]
fn churn_replaces_users_at_the_asked_rate() {
    let server = common::start(&["--idle-timeout", "0"]);
    let pid = server.child.id().to_string();
    let run = json_run(
        server.addr,
        &[
            "churn",
            "--conns",
            "5",
            "--rate",
            "40",
            "--duration",
            "0.5",
            "--pid",
            &pid,
        ],
    );
    assert_ok(&run);
    assert_eq!(run.num("joins"), Some(20));
    assert_eq!(run.num("leaves"), Some(20));
    assert_eq!(run.num("errors"), Some(0));
    assert!(run.has("\"join_p50_us\":") && run.has("\"join_p99_us\":"));
    assert!(run.has("\"server_cpu_us_per_join\":"), "{}", run.stdout);
}

#[test]
fn several_source_addresses_are_used_when_asked() {
    let server = common::start(&["--idle-timeout", "0"]);
    let run = json_run(
        server.addr,
        &["fanout", "--conns", "9", "--msgs", "10", "--src-addrs", "3"],
    );
    assert_ok(&run);
    assert_eq!(run.num("deliveries"), Some(90));
}

#[test]
fn the_default_output_is_a_table() {
    let server = common::start(&["--idle-timeout", "0"]);
    let addr = server.addr.to_string();
    let run = imbench(&[
        "fanout",
        "--addr",
        &addr,
        "--conns",
        "3",
        "--msgs",
        "5",
        "--timeout",
        "20",
    ]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains('{'), "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("deliveries "))
        .unwrap_or_else(|| panic!("no deliveries line in {}", run.stdout));
    assert_eq!(line.split_whitespace().nth(1), Some("15"));
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &[][..],
        &["fanout", "--conns", "0"],
        &["fanout", "--conns", "2", "--senders", "3"],
        &["fanout", "--window", "0"],
        &["fanout", "--msgs", "many"],
        &["private", "--pairs", "-1"],
        &["churn", "--rate", "0"],
        &["churn", "--duration", "10", "--timeout", "5"],
        &["idle", "--timeout", "0"],
        &["idle", "--no-such-flag"],
        &["stampede"],
    ] {
        let run = imbench(args);
        assert_eq!(run.code(), Some(2), "{args:?}: {}", run.stderr);
        // With no arguments at all clap prints the usage instead of an error line.
        let said = if args.is_empty() { "Usage" } else { "error" };
        assert!(run.stderr.contains(said), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn a_non_loopback_address_is_refused() {
    for addr in [
        "10.0.0.1:8888",
        "192.168.1.1:8888",
        "8.8.8.8:53",
        "[2001:db8::1]:8888",
        "example.com:80",
    ] {
        let run = imbench(&["idle", "--addr", addr, "--conns", "1", "--timeout", "1"]);
        assert_eq!(run.code(), Some(2), "{addr}: {}", run.stderr);
        assert!(run.stderr.contains("--addr"), "{addr}: {}", run.stderr);
    }
    let run = imbench(&["idle", "--addr", "10.0.0.1:8888"]);
    assert!(
        run.stderr.contains("not a loopback address"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_server_listening_is_one_clear_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let run = imbench(&[
        "fanout",
        "--addr",
        &addr,
        "--conns",
        "5",
        "--timeout",
        "10",
        "--json",
    ]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains(&addr) && lines[0].contains("cannot connect"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_server_killed_mid_run_is_a_clear_error_and_exit_1() {
    let mut server = common::start(&["--idle-timeout", "0"]);
    let addr = server.addr.to_string();
    let mut child = spawn_imbench(&[
        "fanout",
        "--addr",
        &addr,
        "--conns",
        "20",
        "--senders",
        "2",
        "--msgs",
        "100000000",
        "--window",
        "4",
        "--timeout",
        "30",
        "--json",
    ]);
    // Progress lines ("… deliveries N/M …") show that traffic is flowing; then kill.
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    let reader = thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rx
        .recv_timeout(Duration::from_secs(1))
        .is_ok_and(|l| l.contains("deliveries"))
    {
        assert!(Instant::now() < deadline, "no progress line from imbench");
    }
    server.child.kill().expect("kill the server");
    let killed = Instant::now();
    let mut run = finish(child);
    run.stderr = reader.join().unwrap_or_default();
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "imbench noticed too late"
    );
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("imbench: server closed connection of user ") && last.contains("mid-run"),
        "{}",
        run.stderr
    );
    assert!(run.has("\"complete\":false"), "{}", run.stdout);
    assert!(
        run.num("deliveries").is_some_and(|d| d > 0),
        "traffic had started: {}",
        run.stdout
    );
}

#[test]
fn a_server_that_never_greets_times_out_with_what_was_measured() {
    let fake = FakeServer::start(Fault::Silent);
    let run = imbench(&[
        "idle",
        "--addr",
        &fake.addr.to_string(),
        "--conns",
        "3",
        "--timeout",
        "1",
        "--json",
    ]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("timeout after 1 s"), "{}", run.stderr);
    assert_eq!(run.num("joined"), Some(0), "{}", run.stdout);
    assert!(run.has("\"complete\":false"), "{}", run.stdout);
}

#[test]
fn a_lost_broadcast_is_reported_incomplete() {
    let fake = FakeServer::start(Fault::Drop { nth: 4 });
    let run = fanout_against(&fake);
    assert_eq!(run.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.has("\"complete\":false"), "{}", run.stdout);
    assert_eq!(run.num("missing"), Some(1), "{}", run.stdout);
    assert_eq!(run.num("deliveries"), Some(3 * 10 - 1), "{}", run.stdout);
    // The gap is seen when the next message arrives; the run need not wait for the timeout.
    assert!(run.stderr.contains("incomplete"), "{}", run.stderr);
    assert!(!run.stderr.contains("timeout"), "{}", run.stderr);
}

#[test]
fn a_repeated_broadcast_is_reported_incomplete() {
    let fake = FakeServer::start(Fault::Duplicate { nth: 2 });
    let run = fanout_against(&fake);
    assert_eq!(run.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.has("\"complete\":false"), "{}", run.stdout);
    assert_eq!(run.num("duplicates"), Some(1), "{}", run.stdout);
    assert_eq!(run.num("missing"), Some(0), "{}", run.stdout);
}

#[test]
fn a_faithful_fake_server_passes_so_the_checks_above_are_about_the_faults() {
    let fake = FakeServer::start(Fault::None);
    let run = fanout_against(&fake);
    assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.num("deliveries"), Some(30));
}

fn fanout_against(fake: &FakeServer) -> Run {
    let addr = fake.addr.to_string();
    imbench(&[
        "fanout",
        "--addr",
        &addr,
        "--conns",
        "3",
        "--senders",
        "1",
        "--msgs",
        "10",
        "--window",
        "3",
        "--timeout",
        "10",
        "--json",
        "--quiet",
    ])
}

/// What the fake server gets wrong.
#[derive(Clone, Copy)]
enum Fault {
    /// Nothing: relays every line to everyone.
    None,
    /// Never sends the online notice.
    Silent,
    /// Relayed line number `nth` (from 0) does not reach the first user.
    Drop { nth: usize },
    /// Relayed line number `nth` reaches the first user twice.
    Duplicate { nth: usize },
}

/// A tiny chat server on std sockets: each user gets `[addr]addr:online` when it connects,
/// and every line a user sends goes to all users as `[addr]addr:LINE`, except for `fault`.
/// Its threads end when imbench closes the connections; the accept thread lives on until
/// the test binary exits.
struct FakeServer {
    addr: SocketAddr,
}

impl FakeServer {
    fn start(fault: Fault) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let users: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let relayed = Arc::new(AtomicUsize::new(0));
        thread::spawn(move || {
            let mut silent = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                if let Fault::Silent = fault {
                    silent.push(stream);
                    continue;
                }
                let (users, relayed) = (Arc::clone(&users), Arc::clone(&relayed));
                thread::spawn(move || serve(stream, &users, &relayed, fault));
            }
        });
        FakeServer { addr }
    }
}

fn serve(stream: TcpStream, users: &Mutex<Vec<TcpStream>>, relayed: &AtomicUsize, fault: Fault) {
    let Ok(peer) = stream.peer_addr() else { return };
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    {
        let mut all = users.lock().unwrap();
        all.push(stream);
        let notice = format!("[{peer}]{peer}:online\n");
        for u in all.iter_mut() {
            let _ = u.write_all(notice.as_bytes());
        }
    }
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { return };
        let n = relayed.fetch_add(1, Ordering::SeqCst);
        let msg = format!("[{peer}]{peer}:{line}\n");
        let mut all = users.lock().unwrap();
        for (i, u) in all.iter_mut().enumerate() {
            let copies = match fault {
                Fault::Drop { nth } if nth == n && i == 0 => 0,
                Fault::Duplicate { nth } if nth == n && i == 0 => 2,
                _ => 1,
            };
            for _ in 0..copies {
                let _ = u.write_all(msg.as_bytes());
            }
        }
    }
}
