//! WebSocket users (seed 003's `/im`, seed 004's `/ws/{id}`) against the real binary with a
//! real client (tungstenite), chatting with line users in one user space.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::{http, post};

use common::{connect, start, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use common::ws::{close_code, connect as ws_connect, recv, recv_text, send, Ws};

fn web_server(extra: &[&str]) -> Server {
    let mut args = vec!["--ws-port", "0", "--http-port", "0"];
    args.extend_from_slice(extra);
    start(&args)
}

fn login(ws: &mut Ws, user: &str) {
    send(
        ws,
        json!({"seq":"1","cmd":"login","data":{"userID":user,"appID":101}}),
    );
    assert_eq!(recv(ws)["response"]["code"], 200);
}

fn code_of(ws: &mut Ws, request: Value) -> Value {
    send(ws, request);
    recv(ws)["response"].clone()
}

#[test]
fn im_commands_and_codes() {
    let server = web_server(&[]);
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    let r = code_of(&mut ws, json!({"seq":"7","cmd":"ping","data":{}}));
    assert_eq!(r, json!({"code":200,"codeMsg":"Success","data":"pong"}));
    let r = code_of(&mut ws, json!({"seq":"8","cmd":"heartbeat","data":{}}));
    assert_eq!(r, json!({"code":1000,"codeMsg":"未登录","data":null}));
    let r = code_of(&mut ws, json!({"seq":"9","cmd":"dance","data":{}}));
    assert_eq!(r["code"], 1010);
    assert_eq!(r["codeMsg"], "路由不存在");
    let r = code_of(
        &mut ws,
        json!({"cmd":"login","data":{"userID":"a","appID":999}}),
    );
    assert_eq!(
        (r["code"].clone(), r["codeMsg"].clone()),
        (json!(1003), json!("未授权"))
    );
    let r = code_of(
        &mut ws,
        json!({"cmd":"login","data":{"userID":"12345678901234567890"}}),
    );
    assert_eq!(
        (r["code"].clone(), r["codeMsg"].clone()),
        (json!(1002), json!("非法的用户ID"))
    );
    let r = code_of(&mut ws, json!({"cmd":"login","data":{}}));
    assert_eq!(
        (r["code"].clone(), r["codeMsg"].clone()),
        (json!(1001), json!("参数不合法"))
    );
    ws.send(Message::text("not json at all")).unwrap();
    let v = recv(&mut ws);
    assert_eq!(v["response"]["codeMsg"], "数据不合法");
    // Both key spellings log in; the answer echoes seq and cmd.
    send(
        &mut ws,
        json!({"seq":"42","cmd":"login","data":{"userId":"alice","appId":"101"}}),
    );
    let v = recv(&mut ws);
    assert_eq!(
        v,
        json!({"seq":"42","cmd":"login","response":{"code":200,"codeMsg":"Success","data":null}})
    );
    let r = code_of(&mut ws, json!({"seq":"43","cmd":"heartbeat","data":{}}));
    assert_eq!(r["code"], 200);
    let mut other = ws_connect(server.web.unwrap(), "/acc");
    send(
        &mut other,
        json!({"seq":"1","cmd":"login","data":{"userID":"bob","appID":101}}),
    );
    assert_eq!(recv(&mut other)["response"]["code"], 200);
}

#[test]
fn im_users_chat_in_their_room_and_see_enter_and_exit() {
    let server = web_server(&[]);
    let mut alice = ws_connect(server.web.unwrap(), "/im");
    login(&mut alice, "alice");
    let mut bob = ws_connect(server.web.unwrap(), "/im");
    login(&mut bob, "bob");
    let enter = recv(&mut alice);
    assert_eq!(enter["cmd"], "enter");
    assert_eq!(
        enter["response"]["data"],
        json!({"target":"","type":"text","msg":"哈喽~","from":"bob"})
    );
    send(
        &mut bob,
        json!({"seq":"2","cmd":"msg","data":{"msg":"hi all 你好"}}),
    );
    for ws in [&mut alice, &mut bob] {
        let v = recv(ws);
        assert_eq!(v["cmd"], "msg");
        assert_eq!(v["response"]["data"]["msg"], "hi all 你好");
        assert_eq!(v["response"]["data"]["from"], "bob");
    }
    assert_eq!(recv(&mut bob)["response"]["code"], 200); // the answer to the msg
    send(
        &mut bob,
        json!({"seq":"3","cmd":"msg","data":{"target":"alice","msg":"psst"}}),
    );
    let v = recv(&mut alice);
    assert_eq!(v["response"]["data"]["target"], "alice");
    assert_eq!(v["response"]["data"]["msg"], "psst");
    assert_eq!(recv(&mut bob)["response"]["code"], 200);
    let r = code_of(
        &mut bob,
        json!({"seq":"4","cmd":"msg","data":{"target":"nobody","msg":"x"}}),
    );
    assert_eq!(r["code"], 1009);
    // A user in another room hears nothing of room 101.
    let mut carol = ws_connect(server.web.unwrap(), "/im");
    send(
        &mut carol,
        json!({"cmd":"login","data":{"userID":"carol","appID":102}}),
    );
    assert_eq!(recv(&mut carol)["response"]["code"], 200);
    drop(bob);
    let exit = recv(&mut alice);
    assert_eq!(exit["cmd"], "exit");
    assert_eq!(exit["response"]["data"]["msg"], "用户已经离开~");
    assert_eq!(exit["response"]["data"]["from"], "bob");
    carol
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(carol.read().is_err(), "room 102 heard room 101");
}

#[test]
fn a_line_user_and_a_websocket_user_talk_both_ways() {
    let server = web_server(&[]);
    let mut line = connect(server.addr);
    let l = line.addr.clone();
    line.send(b"rename|lin\n");
    line.expect_line("您已更新用户名：lin\n");
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    login(&mut ws, "webby");
    let stream_addr = ws.get_ref().local_addr().unwrap().to_string();
    line.expect_line(&format!("[{stream_addr}]webby:已上线\n"));
    send(
        &mut ws,
        json!({"seq":"1","cmd":"msg","data":{"msg":"from the web"}}),
    );
    line.expect_line(&format!("[{stream_addr}]webby:from the web\n"));
    line.send("hello web 你好\n".as_bytes());
    line.expect_line(&format!("[{l}]lin:hello web 你好\n"));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(recv(&mut ws));
    }
    let said = got
        .iter()
        .find(|v| v["response"]["data"]["msg"] == "hello web 你好")
        .expect("the line user's broadcast");
    assert_eq!(said["response"]["data"]["from"], "lin");
    line.send(b"to|webby|just you\n");
    let v = recv(&mut ws);
    assert_eq!(v["response"]["data"]["msg"], "just you");
    assert_eq!(v["response"]["data"]["target"], "webby");
    assert_eq!(v["response"]["data"]["from"], "lin");
    send(
        &mut ws,
        json!({"seq":"2","cmd":"msg","data":{"target":"lin","msg":"back at you"}}),
    );
    line.expect_line("webby对您说back at you\n");
    line.send(b"who\n");
    let mut who = vec![line.read_line(), line.read_line()];
    who.sort();
    let mut want = vec![
        format!("[{l}]lin:在线...\n"),
        format!("[{stream_addr}]webby:在线...\n"),
    ];
    want.sort();
    assert_eq!(who, want);
    drop(ws);
    line.expect_line(&format!("[{stream_addr}]webby:已下线\n"));
}

#[test]
fn names_are_one_space_across_protocols() {
    let server = web_server(&[]);
    let mut line = connect(server.addr);
    line.send(b"rename|bob\n");
    line.expect_line("您已更新用户名：bob\n");
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    let r = code_of(&mut ws, json!({"cmd":"login","data":{"userID":"bob"}}));
    assert_eq!(r["code"], 1009);
    login(&mut ws, "alice");
    line.read_line(); // alice online
    line.send(b"rename|alice\n");
    line.expect_line("当前用户名被使用了\n");
    // A hub id held by a line user: the hub connection is closed with 1008.
    let mut hub = ws_connect(server.web.unwrap(), "/ws/bob");
    assert_eq!(close_code(&mut hub), 1008);
}

#[test]
fn a_second_login_replaces_the_older_socket() {
    let server = web_server(&[]);
    let mut old = ws_connect(server.web.unwrap(), "/im");
    login(&mut old, "dup");
    let mut new = ws_connect(server.web.unwrap(), "/im");
    login(&mut new, "dup");
    let told = recv(&mut old);
    assert_eq!(told["cmd"], "kick");
    assert_eq!(told["response"]["code"], 1009);
    assert_eq!(close_code(&mut old), 1008);
    let r = code_of(&mut new, json!({"seq":"5","cmd":"heartbeat","data":{}}));
    assert_eq!(r["code"], 200);
}

#[test]
fn hub_clients_send_to_one_and_to_all() {
    let server = web_server(&[]);
    let mut line = connect(server.addr);
    let mut h7 = ws_connect(server.web.unwrap(), "/ws/7");
    let mut h8 = ws_connect(server.web.unwrap(), "/ws/8");
    // Presence: 7 hears 8 come online (type 0).
    let mut seen = recv(&mut h7);
    if seen["sender"] == 7 {
        seen = recv(&mut h7);
    }
    assert_eq!(
        seen,
        json!({"type":0,"sender":8,"receiver":0,"content":"已上线"})
    );
    recv(&mut h8); // its own presence notice
    line.read_line();
    line.read_line();
    h7.send(Message::text(
        r#"{"type":1,"sender":7,"receiver":8,"content":"hello 8"}"#,
    ))
    .unwrap();
    assert_eq!(
        recv(&mut h8),
        json!({"type":1,"sender":7,"receiver":8,"content":"hello 8"})
    );
    assert_eq!(
        recv(&mut h7),
        json!({"type":2,"sender":0,"receiver":8,"content":"success send"})
    );
    h7.send(Message::text(
        r#"{"type":1,"receiver":9,"content":"anyone?"}"#,
    ))
    .unwrap();
    assert_eq!(
        recv(&mut h7),
        json!({"type":2,"sender":0,"receiver":9,"content":"not online"})
    );
    h8.send(Message::text(r#"{"type":3,"content":"to everyone"}"#))
        .unwrap();
    let all = json!({"type":3,"sender":8,"receiver":0,"content":"to everyone"});
    assert_eq!(recv(&mut h7), all);
    assert_eq!(recv(&mut h8), all);
    let h8_addr = h8.get_ref().local_addr().unwrap();
    line.expect_line(&format!("[{h8_addr}]8:to everyone\n"));
    h8.send(Message::text("{broken")).unwrap();
    assert_eq!(
        recv(&mut h8),
        json!({"type":2,"sender":0,"receiver":8,"content":"invalid message"})
    );
    // The same id again replaces the older connection cleanly.
    let mut h8b = ws_connect(server.web.unwrap(), "/ws/8");
    assert_eq!(close_code(&mut h8), 1008);
    h7.send(Message::text(
        r#"{"type":1,"receiver":8,"content":"new 8?"}"#,
    ))
    .unwrap();
    let mut got = recv(&mut h8b);
    while got["type"] != 1 {
        got = recv(&mut h8b);
    }
    assert_eq!(got["content"], "new 8?");
}

/// Sends raw bytes after a valid handshake and returns the close code the server sent.
fn raw_ws(addr: SocketAddr, frames: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(
        b"GET /im HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    s.write_all(frames).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("101 head")
        + 4;
    assert!(all.starts_with(b"HTTP/1.1 101"));
    let frame = &all[head_end..];
    assert_eq!(frame.first(), Some(&0x88), "a close frame: {frame:?}");
    u16::from_be_bytes([frame[2], frame[3]])
}

fn masked(opcode_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![opcode_byte];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn bad_frames_get_their_close_codes_and_others_keep_chatting() {
    let server = web_server(&["--ws-max-message", "1024"]);
    let web = server.web.unwrap();
    let mut line = connect(server.addr);
    // Unmasked text frame: protocol error.
    assert_eq!(raw_ws(web, &[0x81, 0x02, b'h', b'i']), 1002);
    // Invalid UTF-8 in a text frame.
    assert_eq!(raw_ws(web, &masked(0x81, &[0xff, 0xfe, 0xfd])), 1007);
    // Over --ws-max-message.
    assert_eq!(raw_ws(web, &masked(0x81, &vec![b'a'; 2000])), 1009);
    // Garbage: reserved opcode with RSV bits.
    assert_eq!(raw_ws(web, &[0xF3, 0x80, 0, 0, 0, 0]), 1002);
    // Binary data is not a JSON protocol message.
    assert_eq!(raw_ws(web, &masked(0x82, b"\x00\x01")), 1003);
    // A client close is echoed.
    assert_eq!(raw_ws(web, &masked(0x88, &1000u16.to_be_bytes())), 1000);
    // Nobody else was hurt.
    line.send(b"still here\n");
    let l = line.addr.clone();
    line.expect_line(&format!("[{l}]{l}:still here\n"));
}

#[test]
fn fragmented_messages_and_pings_are_understood() {
    let server = web_server(&[]);
    let mut s = TcpStream::connect(server.web.unwrap()).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(
        b"GET /im HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let msg = r#"{"seq":"f","cmd":"ping","data":{}}"#.as_bytes();
    let mut frames = masked(0x01, &msg[..10]); // text, not final
    frames.extend(masked(0x89, b"are you there")); // a ping between fragments
    frames.extend(masked(0x80, &msg[10..])); // continuation, final
    s.write_all(&frames).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("pong\"") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let pong_frame = [0x8A, 13];
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[head_end..head_end + 2], &pong_frame, "{text}");
    assert_eq!(&got[head_end + 2..head_end + 15], b"are you there");
    assert!(text.contains(r#""seq":"f""#));
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn the_http_api_answers_for_every_protocol() {
    let server = web_server(&[]);
    let api = server.http.unwrap();
    let mut line = connect(server.addr);
    line.send(b"rename|lin\n");
    line.expect_line("您已更新用户名：lin\n");
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    login(&mut ws, "alice");
    line.read_line();

    let (status, v) = get(api, "/user/list?appID=101");
    assert_eq!(status, 200);
    assert_eq!(v["code"], 200);
    assert_eq!(v["msg"], "Success");
    assert_eq!(v["data"]["userCount"], 2);
    let mut names: Vec<String> = serde_json::from_value(v["data"]["userList"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["alice", "lin"]);
    let (_, v) = get(api, "/user/online?appID=101&userID=alice");
    assert_eq!(v["data"], json!({"userID":"alice","online":true}));
    let (_, v) = get(api, "/user/online?appID=101&userID=ghost");
    assert_eq!(v["data"]["online"], false);

    let v = post(
        api,
        "/user/sendMessage",
        "appID=101&userID=lin&msgID=m1&message=hi+%E4%BD%A0%E5%A5%BD",
    );
    assert_eq!(v["data"]["sendResults"], true);
    line.expect_line("system对您说hi 你好\n");
    let v = post(
        api,
        "/user/sendMessage",
        "appID=101&userID=lin&msgID=m1&message=again",
    );
    assert_eq!(v["data"]["duplicate"], true);
    let v = post(
        api,
        "/user/sendMessage",
        "appID=101&userID=alice&msgID=m2&message=to+alice",
    );
    assert_eq!(v["code"], 200);
    let pushed = recv(&mut ws);
    assert_eq!(pushed["response"]["data"]["msg"], "to alice");
    assert_eq!(pushed["response"]["data"]["from"], "system");
    let v = post(
        api,
        "/user/sendMessage",
        "appID=101&userID=ghost&msgID=m3&message=x",
    );
    assert_eq!(v["code"], 1009);
    let v = post(
        api,
        "/user/sendMessageAll",
        "appID=101&userID=alice&msgID=m4&message=everyone",
    );
    assert_eq!(v["code"], 200);
    let line_text = line.read_line();
    assert!(line_text.ends_with("]alice:everyone\n"), "{line_text}");
    assert_eq!(recv(&mut ws)["response"]["data"]["msg"], "everyone");

    let (_, v) = get(api, "/system/state");
    assert_eq!(v["data"]["users"], 2);
    assert_eq!(v["data"]["line"], 1);
    assert_eq!(v["data"]["ws"], 1);
    let (status, metrics) = http(
        api,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    for needle in [
        "imserver_connections{protocol=\"line\"} 1\n",
        "imserver_connections{protocol=\"ws\"} 1\n",
        "imserver_messages_in_total ",
        "imserver_slow_consumer_kicks_total 0\n",
        "imserver_loop_iteration_seconds_bucket{le=\"+Inf\"} ",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let (status, page) = http(
        api,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(page.contains("<html") && !page.contains("__WS_PORT__"));
    let (status, v) = get(api, "/no/such/path");
    assert_eq!(status, 404);
    assert_eq!(v["code"], 1010);
}

#[test]
fn malformed_http_gets_400_and_keep_alive_serves_two_requests() {
    let server = web_server(&[]);
    let api = server.http.unwrap();
    let (status, body) = http(api, "NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    assert!(
        serde_json::from_str::<Value>(&body).is_ok(),
        "JSON error: {body}"
    );
    let (status, _) = http(
        api,
        &format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)),
    );
    assert_eq!(status, 431);
    // Bad handshakes.
    let bad = |extra: &str| {
        http(api, &format!("GET /im HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n")).0
    };
    assert_eq!(
        bad("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n"),
        426
    );
    assert_eq!(bad("Sec-WebSocket-Version: 13\r\n"), 400);
    assert_eq!(
        bad("Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n"),
        400
    );
    // Keep-alive: two requests, two answers, one connection.
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(b"GET /system/state HTTP/1.1\r\nHost: x\r\n\r\nGET /user/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");
}

#[test]
fn a_slowloris_head_is_cut_off_while_others_chat() {
    let server = web_server(&[]);
    let mut slow = TcpStream::connect(server.http.unwrap()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut line = connect(server.addr);
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let _ = slow.write_all(b"X-Slow: 1\r\n");
        line.send(format!("tick {i}\n").as_bytes());
        let l = line.addr.clone();
        line.expect_line(&format!("[{l}]{l}:tick {i}\n"));
    }
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[test]
fn heartbeat_timeout_closes_a_silent_socket() {
    let server = web_server(&["--heartbeat-timeout", "1"]);
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    login(&mut ws, "sleepy");
    assert_eq!(close_code(&mut ws), 1008);
}

#[test]
fn shutdown_closes_websockets_with_going_away() {
    let mut server = web_server(&[]);
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    login(&mut ws, "leaving");
    server.signal("TERM");
    assert_eq!(close_code(&mut ws), u16::from(CloseCode::Away));
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn one_port_can_serve_both_websocket_and_http() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let server = start(&["--ws-port", &port, "--http-port", &port]);
    let web = server.web.unwrap();
    assert_eq!(web.port().to_string(), port);
    let mut ws = ws_connect(web, "/im");
    login(&mut ws, "same");
    let (_, v) = get(web, "/user/online?userID=same");
    assert_eq!(v["data"]["online"], true);
}

#[test]
fn web_text_with_newlines_cannot_forge_lines_for_line_users() {
    let server = web_server(&[]);
    let mut line = connect(server.addr);
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    login(&mut ws, "webby");
    let web_addr = ws.get_ref().local_addr().unwrap();
    line.expect_line(&format!("[{web_addr}]webby:已上线\n"));
    send(
        &mut ws,
        json!({"seq":"1","cmd":"msg","data":{"msg":"hi\n[1.2.3.4:5]boss:fake"}}),
    );
    line.expect_line(&format!("[{web_addr}]webby:hi [1.2.3.4:5]boss:fake\n"));
    // The HTTP API refuses a user id that is not a valid name, and an oversized msgID.
    let api = server.http.unwrap();
    let v = post(
        api,
        "/user/sendMessageAll",
        "appID=101&userID=x%0A%5B1.1.1.1%3A1%5Dboss&msgID=a&message=hi",
    );
    assert_eq!(v["code"], 1001);
    let long_id = "m".repeat(65);
    let v = post(
        api,
        "/user/sendMessageAll",
        &format!("appID=101&userID=ok&msgID={long_id}&message=hi"),
    );
    assert_eq!(v["code"], 1001);
    line.expect_silence(Duration::from_millis(200));
}

/// A raw WebSocket handshake for `path` (a valid key and version); returns the HTTP status
/// and body of the answer (`Connection: close` is not asked for: the server must close by
/// itself after a refusal).
fn raw_handshake(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
}

#[test]
fn a_second_login_on_a_logged_in_socket_fails_and_changes_nothing() {
    let server = web_server(&[]);
    let web = server.web.unwrap();
    let mut line = connect(server.addr);
    let l = line.addr.clone();
    let mut ws = ws_connect(web, "/im");
    login(&mut ws, "first");
    let ws_addr = ws.get_ref().local_addr().unwrap().to_string();
    line.expect_line(&format!("[{ws_addr}]first:已上线\n"));
    // Another name, the same name, another room: each answered 1009, none a new login.
    for (seq, user, app) in [
        ("2", "second", 101),
        ("3", "first", 101),
        ("4", "second", 102),
    ] {
        send(
            &mut ws,
            json!({"seq":seq,"cmd":"login","data":{"userID":user,"appID":app}}),
        );
        assert_eq!(
            recv_text(&mut ws),
            format!(
                r#"{{"seq":"{seq}","cmd":"login","response":{{"code":1009,"codeMsg":"操作失败","data":null}}}}"#
            ),
            "login {seq} as {user} in {app}"
        );
    }
    // Nobody heard of a departure, an arrival or a rename.
    line.expect_silence(Duration::from_millis(200));
    // Still logged in, as the first name, in the first room.
    let r = code_of(&mut ws, json!({"seq":"5","cmd":"heartbeat","data":{}}));
    assert_eq!(r, json!({"code":200,"codeMsg":"Success","data":null}));
    line.send(b"who\n");
    assert_eq!(line.read_lines_sorted(2), {
        let mut want = vec![
            format!("[{l}]{l}:在线...\n"),
            format!("[{ws_addr}]first:在线...\n"),
        ];
        want.sort();
        want
    });
    let (status, v) = get(server.http.unwrap(), "/user/list?appID=101");
    assert_eq!(status, 200);
    let mut names: Vec<String> = serde_json::from_value(v["data"]["userList"].clone()).unwrap();
    names.sort();
    let mut want = vec!["first".to_owned(), l.clone()];
    want.sort();
    assert_eq!(names, want, "{v}");
    let (_, v) = get(server.http.unwrap(), "/user/list?appID=102");
    assert_eq!(v["data"]["userCount"], 0, "{v}");
    // The second name is free: another socket logs in with it.
    let mut other = ws_connect(web, "/im");
    send(
        &mut other,
        json!({"seq":"1","cmd":"login","data":{"userID":"second","appID":101}}),
    );
    assert_eq!(
        recv_text(&mut other),
        r#"{"seq":"1","cmd":"login","response":{"code":200,"codeMsg":"Success","data":null}}"#
    );
    let other_addr = other.get_ref().local_addr().unwrap().to_string();
    line.expect_line(&format!("[{other_addr}]second:已上线\n"));
    // The first socket was not kicked: it hears the newcomer enter.
    let enter = recv(&mut ws);
    assert_eq!(enter["cmd"], "enter", "{enter}");
    assert_eq!(enter["response"]["data"]["from"], "second", "{enter}");
    // A message to the room comes from the first name, to everyone.
    send(
        &mut ws,
        json!({"seq":"6","cmd":"msg","data":{"msg":"still first"}}),
    );
    line.expect_line(&format!("[{ws_addr}]first:still first\n"));
    let v = recv(&mut other);
    assert_eq!(v["cmd"], "msg", "{v}");
    assert_eq!(
        v["response"]["data"],
        json!({"target":"","type":"text","msg":"still first","from":"first","seq":1})
    );
    let own = recv(&mut ws);
    assert_eq!(own["response"]["data"]["from"], "first", "{own}");
    assert_eq!(recv(&mut ws)["seq"], "6");
    // Whispers by name reach the right sockets.
    line.send(b"to|first|to the first\n");
    let v = recv(&mut ws);
    assert_eq!(
        v["response"]["data"],
        json!({"target":"first","type":"text","msg":"to the first","from":l})
    );
    line.send(b"to|second|to the second\n");
    let v = recv(&mut other);
    assert_eq!(v["response"]["data"]["target"], "second", "{v}");
    assert_eq!(v["response"]["data"]["msg"], "to the second", "{v}");
    line.expect_silence(Duration::from_millis(200));
}

#[test]
fn im_answers_and_pushes_keep_their_key_order_on_the_wire() {
    let server = web_server(&[]);
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    ws.send(Message::text(r#"{"seq":"p","cmd":"ping","data":{}}"#))
        .unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"p","cmd":"ping","response":{"code":200,"codeMsg":"Success","data":"pong"}}"#
    );
    ws.send(Message::text(r#"{"seq":"0","cmd":"heartbeat","data":{}}"#))
        .unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"0","cmd":"heartbeat","response":{"code":1000,"codeMsg":"未登录","data":null}}"#
    );
    ws.send(Message::text("not json")).unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"","cmd":"","response":{"code":1001,"codeMsg":"数据不合法","data":null}}"#
    );
    // The request's own key order does not matter.
    ws.send(Message::text(
        r#"{"data":{"appID":101,"userID":"alice"},"cmd":"login","seq":"1"}"#,
    ))
    .unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"1","cmd":"login","response":{"code":200,"codeMsg":"Success","data":null}}"#
    );
    ws.send(Message::text(r#"{"seq":"1","cmd":"heartbeat","data":{}}"#))
        .unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"1","cmd":"heartbeat","response":{"code":200,"codeMsg":"Success","data":null}}"#
    );
    // A push has the answer's shape.
    ws.send(Message::text(
        r#"{"seq":"2","cmd":"msg","data":{"msg":"hi 你好"}}"#,
    ))
    .unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"","cmd":"msg","response":{"code":200,"codeMsg":"Success","data":{"target":"","type":"text","msg":"hi 你好","from":"alice","seq":1}}}"#
    );
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"2","cmd":"msg","response":{"code":200,"codeMsg":"Success","data":null}}"#
    );
    ws.send(Message::text(
        r#"{"seq":"3","cmd":"msg","data":{"target":"nobody","msg":"x"}}"#,
    ))
    .unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"3","cmd":"msg","response":{"code":1009,"codeMsg":"操作失败","data":"不存在该用户"}}"#
    );
}

#[test]
fn http_api_envelopes_keep_their_key_order() {
    let server = web_server(&[]);
    let api = server.http.unwrap();
    let mut ws = ws_connect(server.web.unwrap(), "/im");
    login(&mut ws, "alice");
    let get_raw = |path: &str| {
        http(
            api,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    };
    assert_eq!(
        get_raw("/user/list?appID=101"),
        (
            200,
            r#"{"code":200,"msg":"Success","data":{"appID":101,"userCount":1,"userList":["alice"]}}"#
                .to_owned()
        )
    );
    assert_eq!(
        get_raw("/user/online?appID=101&userID=alice"),
        (
            200,
            r#"{"code":200,"msg":"Success","data":{"userID":"alice","online":true}}"#.to_owned()
        )
    );
    assert_eq!(
        common::post_raw(
            api,
            "/user/sendMessage",
            "appID=101&userID=alice&message=hello"
        ),
        (
            200,
            r#"{"code":200,"msg":"Success","data":{"sendResults":true}}"#.to_owned()
        )
    );
    assert_eq!(
        recv_text(&mut ws),
        r#"{"seq":"","cmd":"msg","response":{"code":200,"codeMsg":"Success","data":{"target":"alice","type":"text","msg":"hello","from":"system"}}}"#
    );
    assert_eq!(
        common::post_raw(
            api,
            "/user/sendMessage",
            "appID=101&userID=ghost&message=hello"
        ),
        (
            200,
            r#"{"code":1009,"msg":"操作失败","data":{"sendResults":false}}"#.to_owned()
        )
    );
    assert_eq!(
        get_raw("/no/such/path"),
        (
            404,
            r#"{"code":1010,"msg":"路由不存在","data":null}"#.to_owned()
        )
    );
}

#[test]
fn hub_messages_are_written_with_sorted_keys() {
    let server = web_server(&[]);
    let web = server.web.unwrap();
    let mut h7 = ws_connect(web, "/ws/7");
    assert_eq!(
        recv_text(&mut h7),
        r#"{"content":"已上线","receiver":0,"sender":7,"type":0}"#
    );
    let mut bee = ws_connect(web, "/ws/bee");
    let bee_online = r#"{"content":"已上线","receiver":0,"sender":"bee","type":0}"#;
    assert_eq!(recv_text(&mut bee), bee_online);
    assert_eq!(recv_text(&mut h7), bee_online);
    // The client's key order does not matter; the server writes its own.
    h7.send(Message::text(
        r#"{"type":1,"sender":7,"receiver":"bee","content":"hello bee"}"#,
    ))
    .unwrap();
    assert_eq!(
        recv_text(&mut bee),
        r#"{"content":"hello bee","receiver":"bee","sender":7,"type":1}"#
    );
    assert_eq!(
        recv_text(&mut h7),
        r#"{"content":"success send","receiver":"bee","sender":0,"type":2}"#
    );
    bee.send(Message::text(r#"{"receiver":7,"content":"hi 7","type":1}"#))
        .unwrap();
    assert_eq!(
        recv_text(&mut h7),
        r#"{"content":"hi 7","receiver":7,"sender":"bee","type":1}"#
    );
    assert_eq!(
        recv_text(&mut bee),
        r#"{"content":"success send","receiver":7,"sender":0,"type":2}"#
    );
    bee.send(Message::text(r#"{"content":"all","type":3}"#))
        .unwrap();
    let all = r#"{"content":"all","receiver":0,"sender":"bee","type":3}"#;
    assert_eq!(recv_text(&mut h7), all);
    assert_eq!(recv_text(&mut bee), all);
    h7.send(Message::text(r#"{"type":1,"receiver":9,"content":"x"}"#))
        .unwrap();
    assert_eq!(
        recv_text(&mut h7),
        r#"{"content":"not online","receiver":9,"sender":0,"type":2}"#
    );
    drop(bee);
    assert_eq!(
        recv_text(&mut h7),
        r#"{"content":"已下线","receiver":0,"sender":"bee","type":4}"#
    );
}

#[test]
fn hub_ids_are_percent_decoded_with_plus_kept_and_checked_as_names() {
    let server = web_server(&[]);
    let web = server.web.unwrap();
    let mut line = connect(server.addr);
    let l = line.addr.clone();
    let online = |name: &str| {
        let name = json!(name);
        format!(r#"{{"content":"已上线","receiver":0,"sender":{name},"type":0}}"#)
    };
    // `+` is literal in a path, and `%2B` is `+`; `%20` is a space, allowed inside a name.
    let mut hubs: Vec<(Ws, &str, String)> = Vec::new();
    for (path, name) in [
        ("/ws/a+b", "a+b"),
        ("/ws/a%2Bc", "a+c"),
        ("/ws/a%20b", "a b"),
    ] {
        let mut h = ws_connect(web, path);
        let addr = h.get_ref().local_addr().unwrap().to_string();
        assert_eq!(recv_text(&mut h), online(name), "{path}");
        for (earlier, _, _) in hubs.iter_mut() {
            assert_eq!(recv_text(earlier), online(name), "{path}");
        }
        line.expect_line(&format!("[{addr}]{name}:已上线\n"));
        hubs.push((h, name, addr));
    }
    line.send(b"who\n");
    let mut want: Vec<String> = hubs
        .iter()
        .map(|(_, name, addr)| format!("[{addr}]{name}:在线...\n"))
        .collect();
    want.push(format!("[{l}]{l}:在线...\n"));
    want.sort();
    assert_eq!(line.read_lines_sorted(4), want);
    // Each is reachable by its decoded name.
    for (h, name, _) in hubs.iter_mut() {
        line.send(format!("to|{name}|hi {name}\n").as_bytes());
        assert_eq!(
            recv_text(h),
            format!(
                r#"{{"content":"hi {name}","receiver":{},"sender":{},"type":1}}"#,
                json!(name),
                json!(l)
            )
        );
    }
    line.expect_silence(Duration::from_millis(200));
    // Names with surrounding spaces, forbidden characters, nothing, or bytes that are not
    // UTF-8 are refused before the upgrade.
    for path in [
        "/ws/%20a",
        "/ws/a%20",
        "/ws/",
        "/ws/a%7Cb",
        "/ws/a%3Ab",
        "/ws/a%0Ab",
        "/ws/%FF",
    ] {
        assert_eq!(
            raw_handshake(web, path),
            (
                400,
                r#"{"code":400,"msg":"Bad Request","data":null}"#.to_owned()
            ),
            "{path}"
        );
    }
    line.expect_silence(Duration::from_millis(200));
    for (h, _, _) in hubs.iter_mut() {
        h.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(h.read().is_err(), "a hub user heard of a refused id");
    }
}
