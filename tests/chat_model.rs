//! A state-machine property test of the chat core, through the real server binary.
//!
//! `proptest` generates sequences of up to 20 operations (join, rename, say, whisper,
//! `who`, leave) by line, `/im` and hub (`/ws/{id}`) users; each runs against a fresh
//! server over real sockets, and against a model that is a list of who is online (kind,
//! address, name). After each operation every connection must receive exactly what the
//! model says, in order: the texts and JSON of the protocol table (tests/chat.rs,
//! tests/ws.rs). Anything extra shows up as a mismatch at the next read, or in the
//! silence check that ends each sequence.
//!
//! 48 sequences by default; `CHAT_MODEL_CASES=N` runs another number (it is not
//! `PROPTEST_CASES`, which asks the parser properties for hundreds of thousands).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::ws::Ws;
use common::{connect_raw, start, Client, Server};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Names users ask for: few, so that they collide; digits, which the hub protocol writes
/// as JSON numbers; and two characters of UTF-8.
const NAMES: [&str; 6] = ["ann", "bob", "7", "42", "张三", "cy"];
/// A name nobody ever has.
const GHOST: &str = "zed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Line,
    Im,
    Hub,
}

/// Whom a whisper is for.
#[derive(Debug, Clone)]
enum Target {
    /// An online user (the sender itself, sometimes).
    User(Index),
    /// Nobody.
    Ghost,
}

/// One step of a sequence. An index picks among the users online at that point; a step
/// that needs a user when there is none (or a line user, for `rename` and `who`) does
/// nothing.
#[derive(Debug, Clone)]
enum Op {
    JoinLine,
    JoinIm(usize),
    JoinHub(usize),
    Rename(Index, usize),
    Say(Index, String),
    Whisper(Index, Target, String),
    Who(Index),
    Leave(Index),
}

/// Chat text: letters, a space, the line protocol's `|`, quotes and backslashes for the
/// JSON protocols, two multi-byte characters, and newlines (which web users may send and
/// line users must see as spaces).
fn chat_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'b', 'c', 'x', ' ', '|', '"', '\\', '你', 'é', '\n', '1',
        ]),
        0..12,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        3 => Just(Op::JoinLine),
        3 => name.clone().prop_map(Op::JoinIm),
        3 => name.clone().prop_map(Op::JoinHub),
        2 => (any::<Index>(), name).prop_map(|(i, n)| Op::Rename(i, n)),
        3 => (any::<Index>(), chat_text()).prop_map(|(i, t)| Op::Say(i, t)),
        4 => (
            any::<Index>(),
            prop_oneof![4 => any::<Index>().prop_map(Target::User), 1 => Just(Target::Ghost)],
            prop_oneof![5 => chat_text(), 1 => Just(String::new())],
        )
            .prop_map(|(i, to, t)| Op::Whisper(i, to, t)),
        1 => any::<Index>().prop_map(Op::Who),
        2 => any::<Index>().prop_map(Op::Leave),
    ]
}

/// A client connection of either transport.
enum Conn {
    Line(Client),
    Ws(Box<Ws>),
}

/// An online user, as the model knows it, with its connection.
struct User {
    kind: Kind,
    conn: Conn,
    /// Its address as the server sees it (the client's local address).
    addr: String,
    /// Its name now: the address until a line user renames, the id of a web user.
    name: String,
}

/// What one connection must receive next.
#[derive(Debug, PartialEq)]
enum Want {
    Line(String),
    /// Lines in any order (`who`).
    Lines(Vec<String>),
    Json(Value),
    /// A close frame with this code.
    Close(u16),
}

/// An id as the hub protocol writes it: a number when it is one.
fn id(name: &str) -> Value {
    match name.parse::<u64>() {
        Ok(n) if n.to_string() == name => json!(n),
        _ => json!(name),
    }
}

/// An `/im` push (`enter`, `exit`, `msg`).
fn im_push(cmd: &str, target: &str, msg: &str, from: &str) -> Value {
    json!({"seq": "", "cmd": cmd, "response": {"code": 200, "codeMsg": "Success",
        "data": {"target": target, "type": "text", "msg": msg, "from": from}}})
}

/// An `/im` answer.
fn im_answer(seq: &str, cmd: &str, code: u32, code_msg: &str, data: Value) -> Value {
    json!({"seq": seq, "cmd": cmd, "response": {"code": code, "codeMsg": code_msg, "data": data}})
}

/// A hub message.
fn hub_msg(kind: u64, sender: &str, receiver: &str, content: &str) -> Value {
    json!({"type": kind, "sender": id(sender), "receiver": id(receiver), "content": content})
}

/// A line user never sees a newline inside a line.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// The online (`true`) or offline notice of `addr`/`name`, as a user of `kind` gets it.
fn notice(kind: Kind, addr: &str, name: &str, online: bool) -> Want {
    match (kind, online) {
        (Kind::Line, true) => Want::Line(format!("[{addr}]{name}:已上线\n")),
        (Kind::Line, false) => Want::Line(format!("[{addr}]{name}:已下线\n")),
        (Kind::Im, true) => Want::Json(im_push("enter", "", "哈喽~", name)),
        (Kind::Im, false) => Want::Json(im_push("exit", "", "用户已经离开~", name)),
        (Kind::Hub, true) => Want::Json(hub_msg(0, name, "0", "已上线")),
        (Kind::Hub, false) => Want::Json(hub_msg(4, name, "0", "已下线")),
    }
}

/// What a user of `kind` gets when `addr`/`name` says `text` to the room, the room's
/// message number `number` (which `/im` pushes carry).
fn said(kind: Kind, addr: &str, name: &str, text: &str, number: u64) -> Want {
    match kind {
        Kind::Line => Want::Line(format!("[{addr}]{name}:{}\n", one_line(text))),
        Kind::Im => {
            let mut push = im_push("msg", "", text, name);
            push["response"]["data"]["seq"] = json!(number);
            Want::Json(push)
        }
        Kind::Hub => Want::Json(hub_msg(3, name, "0", text)),
    }
}

/// What `to`, a user of `kind`, gets when `from` whispers `text` to it.
fn whispered(kind: Kind, from: &str, to: &str, text: &str) -> Want {
    match kind {
        Kind::Line => Want::Line(format!("{from}对您说{}\n", one_line(text))),
        Kind::Im => Want::Json(im_push("msg", to, text, from)),
        Kind::Hub => Want::Json(hub_msg(1, from, to, text)),
    }
}

/// One server and the users online on it.
struct World {
    server: Server,
    users: Vec<User>,
    seq: u32,
    /// Messages said to the room so far: the last one's number in its history.
    said: u64,
}

impl World {
    fn new() -> Self {
        World {
            server: start(&["--ws-port", "0", "--http-port", "0"]),
            users: Vec::new(),
            seq: 0,
            said: 0,
        }
    }

    fn next_seq(&mut self) -> String {
        self.seq += 1;
        format!("s{}", self.seq)
    }

    fn holder(&self, name: &str) -> Option<usize> {
        self.users.iter().position(|u| u.name == name)
    }

    fn ws(&self, path: &str) -> (Ws, String) {
        let ws = common::ws::connect(self.server.web.unwrap(), path);
        let addr = ws.get_ref().local_addr().unwrap().to_string();
        (ws, addr)
    }

    /// The `i`-th line user, if any.
    fn line_user(&self, i: &Index) -> Option<usize> {
        let lines: Vec<usize> = (0..self.users.len())
            .filter(|&u| self.users[u].kind == Kind::Line)
            .collect();
        (!lines.is_empty()).then(|| lines[i.index(lines.len())])
    }

    fn any_user(&self, i: &Index) -> Option<usize> {
        (!self.users.is_empty()).then(|| i.index(self.users.len()))
    }

    /// Runs one step: acts as a client would, then checks every connection received
    /// what the model says.
    fn step(&mut self, op: &Op) {
        // (user index, what it must receive), in order per user.
        let mut wants: Vec<(usize, Want)> = Vec::new();
        let everyone = |users: &[User], f: &dyn Fn(&User) -> Want| -> Vec<(usize, Want)> {
            users.iter().enumerate().map(|(i, u)| (i, f(u))).collect()
        };
        match op {
            Op::JoinLine => {
                let client = connect_raw(self.server.addr);
                let addr = client.addr.clone();
                self.users.push(User {
                    kind: Kind::Line,
                    conn: Conn::Line(client),
                    name: addr.clone(),
                    addr: addr.clone(),
                });
                wants = everyone(&self.users, &|u| notice(u.kind, &addr, &addr, true));
            }
            Op::JoinIm(n) => {
                let name = NAMES[*n];
                let (mut ws, addr) = self.ws("/im");
                let seq = self.next_seq();
                let login =
                    json!({"seq": seq, "cmd": "login", "data": {"userID": name, "appID": 101}});
                ws.send(Message::text(login.to_string())).unwrap();
                let ok = Want::Json(im_answer(&seq, "login", 200, "Success", Value::Null));
                match self.holder(name) {
                    None => {
                        wants = everyone(&self.users, &|u| notice(u.kind, &addr, name, true));
                        wants.push((self.users.len(), ok));
                        self.users.push(User {
                            kind: Kind::Im,
                            conn: Conn::Ws(Box::new(ws)),
                            addr,
                            name: name.to_owned(),
                        });
                    }
                    Some(h) if self.users[h].kind == Kind::Im => {
                        // The older socket is told and closed; the room sees it leave and
                        // the new one arrive.
                        let kick =
                            im_answer("", "kick", 1009, "操作失败", json!("logged in elsewhere"));
                        wants.push((h, Want::Json(kick)));
                        wants.push((h, Want::Close(1008)));
                        let old_addr = self.users[h].addr.clone();
                        for (i, u) in self.users.iter().enumerate().filter(|(i, _)| *i != h) {
                            wants.push((i, notice(u.kind, &old_addr, name, false)));
                            wants.push((i, notice(u.kind, &addr, name, true)));
                        }
                        wants.push((self.users.len(), ok));
                        self.users.push(User {
                            kind: Kind::Im,
                            conn: Conn::Ws(Box::new(ws)),
                            addr,
                            name: name.to_owned(),
                        });
                        self.check(wants);
                        self.users.remove(h);
                        return;
                    }
                    Some(_) => {
                        // Another protocol's user holds the name: refused, not logged in.
                        let failed = im_answer(&seq, "login", 1009, "操作失败", Value::Null);
                        let mut conn = Conn::Ws(Box::new(ws));
                        expect(&mut conn, &Want::Json(failed), "refused /im login");
                    }
                }
            }
            Op::JoinHub(n) => {
                let name = NAMES[*n];
                let path = format!(
                    "/ws/{}",
                    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                );
                let (ws, addr) = self.ws(&path);
                let new = User {
                    kind: Kind::Hub,
                    conn: Conn::Ws(Box::new(ws)),
                    addr: addr.clone(),
                    name: name.to_owned(),
                };
                match self.holder(name) {
                    None => {
                        self.users.push(new);
                        wants = everyone(&self.users, &|u| notice(u.kind, &addr, name, true));
                    }
                    Some(h) if self.users[h].kind == Kind::Hub => {
                        wants.push((h, Want::Close(1008)));
                        let old_addr = self.users[h].addr.clone();
                        for (i, u) in self.users.iter().enumerate().filter(|(i, _)| *i != h) {
                            wants.push((i, notice(u.kind, &old_addr, name, false)));
                            wants.push((i, notice(u.kind, &addr, name, true)));
                        }
                        wants.push((self.users.len(), notice(Kind::Hub, &addr, name, true)));
                        self.users.push(new);
                        self.check(wants);
                        self.users.remove(h);
                        return;
                    }
                    Some(_) => {
                        let mut conn = new.conn;
                        expect(&mut conn, &Want::Close(1008), "refused hub id");
                    }
                }
            }
            Op::Rename(i, n) => {
                let Some(u) = self.line_user(i) else { return };
                let new = NAMES[*n];
                let answer = match self.holder(new) {
                    Some(h) if h != u => "当前用户名被使用了\n".to_owned(),
                    _ => {
                        self.users[u].name = new.to_owned();
                        format!("您已更新用户名：{new}\n")
                    }
                };
                send_line(&mut self.users[u].conn, &format!("rename|{new}\n"));
                wants.push((u, Want::Line(answer)));
            }
            Op::Say(i, text) => {
                let Some(u) = self.any_user(i) else { return };
                let (kind, addr, name) = {
                    let s = &self.users[u];
                    (s.kind, s.addr.clone(), s.name.clone())
                };
                // A line is one line; "s" keeps it from reading as a command.
                let text = match kind {
                    Kind::Line => format!("s{}", text.replace('\n', "")),
                    _ => format!("s{text}"),
                };
                self.said += 1;
                let number = self.said;
                wants = everyone(&self.users, &|r| said(r.kind, &addr, &name, &text, number));
                let seq = self.next_seq();
                let conn = &mut self.users[u].conn;
                match kind {
                    Kind::Line => send_line(conn, &format!("{text}\n")),
                    Kind::Im => {
                        let msg = json!({"seq": seq, "cmd": "msg", "data": {"msg": text}});
                        send_json(conn, &msg);
                        let ok = im_answer(&seq, "msg", 200, "Success", Value::Null);
                        wants.push((u, Want::Json(ok)));
                    }
                    Kind::Hub => send_json(conn, &json!({"type": 3, "content": text})),
                }
            }
            Op::Whisper(i, target, text) => {
                let Some(u) = self.any_user(i) else { return };
                let to = match target {
                    Target::User(j) => Some(j.index(self.users.len())),
                    Target::Ghost => None,
                };
                let to_name = to.map_or(GHOST.to_owned(), |t| self.users[t].name.clone());
                let (kind, from) = (self.users[u].kind, self.users[u].name.clone());
                let text = match kind {
                    Kind::Line => text.replace('\n', ""),
                    _ => text.clone(),
                };
                let delivery =
                    to.map(|t| (t, whispered(self.users[t].kind, &from, &to_name, &text)));
                match kind {
                    Kind::Line => {
                        send_line(&mut self.users[u].conn, &format!("to|{to_name}|{text}\n"));
                        match delivery {
                            None => wants.push((u, Want::Line("不存在该用户\n".into()))),
                            Some(_) if text.is_empty() => {
                                wants.push((u, Want::Line("无消息内容，请重发\n".into())));
                            }
                            Some(d) => wants.push(d),
                        }
                    }
                    Kind::Im => {
                        let seq = self.next_seq();
                        let msg = json!({"seq": seq, "cmd": "msg", "data": {"target": to_name, "msg": text}});
                        send_json(&mut self.users[u].conn, &msg);
                        let answer = match delivery {
                            None => im_answer(&seq, "msg", 1009, "操作失败", json!("不存在该用户")),
                            Some(d) => {
                                wants.push(d);
                                im_answer(&seq, "msg", 200, "Success", Value::Null)
                            }
                        };
                        wants.push((u, Want::Json(answer)));
                    }
                    Kind::Hub => {
                        let msg = json!({"type": 1, "receiver": id(&to_name), "content": text});
                        send_json(&mut self.users[u].conn, &msg);
                        let reply = match delivery {
                            None => "not online",
                            Some(d) => {
                                wants.push(d);
                                "success send"
                            }
                        };
                        wants.push((u, Want::Json(hub_msg(2, "0", &to_name, reply))));
                    }
                }
            }
            Op::Who(i) => {
                let Some(u) = self.line_user(i) else { return };
                let mut all: Vec<String> = self
                    .users
                    .iter()
                    .map(|o| format!("[{}]{}:在线...\n", o.addr, o.name))
                    .collect();
                all.sort();
                send_line(&mut self.users[u].conn, "who\n");
                wants.push((u, Want::Lines(all)));
            }
            Op::Leave(i) => {
                let Some(u) = self.any_user(i) else { return };
                let gone = self.users.remove(u);
                drop(gone.conn);
                wants = everyone(&self.users, &|r| {
                    notice(r.kind, &gone.addr, &gone.name, false)
                });
                self.check(wants);
                // With nobody left to hear it, wait until the server saw the hang-up, so
                // the next newcomer cannot be told of it.
                self.await_users();
                return;
            }
        }
        self.check(wants);
    }

    /// Reads, per user and in order, what it must receive.
    fn check(&mut self, wants: Vec<(usize, Want)>) {
        for (i, want) in &wants {
            let user = &mut self.users[*i];
            let who = format!("{:?} {} ({})", user.kind, user.name, user.addr);
            expect(&mut user.conn, want, &who);
        }
    }

    /// Polls `/system/state` until the server counts as many users as the model.
    fn await_users(&self) {
        let deadline = Instant::now() + common::READ_TIMEOUT;
        loop {
            let (status, body) = common::http(
                self.server.http.unwrap(),
                "GET /system/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && v["data"]["users"] == self.users.len() {
                return;
            }
            assert!(Instant::now() < deadline, "the server still counts {v}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Nobody has anything more to read.
    fn check_silence(&mut self) {
        std::thread::sleep(Duration::from_millis(100));
        for user in &mut self.users {
            let who = format!("{:?} {} ({})", user.kind, user.name, user.addr);
            match &mut user.conn {
                Conn::Line(c) => c.expect_silence(Duration::from_millis(1)),
                Conn::Ws(ws) => {
                    ws.get_mut()
                        .set_read_timeout(Some(Duration::from_millis(1)))
                        .unwrap();
                    match ws.read() {
                        Err(tungstenite::Error::Io(e))
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        other => panic!("{who}: expected silence, got {other:?}"),
                    }
                }
            }
        }
    }
}

fn send_line(conn: &mut Conn, line: &str) {
    match conn {
        Conn::Line(c) => c.send(line.as_bytes()),
        Conn::Ws(_) => panic!("not a line user"),
    }
}

fn send_json(conn: &mut Conn, v: &Value) {
    match conn {
        Conn::Ws(ws) => ws.send(Message::text(v.to_string())).unwrap(),
        Conn::Line(_) => panic!("not a WebSocket user"),
    }
}

/// Reads what `want` says from `conn` (with the read timeout of the common helpers).
fn expect(conn: &mut Conn, want: &Want, who: &str) {
    let got = match (conn, want) {
        (Conn::Line(c), Want::Line(_)) => Want::Line(c.read_line()),
        (Conn::Line(c), Want::Lines(all)) => Want::Lines(c.read_lines_sorted(all.len())),
        (Conn::Ws(ws), Want::Json(_) | Want::Close(_)) => loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|_| panic!("{who}: not JSON: {t:?}"));
                    break Want::Json(v);
                }
                Ok(Message::Close(Some(f))) => break Want::Close(u16::from(f.code)),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("{who}: expected {want:?}, got {other:?}"),
            }
        },
        (_, want) => panic!("{who}: {want:?} is not for this kind of connection"),
    };
    assert_eq!(&got, want, "{who}");
}

/// Cases unless `CHAT_MODEL_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("CHAT_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Each case starts a server: shrink a failure in a bounded number of runs.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random sequences of chat operations across the three protocols deliver exactly
    /// what the model of who is online says.
    #[test]
    fn the_chat_matches_its_model(ops in prop::collection::vec(op(), 1..=20)) {
        let mut world = World::new();
        for op in &ops {
            world.step(op);
        }
        world.check_silence();
    }
}
