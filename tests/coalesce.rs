//! Write coalescing (`--coalesce-us`, `--coalesce-bytes`) and the shared fan-out segments:
//! holding output back under load changes when bytes leave, never which bytes or their
//! order; `--coalesce-us 0` never holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::{connect, get, metric, server_cmd, start, Client};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// Users who only listen.
const LISTENERS: usize = 12;
/// Users who send (and listen).
const SENDERS: usize = 4;
/// Lines each sender writes, all in one `write`: about 100 KB, more than the server reads
/// from one connection per turn (64 KiB), so input is left waiting and output is held.
const LINES: usize = 2000;
/// Rounds of load at most until the server reports held output.
const ROUNDS: usize = 5;

/// A server with an HTTP listener (for `/metrics`) and the coalescing flags `coalesce`.
fn start_with(coalesce: &[&str]) -> common::Server {
    let mut args = vec!["--http-port", "0", "--idle-timeout", "0"];
    args.extend_from_slice(coalesce);
    start(&args)
}

/// Waits until the previous round's users are all gone, so that none of their offline
/// notices reaches this round's users.
fn wait_until_empty(api: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get(api, "/system/state");
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        if state["data"]["users"].as_u64() == Some(0) {
            return;
        }
        assert!(Instant::now() < deadline, "users still online: {body}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The text of sender `s`'s line `i` in round `round`.
fn payload(round: usize, s: usize, i: usize) -> String {
    format!("r{round}s{s}-{i:05}-{}", "x".repeat(24))
}

/// Every user connects; then each sender writes all its lines at once while everyone reads.
/// Checks that every user gets every sender's lines, each exactly as sent, in the order
/// sent, and that all users see the same order. Returns nothing: a failure panics.
fn one_round(addr: SocketAddr, round: usize) {
    let mut users: Vec<Client> = Vec::new();
    for _ in 0..LISTENERS + SENDERS {
        let user = connect(addr);
        for earlier in &mut users {
            let a = &user.addr;
            earlier.expect_line(&format!("[{a}]{a}:已上线\n"));
        }
        users.push(user);
    }
    let names: Vec<String> = users.iter().map(|u| u.addr.clone()).collect();
    let writers: Vec<_> = users[LISTENERS..]
        .iter()
        .enumerate()
        .map(|(s, u)| {
            let mut stream = u.stream.try_clone().unwrap();
            thread::spawn(move || {
                let all: String = (0..LINES)
                    .map(|i| format!("{}\n", payload(round, s, i)))
                    .collect();
                stream.write_all(all.as_bytes()).unwrap();
            })
        })
        .collect();
    let readers: Vec<_> = users
        .into_iter()
        .map(|mut u| {
            let names = names.clone();
            thread::spawn(move || {
                let mut next = [0usize; SENDERS];
                let mut order = Vec::with_capacity(SENDERS * LINES);
                while order.len() < SENDERS * LINES {
                    let line = u.read_line();
                    let s = next
                        .iter()
                        .enumerate()
                        .position(|(s, &i)| {
                            i < LINES && line.ends_with(&format!(":{}\n", payload(round, s, i)))
                        })
                        .unwrap_or_else(|| panic!("{}: unexpected {line:?}", u.addr));
                    let from = &names[LISTENERS + s];
                    let i = next[s];
                    assert_eq!(line, format!("[{from}]{from}:{}\n", payload(round, s, i)));
                    next[s] += 1;
                    order.push(s);
                }
                order
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let orders: Vec<Vec<usize>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(
        orders.iter().all(|o| *o == orders[0]),
        "users saw the senders' lines interleaved differently"
    );
}

#[test]
fn under_load_held_output_reaches_everyone_complete_and_in_order() {
    // A turn's read budget of lines makes about 100 KB for each user: keep it held.
    let server = start_with(&["--coalesce-us", "2000", "--coalesce-bytes", "4194304"]);
    let api = server.http.unwrap();
    let mut round = 0;
    while metric(api, "imserver_output_held_total") == 0 {
        assert!(round < ROUNDS, "{ROUNDS} rounds of load never held output");
        wait_until_empty(api);
        one_round(server.addr, round);
        round += 1;
    }
    assert!(metric(api, "imserver_writes_total") > 0);
}

#[test]
fn with_coalesce_us_zero_nothing_is_held() {
    let server = start_with(&["--coalesce-us", "0"]);
    let api = server.http.unwrap();
    one_round(server.addr, 0);
    assert_eq!(metric(api, "imserver_output_held_total"), 0);
    // A lone line after the load is sent at once, byte for byte as ever.
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    alice.expect_line(&format!("[{b}]{b}:已上线\n"));
    alice.send(b"hello\n");
    alice.expect_line(&format!("[{a}]{a}:hello\n"));
    bob.expect_line(&format!("[{a}]{a}:hello\n"));
}

#[test]
fn bad_coalescing_values_are_one_clear_line_and_exit_2() {
    for (flag, value) in [
        ("--coalesce-us", "-1"),
        ("--coalesce-us", "0.5"),
        ("--coalesce-us", "1000001"),
        ("--coalesce-bytes", "0"),
        ("--coalesce-bytes", "lots"),
        ("--coalesce-bytes", "-5"),
    ] {
        let out = server_cmd()
            .args([flag, value])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: invalid value '{value}' for '{flag} <")),
            "{flag} {value}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let help = server_cmd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--coalesce-us <MICROS>"), "{help}");
    assert!(help.contains("--coalesce-bytes <BYTES>"), "{help}");
}
