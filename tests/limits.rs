//! Bad input and overload: an over-long line, a reader that never reads, a full server, and
//! a server out of file descriptors. The offender gets its answer; nobody else loses a byte.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::{connect, connect_raw, start, start_with_fd_limit};
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn an_overlong_line_is_discarded_with_a_reply_and_the_connection_stays() {
    let server = start(&["--max-line", "10"]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    let a = alice.addr.clone();
    alice.send(b"0123456789\n01234567890\nafter\n");
    let ok = format!("[{a}]{a}:0123456789\n");
    alice.expect_line(&ok);
    alice.expect_line("消息过长，已丢弃\n");
    alice.expect_line(&format!("[{a}]{a}:after\n"));
    bob.expect_line(&ok);
    bob.expect_line(&format!("[{a}]{a}:after\n"));
}

#[test]
fn a_huge_line_in_many_packets_gets_one_reply_and_memory_does_not_follow_it() {
    let server = start(&[]); // default --max-line 4096
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        alice.send(&chunk); // 4 MiB without a newline
    }
    alice.send(b"\nwho\n");
    alice.expect_line("消息过长，已丢弃\n");
    alice.expect_line(&format!("[{a}]{a}:在线...\n"));
    let rss_kb = rss_kb(server.child.id());
    assert!(rss_kb < 64 * 1024, "server grew to {rss_kb} KiB");
}

#[test]
fn a_line_of_exactly_max_line_bytes_is_accepted() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    let line = "y".repeat(4096);
    alice.send(format!("{line}\n").as_bytes());
    alice.expect_line(&format!("[{a}]{a}:{line}\n"));
    alice.send(format!("{line}z\n").as_bytes());
    alice.expect_line("消息过长，已丢弃\n");
}

#[test]
fn a_slow_consumer_is_disconnected_and_everyone_else_gets_every_message() {
    let server = start(&["--max-outbuf", "262144"]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    let slow = connect(server.addr); // never reads again
    alice.read_lines_sorted(2);
    bob.read_line();
    let (a, s) = (alice.addr.clone(), slow.addr.clone());
    const LINES: usize = 20_000;
    // A batch (~103 KB with line headers) must fit well within --max-outbuf even if a server
    // queues all of it before writing any: a reader that keeps up is never the slow one.
    const BATCH: usize = 100;
    let payload = "p".repeat(1000);
    // Readers count what they got; the sender waits for both before each batch, so alice
    // and bob are readers that keep up while the slow one falls ever further behind.
    let progress: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let reader_for = |stream: &std::net::TcpStream, seen: Arc<AtomicUsize>| {
        let stream = stream.try_clone().unwrap();
        let (a, s, payload) = (a.clone(), s.clone(), payload.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let (mut next, mut saw_offline) = (0, false);
            let deadline = Instant::now() + Duration::from_secs(60);
            while (next < LINES || !saw_offline) && Instant::now() < deadline {
                let mut line = String::new();
                assert!(r.read_line(&mut line).unwrap() > 0, "closed");
                if line == format!("[{s}]{s}:已下线\n") {
                    saw_offline = true;
                } else {
                    assert_eq!(line, format!("[{a}]{a}:{next}:{payload}\n"));
                    next += 1;
                    seen.store(next, Ordering::Relaxed);
                }
            }
            (next, saw_offline)
        })
    };
    let alice_reader = reader_for(&alice.stream, progress[0].clone());
    let bob_reader = reader_for(&bob.stream, progress[1].clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    for batch in 0..LINES / BATCH {
        let mut chunk = String::new();
        for i in batch * BATCH..(batch + 1) * BATCH {
            chunk.push_str(&format!("{i}:{payload}\n"));
        }
        alice.send(chunk.as_bytes());
        let done = (batch + 1) * BATCH;
        while progress.iter().any(|p| p.load(Ordering::Relaxed) < done) {
            assert!(Instant::now() < deadline, "readers stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(alice_reader.join().unwrap(), (LINES, true));
    assert_eq!(bob_reader.join().unwrap(), (LINES, true));
    // The slow reader finds some prefix, then the end of its connection.
    let mut slow = slow;
    let rest = slow.read_to_close();
    assert!(rest.len() < LINES * 1000, "slow reader got everything");
}

#[test]
fn past_max_conns_the_newcomer_is_refused_with_a_line() {
    let server = start(&["--max-conns", "2"]);
    let mut alice = connect(server.addr);
    let bob = connect(server.addr);
    alice.read_line();
    let mut third = connect_raw(server.addr);
    assert_eq!(third.read_to_close(), "服务器已满\n");
    alice.expect_silence(Duration::from_millis(200));
    drop(bob);
    alice.read_line(); // bob's offline notice
    let _fourth = connect(server.addr); // room again
}

/// Server CPU time so far in clock ticks (utime + stime), from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn out_of_file_descriptors_pauses_accepting_without_spinning_then_resumes() {
    let server = start_with_fd_limit(40, &["--idle-timeout", "0"]);
    let pid = server.child.id();
    // More clients than descriptors: the kernel queues the rest in the listen backlog.
    let clients: Vec<_> = (0..60).map(|_| connect_raw(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 30,
        "server burned {used} ticks in 1 s while out of descriptors"
    );

    // Free descriptors: every queued client must be admitted and hear its own notice.
    let (mut admitted, mut waiting) = (Vec::new(), Vec::new());
    for mut c in clients {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 1];
        match std::io::Read::read(&mut c.stream, &mut buf) {
            Ok(n) if n > 0 => admitted.push(c),
            _ => waiting.push(c),
        }
    }
    assert!(
        !admitted.is_empty() && !waiting.is_empty(),
        "expected some admitted and some queued: {} / {}",
        admitted.len(),
        waiting.len()
    );
    drop(admitted); // frees about as many descriptors as are queued
    for mut c in waiting.into_iter().take(10) {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let me = c.addr.clone();
        let own = format!("[{me}]{me}:");
        let mut found = false;
        for _ in 0..200 {
            let line = c.read_line();
            if line.starts_with(&own) {
                found = true;
                break;
            }
        }
        assert!(found, "{me} was never admitted");
    }
}
