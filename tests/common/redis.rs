//! A real `redis-server` child process on a free port of 127.0.0.1, and a minimal RESP
//! client for the tests' own questions to it. Killed (SIGKILL) and reaped on drop; every
//! wait has a deadline.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// A port that was free a moment ago, and never handed out before in this process (so a
/// test restarting its Redis on the same port cannot find another test's Redis there).
pub fn free_port() -> u16 {
    static USED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        if !used.contains(&port) {
            used.push(port);
            return port;
        }
    }
    panic!("no fresh free port in 100 tries");
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

pub fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut head = Vec::new();
    r.read_until(b'\n', &mut head)?;
    if !head.ends_with(b"\r\n") {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    let text = String::from_utf8_lossy(&head[1..head.len() - 2]).into_owned();
    let bad = || std::io::Error::new(ErrorKind::InvalidData, format!("bad RESP {head:?}"));
    Ok(match head[0] {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Int(text.parse().map_err(|_| bad())?),
        b'$' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut body = vec![0; n as usize + 2];
                r.read_exact(&mut body)?;
                body.truncate(n as usize);
                Resp::Bulk(Some(body))
            }
        }
        b'*' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_resp(r)?);
            }
            Resp::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// Sends one command to the Redis on `port` and reads its reply; logs in first with
/// `AUTH auth...` unless `auth` is empty.
pub fn redis_call(port: u16, auth: &[String], args: &[&str]) -> std::io::Result<Resp> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let encode = |args: &[&str]| {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        cmd
    };
    let mut r = BufReader::new(s.try_clone()?);
    if !auth.is_empty() {
        let mut login = vec!["AUTH"];
        login.extend(auth.iter().map(String::as_str));
        s.write_all(encode(&login).as_bytes())?;
        let answer = read_resp(&mut r)?;
        if answer != Resp::Simple("OK".into()) {
            return Err(std::io::Error::other(format!("AUTH: {answer:?}")));
        }
    }
    s.write_all(encode(args).as_bytes())?;
    read_resp(&mut r)
}

/// A `redis-server` child process on 127.0.0.1; killed (SIGKILL) and reaped on drop.
pub struct Redis {
    pub port: u16,
    /// What the tests' own questions log in with (`AUTH auth...`); empty: no `AUTH`.
    auth: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// Starts a Redis on a free port.
    pub fn start() -> Redis {
        Redis::start_with(&[], &[])
    }

    /// Starts a Redis on a free port with `extra` arguments (`--requirepass secret`), whose
    /// tests' questions log in with `AUTH auth...`.
    pub fn start_with(extra: &[&str], auth: &[&str]) -> Redis {
        // Another process may take the port between our probe and Redis's bind: retry.
        for _ in 0..3 {
            if let Some(r) = Redis::try_start_on(free_port(), extra, auth) {
                return r;
            }
        }
        panic!("redis-server did not start on any of 3 free ports");
    }

    /// Starts a Redis on `port` (for a restart on the same port).
    pub fn start_on(port: u16) -> Redis {
        Redis::try_start_on(port, &[], &[])
            .unwrap_or_else(|| panic!("redis-server did not start on {port}"))
    }

    pub fn try_start_on(port: u16, extra: &[&str], auth: &[&str]) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server (is it installed?): {e}"));
        let mut redis = Redis {
            port,
            auth: auth.iter().map(|a| a.to_string()).collect(),
            child: Some(child),
        };
        let pid = redis.child.as_ref().map(|c| c.id().to_string());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis.pings() {
                // Ours, not some other Redis that holds the port.
                let info = redis_call(port, &redis.auth, &["INFO", "server"]);
                let ours = match (&info, &pid) {
                    (Ok(Resp::Bulk(Some(text))), Some(pid)) => String::from_utf8_lossy(text)
                        .lines()
                        .any(|l| l.strip_prefix("process_id:") == Some(pid.as_str())),
                    _ => false,
                };
                return ours.then_some(redis);
            }
            if let Some(child) = redis.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return None; // exited: the port was taken
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Whether something on the port answers PING with +PONG.
    pub fn pings(&self) -> bool {
        matches!(redis_call(self.port, &self.auth, &["PING"]), Ok(Resp::Simple(p)) if p == "PONG")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server process's id (for `imbench --pid`), until it is killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn call(&self, args: &[&str]) -> Resp {
        redis_call(self.port, &self.auth, args).unwrap_or_else(|e| panic!("Redis {args:?}: {e}"))
    }

    /// Waits until every node in `nodes` has joined the cluster: its heartbeat key is set
    /// (its command link is up), its private channel subscribed (its subscriber link is up),
    /// and the heartbeat refreshed once since.
    ///
    /// The refresh matters: a joining server reads the others' users with `HGETALL
    /// im:users` right after its SUBSCRIBE is confirmed, and until that reply is read it
    /// would answer `to|` a remote user as offline. The second heartbeat is written a loop
    /// turn after that reply was read, so a test that waits for it never races the load.
    pub fn wait_ready(&self, nodes: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in nodes {
            let key = format!("im:alive:{node}");
            loop {
                let alive = self.call(&["EXISTS", &key]);
                let subs = self.call(&["PUBSUB", "NUMSUB", &format!("im:node:{node}")]);
                let subscribed = matches!(&subs, Resp::Array(v) if v.get(1) == Some(&Resp::Int(1)));
                if alive == Resp::Int(1) && subscribed {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {node} did not join the cluster in 10 s ({alive:?}, {subs:?})"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        let ttl = |node: &str| match self.call(&["PTTL", &format!("im:alive:{node}")]) {
            Resp::Int(ms) => ms,
            other => panic!("PTTL im:alive:{node}: {other:?}"),
        };
        let mut last: Vec<Option<i64>> = nodes.iter().map(|n| Some(ttl(n))).collect();
        while last.iter().any(Option::is_some) {
            assert!(
                Instant::now() < deadline,
                "nodes {nodes:?} did not all refresh their heartbeats within 10 s ({last:?})"
            );
            thread::sleep(Duration::from_millis(50));
            for (node, last) in nodes.iter().zip(last.iter_mut()) {
                if let Some(before) = *last {
                    let now = ttl(node);
                    // The TTL only falls, unless the key was set again.
                    *last = (now <= before).then_some(now);
                }
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
