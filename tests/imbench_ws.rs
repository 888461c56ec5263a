//! `imbench --ws`, the load generator over WebSocket (the hub protocol of `/ws/{id}`), run
//! as a real binary: against the real server's `--ws-port` with small numbers, against its
//! line port (no `101`: a clear error), and against a tiny fake WebSocket server that pings
//! and then closes mid-run. Every run has a `--timeout` and a watchdog; traffic goes to
//! 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::imbench::Run;

/// Runs imbench with `args` plus `--ws --addr ADDR --json --quiet --timeout 20`.
fn imbench_ws(addr: SocketAddr, args: &[&str]) -> Run {
    let addr = addr.to_string();
    let mut all = args.to_vec();
    all.extend([
        "--ws",
        "--addr",
        &addr,
        "--json",
        "--quiet",
        "--timeout",
        "20",
    ]);
    common::imbench::run(&all)
}

fn assert_ok(run: &Run) {
    run.assert_ok();
    assert!(run.has("\"transport\":\"ws\""), "{}", run.stdout);
}

fn ws_server() -> common::Server {
    common::start(&["--idle-timeout", "0", "--ws-port", "0"])
}

#[test]
fn ws_idle_joins_every_user_and_reports_memory_per_connection() {
    let server = ws_server();
    let pid = server.child.id().to_string();
    let run = imbench_ws(
        server.web.unwrap(),
        &["idle", "--conns", "50", "--pid", &pid],
    );
    assert_ok(&run);
    assert_eq!(run.num("conns"), Some(50));
    assert_eq!(run.num("joined"), Some(50));
    assert!(run.has("\"rss_per_conn_bytes\":"), "{}", run.stdout);
    assert!(
        run.num("rss_after_kb").is_some_and(|kb| kb > 0),
        "{}",
        run.stdout
    );
}

#[test]
fn ws_fanout_delivers_every_message_to_every_user_exactly_once() {
    let server = ws_server();
    let run = imbench_ws(
        server.web.unwrap(),
        &[
            "fanout",
            "--conns",
            "30",
            "--senders",
            "3",
            "--msgs",
            "40",
            "--size",
            "200",
            "--window",
            "8",
        ],
    );
    assert_ok(&run);
    assert_eq!(run.num("expected_deliveries"), Some(30 * 3 * 40));
    assert_eq!(run.num("deliveries"), Some(30 * 3 * 40));
    for key in [
        "missing",
        "duplicates",
        "out_of_order",
        "misdelivered",
        "garbled",
    ] {
        assert_eq!(run.num(key), Some(0), "{key} in {}", run.stdout);
    }
}

#[test]
fn ws_private_counts_whispers_and_not_the_servers_acknowledgements() {
    let server = ws_server();
    let run = imbench_ws(
        server.web.unwrap(),
        &[
            "private", "--pairs", "5", "--msgs", "30", "--size", "80", "--window", "4",
        ],
    );
    assert_ok(&run);
    assert_eq!(run.num("deliveries"), Some(5 * 2 * 30));
    assert_eq!(run.num("misdelivered"), Some(0), "{}", run.stdout);
}

#[test]
fn ws_churn_users_hear_their_own_broadcast() {
    let server = ws_server();
    let run = imbench_ws(
        server.web.unwrap(),
        &["churn", "--conns", "5", "--rate", "40", "--duration", "0.5"],
    );
    assert_ok(&run);
    assert_eq!(run.num("joins"), Some(20));
    assert_eq!(run.num("errors"), Some(0));
}

#[test]
fn ws_against_a_line_port_is_a_clear_error_and_exit_1() {
    let server = ws_server();
    let started = Instant::now();
    let run = imbench_ws(server.addr, &["fanout", "--conns", "5"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the timeout"
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with("imbench: no WebSocket upgrade")
            && lines[0].contains("HTTP/1.1 101")
            && lines[0].contains(&server.addr.to_string()),
        "{}",
        run.stderr
    );
}

/// Reads one masked client frame from `r`: (opcode byte, unmasked payload).
fn read_client_frame(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    r.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0x80, "client frames are masked");
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126, "a short frame");
    let mut mask = [0; 4];
    r.read_exact(&mut mask).unwrap();
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (head[0], payload)
}

/// A fake WebSocket server for one user: it accepts the upgrade, pings, checks the pong,
/// sends the user's presence in a frame with a 16-bit length, then closes with 1008.
/// Reports what it saw on the channel.
fn fake_server_that_closes() -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut path = String::new();
        let mut key = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(p) = line.strip_prefix("GET ") {
                path = p.split(' ').next().unwrap_or_default().to_owned();
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("sec-websocket-key") {
                    key = value.trim().to_owned();
                }
            }
        }
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let id = path.strip_prefix("/ws/").unwrap_or_default().to_owned();
        let _ = tx.send(format!("path {path}"));
        write!(
            writer,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .unwrap();
        writer.write_all(b"\x89\x03abc").unwrap();
        let (op, payload) = read_client_frame(&mut reader);
        let _ = tx.send(format!(
            "frame {op:#x} {}",
            String::from_utf8_lossy(&payload)
        ));
        let presence = format!(
            r#"{{"content":"{}","receiver":0,"sender":"{id}","type":0}}"#,
            "o".repeat(300)
        );
        let mut frame = vec![0x81, 126];
        frame.extend_from_slice(&(presence.len() as u16).to_be_bytes());
        frame.extend_from_slice(presence.as_bytes());
        frame.extend_from_slice(b"\x88\x05\x03\xf0bye");
        writer.write_all(&frame).unwrap();
        // Hold the socket open: the close frame, not an EOF, must end the run.
        thread::sleep(Duration::from_secs(5));
    });
    (addr, rx)
}

#[test]
fn a_close_frame_mid_run_is_the_server_closing_the_connection() {
    let (addr, seen) = fake_server_that_closes();
    let started = Instant::now();
    let run = imbench_ws(addr, &["idle", "--conns", "1", "--hold", "10"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not stop at the close frame"
    );
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    let path = seen.recv_timeout(Duration::from_secs(1)).unwrap();
    let id = path
        .strip_prefix("path /ws/")
        .unwrap_or_else(|| panic!("{path}"));
    assert!(
        (1..=19).contains(&id.len())
            && !id.contains(':')
            && !id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(1)).unwrap(),
        "frame 0x8a abc",
        "a masked pong answers the ping"
    );
    assert_eq!(run.num("joined"), Some(1), "{}", run.stdout);
    assert!(run.has("\"complete\":false"), "{}", run.stdout);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("imbench: server closed connection of user 0 mid-run")
            && last.contains("close frame 1008 \"bye\""),
        "{}",
        run.stderr
    );
}
