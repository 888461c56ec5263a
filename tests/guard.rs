//! The limits on clients, as a new user meets them: flood control that slows a sender down
//! (and kicks one that keeps flooding), per-address connection limits, a full server that
//! answers web clients instead of resetting them, the bound on all unsent output, and one
//! log line per storm.
//!
//! Loopback is exempt from the per-address and flood limits unless `--limit-loopback`, so
//! most tests here give it; the `/metrics` scrapes of tests that run an address out of
//! connections come from 127.0.0.2, another source as the limits see it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::ws::{close_code, connect as ws_connect, recv};
use common::{connect, connect_raw, http, start, start_logged, Client, READ_TIMEOUT};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// `GET /metrics` from `source` (another loopback address keeps clear of the limits of
/// 127.0.0.1).
fn metrics_from(source: IpAddr, api: SocketAddr) -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&api.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");
    all
}

/// The value of the counter `name` in a `/metrics` page.
fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing:\n{page}"))
        .parse()
        .unwrap()
}

/// The counter `name`, scraped from 127.0.0.1.
fn metric(api: SocketAddr, name: &str) -> u64 {
    counter(&metrics_from([127, 0, 0, 1].into(), api), name)
}

/// The counter `name`, scraped from 127.0.0.2.
fn metric_elsewhere(api: SocketAddr, name: &str) -> u64 {
    counter(&metrics_from([127, 0, 0, 2].into(), api), name)
}

/// `n` numbered lines `m0`..`m{n-1}`, as one write.
fn numbered(n: usize) -> String {
    (0..n).map(|i| format!("m{i}\n")).collect()
}

/// A sender writes 40 lines at once; returns when each reached a watcher (since the write),
/// and the server's flood-throttled counter.
fn flood_40(args: &[&str]) -> (Vec<Duration>, u64) {
    let mut all = vec!["--http-port", "0"];
    all.extend_from_slice(args);
    let server = start(&all);
    let mut watcher = connect(server.addr);
    let mut sender = connect(server.addr);
    watcher.read_line(); // the sender's online notice
    let s = sender.addr.clone();
    let t0 = Instant::now();
    sender.send(numbered(40).as_bytes());
    let mut arrivals = Vec::new();
    for i in 0..40 {
        watcher.expect_line(&format!("[{s}]{s}:m{i}\n"));
        arrivals.push(t0.elapsed());
    }
    let throttled = metric(server.http.unwrap(), "imserver_flood_throttled_total");
    (arrivals, throttled)
}

#[test]
fn a_flooder_is_slowed_to_the_rate_and_loses_nothing_while_others_are_served_at_once() {
    let server = start(&[
        "--limit-loopback",
        "--flood-burst",
        "5",
        "--flood-rate",
        "5",
        "--http-port",
        "0",
    ]);
    let mut watcher = connect(server.addr);
    let mut sender = connect(server.addr);
    let (w, s) = (watcher.addr.clone(), sender.addr.clone());
    watcher.read_line(); // the sender's online notice
    let t0 = Instant::now();
    sender.send(numbered(40).as_bytes());
    let mut arrivals = Vec::new();
    let mut who: Option<(Instant, Vec<(String, Duration)>)> = None;
    let deadline = t0 + Duration::from_secs(15);
    while arrivals.len() < 40 || who.as_ref().is_none_or(|(_, got)| got.len() < 2) {
        assert!(Instant::now() < deadline, "only {} of 40", arrivals.len());
        let line = watcher.read_line();
        if line == format!("[{s}]{s}:m{}\n", arrivals.len()) {
            arrivals.push(t0.elapsed());
            if arrivals.len() == 8 {
                // Mid-flood: another user's command is not queued behind the flooder's.
                watcher.send(b"who\n");
                who = Some((Instant::now(), Vec::new()));
            }
        } else if let (Some((asked, got)), true) = (who.as_mut(), line.ends_with(":在线...\n")) {
            got.push((line, asked.elapsed()));
        } else {
            panic!("unexpected {line:?} after m{}", arrivals.len());
        }
    }
    let (_, answers) = who.unwrap();
    let mut names: Vec<&str> = answers.iter().map(|(l, _)| l.as_str()).collect();
    names.sort_unstable();
    let mut want = [format!("[{w}]{w}:在线...\n"), format!("[{s}]{s}:在线...\n")];
    want.sort_unstable();
    assert_eq!(names, want);
    for (line, took) in &answers {
        assert!(*took < Duration::from_secs(1), "{line:?} took {took:?}");
    }
    // The burst at once, then about 5 a second: m{i} no sooner than (i - 4) / 5 s.
    assert!(arrivals[4] < Duration::from_secs(1), "{arrivals:?}");
    for (i, at) in arrivals.iter().enumerate().skip(5) {
        let due = Duration::from_millis(200 * (i as u64 - 4));
        assert!(
            *at + Duration::from_millis(500) >= due,
            "m{i} came at {at:?}, before {due:?}: {arrivals:?}"
        );
    }
    assert!(arrivals[39] < Duration::from_secs(12), "{arrivals:?}");
    let api = server.http.unwrap();
    assert!(metric(api, "imserver_flood_throttled_total") >= 1);
    assert_eq!(metric(api, "imserver_flood_kicks_total"), 0);
}

#[test]
fn loopback_is_not_slowed_without_limit_loopback_and_rate_zero_turns_flood_control_off() {
    for args in [
        &["--flood-burst", "5", "--flood-rate", "5"][..],
        &[
            "--limit-loopback",
            "--flood-burst",
            "5",
            "--flood-rate",
            "0",
        ][..],
    ] {
        let (arrivals, throttled) = flood_40(args);
        assert!(
            arrivals[39] < Duration::from_millis(1500),
            "{args:?}: {arrivals:?}"
        );
        assert_eq!(throttled, 0, "{args:?}");
    }
}

/// A client that writes `lines` at once, then keeps writing 20 lines of 1000 bytes every
/// 100 ms (for at most 8 s, until the server is gone; far more than the server reads, so its
/// socket fills), and reads all it gets until the server closes.
fn keep_flooding(mut sender: Client, lines: usize) -> (String, Duration) {
    let mut writer = sender.stream.try_clone().unwrap();
    let t0 = Instant::now();
    writer.write_all(numbered(lines).as_bytes()).unwrap();
    let more = std::thread::spawn(move || {
        let pad = "f".repeat(990);
        for round in 0..80 {
            std::thread::sleep(Duration::from_millis(100));
            let chunk: String = (0..20).map(|i| format!("{round}.{i}:{pad}\n")).collect();
            if writer.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
    });
    let got = sender.read_to_close();
    let took = t0.elapsed();
    more.join().unwrap();
    (got, took)
}

#[test]
fn a_sender_still_flooding_after_flood_kick_is_disconnected_with_a_line() {
    for (lang, online, offline, kicked) in [
        ("zh", "已上线", "已下线", "发送过快，已断开\n"),
        ("en", "online", "offline", "flooding, disconnected\n"),
    ] {
        let server = start(&[
            "--lang",
            lang,
            "--limit-loopback",
            "--flood-burst",
            "2",
            "--flood-rate",
            "1",
            "--flood-kick",
            "2",
            "--http-port",
            "0",
        ]);
        let mut watcher = connect_raw(server.addr);
        let w = watcher.addr.clone();
        watcher.expect_line(&format!("[{w}]{w}:{online}\n"));
        let mut sender = connect_raw(server.addr);
        let s = sender.addr.clone();
        sender.expect_line(&format!("[{s}]{s}:{online}\n"));
        watcher.expect_line(&format!("[{s}]{s}:{online}\n"));

        let (got, took) = keep_flooding(sender, 30);
        assert!(
            took > Duration::from_millis(1500) && took < Duration::from_secs(5),
            "{lang}: closed after {took:?}"
        );
        let echoes = got
            .strip_suffix(kicked)
            .unwrap_or_else(|| panic!("{lang}: the last line is not {kicked:?}: {got:?}"));
        // What ran before the kick is an unbroken prefix, and everyone got it.
        let ran = echoes.lines().count();
        assert!((2..30).contains(&ran), "{lang}: {got:?}");
        for i in 0..ran {
            let line = format!("[{s}]{s}:m{i}\n");
            assert_eq!(echoes.lines().nth(i), Some(line.trim_end()), "{got:?}");
            watcher.expect_line(&line);
        }
        watcher.expect_line(&format!("[{s}]{s}:{offline}\n"));
        assert_eq!(
            metric(server.http.unwrap(), "imserver_flood_kicks_total"),
            1,
            "{lang}"
        );
    }
}

#[test]
fn a_websocket_flooder_is_paced_too() {
    let server = start(&[
        "--limit-loopback",
        "--flood-burst",
        "5",
        "--flood-rate",
        "5",
        "--http-port",
        "0",
    ]);
    let api = server.http.unwrap();
    let mut ws = ws_connect(api, "/im"); // the upgrade request takes a token too
    let t0 = Instant::now();
    for i in 0..30 {
        ws.write(Message::text(
            json!({"seq": i.to_string(), "cmd": "ping", "data": {}}).to_string(),
        ))
        .unwrap();
    }
    ws.flush().unwrap();
    let mut arrivals = Vec::new();
    for i in 0..30 {
        let v = recv(&mut ws);
        assert_eq!(v["seq"], i.to_string(), "{v}");
        assert_eq!(v["response"]["data"], "pong", "{v}");
        arrivals.push(t0.elapsed());
    }
    // Four at once, then 26 at 5 a second: about 5.2 s.
    assert!(arrivals[3] < Duration::from_secs(1), "{arrivals:?}");
    assert!(
        arrivals[29] > Duration::from_secs(4) && arrivals[29] < Duration::from_secs(12),
        "{arrivals:?}"
    );
    assert!(metric(api, "imserver_flood_throttled_total") >= 1);
}

fn json_body(status: u16, body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    assert_eq!(v["code"], status, "{body}");
    v
}

#[test]
fn an_address_over_max_conns_per_ip_is_refused_in_every_protocol() {
    let server = start(&[
        "--limit-loopback",
        "--max-conns-per-ip",
        "2",
        "--http-port",
        "0",
    ]);
    let api = server.http.unwrap();
    let mut alice = connect(server.addr);
    let bob = connect(server.addr);
    let b = bob.addr.clone();
    alice.read_line(); // bob's online notice

    let mut third = connect_raw(server.addr);
    assert_eq!(third.read_to_close(), "连接过多\n");
    let (status, body) = http(
        api,
        "GET /system/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 429, "{body}");
    json_body(429, &body);
    let mut ws = ws_connect(api, "/im"); // the handshake, then the refusal
    assert_eq!(close_code(&mut ws), 1008);
    alice.expect_silence(Duration::from_millis(200));

    // Another address is not affected.
    let page = metrics_from([127, 0, 0, 2].into(), api);
    assert_eq!(counter(&page, "imserver_refused_per_ip_total"), 3);
    assert_eq!(counter(&page, "imserver_refused_rate_total"), 0);

    drop(bob);
    alice.expect_line(&format!("[{b}]{b}:已下线\n"));
    let carol = connect(server.addr); // room again
    let c = carol.addr.clone();
    alice.expect_line(&format!("[{c}]{c}:已上线\n"));
    assert_eq!(metric_elsewhere(api, "imserver_refused_per_ip_total"), 3);
}

#[test]
fn an_address_over_conn_rate_per_ip_is_refused() {
    let server = start(&[
        "--limit-loopback",
        "--conn-rate-per-ip",
        "3",
        "--max-conns-per-ip",
        "100",
        "--http-port",
        "0",
    ]);
    for _ in 0..3 {
        drop(connect(server.addr));
    }
    let mut fourth = connect_raw(server.addr);
    assert_eq!(fourth.read_to_close(), "连接过多\n");
    let page = metrics_from([127, 0, 0, 2].into(), server.http.unwrap());
    assert_eq!(counter(&page, "imserver_refused_rate_total"), 1);
    assert_eq!(counter(&page, "imserver_refused_per_ip_total"), 0);
}

#[test]
fn a_full_server_answers_web_clients_503_with_json_and_still_answers_health_checks() {
    let server = start(&["--max-conns", "2", "--http-port", "0"]);
    let api = server.http.unwrap();
    let mut alice = connect(server.addr);
    let _bob = connect(server.addr);
    alice.read_line();

    let (status, body) = http(
        api,
        "GET /system/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 503, "{body}");
    json_body(503, &body);
    let upgrade = format!(
        "GET /im HTTP/1.1\r\nHost: {api}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (status, body) = http(api, &upgrade);
    assert_eq!(status, 503, "{body}");
    json_body(503, &body);
    for path in ["/healthz", "/readyz"] {
        let (status, body) = http(
            api,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "{path}: {body}");
    }
    let mut third = connect_raw(server.addr);
    assert_eq!(third.read_to_close(), "服务器已满\n");
    alice.expect_silence(Duration::from_millis(200));
}

/// A line client with a tiny receive buffer that never reads: its backlog stays on the
/// server.
fn connect_never_reading(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Reads the lines `[t]t:{i}:...` for `next..until` from `c`, passing over the online and
/// offline notices of `others`.
fn read_talk(c: &mut Client, t: &str, next: &mut usize, until: usize, others: &[String]) {
    while *next < until {
        let line = c.read_line();
        let notice = others
            .iter()
            .any(|o| line == format!("[{o}]{o}:已上线\n") || line == format!("[{o}]{o}:已下线\n"));
        if notice {
            continue;
        }
        let prefix = format!("[{t}]{t}:{:06}:", *next);
        assert!(
            line.starts_with(&prefix) && line.len() == prefix.len() + 3991,
            "{} wanted {prefix}..., got {:?}",
            c.addr,
            line.get(..line.len().min(60))
        );
        *next += 1;
    }
}

#[test]
fn past_max_outbuf_total_the_largest_backlog_is_cut_first_and_readers_lose_nothing() {
    let (server, log) = start_logged(&[
        "--max-outbuf-total",
        "300000",
        "--max-outbuf",
        "10000000",
        "--http-port",
        "0",
    ]);
    let api = server.http.unwrap();
    let mut talker = connect(server.addr);
    let mut watcher = connect(server.addr);
    talker.read_line();
    let t = talker.addr.clone();
    let slow_a = connect_never_reading(server.addr);
    let a = slow_a.local_addr().unwrap().to_string();
    let mut others = vec![a.clone()];
    let payload = "x".repeat(3990);
    const BATCH: usize = 10; // lines of ~4000 bytes
    let (mut sent, mut to_talker, mut to_watcher) = (0, 0, 0);
    let mut slow_b = None;
    let mut b_from = 0;
    for batch in 0..100 {
        if batch == 5 {
            // The second slow reader joins late: its backlog stays the smaller.
            let s = connect_never_reading(server.addr);
            others.push(s.local_addr().unwrap().to_string());
            b_from = sent;
            slow_b = Some(s);
        }
        let chunk: String = (sent..sent + BATCH)
            .map(|i| format!("{i:06}:{payload}\n"))
            .collect();
        // Each line is `[t]t:` + 6 digits + `:` + 3990 bytes + `\n`.
        talker.send(chunk.as_bytes());
        sent += BATCH;
        read_talk(&mut talker, &t, &mut to_talker, sent, &others);
        read_talk(&mut watcher, &t, &mut to_watcher, sent, &others);
        if metric(api, "imserver_output_cut_total") > 0 {
            break;
        }
    }
    assert!(slow_b.is_some(), "cut before the second reader joined");
    assert_eq!(metric(api, "imserver_output_cut_total"), 1);

    // The first slow reader was cut: a prefix of the talk, then the end.
    let mut a_reader = Client::from_stream(slow_a);
    a_reader.expect_line(&format!("[{a}]{a}:已上线\n"));
    let rest = a_reader.read_to_close();
    let b = slow_b.as_ref().unwrap().local_addr().unwrap().to_string();
    let talk: Vec<&str> = rest
        .lines()
        .filter(|l| *l != format!("[{b}]{b}:已上线"))
        .collect();
    assert!(
        talk.len() < sent,
        "the first slow reader got all {sent} lines"
    );
    for (i, line) in talk.iter().enumerate() {
        let want = format!("[{t}]{t}:{i:06}:{payload}");
        assert!(*line == want || want.starts_with(line), "line {i}");
    }
    // The second is still there and gets everything since it joined.
    let mut b_reader = Client::from_stream(slow_b.unwrap());
    b_reader.expect_line(&format!("[{b}]{b}:已上线\n"));
    let mut from_b = b_from;
    read_talk(&mut b_reader, &t, &mut from_b, sent, &[]);
    watcher.expect_line(&format!("[{a}]{a}:已下线\n"));
    b_reader.expect_line(&format!("[{a}]{a}:已下线\n"));

    let want = "disconnected 1 slow readers: all unsent output passed 300000 bytes";
    assert!(
        log.wait_for(want, Duration::from_secs(5)).is_some(),
        "no {want:?} in the log"
    );
    // One line for the episode, not one per reader.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(log.lines_with("all unsent output passed").len(), 1);
}

#[test]
fn a_storm_of_refused_connections_is_logged_once_with_its_count() {
    let (server, log) = start_logged(&["--max-conns", "1"]);
    let _alice = connect(server.addr);
    for _ in 0..20 {
        let mut c = connect_raw(server.addr);
        assert_eq!(c.read_to_close(), "服务器已满\n");
    }
    let want = "refused 20 connections: max-conns 1 reached";
    assert!(
        log.wait_for(want, Duration::from_secs(5)).is_some(),
        "no {want:?} in the log"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(log.lines_with("refused ").len(), 1);
}

#[test]
fn lines_after_urgent_data_are_read_without_more_input() {
    // A read stops at TCP's urgent mark, short of what the socket holds: a short read
    // is not proof that the socket is drained, and no new edge comes for the rest.
    // (imserver-mio only: the async twin, like tokio, takes a short read as drained.)
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let bob = connect(server.addr);
    let b = bob.addr.clone();
    alice.read_line(); // bob's online notice
    let sock = socket2::SockRef::from(&bob.stream);
    sock.set_tcp_cork(true).unwrap(); // one segment: all of it queued before the read
    sock.send(b"one\n").unwrap();
    sock.send_out_of_band(b"!").unwrap();
    sock.send(b"two\n").unwrap();
    sock.set_tcp_cork(false).unwrap();
    alice.expect_line(&format!("[{b}]{b}:one\n"));
    alice.expect_line(&format!("[{b}]{b}:two\n"));
}
