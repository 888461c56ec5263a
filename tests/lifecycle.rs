//! A connection's and the server's life: idle kicks, half-close, graceful shutdown, and
//! start-up errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::{connect, connect_raw, server_cmd, start, start_with_env};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn an_idle_user_is_kicked_and_activity_keeps_a_user_online() {
    let server = start(&["--idle-timeout", "1"]);
    let mut idle = connect(server.addr);
    let mut busy = connect(server.addr);
    idle.read_line();
    let (i, b) = (idle.addr.clone(), busy.addr.clone());
    let started = Instant::now();
    // Empty lines count as activity: busy stays online well past the timeout.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        busy.send(b"\n");
    }
    assert_eq!(idle.read_to_close(), "你被踢了\n");
    let kicked_after = started.elapsed();
    assert!(
        kicked_after >= Duration::from_millis(900),
        "{kicked_after:?}"
    );
    busy.expect_line(&format!("[{i}]{i}:已下线\n"));
    busy.send(b"who\n");
    busy.expect_line(&format!("[{b}]{b}:在线...\n"));
    // And once busy stops talking, its turn comes too.
    assert_eq!(busy.read_to_close(), "你被踢了\n");
}

#[test]
fn idle_timeout_zero_never_kicks() {
    let server = start(&["--idle-timeout", "0"]);
    let mut alice = connect(server.addr);
    alice.expect_silence(Duration::from_millis(1500));
    alice.send(b"who\n");
    let a = alice.addr.clone();
    alice.expect_line(&format!("[{a}]{a}:在线...\n"));
}

#[test]
fn after_eof_the_server_delivers_what_it_owes_then_closes() {
    let server = start(&[]);
    let mut watcher = connect(server.addr);
    let mut c = connect_raw(server.addr);
    let (a, w) = (c.addr.clone(), watcher.addr.clone());
    c.send(b"who\nrename|leaver\nbye all\n");
    c.shutdown_write();
    let got = c.read_to_close();
    let lines: Vec<&str> = got.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 5, "{got:?}");
    assert_eq!(lines[0], format!("[{a}]{a}:已上线\n"));
    let mut who = lines[1..3].to_vec();
    who.sort();
    let mut want = vec![format!("[{a}]{a}:在线...\n"), format!("[{w}]{w}:在线...\n")];
    want.sort();
    assert_eq!(who, want);
    assert_eq!(lines[3], "您已更新用户名：leaver\n");
    assert_eq!(lines[4], format!("[{a}]leaver:bye all\n"));
    watcher.expect_line(&format!("[{a}]{a}:已上线\n"));
    watcher.expect_line(&format!("[{a}]leaver:bye all\n"));
    watcher.expect_line(&format!("[{a}]leaver:已下线\n"));
}

#[test]
fn sigterm_says_goodbye_to_everyone_and_exits_zero() {
    let mut server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    server.signal("TERM");
    assert_eq!(alice.read_to_close(), "服务器关闭\n");
    assert_eq!(bob.read_to_close(), "服务器关闭\n");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("server exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_stops_the_server_too_even_with_a_reader_that_never_reads() {
    let mut server = start(&["--shutdown-grace", "1"]);
    let _stuck = connect(server.addr); // never reads its goodbye
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("server exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_port_in_use_is_one_clear_line_and_a_nonzero_exit() {
    let server = start(&[]);
    let port = server.addr.port().to_string();
    let out = server_cmd()
        .args(["--host", "127.0.0.1", "--port", &port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&port), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_flags_are_refused_without_a_panic() {
    for args in [
        &["--port", "http"][..],
        &["--lang", "fr"],
        &["--idle-timeout", "-3"],
        &["--max-line", "0"],
        &["--no-such-flag"],
    ] {
        let out = server_cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_negative_value_is_refused_as_a_bad_value_of_its_flag() {
    let port = ": the port must be a number 0-65535\n";
    for (flag, why) in [
        ("--port", port),
        ("--ws-port", port),
        ("--http-port", port),
        ("--history", ""),
        ("--history-bytes", ""),
        ("--offline-max", ""),
        ("--offline-ttl", ""),
        ("--coalesce-bytes", ""),
        ("--workers", ""),
    ] {
        let out = server_cmd()
            .args([flag, "-1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: invalid value '-1' for '{flag} <")),
            "{flag}: {err}"
        );
        assert!(err.contains(why), "{flag}: {err}");
        assert!(!err.contains("unexpected argument"), "{flag}: {err}");
        assert!(!err.contains("panicked"), "{flag}: {err}");
        assert!(out.stdout.is_empty(), "{flag}");
    }
}

#[test]
fn help_lists_the_flags() {
    let out = server_cmd().arg("-h").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--idle-timeout",
        "--max-line",
        "--max-outbuf",
        "--max-conns",
        "--shutdown-grace",
        "--lang",
        "--ws-port",
        "--http-port",
        "--redis",
        "redis://[user:password@]HOST[:PORT][/DB]",
        "--node-id",
        "--node-timeout",
        "--reuse-port",
        "--workers",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// A port that was free a moment ago.
fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

#[test]
fn every_flag_can_come_from_an_imserver_variable() {
    let port = free_port();
    let mut child = server_cmd()
        .env("IMSERVER_HOST", "127.0.0.1")
        .env("IMSERVER_PORT", &port)
        .env("IMSERVER_LANG", "en")
        .env("IMSERVER_MAX_CONNS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let server = common::Server {
        addr: first.trim().parse().unwrap(),
        web: None,
        http: None,
        tls: None,
        wss: None,
        child,
    };
    assert_eq!(first, format!("127.0.0.1:{port}\n"));
    let mut alice = connect_raw(server.addr);
    let a = alice.addr.clone();
    alice.expect_line(&format!("[{a}]{a}:online\n"));
    // IMSERVER_MAX_CONNS=1: a second connection is refused.
    let mut bob = connect_raw(server.addr);
    assert_eq!(bob.read_to_close(), "server is full\n");
}

#[test]
fn a_flag_beats_its_variable() {
    let port = free_port();
    // start_with_env passes --host 127.0.0.1 --port 0; a bad value the flag overrides is
    // never looked at.
    let server = start_with_env(
        &[
            ("IMSERVER_PORT", "http"),
            ("IMSERVER_HOST", "not an address"),
            ("IMSERVER_LANG", "en"),
            ("IMSERVER_IDLE_TIMEOUT", "1"),
        ],
        &["--lang", "zh", "--idle-timeout", "0"],
    );
    assert_ne!(server.addr.port().to_string(), port);
    let mut alice = connect(server.addr); // expects the Chinese online notice
    alice.expect_silence(Duration::from_millis(1500)); // not kicked after 1 s
}

#[test]
fn a_bad_value_in_a_variable_is_one_clear_line_and_a_nonzero_exit() {
    for (var, value) in [
        ("IMSERVER_PORT", "http"),
        ("IMSERVER_LANG", "fr"),
        ("IMSERVER_MAX_CONNS", "0"),
        ("IMSERVER_IDLE_TIMEOUT", "-3"),
        ("IMSERVER_REDIS", "localhost:6379"),
    ] {
        let out = server_cmd()
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{var}: {err}");
        assert!(
            err.starts_with(&format!("error: invalid value '{value}' in {var} (for --")),
            "{var}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "{var}");
    }
    let out = server_cmd()
        .env("IMSERVER_PORT", "70000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid value '70000' in IMSERVER_PORT (for --port): \
         the port must be a number 0-65535\n"
    );
}

#[test]
fn help_names_each_variable_and_hides_the_redis_password() {
    let out = server_cmd()
        .arg("--help")
        .env("IMSERVER_REDIS", "redis://me:s3cret@127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "IMSERVER_HOST",
        "IMSERVER_PORT",
        "IMSERVER_IDLE_TIMEOUT",
        "IMSERVER_MAX_LINE",
        "IMSERVER_MAX_OUTBUF",
        "IMSERVER_MAX_CONNS",
        "IMSERVER_SHUTDOWN_GRACE",
        "IMSERVER_LANG",
        "IMSERVER_WS_PORT",
        "IMSERVER_HTTP_PORT",
        "IMSERVER_WS_MAX_MESSAGE",
        "IMSERVER_HEARTBEAT_TIMEOUT",
        "IMSERVER_REDIS",
        "IMSERVER_NODE_ID",
        "IMSERVER_NODE_TIMEOUT",
        "IMSERVER_REUSE_PORT",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from:\n{help}"
        );
    }
    assert!(!help.contains("s3cret"), "{help}");
}
