//! `imbench` across several servers of one cluster: a real `redis-server` and two real
//! `imserver-mio --redis … --node-id a|b`, and `imbench --addr A,B`, which puts user `i` on
//! server `i % 2`. Users learn their cluster names (`ip:port@NODE`) from their own online
//! notices; a fanout run must reach every user on both servers exactly once and in order.
//!
//! Redis and both servers are child processes killed and reaped on drop; every imbench run
//! has a `--timeout` and a watchdog, and everything listens on and talks to 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::imbench::Run;
use common::Server;

/// How long the watchdog lets any imbench run take before the test fails.
/// How long Redis and the servers get to come up.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` child on a free port of 127.0.0.1; killed and reaped on drop.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        // Another process may take the port between the probe and Redis's bind: retry.
        (0..3)
            .find_map(|_| Redis::try_start())
            .expect("redis-server did not start on any of 3 free ports (is it installed?)")
    }

    fn try_start() -> Option<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server (is it installed?): {e}"));
        let mut redis = Redis { port, child };
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if redis.call(&["PING"]).is_some_and(|r| r == ["PONG"]) {
                return Some(redis);
            }
            if let Ok(Some(_)) = redis.child.try_wait() {
                return None; // exited: the port was taken
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command on a fresh connection; the reply's items flattened (`None` on any error).
    fn call(&self, args: &[&str]) -> Option<Vec<String>> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(cmd.as_bytes()).ok()?;
        let mut items = Vec::new();
        read_reply(&mut BufReader::new(s), &mut items)?;
        Some(items)
    }

    /// Waits until each node's heartbeat key is set (its command link is up) and both of its
    /// channels are subscribed (its subscriber link is up), so no event is published into
    /// the void.
    fn wait_ready(&self, nodes: &[&str]) {
        let deadline = Instant::now() + STARTUP;
        let int = |args: &[&str], at: usize| -> i64 {
            self.call(args)
                .and_then(|r| r.get(at)?.parse().ok())
                .unwrap_or(-1)
        };
        loop {
            let ready = nodes.iter().all(|n| {
                int(&["EXISTS", &format!("im:alive:{n}")], 0) == 1
                    && int(&["PUBSUB", "NUMSUB", &format!("im:node:{n}")], 1) == 1
            }) && int(&["PUBSUB", "NUMSUB", "im:room"], 1) == nodes.len() as i64;
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "nodes {nodes:?} never got ready");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one RESP reply, pushing every simple, integer and bulk value (arrays flattened).
fn read_reply(r: &mut impl BufRead, items: &mut Vec<String>) -> Option<()> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let line = line.strip_suffix("\r\n")?;
    let (kind, rest) = line.split_at_checked(1)?;
    match kind {
        "+" | ":" => items.push(rest.to_owned()),
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                items.push(String::new()); // $-1: nil
                return Some(());
            };
            let mut body = vec![0; len + 2];
            r.read_exact(&mut body).ok()?;
            body.truncate(len);
            items.push(String::from_utf8(body).ok()?);
        }
        "*" => {
            for _ in 0..rest.parse::<usize>().unwrap_or(0) {
                read_reply(r, items)?;
            }
        }
        _ => return None, // an error reply
    }
    Some(())
}

/// Redis and two cluster nodes, `a` and `b`, ready to carry events between them.
struct Cluster {
    a: Server,
    b: Server,
    // Dropped last: the servers go first, so they do not spend their end reconnecting.
    _redis: Redis,
}

impl Cluster {
    /// `extra` goes to both servers (e.g. `--ws-port 0`).
    fn start(extra: &[&str]) -> Cluster {
        let redis = Redis::start();
        let url = redis.url();
        let node = |id: &str| {
            let mut args = vec!["--idle-timeout", "0", "--redis", &url, "--node-id", id];
            args.extend_from_slice(extra);
            common::start(&args)
        };
        let (a, b) = (node("a"), node("b"));
        redis.wait_ready(&["a", "b"]);
        Cluster {
            a,
            b,
            _redis: redis,
        }
    }

    /// `A,B`: the line addresses, or with `ws` the WebSocket ones.
    fn addrs(&self, ws: bool) -> String {
        let pick = |s: &Server| {
            if ws {
                s.web.expect("--ws-port")
            } else {
                s.addr
            }
        };
        format!("{},{}", pick(&self.a), pick(&self.b))
    }

    fn pids(&self) -> String {
        format!("{},{}", self.a.child.id(), self.b.child.id())
    }
}

/// A cross-server run: complete, and the report names both servers.
fn assert_complete_on_both(run: &Run) {
    run.assert_complete();
    assert!(run.has("\"servers\":2"), "{}", run.stdout);
}

/// Runs imbench with `args` plus `--json --quiet --timeout 30`, under the watchdog.
fn imbench(args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--json", "--quiet", "--timeout", "30"]);
    common::imbench::run(&all)
}

#[test]
fn fanout_across_two_servers_reaches_every_user_on_both_once_and_in_order() {
    let cluster = Cluster::start(&[]);
    let addrs = cluster.addrs(false);
    let pids = cluster.pids();
    let run = imbench(&[
        "--addr",
        &addrs,
        "--pid",
        &pids,
        "fanout",
        "--conns",
        "20",
        "--senders",
        "2",
        "--msgs",
        "30",
        "--size",
        "64",
        "--window",
        "8",
    ]);
    assert_complete_on_both(&run);
    assert_eq!(run.num("deliveries"), Some(20 * 2 * 30), "{}", run.stdout);
    assert_eq!(run.num("joined"), Some(20), "{}", run.stdout);
    assert!(run.has(&format!("\"addr\":\"{addrs}\"")), "{}", run.stdout);
    // Both servers' CPU time, each and summed.
    assert!(run.has("\"server_cpu_ms_each\":["), "{}", run.stdout);
    assert!(
        run.has("\"server_traffic_cpu_ms_each\":["),
        "{}",
        run.stdout
    );
}

#[test]
fn idle_users_join_on_both_servers() {
    let cluster = Cluster::start(&[]);
    let run = imbench(&[
        "--addr",
        &cluster.addrs(false),
        "--pid",
        &cluster.pids(),
        "idle",
        "--conns",
        "40",
    ]);
    assert_complete_on_both(&run);
    assert_eq!(run.num("joined"), Some(40), "{}", run.stdout);
    let pids = format!("\"pids\":[{}]", cluster.pids());
    assert!(run.has(&pids), "{pids} in {}", run.stdout);
}

/// Users `2j` (server a) and `2j+1` (server b) whisper both ways by their cluster names.
#[test]
fn private_pairs_whisper_across_servers_by_their_cluster_names() {
    let cluster = Cluster::start(&[]);
    let run = imbench(&[
        "--addr",
        &cluster.addrs(false),
        "private",
        "--pairs",
        "6",
        "--msgs",
        "20",
        "--size",
        "64",
        "--window",
        "4",
    ]);
    assert_complete_on_both(&run);
    assert_eq!(run.num("deliveries"), Some(6 * 2 * 20), "{}", run.stdout);
}

/// Over WebSocket a user's name is its hub id on any server: fanout and private both cross
/// servers (the private run's probes wait until each server knows the other's users).
#[test]
fn websocket_users_on_two_servers_broadcast_and_whisper_across() {
    let cluster = Cluster::start(&["--ws-port", "0"]);
    let addrs = cluster.addrs(true);
    let fanout = imbench(&[
        "--ws",
        "--addr",
        &addrs,
        "fanout",
        "--conns",
        "10",
        "--senders",
        "2",
        "--msgs",
        "20",
    ]);
    assert_complete_on_both(&fanout);
    assert_eq!(
        fanout.num("deliveries"),
        Some(10 * 2 * 20),
        "{}",
        fanout.stdout
    );
    let private = imbench(&[
        "--ws", "--addr", &addrs, "private", "--pairs", "5", "--msgs", "20",
    ]);
    assert_complete_on_both(&private);
    assert_eq!(
        private.num("deliveries"),
        Some(5 * 2 * 20),
        "{}",
        private.stdout
    );
}

#[test]
fn an_address_listed_twice_is_a_usage_error() {
    let run = imbench(&["--addr", "127.0.0.1:9,127.0.0.1:9", "idle"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("twice"), "{}", run.stderr);
}
