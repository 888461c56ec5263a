//! `imbench --target redis|nats` against a real `redis-server` and `nats-server` on
//! 127.0.0.1 (each test prints a note and skips when the program is not installed; CI
//! installs both), the flags a peer refuses, and, with the `variants` feature, the floor
//! (`imserver-floor`) driven by imbench unchanged. Every imbench run has a `--timeout` and
//! the watchdog of `common::imbench`; every child is killed and reaped on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::imbench::Run;
use common::nats::Nats;
use common::redis::Redis;

/// Whether `bin` runs here; if not, a note that the test is skipped.
fn installed(bin: &str) -> bool {
    let runs = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !runs {
        eprintln!("NOTE: {bin} is not installed: test skipped (.ci/run installs it)");
    }
    runs
}

/// A peer imbench is pointed at: its address and pid.
fn redis_peer(redis: &Redis) -> (SocketAddr, u32) {
    let addr = SocketAddr::from(([127, 0, 0, 1], redis.port));
    (addr, redis.pid().expect("a running Redis"))
}

fn nats_peer(nats: &Nats) -> (SocketAddr, u32) {
    (nats.addr, nats.child.id())
}

/// `imbench --target TARGET --pid PID` + `args` + `--addr ADDR --json --quiet --timeout 20`.
fn run_against(target: &str, (addr, pid): (SocketAddr, u32), args: &[&str]) -> Run {
    let pid = pid.to_string();
    let mut all = vec!["--target", target, "--pid", &pid];
    all.extend(args);
    common::imbench::run_json(&addr.to_string(), &all)
}

/// A complete run of `transport` with every delivery counted once, and the server's CPU
/// per delivery reported.
fn assert_delivered(run: &Run, transport: &str, conns: u64, deliveries: u64) {
    run.assert_complete();
    assert!(
        run.has(&format!("\"transport\":\"{transport}\"")),
        "{}",
        run.stdout
    );
    assert_eq!(run.num("joined"), Some(conns), "{}", run.stdout);
    assert_eq!(run.num("expected_deliveries"), Some(deliveries));
    assert_eq!(run.num("deliveries"), Some(deliveries), "{}", run.stdout);
    assert!(run.num("server_traffic_cpu_ms").is_some(), "{}", run.stdout);
    assert!(
        run.has("\"server_cpu_ms_per_m_deliveries\":"),
        "{}",
        run.stdout
    );
}

/// Fanout: 30 users subscribed to the room, 3 of them publishing 40 messages each: every
/// user (senders too) gets all 120, once and in order. Private: 12 pairs, 25 each way.
fn fanout_and_private(target: &str, peer: (SocketAddr, u32)) {
    let fanout = run_against(
        target,
        peer,
        &["fanout", "--conns", "30", "--senders", "3", "--msgs", "40"],
    );
    assert_delivered(&fanout, target, 30, 30 * 3 * 40);
    assert!(
        fanout.has("\"deliveries_per_server_cpu_s\":"),
        "{}",
        fanout.stdout
    );
    let private = run_against(
        target,
        peer,
        &["private", "--pairs", "12", "--msgs", "25", "--window", "4"],
    );
    assert_delivered(&private, target, 24, 24 * 25);
    assert_eq!(private.num("probe_retries"), Some(0), "{}", private.stdout);
}

#[test]
fn redis_pub_sub_gets_every_message_once_and_in_order() {
    if !installed("redis-server") {
        return;
    }
    let redis = Redis::start();
    fanout_and_private("redis", redis_peer(&redis));
}

#[test]
fn nats_gets_every_message_once_and_in_order() {
    if !installed(common::nats::program()) {
        return;
    }
    let nats = Nats::start();
    fanout_and_private("nats", nats_peer(&nats));
}

#[test]
fn a_refused_subscription_ends_the_run_at_once() {
    if !installed("redis-server") {
        return;
    }
    let redis = Redis::start_with(&["--requirepass", "secret"], &["secret"]);
    let (addr, pid) = redis_peer(&redis);
    let run = run_against("redis", (addr, pid), &["fanout", "--conns", "5"]);
    assert_eq!(run.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "no report: {}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("imbench: redis at {addr} refused user"))
            && run.stderr.contains("NOAUTH"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_wrong_protocol_is_refused_not_waited_for() {
    // A NATS server answers a Redis greeting with -ERR: no user ever subscribes.
    if !installed(common::nats::program()) {
        return;
    }
    let nats = Nats::start();
    let run = run_against("redis", nats_peer(&nats), &["fanout", "--conns", "3"]);
    assert_eq!(run.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("refused user"), "{}", run.stderr);
}

#[test]
fn peers_take_fanout_and_private_only() {
    for args in [
        &["--target", "redis", "idle"][..],
        &["--target", "nats", "churn"],
        &["--target", "redis", "--ws", "fanout"],
        &["--target", "kafka", "fanout"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--addr", "127.0.0.1:9", "--timeout", "2"]);
        let run = common::imbench::run(&all);
        assert_eq!(run.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let run = common::imbench::run(&["--target", "nats", "idle", "--addr", "127.0.0.1:9"]);
    assert!(
        run.stderr
            .contains("--target nats runs fanout and private only"),
        "{}",
        run.stderr
    );
    let help = common::imbench::run(&["--help"]);
    assert!(
        help.stdout.contains("--target <TARGET>") && help.stdout.contains("nats"),
        "{}",
        help.stdout
    );
}

/// The floor, which only the comparison builds (`--features variants`).
#[cfg(feature = "variants")]
mod floor {
    use super::*;
    use std::path::Path;

    fn start(write: &str) -> common::Server {
        let bin = Path::new(env!("CARGO_BIN_EXE_imserver-floor"));
        common::start_bin(bin, &["--write", write])
    }

    fn fanout(addr: SocketAddr) -> Run {
        let args = ["fanout", "--conns", "40", "--senders", "4", "--msgs", "30"];
        common::imbench::run_json(&addr.to_string(), &args)
    }

    #[test]
    fn the_floor_speaks_the_bytes_imbench_checks() {
        let floor = start("send");
        let mut a = common::connect_raw(floor.addr);
        let me = a.addr.clone();
        a.expect_line(&format!("[{me}]{me}:online\n"));
        let mut b = common::connect_raw(floor.addr);
        let other = b.addr.clone();
        b.expect_line(&format!("[{other}]{other}:online\n"));
        a.send(b"hi\r\nthere\n");
        for c in [&mut a, &mut b] {
            c.expect_line(&format!("[{me}]{me}:hi\n"));
            c.expect_line(&format!("[{me}]{me}:there\n"));
        }
        // A line in two pieces is one line.
        b.send(b"ha");
        b.send(b"lf\n");
        a.expect_line(&format!("[{other}]{other}:half\n"));
    }

    #[test]
    fn imbench_fanout_completes_against_the_floor_with_send_and_writev() {
        for write in ["send", "writev"] {
            let floor = start(write);
            let run = fanout(floor.addr);
            run.assert_complete();
            assert_eq!(
                run.num("deliveries"),
                Some(40 * 4 * 30),
                "{write}: {}",
                run.stdout
            );
        }
    }
}
