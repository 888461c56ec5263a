//! Several servers, one chat (`--redis`): real `redis-server` child processes on free
//! ports of 127.0.0.1, several real server binaries, and real clients (line users on TCP,
//! WebSocket users through tungstenite, the HTTP API). At the end, several servers on one
//! port of one machine (`--reuse-port`, `--workers`).
//!
//! Every Redis and every server is a child process killed and reaped on drop; every read
//! has a timeout and every wait loop a deadline, so no test can hang.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::redis::{free_port, Redis, Resp};
use common::{connect, server_cmd, start, start_logged, Client, Server, READ_TIMEOUT};
use common::{http, post, post_raw};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Redis that never answers (a real one is `common::redis::Redis`).
// ---------------------------------------------------------------------------------------

/// A "Redis" that accepts connections and never answers: holds them open, reads nothing.
struct StalledRedis {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StalledRedis {
    fn start() -> StalledRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded even if the test forgets to stop it: two minutes at most.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        StalledRedis {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for StalledRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Servers and line users.
// ---------------------------------------------------------------------------------------

/// A server in the cluster behind `redis_url`, as node `id`.
fn node(redis_url: &str, id: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--redis", redis_url, "--node-id", id];
    args.extend_from_slice(extra);
    start(&args)
}

/// A line user that knows its own name (in a cluster the default name is `addr@NODE`,
/// not the address as `common::connect` expects).
struct User {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Bytes of a line not yet complete when a short read timed out.
    partial: Vec<u8>,
    /// The local address: the user's `[addr]`.
    addr: String,
    /// The user's current name.
    name: String,
    /// The server it is connected to.
    node: String,
    /// The online notice of this user's arrival, under its default name.
    hello: String,
    /// Online notices of users of other servers who joined before this one: the notice
    /// reaches this user if its server hears of them only after it accepted this user (the
    /// backplane is asynchronous), and then at any moment; or other lines a test knows may
    /// come. Skipped once each, if they come.
    maybe: Vec<String>,
}

/// Two servers A and B on one Redis, with a1 on A and b1, b2 on B, each having heard the
/// others arrive (all in room 101). The servers must outlive the users: keep the pair.
fn a1_b1_b2() -> (Redis, [Server; 2], [User; 3]) {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &[]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    let b2 = join_after(&b, "B", &[&a1]);
    a1.expect(&b2.online());
    b1.expect(&b2.online());
    (redis, [a, b], [a1, b1, b2])
}

/// Connects a line user to `server` (node `node`), checks its own online notice with the
/// cluster's default name, and learns that name.
fn join(server: &Server, node: &str) -> User {
    join_after(server, node, &[])
}

/// Like [`join`], for a user who may yet hear of the users of other servers in `earlier`
/// coming online (see [`User::maybe`]).
fn join_after(server: &Server, node: &str, earlier: &[&User]) -> User {
    let maybe = earlier.iter().map(|u| u.hello.clone()).collect();
    join_at(server.addr, &[node], maybe)
}

/// Connects a line user to `addr`, served by one of `nodes` (a port several servers
/// share); the node is learned from the user's default name. `maybe`: lines it may get
/// once each, at any time, and skips (see [`User::maybe`]).
fn join_at(addr: SocketAddr, nodes: &[&str], maybe: Vec<String>) -> User {
    let stream = TcpStream::connect(addr).expect("connect to server");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    let addr = stream.local_addr().unwrap().to_string();
    let mut u = User {
        stream,
        reader,
        partial: Vec::new(),
        addr: addr.clone(),
        name: String::new(),
        node: String::new(),
        hello: String::new(),
        maybe,
    };
    let first = u.line();
    let node = nodes
        .iter()
        .find(|node| first == format!("[{addr}]{addr}@{node}:已上线\n"))
        .unwrap_or_else(|| panic!("default name on one of {nodes:?}: {first:?}"));
    u.name = format!("{addr}@{node}");
    u.node = node.to_string();
    u.hello = first;
    u
}

impl User {
    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).expect("write");
    }

    /// The next line, waiting at most `wait` (per line read); `None` if none is complete by
    /// then. Late online notices of earlier users are skipped.
    fn try_line(&mut self, wait: Duration) -> Option<String> {
        loop {
            let line = self.try_any_line(wait)?;
            match self.maybe.iter().position(|m| *m == line) {
                Some(i) => {
                    self.maybe.swap_remove(i);
                }
                None => return Some(line),
            }
        }
    }

    fn try_any_line(&mut self, wait: Duration) -> Option<String> {
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let got = self.reader.read_until(b'\n', &mut self.partial);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match got {
            Ok(0) => panic!(
                "{}: server closed the connection (partial {:?})",
                self.name,
                String::from_utf8_lossy(&self.partial)
            ),
            Ok(_) if self.partial.ends_with(b"\n") => {
                let line = std::mem::take(&mut self.partial);
                Some(String::from_utf8(line).expect("UTF-8"))
            }
            Ok(_) => panic!("{}: EOF in the middle of a line", self.name),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("{}: read failed: {e}", self.name),
        }
    }

    /// The next line; panics after [`READ_TIMEOUT`].
    fn line(&mut self) -> String {
        self.try_line(READ_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{} ({}): no line in {READ_TIMEOUT:?}; partial {:?}",
                self.name,
                self.addr,
                String::from_utf8_lossy(&self.partial)
            )
        })
    }

    fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(
            got, want,
            "{} ({}) got the wrong line",
            self.name, self.addr
        );
    }

    fn lines_sorted(&mut self, n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|_| self.line()).collect();
        v.sort();
        v
    }

    /// Nothing arrives within `d`.
    fn silence(&mut self, d: Duration) {
        if let Some(line) = self.try_line(d) {
            panic!("{}: expected silence, got {line:?}", self.name);
        }
        assert!(
            self.partial.is_empty(),
            "{}: expected silence, got {:?}",
            self.name,
            String::from_utf8_lossy(&self.partial)
        );
    }

    /// `rename|NEW`, which must succeed.
    fn rename(&mut self, new: &str) {
        self.send(&format!("rename|{new}\n"));
        self.expect(&format!("您已更新用户名：{new}\n"));
        self.name = new.to_owned();
    }

    fn online(&self) -> String {
        format!("[{}]{}:已上线\n", self.addr, self.name)
    }

    fn offline(&self) -> String {
        format!("[{}]{}:已下线\n", self.addr, self.name)
    }

    fn said(&self, text: &str) -> String {
        format!("[{}]{}:{text}\n", self.addr, self.name)
    }

    fn who_entry(&self) -> String {
        format!("[{}]{}:在线...\n", self.addr, self.name)
    }
}

/// `from` whispers `text` to `to` by `to`'s current name; `to` must get it, and `from`
/// no answer (an error answer is reported as such).
fn whisper(from: &mut User, to: &mut User, text: &str) {
    from.send(&format!("to|{}|{text}\n", to.name));
    let want = format!("{}对您说{text}\n", from.name);
    match to.try_line(READ_TIMEOUT) {
        Some(got) => assert_eq!(got, want, "{} got the wrong line", to.name),
        None => {
            let answer = from.try_line(Duration::from_millis(100));
            panic!(
                "{}'s whisper to {} did not arrive in {READ_TIMEOUT:?}; the sender got {answer:?}",
                from.name, to.name
            )
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const TAKEN: &str = "当前用户名被使用了\n";
const NO_SUCH_USER: &str = "不存在该用户\n";
const UNAVAILABLE: &str = "集群暂不可用\n";
const LOCAL_ONLY: &str = "集群暂不可用，消息仅发送给本服务器的用户\n";

// ---------------------------------------------------------------------------------------
// WebSocket and HTTP clients (as in tests/ws.rs).
// ---------------------------------------------------------------------------------------

use common::ws::{close_code, connect as ws_connect, recv as ws_recv, send as ws_send, Ws};

/// Reads messages until one satisfies `want` (at most 20), and returns it.
fn ws_recv_until(ws: &mut Ws, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let mut skipped = Vec::new();
    for _ in 0..20 {
        let v = ws_recv(ws);
        if want(&v) {
            return v;
        }
        skipped.push(v);
    }
    panic!("no {what} in 20 messages: {skipped:?}");
}

/// `/im` login; returns the answer's `response`.
fn im_login(ws: &mut Ws, user: &str) -> Value {
    ws_send(
        ws,
        json!({"seq":"login","cmd":"login","data":{"userID":user,"appID":101}}),
    );
    ws_recv_until(ws, "login answer", |v| v["cmd"] == "login")["response"].clone()
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body:?}"))
}

fn user_list(api: SocketAddr) -> Vec<String> {
    let v = get(api, "/user/list?appID=101");
    assert_eq!(v["code"], 200, "{v}");
    let names: Vec<String> = serde_json::from_value(v["data"]["userList"].clone()).unwrap();
    assert_eq!(v["data"]["userCount"], names.len(), "{v}");
    sorted(names)
}

fn is_online(api: SocketAddr, user: &str) -> bool {
    let v = get(api, &format!("/user/online?appID=101&userID={user}"));
    assert_eq!(v["data"]["userID"], user, "{v}");
    v["data"]["online"]
        .as_bool()
        .unwrap_or_else(|| panic!("{v}"))
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn line_users_on_two_servers_chat_whisper_list_and_rename() {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &[]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);

    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    // Default names carry the node and cross servers as such.
    a1.expect(&b1.online());
    a1.send("who\n");
    assert_eq!(
        a1.lines_sorted(2),
        sorted(vec![a1.who_entry(), b1.who_entry()])
    );

    // Renames are claimed cluster-wide.
    a1.rename("alice");
    b1.send("rename|alice\n");
    b1.expect(TAKEN);
    b1.rename("bob");
    let mut a2 = join(&a, "A");
    a1.expect(&a2.online());
    b1.expect(&a2.online());
    a2.send("rename|bob\n");
    a2.expect(TAKEN);

    // Broadcasts: everyone, everywhere, once.
    b1.send("hi from b 你好\n");
    let said = b1.said("hi from b 你好");
    for u in [&mut a1, &mut a2, &mut b1] {
        u.expect(&said);
    }
    a2.send("hi from a2\n");
    let said = a2.said("hi from a2");
    for u in [&mut a1, &mut a2, &mut b1] {
        u.expect(&said);
    }

    // Whispers cross servers both ways; unknown names are refused.
    a1.send("to|bob|psst 悄悄话\n");
    b1.expect("alice对您说psst 悄悄话\n");
    b1.send("to|alice|back|with a bar\n");
    a1.expect("bob对您说back|with a bar\n");
    b1.send("to|nobody|x\n");
    b1.expect(NO_SUCH_USER);

    // `who` lists both servers' users, on both servers.
    let everyone = sorted(vec![a1.who_entry(), a2.who_entry(), b1.who_entry()]);
    b1.send("who\n");
    assert_eq!(b1.lines_sorted(3), everyone);
    a2.send("who\n");
    assert_eq!(a2.lines_sorted(3), everyone);

    // Offline notices cross servers, and a departed user's name is free everywhere.
    let a2_offline = a2.offline();
    drop(a2);
    a1.expect(&a2_offline);
    b1.expect(&a2_offline);
    let b1_offline = b1.offline();
    drop(b1);
    a1.expect(&b1_offline);
    a1.send("to|bob|are you there\n");
    a1.expect(NO_SUCH_USER);
    a1.send("who\n");
    a1.expect(&a1.who_entry());
    let mut a3 = join(&a, "A");
    a1.expect(&a3.online());
    let mut b2 = join_after(&b, "B", &[&a1, &a3]);
    a1.expect(&b2.online());
    a3.expect(&b2.online());
    a3.rename("bob");
    // B hears of the rename before this broadcast (one server's events keep their order).
    a3.send("the new bob\n");
    let said = a3.said("the new bob");
    for u in [&mut a1, &mut a3, &mut b2] {
        u.expect(&said);
    }
    b2.send("rename|bob\n");
    b2.expect(TAKEN);
    whisper(&mut b2, &mut a3, "new bob");
    for u in [&mut a1, &mut a3, &mut b2] {
        u.silence(Duration::from_millis(300));
    }
}

#[test]
fn rooms_span_servers() {
    let (_redis, _servers, [mut a1, mut b1, mut b2]) = a1_b1_b2();

    // b2 moves to tea: 101 hears it leave, on both servers.
    b2.send("room|tea\n");
    b2.expect("您已进入房间：tea\n");
    // A late notice of a1's arrival in 101 would have come before that answer: from here
    // on, a1 arriving is a1 coming to tea.
    b2.maybe.clear();
    a1.expect(&b2.offline());
    b1.expect(&b2.offline());
    // a1 follows from the other server: 101 hears it leave, tea hears it arrive.
    a1.send("room|tea\n");
    a1.expect("您已进入房间：tea\n");
    b1.expect(&a1.offline());
    b2.expect(&a1.online());

    // Broadcasts stay in their room across servers; who and rooms count both servers.
    a1.send("tea time\n");
    a1.expect(&a1.said("tea time"));
    b2.expect(&a1.said("tea time"));
    b1.send("in 101\n");
    b1.expect(&b1.said("in 101"));
    b2.send("who\n");
    assert_eq!(
        b2.lines_sorted(2),
        sorted(vec![a1.who_entry(), b2.who_entry()])
    );
    b1.send("rooms\n");
    b1.expect("101：1\n");
    b1.expect("tea：2\n");
    // B's history of tea holds what a1 said on A.
    b2.send("history\n");
    let line = b2.line();
    assert!(
        line.ends_with(&format!("]{}", a1.said("tea time"))),
        "{line:?}"
    );
    b2.expect("历史消息结束（1 条）\n");
    // A private message still crosses rooms and servers.
    whisper(&mut b1, &mut a1, "across");
    for u in [&mut a1, &mut b1, &mut b2] {
        u.silence(Duration::from_millis(300));
    }
}

#[test]
fn concurrent_renames_to_one_name_on_two_servers_have_one_winner() {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &[]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    let mut wins = [0; 2];
    for round in 0..20 {
        let name = format!("race{round}");
        let line = format!("rename|{name}\n");
        // Both requests leave before either answer is read.
        if round % 2 == 0 {
            a1.send(&line);
            b1.send(&line);
        } else {
            b1.send(&line);
            a1.send(&line);
        }
        let won = format!("您已更新用户名：{name}\n");
        let answers = [a1.line(), b1.line()];
        let winners: Vec<usize> = (0..2).filter(|&i| answers[i] == won).collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        let loser = 1 - winners[0];
        assert_eq!(answers[loser], TAKEN, "round {round}: {answers:?}");
        wins[winners[0]] += 1;
        if winners[0] == 0 {
            a1.name = name;
        } else {
            b1.name = name;
        }
    }
    // The names each ended with are theirs on both servers, once each server has heard of
    // the other's last rename (a broadcast after it shows that).
    for u in [&mut a1, &mut b1] {
        u.send("my final name\n");
    }
    let said = [a1.said("my final name"), b1.said("my final name")];
    for u in [&mut a1, &mut b1] {
        assert_eq!(u.lines_sorted(2), sorted(said.to_vec()));
    }
    whisper(&mut a1, &mut b1, "to b");
    whisper(&mut b1, &mut a1, "to a");
    assert_eq!(wins.iter().sum::<i32>(), 20);
}

/// A name taken on one server is reachable from another at once: the whisper right after
/// the rename answer must not meet `不存在该用户` while the rename is still on its way
/// through Redis (the server asks Redis when its replica does not know a name).
#[test]
fn a_fresh_rename_is_reachable_from_another_server_at_once() {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &[]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    a1.rename("sender");
    for round in 0..20 {
        b1.rename(&format!("fresh{round}"));
        whisper(&mut a1, &mut b1, &format!("hello {round}"));
    }
    a1.send("to|nobody-anywhere|x\n");
    a1.expect(NO_SUCH_USER);
}

/// The HTTP API's `sendMessage` routes like `to|`: a name just taken on another server is
/// found at once (the server asks Redis when its replica does not know the name yet), and
/// a name nobody has is refused with `sendResults: false`.
#[test]
fn the_api_s_send_message_reaches_a_fresh_rename_on_another_server_at_once() {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &["--http-port", "0"]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);
    let a_api = a.http.unwrap();
    let mut b1 = join(&b, "B");
    for round in 0..20 {
        let name = format!("fresh{round}");
        b1.rename(&name);
        let answer = post_raw(
            a_api,
            "/user/sendMessage",
            &format!("userID={name}&message=hello+{round}&appID=101"),
        );
        let delivered = b1.try_line(READ_TIMEOUT);
        assert_eq!(
            answer,
            (
                200,
                r#"{"code":200,"msg":"Success","data":{"sendResults":true}}"#.to_owned()
            ),
            "round {round}: sendMessage to {name} on A; B's user got {delivered:?}"
        );
        assert_eq!(
            delivered.as_deref(),
            Some(format!("system对您说hello {round}\n").as_str()),
            "round {round}"
        );
    }
    assert_eq!(
        post_raw(
            a_api,
            "/user/sendMessage",
            "userID=nobody-anywhere&message=x&appID=101"
        ),
        (
            200,
            r#"{"code":1009,"msg":"操作失败","data":{"sendResults":false}}"#.to_owned()
        )
    );
    b1.silence(Duration::from_millis(300));
}

#[test]
fn broadcasts_reach_every_user_of_three_servers_once_and_in_order() {
    const N: usize = 50;
    let redis = Redis::start();
    let servers: Vec<Server> = ["A", "B", "C"]
        .iter()
        .map(|id| node(&redis.url(), id, &[]))
        .collect();
    redis.wait_ready(&["A", "B", "C"]);
    let mut users: Vec<User> = Vec::new();
    for (server, id) in servers.iter().zip(["A", "B", "C"]) {
        let earlier: Vec<&User> = users.iter().collect();
        let u = join_after(server, id, &earlier);
        let online = u.online();
        for earlier in users.iter_mut() {
            earlier.expect(&online);
        }
        users.push(u);
    }
    // Every user sends N numbered lines at once (one write each), all three before anyone
    // reads: the servers interleave them, but each sender's order must hold.
    for u in users.iter_mut() {
        let burst: String = (1..=N).map(|i| format!("msg {i} of {N}\n")).collect();
        u.send(&burst);
    }
    let senders: Vec<(String, String)> = users
        .iter()
        .map(|u| (format!("[{}]{}:", u.addr, u.name), u.name.clone()))
        .collect();
    for u in users.iter_mut() {
        let mut got: Vec<Vec<usize>> = vec![Vec::new(); senders.len()];
        for _ in 0..N * senders.len() {
            let line = u.line();
            let (i, rest) = senders
                .iter()
                .enumerate()
                .find_map(|(i, (prefix, _))| line.strip_prefix(prefix.as_str()).map(|r| (i, r)))
                .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", u.name));
            let n: usize = rest
                .strip_prefix("msg ")
                .and_then(|r| r.strip_suffix(&format!(" of {N}\n")))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", u.name));
            got[i].push(n);
        }
        for (i, seq) in got.iter().enumerate() {
            let want: Vec<usize> = (1..=N).collect();
            assert_eq!(
                seq, &want,
                "{} got {}'s broadcasts out of order, duplicated or lost",
                u.name, senders[i].1
            );
        }
        u.silence(Duration::from_millis(300));
    }
}

#[test]
fn a_websocket_user_and_a_line_user_on_two_servers_and_the_http_api() {
    let redis = Redis::start();
    let web = ["--ws-port", "0", "--http-port", "0"];
    let a = node(&redis.url(), "A", &web);
    let b = node(&redis.url(), "B", &web);
    redis.wait_ready(&["A", "B"]);
    let (a_api, b_api) = (a.http.unwrap(), b.http.unwrap());

    let mut lin = join(&b, "B");
    lin.rename("lin");
    // A name held on another server cannot be logged in with.
    let mut ws = ws_connect(a.web.unwrap(), "/im");
    assert_eq!(im_login(&mut ws, "lin")["code"], 1009);
    assert_eq!(im_login(&mut ws, "webby")["code"], 200);
    let ws_addr = ws.get_ref().local_addr().unwrap().to_string();
    lin.expect(&format!("[{ws_addr}]webby:已上线\n"));
    lin.send("rename|webby\n");
    lin.expect(TAKEN);

    // WebSocket -> line, to the room.
    ws_send(
        &mut ws,
        json!({"seq":"2","cmd":"msg","data":{"msg":"from the web 你好"}}),
    );
    lin.expect(&format!("[{ws_addr}]webby:from the web 你好\n"));
    let answer = ws_recv_until(&mut ws, "answer 2", |v| v["seq"] == "2");
    assert_eq!(answer["response"]["code"], 200);
    // Line -> WebSocket, to the room.
    lin.send("hello web\n");
    lin.expect(&lin.said("hello web"));
    let v = ws_recv_until(&mut ws, "lin's broadcast", |v| {
        v["cmd"] == "msg" && v["response"]["data"]["from"] == "lin"
    });
    assert_eq!(v["response"]["data"]["msg"], "hello web");
    // Line -> WebSocket, private.
    lin.send("to|webby|just you\n");
    let v = ws_recv_until(&mut ws, "lin's whisper", |v| {
        v["cmd"] == "msg" && v["response"]["data"]["msg"] == "just you"
    });
    assert_eq!(v["response"]["data"]["from"], "lin");
    assert_eq!(v["response"]["data"]["target"], "webby");
    // WebSocket -> line, private; and to nobody.
    ws_send(
        &mut ws,
        json!({"seq":"3","cmd":"msg","data":{"target":"lin","msg":"back at you"}}),
    );
    lin.expect("webby对您说back at you\n");
    let answer = ws_recv_until(&mut ws, "answer 3", |v| v["seq"] == "3");
    assert_eq!(answer["response"]["code"], 200);
    ws_send(
        &mut ws,
        json!({"seq":"4","cmd":"msg","data":{"target":"nobody","msg":"x"}}),
    );
    let answer = ws_recv_until(&mut ws, "answer 4", |v| v["seq"] == "4");
    assert_eq!(answer["response"]["code"], 1009);
    // A line user arriving on B enters the WebSocket user's room on A.
    let mut l2 = join(&b, "B");
    lin.expect(&l2.online());
    let v = ws_recv_until(&mut ws, "l2's enter", |v| {
        v["cmd"] == "enter" && v["response"]["data"]["from"] == l2.name
    });
    assert_eq!(v["response"]["data"]["msg"], "哈喽~");
    // `who` on B lists A's WebSocket user.
    lin.send("who\n");
    assert_eq!(
        lin.lines_sorted(3),
        sorted(vec![
            lin.who_entry(),
            l2.who_entry(),
            format!("[{ws_addr}]webby:在线...\n"),
        ])
    );

    // The HTTP API answers for the whole cluster, on either server.
    let everyone = sorted(vec![l2.name.clone(), "lin".into(), "webby".into()]);
    assert_eq!(user_list(b_api), everyone);
    assert_eq!(user_list(a_api), everyone);
    assert!(is_online(b_api, "webby"));
    assert!(is_online(a_api, "lin"));
    assert!(!is_online(b_api, "ghost"));
    // B's API to A's WebSocket user.
    let v = post(
        b_api,
        "/user/sendMessage",
        "appID=101&userID=webby&msgID=c1&message=from+B+%E4%BD%A0%E5%A5%BD",
    );
    assert_eq!(v["data"]["sendResults"], true, "{v}");
    let v = ws_recv_until(&mut ws, "B's API message", |v| {
        v["response"]["data"]["from"] == "system"
    });
    assert_eq!(v["response"]["data"]["msg"], "from B 你好");
    // A's API to B's line user.
    let v = post(
        a_api,
        "/user/sendMessage",
        "appID=101&userID=lin&msgID=c2&message=from+A",
    );
    assert_eq!(v["data"]["sendResults"], true, "{v}");
    lin.expect("system对您说from A\n");
    let v = post(
        b_api,
        "/user/sendMessage",
        "appID=101&userID=ghost&msgID=c3&message=x",
    );
    assert_eq!(v["code"], 1009, "{v}");

    // The WebSocket user leaves: B's users hear it, and the API forgets it.
    drop(ws);
    let off = format!("[{ws_addr}]webby:已下线\n");
    lin.expect(&off);
    l2.expect(&off);
    assert!(!is_online(b_api, "webby"));
    assert_eq!(
        user_list(b_api),
        sorted(vec![l2.name.clone(), "lin".into()])
    );
    lin.rename("webby");
}

#[test]
fn hub_clients_on_two_servers_send_to_each_other() {
    let redis = Redis::start();
    let web = ["--ws-port", "0"];
    let a = node(&redis.url(), "A", &web);
    let b = node(&redis.url(), "B", &web);
    redis.wait_ready(&["A", "B"]);
    let mut h7 = ws_connect(a.web.unwrap(), "/ws/7");
    // 7 sees its own presence notice once it has joined.
    ws_recv_until(&mut h7, "7's own presence", |v| v["type"] == 0);
    let mut h8 = ws_connect(b.web.unwrap(), "/ws/8");
    let seen = ws_recv_until(&mut h7, "8's presence", |v| {
        v["type"] == 0 && v["sender"] == 8
    });
    assert_eq!(
        seen,
        json!({"type":0,"sender":8,"receiver":0,"content":"已上线"})
    );
    h7.send(Message::text(
        r#"{"type":1,"sender":7,"receiver":8,"content":"hello 8"}"#,
    ))
    .unwrap();
    let got = ws_recv_until(&mut h8, "7's message", |v| v["type"] == 1);
    assert_eq!(
        got,
        json!({"type":1,"sender":7,"receiver":8,"content":"hello 8"})
    );
    assert_eq!(
        ws_recv_until(&mut h7, "system reply", |v| v["type"] == 2),
        json!({"type":2,"sender":0,"receiver":8,"content":"success send"})
    );
    h8.send(Message::text(
        r#"{"type":1,"receiver":7,"content":"hello 7"}"#,
    ))
    .unwrap();
    assert_eq!(
        ws_recv_until(&mut h8, "system reply", |v| v["type"] == 2),
        json!({"type":2,"sender":0,"receiver":7,"content":"success send"})
    );
    let got = ws_recv_until(&mut h7, "8's message", |v| v["type"] == 1);
    assert_eq!(got["content"], "hello 7");
    assert_eq!(got["sender"], 8);
    // A hub id held on another server: the newcomer is closed with 1008.
    let mut dup = ws_connect(a.web.unwrap(), "/ws/8");
    assert_eq!(close_code(&mut dup), 1008);
    // 8 is still there.
    h7.send(Message::text(
        r#"{"type":1,"receiver":8,"content":"still 8?"}"#,
    ))
    .unwrap();
    let got = ws_recv_until(&mut h8, "7's second message", |v| v["type"] == 1);
    assert_eq!(got["content"], "still 8?");
}

#[test]
fn a_killed_server_s_users_go_offline_within_the_node_timeout() {
    const TIMEOUT_SECS: u64 = 3;
    let slack = Duration::from_secs(2);
    let redis = Redis::start();
    let timeout = ["--node-timeout", "3"];
    let a = node(&redis.url(), "A", &timeout);
    let mut b = node(&redis.url(), "B", &timeout);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    b1.rename("bee");
    let b2 = join_after(&b, "B", &[&a1]);
    a1.expect(&b2.online());
    let mut a2 = join_after(&a, "A", &[&b1, &b2]);
    a1.expect(&a2.online());
    a1.send("who\n");
    assert_eq!(
        a1.lines_sorted(4),
        sorted(vec![
            a1.who_entry(),
            a2.who_entry(),
            b1.who_entry(),
            b2.who_entry()
        ])
    );

    let killed = Instant::now();
    b.child.kill().expect("SIGKILL server B");
    let _ = b.child.wait();
    let gone = sorted(vec![b1.offline(), b2.offline()]);
    assert_eq!(a1.lines_sorted(2), gone);
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(TIMEOUT_SECS) + slack,
        "B's users were announced offline after {took:?} (node timeout {TIMEOUT_SECS} s)"
    );
    assert_eq!(a2.lines_sorted(2), gone);
    // Gone from the lists, and their names free.
    a1.send("to|bee|x\n");
    a1.expect(NO_SUCH_USER);
    a1.send("who\n");
    assert_eq!(
        a1.lines_sorted(2),
        sorted(vec![a1.who_entry(), a2.who_entry()])
    );
    a1.send(&format!("to|{}|x\n", b2.name));
    a1.expect(NO_SUCH_USER);
    a1.rename("bee");
    a2.send("to|bee|hi bee\n");
    a1.expect(&format!("{}对您说hi bee\n", a2.name));
    // A server joining later sees the survivors, and the new holder of the name.
    let c = node(&redis.url(), "C", &timeout);
    redis.wait_ready(&["C"]);
    let mut c1 = join_after(&c, "C", &[&a1, &a2]);
    a1.expect(&c1.online());
    a2.expect(&c1.online());
    c1.send("rename|bee\n");
    c1.expect(TAKEN);
}

/// Two servers (A: `ay` and another user; B: `bee`) on a Redis that is then killed.
struct RestartCase {
    redis: Redis,
    _servers: [Server; 2],
    a1: User,
    a2: User,
    b1: User,
}

impl RestartCase {
    fn new() -> RestartCase {
        let redis = Redis::start();
        let url = redis.url();
        let a = node(&url, "A", &[]);
        let b = node(&url, "B", &[]);
        redis.wait_ready(&["A", "B"]);
        let mut a1 = join(&a, "A");
        let mut a2 = join(&a, "A");
        a1.expect(&a2.online());
        let mut b1 = join_after(&b, "B", &[&a1, &a2]);
        a1.expect(&b1.online());
        a2.expect(&b1.online());
        b1.rename("bee");
        a1.rename("ay");
        RestartCase {
            redis,
            _servers: [a, b],
            a1,
            a2,
            b1,
        }
    }

    /// Kills Redis; checks the outage's answers and that local chat goes on.
    fn outage(&mut self) {
        let RestartCase { a1, a2, b1, .. } = self;
        self.redis.kill();
        // The rename's answer (an immediate refusal, or a claim failed when the link
        // broke) also shows A has seen the outage.
        a2.send("rename|newname\n");
        a2.expect(UNAVAILABLE);
        a1.send("to|bee|are you there\n");
        a1.expect(UNAVAILABLE);
        // A broadcast tells its sender, once per outage, that it stayed here.
        a1.send("local only\n");
        a1.expect(&a1.said("local only"));
        a1.expect(LOCAL_ONLY);
        a2.expect(&a1.said("local only"));
        a1.send("still local\n");
        a1.expect(&a1.said("still local"));
        a2.expect(&a1.said("still local"));
        a2.send("to|ay|still here\n");
        a1.expect(&format!("{}对您说still here\n", a2.name));
        b1.send("alone on b\n");
        b1.expect(&b1.said("alone on b"));
        b1.expect(LOCAL_ONLY);
        b1.send("rename|another\n");
        b1.expect(UNAVAILABLE);
        b1.send("to|ay|x\n");
        b1.expect(UNAVAILABLE);
    }

    /// Restarts Redis on the same port.
    fn restart(&mut self) {
        let port = self.redis.port;
        self.redis = Redis::start_on(port);
    }
}

#[test]
fn chat_survives_a_redis_restart_and_the_cluster_comes_back() {
    let mut case = RestartCase::new();
    case.outage();
    case.restart();
    let RestartCase { a1, a2, b1, .. } = &mut case;
    // Poll: a broadcast from A every 300 ms until one reaches B (the servers reconnect by
    // themselves, after a backoff of at most 2 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let prefix = a1.said("probe ").trim_end().to_owned();
    let probe_number = |line: &str| -> usize {
        line.strip_prefix(&prefix)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("bee got an unexpected line {line:?}"))
    };
    let mut sent = 0;
    let mut last = loop {
        assert!(
            Instant::now() < deadline,
            "no broadcast crossed servers within 10 s of Redis coming back"
        );
        a1.send(&format!("probe {sent}\n"));
        a1.expect(&a1.said(&format!("probe {sent}")));
        a2.expect(&a1.said(&format!("probe {sent}")));
        sent += 1;
        if let Some(line) = b1.try_line(Duration::from_millis(300)) {
            break probe_number(&line);
        }
    };
    // Probes published once B listens arrive in order, each once.
    while let Some(line) = b1.try_line(Duration::from_millis(300)) {
        let n = probe_number(&line);
        assert!(
            last < n && n < sent,
            "probe {n} after probe {last} of {sent}"
        );
        last = n;
    }
    // The users were never dropped: broadcasts cross both ways.
    a1.send("after the restart\n");
    let said = a1.said("after the restart");
    for u in [&mut *a1, &mut *a2, &mut *b1] {
        u.expect(&said);
    }
    b1.send("bee is back\n");
    let said = b1.said("bee is back");
    for u in [&mut *a1, &mut *a2, &mut *b1] {
        u.expect(&said);
    }
    // The names were claimed again in the new Redis.
    a2.send("rename|bee\n");
    a2.expect(TAKEN);
    b1.send("rename|ay\n");
    b1.expect(TAKEN);
    for u in [a1, a2, b1] {
        u.silence(Duration::from_millis(300));
    }
}

/// After Redis restarts, every server must know the others' users again: `to|` and `who`
/// work across servers. Three restarts, as the failure is a race.
#[test]
fn after_a_redis_restart_every_server_knows_every_user_again() {
    let mut case = RestartCase::new();
    for round in 0..3 {
        case.outage();
        case.restart();
        let RestartCase {
            redis, a1, a2, b1, ..
        } = &mut case;
        // Poll: a whisper to B's user every 300 ms until one gets through.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answers = Vec::new();
        for i in 0.. {
            assert!(
                Instant::now() < deadline,
                "round {round}: no whisper from A to B got through within 10 s of Redis \
                 coming back; ay's answers: {answers:?}; im:users in Redis: {:?}",
                redis.call(&["HKEYS", "im:users"]),
            );
            a1.send(&format!("to|bee|ping {round}.{i}\n"));
            if let Some(line) = b1.try_line(Duration::from_millis(300)) {
                assert!(
                    line.starts_with(&format!("ay对您说ping {round}.")),
                    "bee got an unexpected line {line:?}"
                );
                break;
            }
            while let Some(line) = a1.try_line(Duration::from_millis(10)) {
                assert!(
                    line == UNAVAILABLE || line == NO_SUCH_USER,
                    "ay got an unexpected line {line:?}"
                );
                answers.push((i, line));
            }
        }
        // Later pings, and answers to earlier ones, may still be on their way.
        while let Some(line) = b1.try_line(Duration::from_millis(300)) {
            assert!(
                line.starts_with(&format!("ay对您说ping {round}.")),
                "{line:?}"
            );
        }
        while let Some(line) = a1.try_line(Duration::from_millis(100)) {
            assert!(line == UNAVAILABLE || line == NO_SUCH_USER, "{line:?}");
        }
        // B knows A's users again: whispers both ways, and `who` everywhere.
        whisper(b1, a1, &format!("pong {round}"));
        let everyone = sorted(vec![a1.who_entry(), a2.who_entry(), b1.who_entry()]);
        for u in [&mut *a1, &mut *a2, &mut *b1] {
            u.send("who\n");
            assert_eq!(
                u.lines_sorted(3),
                everyone,
                "round {round}: {}'s who",
                u.name
            );
        }
    }
}

#[test]
fn a_stalled_redis_does_not_stall_local_chat() {
    let stalled = StalledRedis::start();
    let a = node(&stalled.url(), "S", &[]);
    let mut u1 = join(&a, "S");
    let mut u2 = join(&a, "S");
    u1.expect(&u2.online());
    // Over several of the link's up-for-2-s, give-up, reconnect cycles, every line
    // arrives: a liveness check (1 s), not a speed claim.
    let liveness = Duration::from_secs(1);
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let text = format!("tick {i}");
        let sent = Instant::now();
        u1.send(&format!("{text}\n"));
        let want = u1.said(&text);
        for u in [&mut u2, &mut u1] {
            let got = u
                .try_line(liveness)
                .unwrap_or_else(|| panic!("{text:?} did not reach {} within {liveness:?}", u.name));
            assert_eq!(got, want);
        }
        if i == 0 {
            // Told once (the outage never ends here) that it reached nobody else.
            u1.expect(LOCAL_ONLY);
        }
        assert!(
            sent.elapsed() <= liveness,
            "{text:?} took {:?}",
            sent.elapsed()
        );
        // A whisper by the default name (the only kind: renames need Redis).
        u2.send(&format!("to|{}|psst {i}\n", u1.name));
        let got = u1.try_line(liveness);
        let want = format!("{}对您说psst {i}\n", u2.name);
        assert_eq!(got.as_deref(), Some(want.as_str()), "within {liveness:?}");
        i += 1;
        thread::sleep(Duration::from_millis(100));
    }
    // A rename needs Redis: it is refused after the reply timeout at most, not never; and
    // while it waits, the others chat on.
    for k in 0..2 {
        let asked = Instant::now();
        u1.send("rename|stalled\n");
        let text = format!("meanwhile {k}");
        u2.send(&format!("{text}\n"));
        let said = u2.said(&text);
        let got = u2.try_line(liveness);
        assert_eq!(
            got.as_deref(),
            Some(said.as_str()),
            "{text:?} within {liveness:?}"
        );
        if k == 0 {
            u2.expect(LOCAL_ONLY);
        }
        let mut got = Vec::new();
        while got.len() < 2 && asked.elapsed() < Duration::from_secs(5) {
            got.extend(u1.try_line(Duration::from_secs(5).saturating_sub(asked.elapsed())));
        }
        got.sort();
        assert_eq!(
            got,
            sorted(vec![said, UNAVAILABLE.to_owned()]),
            "the rename's answer within 5 s, and the chat (after {:?})",
            asked.elapsed()
        );
    }
    u1.silence(Duration::from_millis(300));
    u2.silence(Duration::from_millis(300));
}

/// In a cluster a line user's default name is `ip:port@NODE`: `to|` must find that user by
/// it, on its own server and from another one, like any other name.
#[test]
fn whispers_find_users_by_their_default_cluster_names() {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &[]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut a2 = join(&a, "A");
    a1.expect(&a2.online());
    let mut b1 = join_after(&b, "B", &[&a1, &a2]);
    a1.expect(&b1.online());
    a2.expect(&b1.online());
    // On the same server: no error for the sender, the whisper for the recipient.
    a2.send(&format!("to|{}|local psst\n", a1.name));
    a2.silence(Duration::from_millis(300));
    a1.expect(&format!("{}对您说local psst\n", a2.name));
    // From another server, both ways.
    b1.send(&format!("to|{}|remote psst\n", a1.name));
    b1.silence(Duration::from_millis(300));
    a1.expect(&format!("{}对您说remote psst\n", b1.name));
    a1.send(&format!("to|{}|psst back\n", b1.name));
    a1.silence(Duration::from_millis(300));
    b1.expect(&format!("{}对您说psst back\n", a1.name));
    for u in [&mut a1, &mut a2, &mut b1] {
        u.silence(Duration::from_millis(300));
    }
}

/// How many PUBLISH commands `redis` has run (`INFO commandstats`).
fn publishes(redis: &Redis) -> u64 {
    let Resp::Bulk(Some(info)) = redis.call(&["INFO", "commandstats"]) else {
        panic!("INFO commandstats is not a bulk string");
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .map_or(0, |rest| {
            let calls = rest.split(',').next().unwrap_or_default();
            calls
                .parse()
                .unwrap_or_else(|_| panic!("cmdstat_publish: {rest}"))
        })
}

/// The `i`-th whisper of a burst: bytes a batch must keep apart (a `|`, digits like a
/// length, the batch's own kind word, multi-byte UTF-8), and its number.
fn burst_text(i: usize) -> String {
    format!("{i}|many 12 你好 #{i}")
}

/// A line user's whispers to users of another server, written in one go (so the server
/// reads them in one turn): each recipient gets its own, byte for byte and in order,
/// though the sender's server published far fewer messages than whispers (a turn's
/// whispers to one server go in one PUBLISH); the sender hears nothing back.
#[test]
fn a_burst_of_whispers_to_another_server_arrives_in_order_in_few_publishes() {
    const WHISPERS: usize = 200;
    let (redis, _servers, [mut a1, mut b1, mut b2]) = a1_b1_b2();
    let for_b2 = |i: &usize| i.is_multiple_of(3);
    let mut burst = String::new();
    for i in 0..WHISPERS {
        let to = if for_b2(&i) { &b2 } else { &b1 };
        burst.push_str(&format!("to|{}|{}\n", to.name, burst_text(i)));
    }
    let before = publishes(&redis);
    a1.send(&burst);
    for (u, is_b2) in [(&mut b1, false), (&mut b2, true)] {
        for i in (0..WHISPERS).filter(|i| for_b2(i) == is_b2) {
            u.expect(&format!("{}对您说{}\n", a1.name, burst_text(i)));
        }
    }
    let published = publishes(&redis) - before;
    assert!(
        (1..=WHISPERS as u64 / 10).contains(&published),
        "{WHISPERS} whispers took {published} PUBLISHes"
    );
    eprintln!("{WHISPERS} whispers to another server in {published} PUBLISH(es)");
    for u in [&mut a1, &mut b1, &mut b2] {
        u.silence(Duration::from_millis(300));
    }
}

/// A whisper and then a leave in one write: the whisper waits for the end of the turn's
/// batch, the offline notice does not, yet the other server hears them in that order.
#[test]
fn a_whisper_then_a_leave_reach_the_other_server_in_that_order() {
    let (_redis, _servers, [mut a1, mut b1, mut b2]) = a1_b1_b2();
    a1.send(&format!("to|{}|goodbye\n", b1.name));
    a1.stream.shutdown(std::net::Shutdown::Write).unwrap();
    b1.expect(&format!("{}对您说goodbye\n", a1.name));
    b1.expect(&a1.offline());
    b2.expect(&a1.offline());
}

/// With Redis stopped (SIGSTOP), a burst of whispers to another server (one PUBLISH) gets
/// no receiver count: every whisper of it is answered `集群暂不可用` once the reply is
/// late, none is left in silence; the next one, with the link down, at once. Whatever
/// Redis runs after it resumes reaches the recipient at most once, in order.
#[test]
fn every_whisper_of_a_burst_is_answered_unavailable_while_redis_is_stopped() {
    const WHISPERS: usize = 20;
    let (redis, _servers, [mut a1, mut b1, _b2]) = a1_b1_b2();
    redis.signal("STOP");
    let burst: String = (0..WHISPERS)
        .map(|i| format!("to|{}|{}\n", b1.name, burst_text(i)))
        .collect();
    a1.send(&burst);
    // The reply timeout is 2 s: each answer within the read timeout (5 s).
    for _ in 0..WHISPERS {
        a1.expect(UNAVAILABLE);
    }
    a1.send(&format!("to|{}|after\n", b1.name));
    a1.expect(UNAVAILABLE);
    redis.signal("CONT");
    a1.silence(Duration::from_millis(300));
    let got = drain(&mut b1, Duration::from_secs(1));
    let sent: Vec<String> = (0..WHISPERS)
        .map(|i| format!("{}对您说{}\n", a1.name, burst_text(i)))
        .collect();
    let mut rest = sent.iter();
    assert!(
        got.iter().all(|line| rest.any(|s| s == line)),
        "late whispers out of order, twice, or unknown: {got:?}"
    );
    eprintln!("{} of {WHISPERS} stalled whispers arrived late", got.len());
}

// ---------------------------------------------------------------------------------------
// A Redis with a password.
// ---------------------------------------------------------------------------------------

/// A Redis with `requirepass secret`, and an ACL user `chat` whose password needs
/// percent-encoding in a URL.
fn redis_with_passwords() -> Redis {
    Redis::start_with(&["--requirepass", "secret"], &["secret"]).with_user("chat", "p@ss:w/rd")
}

impl Redis {
    /// Adds an ACL user with every right and `password`.
    fn with_user(self, user: &str, password: &str) -> Redis {
        let pass = format!(">{password}");
        let answer = self.call(&["ACL", "SETUSER", user, "on", &pass, "~*", "&*", "+@all"]);
        assert_eq!(answer, Resp::Simple("OK".into()));
        self
    }
}

/// How many `AUTH`s Redis refused, from its `ACL LOG` (entries of reason `auth`, each with a
/// `count` of the like failures it stands for).
fn failed_auths(redis: &Redis) -> i64 {
    let Resp::Array(entries) = redis.call(&["ACL", "LOG"]) else {
        panic!("ACL LOG is not an array");
    };
    let field = |entry: &[Resp], name: &str| {
        entry
            .chunks(2)
            .find(|kv| kv[0] == Resp::Bulk(Some(name.as_bytes().to_vec())))
            .map(|kv| kv[1].clone())
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Resp::Array(entry) => Some(entry.as_slice()),
            _ => None,
        })
        .filter(|e| field(e, "reason") == Some(Resp::Bulk(Some(b"auth".to_vec()))))
        .map(|e| match field(e, "count") {
            Some(Resp::Int(n)) => n,
            other => panic!("ACL LOG count: {other:?}"),
        })
        .sum()
}

/// A server in the cluster behind `redis_url` whose stderr (at `RUST_LOG=warn`) is
/// collected rather than shown.
fn node_logged(redis_url: &str, id: &str) -> (Server, Arc<Mutex<Vec<u8>>>) {
    let mut child = common::server_cmd()
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--redis", redis_url, "--node-id", id])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let mut stderr = child.stderr.take().unwrap();
    // Ends when the server exits (killed on drop) and its stderr closes.
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let server = Server {
        addr: first.trim().parse().unwrap_or_else(|_| panic!("{first:?}")),
        web: None,
        http: None,
        tls: None,
        wss: None,
        child,
    };
    (server, log)
}

/// Waits at most 5 s for a line of `log` containing `want`, and returns the whole log.
fn wait_log(log: &Mutex<Vec<u8>>, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {want:?} in 5 s; stderr: {text}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn servers_chat_across_a_redis_with_a_password_or_an_acl_user() {
    let redis = redis_with_passwords();
    let port = redis.port;
    // A logs in with the password alone, B as the ACL user (percent-encoded password).
    let a = node(&format!("redis://:secret@127.0.0.1:{port}"), "A", &[]);
    let b = node(
        &format!("redis://chat:p%40ss%3Aw%2Frd@127.0.0.1:{port}/0"),
        "B",
        &[],
    );
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    b1.rename("bee");
    a1.rename("ay");
    a1.send("hello over a password\n");
    let said = a1.said("hello over a password");
    a1.expect(&said);
    b1.expect(&said);
    whisper(&mut b1, &mut a1, "psst");
    whisper(&mut a1, &mut b1, "psst back");
    a1.send("rename|bee\n");
    a1.expect(TAKEN);
    a1.silence(Duration::from_millis(300));
    b1.silence(Duration::from_millis(300));
}

#[test]
fn a_wrong_password_is_one_clear_line_and_local_chat_goes_on() {
    let redis = redis_with_passwords();
    let port = redis.port;
    let (server, log) = node_logged(&format!("redis://:hunter2@127.0.0.1:{port}"), "W");
    let refused = "Redis refused the password: WRONGPASS";
    wait_log(&log, refused);
    // Local chat works meanwhile; what needs Redis answers as when Redis is down.
    let mut u1 = join(&server, "W");
    let mut u2 = join(&server, "W");
    u1.expect(&u2.online());
    u1.send("local only\n");
    let said = u1.said("local only");
    u1.expect(&said);
    u1.expect(LOCAL_ONLY);
    u2.expect(&said);
    u2.send(&format!("to|{}|still here\n", u1.name));
    u1.expect(&format!("{}对您说still here\n", u2.name));
    u1.send("rename|newname\n");
    u1.expect(UNAVAILABLE);
    u1.send("to|somebody-elsewhere|hi\n");
    u1.expect(UNAVAILABLE);
    // Retried with the backoff (several tries in 3 s), logged once, never the password.
    thread::sleep(Duration::from_secs(3));
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert_eq!(text.matches(refused).count(), 1, "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // Retried, each time on every link: Redis logged several refused AUTHs.
    let tries = failed_auths(&redis);
    assert!(tries >= 4, "{tries} failed AUTHs in 3 s");
    u1.silence(Duration::from_millis(300));
    u2.silence(Duration::from_millis(300));
}

#[test]
fn no_password_for_a_redis_that_wants_one_is_one_clear_line() {
    let redis = redis_with_passwords();
    let (server, log) = node_logged(&redis.url(), "N");
    let text = wait_log(&log, "Redis wants a password");
    assert!(text.contains("NOAUTH"), "{text}");
    let mut u1 = join(&server, "N");
    u1.send("rename|newname\n");
    u1.expect(UNAVAILABLE);
    thread::sleep(Duration::from_millis(2500));
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert_eq!(text.matches("Redis wants a password").count(), 1, "{text}");
}

// ---------------------------------------------------------------------------------------
// Room streams: the transport of broadcasts, and the history of each room.
// ---------------------------------------------------------------------------------------

/// `history` (all kept): the lines of the answer, end line included.
fn history(u: &mut User) -> Vec<String> {
    u.send("history\n");
    let mut lines = Vec::new();
    loop {
        let line = u.line();
        let end = line.starts_with("历史消息结束（");
        lines.push(line);
        if end {
            return lines;
        }
        assert!(lines.len() < 200, "{}: no end of history", u.name);
    }
}

/// The text after `[time]` of a history line.
fn untimed(line: &str) -> &str {
    line.split_once(']').map_or(line, |(_, rest)| rest)
}

#[test]
fn rooms_span_servers_and_their_history_is_the_same_from_each() {
    let (redis, _servers, [mut a1, mut b1, mut b2]) = a1_b1_b2();
    // a1 (on A) and b1 (on B) meet in 茶室; b2 stays in 101.
    a1.send("room|茶室\n");
    a1.expect("您已进入房间：茶室\n");
    b1.expect(&a1.offline());
    b2.expect(&a1.offline());
    b1.send("room|茶室\n");
    b1.expect("您已进入房间：茶室\n");
    a1.expect(&b1.online());
    b2.expect(&b1.offline());

    // Broadcasts cross servers within the room, and stay in it.
    a1.send("tea from a\n");
    let said = a1.said("tea from a");
    for u in [&mut a1, &mut b1] {
        u.expect(&said);
    }
    b1.send("tea from b\n");
    let said = b1.said("tea from b");
    for u in [&mut b1, &mut a1] {
        u.expect(&said);
    }
    b2.send("lobby\n");
    b2.expect(&b2.said("lobby"));
    // `who` and `rooms` count the other server's users by room.
    b1.send("who\n");
    assert_eq!(
        b1.lines_sorted(2),
        sorted(vec![a1.who_entry(), b1.who_entry()])
    );
    b2.send("rooms\n");
    b2.expect("101：1\n");
    b2.expect("茶室：2\n");

    // Every server serves the same history: Redis numbered and timed each message once.
    let from_a = history(&mut a1);
    let from_b = history(&mut b1);
    assert_eq!(from_a, from_b);
    let texts: Vec<&str> = from_a.iter().map(|l| untimed(l)).collect();
    assert_eq!(
        texts,
        [
            a1.said("tea from a").as_str(),
            b1.said("tea from b").as_str(),
            "历史消息结束（2 条）\n"
        ]
    );
    let ids = redis.call(&["XRANGE", "im:stream:茶室", "-", "+"]);
    let Resp::Array(entries) = ids else {
        panic!("XRANGE: {ids:?}")
    };
    let ids: Vec<Resp> = entries
        .into_iter()
        .map(|e| match e {
            Resp::Array(mut parts) => parts.remove(0),
            other => other,
        })
        .collect();
    assert_eq!(
        ids,
        [
            Resp::Bulk(Some(b"1-0".to_vec())),
            Resp::Bulk(Some(b"2-0".to_vec()))
        ]
    );

    // b1 leaves: B no longer reads 茶室; coming back, it reads from then on.
    b1.send("room|101\n");
    b1.expect("您已进入房间：101\n");
    a1.expect(&b1.offline());
    b2.expect(&b1.online());
    a1.send("anyone?\n");
    a1.expect(&a1.said("anyone?"));
    // In Redis before b1 comes back (a1's own copy may be out first): so before b1 came.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.call(&["XLEN", "im:stream:茶室"]) != Resp::Int(3) {
        assert!(Instant::now() < deadline, "anyone? did not reach Redis");
        thread::sleep(Duration::from_millis(20));
    }
    b1.send("room|茶室\n");
    b1.expect("您已进入房间：茶室\n");
    a1.expect(&b1.online());
    b2.expect(&b1.offline());
    a1.send("welcome back\n");
    a1.expect(&a1.said("welcome back"));
    b1.expect(&a1.said("welcome back"));
    let from_b = history(&mut b1);
    assert_eq!(from_b.len(), 5, "{from_b:?}");
    assert_eq!(from_b, history(&mut a1));
    for u in [&mut a1, &mut b1, &mut b2] {
        u.silence(Duration::from_millis(300));
    }
}

/// `/im` pushes carry the room's number, the same on every server (Redis numbers each
/// broadcast), so a page that reconnects to another server recovers exactly what it missed.
#[test]
fn im_users_see_the_same_numbers_on_every_server() {
    let redis = Redis::start();
    let web = ["--ws-port", "0"];
    let a = node(&redis.url(), "A", &web);
    let b = node(&redis.url(), "B", &web);
    redis.wait_ready(&["A", "B"]);
    let mut wa = ws_connect(a.web.unwrap(), "/im");
    assert_eq!(im_login(&mut wa, "wa")["code"], 200);
    let mut a1 = join(&a, "A");
    let mut wb = ws_connect(b.web.unwrap(), "/im");
    assert_eq!(im_login(&mut wb, "wb")["code"], 200);
    let online = a1.line();
    assert!(online.ends_with("]wb:已上线\n"), "{online:?}");
    let pushed = |ws: &mut Ws, text: &str| -> Value {
        ws_recv_until(ws, text, |v| {
            v["cmd"] == "msg" && v["response"]["data"]["msg"] == text
        })["response"]["data"]
            .clone()
    };
    a1.send("one\n");
    a1.expect(&a1.said("one"));
    for ws in [&mut wa, &mut wb] {
        assert_eq!(pushed(ws, "one")["seq"], 1);
    }
    ws_send(&mut wb, json!({"seq":"2","cmd":"msg","data":{"msg":"two"}}));
    for ws in [&mut wb, &mut wa] {
        assert_eq!(pushed(ws, "two")["seq"], 2);
    }
    let two = a1.line();
    assert!(two.ends_with("]wb:two\n"), "{two:?}");
    // Recovery from either server: the same messages, the same numbers.
    for ws in [&mut wa, &mut wb] {
        ws_send(ws, json!({"seq":"h","cmd":"history","data":{"since":1}}));
        let v = ws_recv_until(ws, "history", |v| v["cmd"] == "history");
        let data = &v["response"]["data"];
        assert_eq!(data["gap"], false, "{v}");
        assert_eq!(data["messages"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(data["messages"][0]["seq"], 2, "{v}");
        assert_eq!(data["messages"][0]["content"], "two", "{v}");
        assert_eq!(data["messages"][0]["sender"], "wb", "{v}");
    }
}

/// Numbers the lines `[addr]name:m N` of `prefix` in `lines`.
fn numbered(lines: &[String], prefix: &str) -> Vec<usize> {
    lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix(prefix)?
                .strip_prefix("m ")?
                .trim_end()
                .parse()
                .ok()
        })
        .collect()
}

/// Every line `u` gets until it is quiet for `quiet` (at most 30 s in all).
fn drain(u: &mut User, quiet: Duration) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while let Some(line) = u.try_line(quiet) {
        lines.push(line);
        assert!(Instant::now() < deadline, "{}: no end of lines", u.name);
    }
    lines
}

/// Redis stopped (SIGSTOP) for 3 s while a user broadcasts every 50 ms: the other server
/// delivers every broadcast Redis took, once (it reads the room's stream from where it
/// left off), and whatever stayed here is told to its sender, once; a whisper during the
/// stall is answered `集群暂不可用` after the reply timeout (2 s), not lost in silence.
#[test]
fn a_redis_stall_loses_nothing_redis_took_and_delivers_nothing_twice() {
    const TOTAL: usize = 120;
    const STOP_AT: usize = 10;
    const CONT_AT: usize = 70; // 60 sends of 50 ms: a 3 s stall
    const WHISPER_AT: usize = 20;
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &[]);
    let b = node(&redis.url(), "B", &[]);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    let mut resumed = None;
    let mut sent_at = Vec::new();
    for i in 0..TOTAL {
        if i == STOP_AT {
            redis.signal("STOP");
        }
        if i == CONT_AT {
            redis.signal("CONT");
            resumed = Some(Instant::now());
        }
        a1.send(&format!("m {i}\n"));
        sent_at.push(Instant::now());
        if i == WHISPER_AT {
            a1.send(&format!("to|{}|psst\n", b1.name));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let resumed = resumed.unwrap();
    let got = drain(&mut b1, Duration::from_secs(3));
    let prefix = a1.said("");
    let prefix = prefix.trim_end();
    let delivered = numbered(&got, prefix);
    let whispered = got.iter().filter(|l| l.ends_with("对您说psst\n")).count();
    assert_eq!(
        delivered.len() + whispered,
        got.len(),
        "unexpected lines: {got:?}"
    );
    assert!(whispered <= 1, "{got:?}");
    let mut unique = delivered.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "delivered twice: {delivered:?}"
    );
    // Before the stall, and a second after it ended: everything, in order.
    let must: Vec<usize> = (0..TOTAL)
        .filter(|&i| i < STOP_AT || sent_at[i] >= resumed + Duration::from_secs(1))
        .collect();
    let missing: Vec<usize> = (0..TOTAL).filter(|i| !unique.contains(i)).collect();
    assert!(
        missing.iter().all(|i| !must.contains(i)),
        "lost outside the stall: {missing:?}"
    );
    // The sender: its own lines, the whisper refused once, and (if anything stayed
    // here) one notice for the whole outage.
    let mine = drain(&mut a1, Duration::from_millis(500));
    assert_eq!(numbered(&mine, prefix), (0..TOTAL).collect::<Vec<_>>());
    let count = |want: &str| mine.iter().filter(|l| *l == want).count();
    assert_eq!(count(UNAVAILABLE), 1, "{mine:?}");
    let told = count(LOCAL_ONLY);
    assert_eq!(told, usize::from(!missing.is_empty()), "{mine:?}");
    assert_eq!(mine.len(), TOTAL + 1 + told, "{mine:?}");
    eprintln!(
        "sent {TOTAL}, delivered on B {} (once each), stayed on A {} (sender told {told}x)",
        unique.len(),
        missing.len()
    );
}

/// Redis killed while server B sleeps (SIGSTOP), and restarted on the same port: with an
/// append-only file the stream survives and B, woken, delivers what it missed; without
/// persistence what Redis held is gone, but what was said after the restart still reaches
/// B (it sees the new data set by `im:epoch` and reads the new streams from their start).
fn restart_while_b_sleeps(persist: bool) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("imserver-aof-{}", common::redis::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = dir.to_string_lossy().into_owned();
    let extra: Vec<&str> = if persist {
        vec![
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir_arg,
        ]
    } else {
        vec!["--dir", &dir_arg]
    };
    let mut redis = Redis::start_with(&extra, &[]);
    let slow = ["--node-timeout", "30"];
    let a = node(&redis.url(), "A", &slow);
    let b = node(&redis.url(), "B", &slow);
    redis.wait_ready(&["A", "B"]);
    let mut a1 = join(&a, "A");
    let mut b1 = join_after(&b, "B", &[&a1]);
    a1.expect(&b1.online());
    a1.send("before\n");
    a1.expect(&a1.said("before"));
    b1.expect(&a1.said("before"));
    b.signal("STOP");
    a1.send("while b sleeps\n");
    a1.expect(&a1.said("while b sleeps"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.call(&["XLEN", "im:stream:101"]) != Resp::Int(2) {
        assert!(
            Instant::now() < deadline,
            "the broadcast did not reach Redis"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let port = redis.port;
    redis.kill();
    // Told once for the outage: for this broadcast, or for the last one if its answer was
    // lost with Redis (it is in the stream all the same).
    a1.send("redis down\n");
    assert_eq!(
        a1.lines_sorted(2),
        sorted(vec![a1.said("redis down"), LOCAL_ONLY.to_owned()])
    );
    redis = Redis::try_start_on(port, &extra, &[]).expect("redis-server restarts");
    redis.wait_ready(&["A"]);
    a1.send("after restart\n");
    a1.expect(&a1.said("after restart"));
    b.signal("CONT");
    let got = drain(&mut b1, Duration::from_secs(3));
    a1.silence(Duration::from_millis(300));
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    let prefix = a1.said("");
    got.iter()
        .map(|l| l.strip_prefix(prefix.trim_end()).unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn a_redis_restarted_from_its_append_only_file_resumes_every_stream() {
    assert_eq!(
        restart_while_b_sleeps(true),
        ["while b sleeps\n", "after restart\n"]
    );
}

#[test]
fn a_redis_restarted_empty_loses_what_it_held_but_not_what_came_after() {
    assert_eq!(restart_while_b_sleeps(false), ["after restart\n"]);
}

// ---------------------------------------------------------------------------------------
// One process per core: servers sharing a port (`--reuse-port`), and `--workers`.
// ---------------------------------------------------------------------------------------

/// Without `--reuse-port` on both sides, a port in use is today's one line and exit 1.
#[test]
fn sharing_a_port_takes_reuse_port_on_both_sides() {
    for (first, second) in [
        (&[][..], &[][..]),
        (&["--reuse-port"], &[]),
        (&[], &["--reuse-port"]),
    ] {
        let server = start(first);
        let port = server.addr.port().to_string();
        let out = server_cmd()
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(second)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{first:?} then {second:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err,
            format!(
                "imserver-mio: cannot listen on 127.0.0.1:{port}: \
                 Address already in use (os error 98)\n"
            )
        );
        assert!(out.stdout.is_empty());
    }
}

/// Whether `user`, on the same server as `alice`, is listed by `who` there: `who`, then
/// an unknown recipient, whose answer ends the list.
fn sees(user: &mut Client, alice: &Client) -> bool {
    user.send(b"who\nto|nobody|x\n");
    let mut listed = false;
    for _ in 0..64 {
        match user.read_line() {
            line if line == "不存在该用户\n" => return listed,
            line => listed |= line.starts_with(&format!("[{}]", alice.addr)),
        }
    }
    panic!("no end of the list in 64 lines");
}

#[test]
fn two_servers_with_reuse_port_share_a_port_and_both_accept() {
    let a = start(&["--reuse-port"]);
    let alice = connect(a.addr);
    let port = a.addr.port().to_string();
    // `start` passes --port 0 first: the later --port wins.
    let b = start(&["--reuse-port", "--port", &port]);
    assert_eq!(b.addr, a.addr);
    // The kernel spreads new connections over both: a user lands where alice is (server
    // a), or where nobody knows her (server b). 24 users leave a chance of 2^-23 to miss
    // one of them.
    let (mut on_a, mut on_b) = (0, 0);
    let mut users = Vec::new();
    while users.len() < 24 && (on_a == 0 || on_b == 0) {
        let mut user = connect(a.addr);
        if sees(&mut user, &alice) {
            on_a += 1;
        } else {
            on_b += 1;
        }
        users.push(user); // kept, so the kernel cannot hand out its port again
    }
    assert!(on_a > 0 && on_b > 0, "{on_a} users on a, {on_b} on b");
}

/// Workers share the supervisor's stderr: a server given `--node-id` names it in each line.
#[test]
fn a_named_node_names_itself_in_every_log_line() {
    let (_server, log) = start_logged(&["--redis", "redis://127.0.0.1:1", "--node-id", "n-9"]);
    let line = log
        .wait_for("cannot connect to Redis", Duration::from_secs(10))
        .expect("a warning that Redis is unreachable");
    assert!(line.contains(" WARN n-9 imserver_mio::cluster"), "{line}");
}

#[test]
fn more_than_one_worker_needs_redis_and_one_is_a_plain_server() {
    let out = server_cmd()
        .args(["--host", "127.0.0.1", "--port", "0", "--workers", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "imserver-mio: --workers 2 needs --redis: users on different workers meet only \
         through Redis\n"
    );
    assert!(out.stdout.is_empty());
    let out = server_cmd()
        .args(["--workers", "2", "--redis", "redis://127.0.0.1:1"])
        .args(["--node-id", "a-node-id-with-22-char"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is too long for --workers"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for bad in ["0", "257", "x"] {
        let out = server_cmd()
            .args(["--workers", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--workers {bad}");
    }
    let server = start(&["--workers", "1"]);
    let mut alice = connect(server.addr);
    alice.send(b"who\n");
    let a = alice.addr.clone();
    alice.expect_line(&format!("[{a}]{a}:在线...\n"));
    let help = server_cmd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[env: IMSERVER_WORKERS"), "{help}");
}

/// Connects users to `addr`, a port the servers `nodes` share, until each of them has one
/// in `users` (the kernel picks the server of each connection: 24 tries leave a chance of
/// 2^-23 per node to miss one). Everyone already there gets each newcomer's online notice;
/// a newcomer may get `maybe` lines, and those of everyone before it.
fn join_spread(addr: SocketAddr, nodes: &[&str], users: &mut Vec<User>, maybe: &[String]) {
    for _ in 0..24 {
        if nodes.iter().all(|n| users.iter().any(|u| u.node == *n)) {
            return;
        }
        let mut skip: Vec<String> = users.iter().map(|u| u.hello.clone()).collect();
        skip.extend_from_slice(maybe);
        let newcomer = join_at(addr, nodes, skip);
        for u in users.iter_mut() {
            u.expect(&newcomer.online());
        }
        users.push(newcomer);
    }
    let spread: Vec<&str> = users.iter().map(|u| u.node.as_str()).collect();
    panic!("24 connections to {addr} did not reach every one of {nodes:?}: {spread:?}");
}

/// Users of different servers are one chat: `who` lists everyone everywhere, a broadcast
/// from each server reaches everyone once, and a whisper crosses from each server to the
/// next.
fn chat_across(users: &mut [User]) {
    let everyone = sorted(users.iter().map(User::who_entry).collect());
    for u in users.iter_mut() {
        u.send("who\n");
        assert_eq!(u.lines_sorted(everyone.len()), everyone, "{}'s who", u.name);
    }
    // The first user of each server, in the order the servers first appear.
    let firsts: Vec<usize> = (0..users.len())
        .filter(|&i| users[..i].iter().all(|u| u.node != users[i].node))
        .collect();
    for &speaker in &firsts {
        let text = format!("hello from {}", users[speaker].node);
        users[speaker].send(&format!("{text}\n"));
        let said = users[speaker].said(&text);
        for u in users.iter_mut() {
            u.expect(&said);
        }
    }
    for (i, &from) in firsts.iter().enumerate() {
        let to = firsts[(i + 1) % firsts.len()];
        let (from, to) = if from < to {
            let (left, right) = users.split_at_mut(to);
            (&mut left[from], &mut right[0])
        } else {
            let (left, right) = users.split_at_mut(from);
            (&mut right[0], &mut left[to])
        };
        whisper(from, to, "across the cores");
    }
    for u in users.iter_mut() {
        u.silence(Duration::from_millis(200));
    }
}

#[test]
fn two_servers_sharing_a_port_with_reuse_port_are_one_chat() {
    let redis = Redis::start();
    let (url, port) = (redis.url(), free_port().to_string());
    // The very same flags for both (`start` passes --port 0 first: the later --port wins).
    let flags = ["--redis", &url, "--reuse-port", "--port", &port];
    let servers = [start(&flags), start(&flags)];
    assert_eq!(servers[0].addr, servers[1].addr);
    // Still two nodes: without --node-id each picks an id that ends in its pid.
    let deadline = Instant::now() + Duration::from_secs(10);
    let nodes: Vec<String> = loop {
        let Resp::Array(keys) = redis.call(&["KEYS", "im:alive:*"]) else {
            panic!("KEYS answers an array");
        };
        if keys.len() == 2 {
            break keys
                .into_iter()
                .map(|k| match k {
                    Resp::Bulk(Some(k)) => String::from_utf8(k[9..].to_vec()).unwrap(),
                    other => panic!("a key: {other:?}"),
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "two nodes in 10 s: {keys:?}");
        thread::sleep(Duration::from_millis(20));
    };
    for server in &servers {
        let pid = format!("-{}", server.child.id());
        assert!(
            nodes.iter().any(|n| n.ends_with(&pid)),
            "{pid} in {nodes:?}"
        );
    }
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    redis.wait_ready(&nodes);
    let mut users = Vec::new();
    join_spread(servers[0].addr, &nodes, &mut users, &[]);
    chat_across(&mut users);
}

/// The pids and command lines of `parent`'s children, from /proc.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // The parent pid is the second field after the command name, which is in
        // parentheses and may hold spaces.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// The pid of the worker of `supervisor` that runs as node `id`.
fn worker_pid(supervisor: u32, id: &str) -> u32 {
    let workers = children(supervisor);
    workers
        .iter()
        .find(|(_, cmdline)| cmdline.ends_with(&format!("--node-id {id} ")))
        .map(|(pid, _)| *pid)
        .unwrap_or_else(|| panic!("no worker runs as node {id}: {workers:?}"))
}

#[test]
fn workers_are_one_chat_a_killed_worker_is_restarted_and_sigterm_stops_all() {
    let redis = Redis::start();
    let mut supervisor = node(
        &redis.url(),
        "w",
        &["--workers", "2", "--node-timeout", "1", "--http-port", "0"],
    );
    let pid = supervisor.child.id();
    // Worker K is node w-K; both are listening, on the ports the supervisor printed.
    redis.wait_ready(&["w-1", "w-2"]);
    let api = supervisor.http.expect("the HTTP listener's address");
    assert_eq!(
        http(
            api,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .0,
        200
    );
    let mut users = Vec::new();
    join_spread(supervisor.addr, &["w-1", "w-2"], &mut users, &[]);
    chat_across(&mut users);

    // SIGKILL worker 1: its users are cut off, the others hear them leave, and the
    // supervisor starts the third worker, node w-3, in its place.
    let killed = worker_pid(pid, "w-1");
    assert_eq!(
        Command::new("kill")
            .args(["-KILL", &killed.to_string()])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    let (gone, mut users): (Vec<User>, Vec<User>) =
        users.into_iter().partition(|u| u.node == "w-1");
    let offline: Vec<String> = gone.iter().map(User::offline).collect();
    for mut u in gone {
        let mut rest = Vec::new();
        // EOF, or a reset: anything but the read timing out.
        if let Err(e) = u.reader.read_to_end(&mut rest) {
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{}: {e}", u.name);
        }
    }
    for u in users.iter_mut() {
        assert_eq!(u.lines_sorted(offline.len()), sorted(offline.clone()));
    }
    redis.wait_ready(&["w-3"]);
    assert_ne!(worker_pid(pid, "w-3"), killed);
    // Users spread over the survivor and the new worker chat as before. The new worker
    // may have read the killed one's users from Redis before they were cleared, and then
    // tells its own users that they left.
    join_spread(supervisor.addr, &["w-2", "w-3"], &mut users, &offline);
    chat_across(&mut users);

    // SIGTERM to the supervisor stops every worker gracefully, then the supervisor.
    let workers: Vec<u32> = children(pid).into_iter().map(|(p, _)| p).collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    supervisor.signal("TERM");
    for mut u in users {
        let mut rest = Vec::new();
        u.reader.read_to_end(&mut rest).expect("the worker closes");
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.ends_with("服务器关闭\n"), "{}: {rest:?}", u.name);
    }
    let status = supervisor
        .wait_exit(Duration::from_secs(10))
        .expect("the supervisor exits");
    assert_eq!(status.code(), Some(0));
    for worker in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{worker}")).exists(),
            "worker {worker} outlived the supervisor"
        );
    }
}
