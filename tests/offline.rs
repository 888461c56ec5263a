//! Private messages to signed-in users who are offline (`--auth-secret`): kept, answered
//! `对方不在线，消息已保存`, and delivered oldest first after the user's next signed login,
//! in memory and through Redis across two servers. Real binaries, real sockets, exact bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::redis::{Redis, Resp};
use common::ws::{close_code, recv, recv_text, send, Ws};
use common::{connect, post_raw, start, Client, Server};
use serde_json::json;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

const SECRET: &str = "offline-secret";
const SAVED: &str = "对方不在线，消息已保存\n";
const FULL: &str = "对方不在线，离线消息已满，未保存\n";
const NO_SUCH_USER: &str = "不存在该用户\n";

/// An HS256 login token for `sub`, valid for an hour.
fn token(sub: &str) -> String {
    common::jwt::token(SECRET, sub)
}

/// A server with signed logins and a web listener, and `extra` flags.
fn signed_server(extra: &[&str]) -> Server {
    let mut args = vec!["--ws-port", "0", "--auth-secret", SECRET];
    args.extend_from_slice(extra);
    start(&args)
}

/// Opens `ws://ADDR/PATH`.
fn ws_open(server: &Server, path: &str) -> Ws {
    common::ws::connect(server.web.unwrap(), path)
}

/// The local address of a WebSocket client: its `[addr]` in notices.
fn ws_addr(ws: &Ws) -> String {
    ws.get_ref().local_addr().unwrap().to_string()
}

/// An `/im` user logged in as `user` (with a token unless `signed` is false); the login
/// answer is checked byte for byte.
fn im_login(server: &Server, user: &str, signed: bool) -> Ws {
    let mut ws = ws_open(server, "/im");
    let mut data = json!({"userID": user, "appID": 101});
    if signed {
        data["token"] = json!(token(user));
    }
    send(&mut ws, json!({"seq": "1", "cmd": "login", "data": data}));
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"1","cmd":"login","response":{"code":200,"codeMsg":"Success","data":null}}"#
    );
    ws
}

/// Logs in on `/im` as `name` with a token and closes in the same write: the server reads
/// both at once, so the user is gone before the messages kept for it can be delivered.
/// Returns its address.
fn visit_and_vanish(server: &Server, name: &str) -> String {
    let mut ws = ws_open(server, "/im");
    let data = json!({"userID": name, "appID": 101, "token": token(name)});
    let login = json!({"seq": "1", "cmd": "login", "data": data});
    ws.write(Message::text(login.to_string())).unwrap(); // queued, not sent
    ws.close(None).unwrap(); // sends both
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"1","cmd":"login","response":{"code":200,"codeMsg":"Success","data":null}}"#
    );
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected the close frame and nothing before it, got {other:?}"),
    }
    ws_addr(&ws)
}

/// Closes a WebSocket client and waits for the server's close frame.
fn leave(mut ws: Ws) {
    ws.close(None).unwrap();
    assert_eq!(close_code(&mut ws), 1000);
}

/// An `/im` push of a private message to `target`, as the server writes it.
fn im_msg(target: &str, msg: &str, from: &str) -> String {
    format!(
        r#"{{"seq":"","cmd":"msg","response":{{"code":200,"codeMsg":"Success","data":{{"target":"{target}","type":"text","msg":"{msg}","from":"{from}"}}}}}}"#
    )
}

/// Reads the messages kept for `/im` user `to` while offline: the notice with their count,
/// then each of `texts` from `from`, in order.
fn expect_mail(ws: &mut Ws, to: &str, from: &str, texts: &[&str]) {
    let notice = format!("离线消息（{} 条）：", texts.len());
    assert_eq!(recv_text(ws), im_msg(to, &notice, "system"));
    for text in texts {
        assert_eq!(recv_text(ws), im_msg(to, text, from));
    }
}

/// Asserts that nothing arrives on `ws` within `d`.
fn ws_silence(ws: &mut Ws, d: Duration) {
    ws.get_ref().set_read_timeout(Some(d)).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    ws.get_ref()
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .unwrap();
}

/// A line user on `server` who has seen `name` log in (with a token if `signed`) and
/// leave: from here on `name` is offline.
fn sender_after_a_visit(server: &Server, name: &str, signed: bool) -> Client {
    let mut sender = connect(server.addr);
    let visitor = im_login(server, name, signed);
    let at = ws_addr(&visitor);
    sender.expect_line(&format!("[{at}]{name}:已上线\n"));
    leave(visitor);
    sender.expect_line(&format!("[{at}]{name}:已下线\n"));
    sender
}

/// `sender` whispers each of `texts` to `to`, and each is answered `answer`.
fn whisper_all(sender: &mut Client, to: &str, texts: &[&str], answer: &str) {
    for text in texts {
        sender.send(format!("to|{to}|{text}\n").as_bytes());
        sender.expect_line(answer);
    }
}

#[test]
fn a_line_users_messages_wait_for_a_signed_im_user_and_come_oldest_first_after_its_login() {
    let server = signed_server(&[]);
    let mut sender = sender_after_a_visit(&server, "alice", true);
    whisper_all(&mut sender, "alice", &["first", "second | 二"], SAVED);

    let mut alice = im_login(&server, "alice", true);
    let me = sender.addr.clone();
    expect_mail(&mut alice, "alice", &me, &["first", "second | 二"]);
    // Online again: a whisper goes straight through, unmarked.
    sender.expect_line(&format!("[{}]alice:已上线\n", ws_addr(&alice)));
    sender.send(b"to|alice|now\n");
    assert_eq!(recv_text(&mut alice), im_msg("alice", "now", &me));
    // Delivered once: the next login finds nothing.
    let a = ws_addr(&alice);
    leave(alice);
    sender.expect_line(&format!("[{a}]alice:已下线\n"));
    let mut alice = im_login(&server, "alice", true);
    ws_silence(&mut alice, Duration::from_millis(300));
}

#[test]
fn a_hub_user_gets_what_an_im_user_the_api_and_a_hub_user_left_while_it_was_away() {
    let server = signed_server(&["--lang", "en", "--http-port", "0"]);
    let mut carol = im_login(&server, "carol", true);
    let bob_path = format!("/ws/bob?token={}", token("bob"));
    let mut bob = ws_open(&server, &bob_path);
    assert_eq!(
        recv_text(&mut bob),
        r#"{"content":"online","receiver":0,"sender":"bob","type":0}"#
    );
    assert_eq!(recv(&mut carol)["cmd"], "enter");
    leave(bob);
    assert_eq!(recv(&mut carol)["cmd"], "exit");

    send(
        &mut carol,
        json!({"seq": "2", "cmd": "msg", "data": {"target": "bob", "msg": "hello bob"}}),
    );
    assert_eq!(
        recv_text(&mut carol),
        r#"{"seq":"2","cmd":"msg","response":{"code":200,"codeMsg":"Success","data":"user offline, message saved"}}"#
    );
    let (status, body) = post_raw(
        server.http.unwrap(),
        "/user/sendMessage",
        "userID=bob&message=from+the+api&msgID=m1",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"code":200,"msg":"Success","data":{"sendResults":true,"offline":"user offline, message saved"}}"#
    );
    let mut dan = ws_open(&server, &format!("/ws/dan?token={}", token("dan")));
    recv_text(&mut dan); // its own online notice
    send(
        &mut dan,
        json!({"type": 1, "receiver": "bob", "content": "from dan"}),
    );
    assert_eq!(
        recv_text(&mut dan),
        r#"{"content":"user offline, message saved","receiver":"bob","sender":0,"type":2}"#
    );

    let mut bob = ws_open(&server, &bob_path);
    assert_eq!(
        recv_text(&mut bob),
        r#"{"content":"online","receiver":0,"sender":"bob","type":0}"#
    );
    assert_eq!(
        recv_text(&mut bob),
        r#"{"content":"offline messages (3):","receiver":"bob","sender":0,"type":2}"#
    );
    assert_eq!(
        recv_text(&mut bob),
        r#"{"content":"hello bob","receiver":"bob","sender":"carol","type":1}"#
    );
    assert_eq!(
        recv_text(&mut bob),
        r#"{"content":"from the api","receiver":"bob","sender":"system","type":1}"#
    );
    assert_eq!(
        recv_text(&mut bob),
        r#"{"content":"from dan","receiver":"bob","sender":"dan","type":1}"#
    );
}

#[test]
fn names_never_signed_in_and_servers_without_a_secret_answer_as_before() {
    let server = signed_server(&[]);
    let mut sender = connect(server.addr);
    let mut dave = connect(server.addr);
    sender.read_line(); // dave's online notice
    let d = dave.addr.clone();
    dave.send(b"rename|dave\n");
    dave.expect_line("您已更新用户名：dave\n");
    dave.shutdown_write();
    sender.expect_line(&format!("[{d}]dave:已下线\n"));
    // A line user never signs in: a name without a token can be taken by anyone.
    whisper_all(&mut sender, "dave", &["hi"], NO_SUCH_USER);
    whisper_all(&mut sender, "nobody", &["hi"], NO_SUCH_USER);

    let plain = start(&["--ws-port", "0"]);
    let mut sender = sender_after_a_visit(&plain, "alice", false);
    whisper_all(&mut sender, "alice", &["hi"], NO_SUCH_USER);
    let mut alice = im_login(&plain, "alice", false);
    ws_silence(&mut alice, Duration::from_millis(300));
}

#[test]
fn a_full_mailbox_refuses_the_newest_message_and_keeps_the_oldest() {
    let server = signed_server(&["--offline-max", "2", "--http-port", "0"]);
    let mut sender = sender_after_a_visit(&server, "alice", true);
    whisper_all(&mut sender, "alice", &["1", "2"], SAVED);
    whisper_all(&mut sender, "alice", &["3"], FULL);
    // A signed-in user exists: an empty text is refused as for an online one.
    whisper_all(&mut sender, "alice", &[""], "无消息内容，请重发\n");

    let mut alice = im_login(&server, "alice", true);
    expect_mail(&mut alice, "alice", &sender.addr, &["1", "2"]);
    ws_silence(&mut alice, Duration::from_millis(300));
    expect_mail_counts(&server, [2, 1, 2]);
}

/// `/metrics`' counts of messages saved, refused for a full mailbox, and delivered.
fn expect_mail_counts(server: &Server, counts: [u64; 3]) {
    let api = server.http.unwrap();
    let names = ["saved", "refused_full", "delivered"];
    let got = names.map(|n| common::metric(api, &format!("imserver_offline_{n}_total")));
    assert_eq!(got, counts, "{names:?}");
}

#[test]
fn a_user_who_leaves_before_its_messages_arrive_gets_them_next_time() {
    let server = signed_server(&[]);
    let mut sender = sender_after_a_visit(&server, "alice", true);
    whisper_all(&mut sender, "alice", &["kept"], SAVED);
    let at = visit_and_vanish(&server, "alice");
    sender.expect_line(&format!("[{at}]alice:已上线\n"));
    sender.expect_line(&format!("[{at}]alice:已下线\n"));
    let mut alice = im_login(&server, "alice", true);
    expect_mail(&mut alice, "alice", &sender.addr, &["kept"]);
}

#[test]
fn messages_and_signed_logins_are_forgotten_after_the_ttl() {
    let server = signed_server(&["--offline-ttl", "1s"]);
    let mut sender = sender_after_a_visit(&server, "alice", true);
    whisper_all(&mut sender, "alice", &["soon gone"], SAVED);
    std::thread::sleep(Duration::from_millis(1_500));
    // Alice signed in more than a TTL ago: her name is nobody's again, and what was kept
    // for her is gone when she comes back.
    whisper_all(&mut sender, "alice", &["too late"], NO_SUCH_USER);
    let mut alice = im_login(&server, "alice", true);
    ws_silence(&mut alice, Duration::from_millis(300));
}

/// The TTL of a signed login counts from when its user was last online: alice stays
/// longer than the TTL, and mail for her is kept once she is gone.
#[test]
fn a_user_online_longer_than_the_ttl_gets_mail_once_gone() {
    let server = signed_server(&["--offline-ttl", "1s"]);
    let mut sender = connect(server.addr);
    let alice = im_login(&server, "alice", true);
    let at = ws_addr(&alice);
    sender.expect_line(&format!("[{at}]alice:已上线\n"));
    std::thread::sleep(Duration::from_millis(1_500));
    leave(alice);
    sender.expect_line(&format!("[{at}]alice:已下线\n"));
    whisper_all(&mut sender, "alice", &["still yours"], SAVED);
    let mut alice = im_login(&server, "alice", true);
    expect_mail(&mut alice, "alice", &sender.addr, &["still yours"]);
}

/// A server of the cluster behind `redis` with signed logins, keeping 2 messages a user.
fn node(redis: &Redis, id: &str) -> Server {
    let url = redis.url();
    signed_server(&[
        "--redis",
        &url,
        "--node-id",
        id,
        "--offline-max",
        "2",
        "--http-port",
        "0",
    ])
}

/// A line user of a cluster node, whose default name is `addr@NODE`.
fn cluster_line_user(server: &Server, node: &str) -> Client {
    let mut c = Client::from_stream(TcpStream::connect(server.addr).unwrap());
    let name = format!("{}@{node}", c.addr);
    c.expect_line(&format!("[{}]{name}:已上线\n", c.addr));
    c
}

#[test]
fn kept_in_redis_through_one_server_and_delivered_by_another() {
    let redis = Redis::start();
    let a = node(&redis, "A");
    let b = node(&redis, "B");
    redis.wait_ready(&["A", "B"]);
    let mut sender = cluster_line_user(&a, "A");
    let alice = im_login(&b, "alice", true);
    let at = ws_addr(&alice);
    sender.expect_line(&format!("[{at}]alice:已上线\n"));
    assert_eq!(redis.call(&["EXISTS", "im:signed:alice"]), Resp::Int(1));
    redis.call(&["PEXPIRE", "im:signed:alice", "60000"]);
    leave(alice);
    sender.expect_line(&format!("[{at}]alice:已下线\n"));
    // Her leaving renewed the signed login for a whole --offline-ttl (7 days); the server
    // tells Redis in the turn it tells the room, so it may land a moment later.
    let renewed = (0..100).any(|_| {
        let pttl = redis.call(&["PTTL", "im:signed:alice"]);
        let days = matches!(pttl, Resp::Int(ms) if ms > 6 * 24 * 3600 * 1000);
        if !days {
            std::thread::sleep(Duration::from_millis(20));
        }
        days
    });
    assert!(renewed, "{:?}", redis.call(&["PTTL", "im:signed:alice"]));

    whisper_all(&mut sender, "alice", &["one", "two"], SAVED);
    whisper_all(&mut sender, "alice", &["three"], FULL);
    whisper_all(&mut sender, "alice", &[""], "无消息内容，请重发\n");
    whisper_all(&mut sender, "nobody", &["x"], NO_SUCH_USER);
    assert_eq!(redis.call(&["LLEN", "im:offline:alice"]), Resp::Int(2));
    let Resp::Int(ttl_ms) = redis.call(&["PTTL", "im:offline:alice"]) else {
        panic!("no TTL on the kept messages");
    };
    assert!(ttl_ms > 6 * 24 * 3600 * 1000, "{ttl_ms}"); // --offline-ttl 7d

    let mut alice = im_login(&b, "alice", true);
    let from = format!("{}@A", sender.addr);
    expect_mail(&mut alice, "alice", &from, &["one", "two"]);
    assert_eq!(redis.call(&["EXISTS", "im:offline:alice"]), Resp::Int(0));
    expect_mail_counts(&a, [2, 1, 0]);
    expect_mail_counts(&b, [0, 0, 2]);
}
