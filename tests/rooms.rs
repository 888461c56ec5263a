//! Rooms for every protocol (issue 13, item 1), through real sockets: line users move with
//! `room|NAME`, ask with `room` and `rooms`; broadcasts, `who` and presence notices stay in
//! a room while private messages cross rooms; hub users pick a room with `?room=`, `/im`
//! users with their appID (the room named by its number), and `GET /room/list` counts them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
mod common;

use common::ws::{self, Ws};
use common::{connect, get, http, start, start_web};
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(200);

/// Asserts a WebSocket gets nothing within [`QUIET`].
fn ws_silent(w: &mut Ws, what: &str) {
    w.get_mut().set_read_timeout(Some(QUIET)).unwrap();
    assert!(w.read().is_err(), "{what}");
    w.get_mut()
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .unwrap();
}

#[test]
fn a_line_user_moves_and_rooms_keep_their_talk_to_themselves() {
    let server = start(&[]);
    let (mut a, mut b) = common::connect_two(server.addr);
    let (aa, ba) = (a.addr.clone(), b.addr.clone());
    a.rename("alice");
    b.send(b"room\n");
    b.expect_line("当前房间：101\n");

    // alice moves: the old room hears her leave, she is answered, nobody else is told.
    a.send("room|茶室\n".as_bytes());
    a.expect_line("您已进入房间：茶室\n");
    b.expect_line(&format!("[{aa}]alice:已下线\n"));
    a.send(b"room\n");
    a.expect_line("当前房间：茶室\n");

    // A newcomer lands in 101; following alice, 101 hears it leave and 茶室 arrive.
    let mut c = connect(server.addr);
    let ca = c.addr.clone();
    b.expect_line(&format!("[{ca}]{ca}:已上线\n"));
    c.send("room|茶室\n".as_bytes());
    c.expect_line("您已进入房间：茶室\n");
    a.expect_line(&format!("[{ca}]{ca}:已上线\n"));
    b.expect_line(&format!("[{ca}]{ca}:已下线\n"));

    // who is per room.
    a.send(b"who\n");
    let mut want = vec![
        format!("[{aa}]alice:在线...\n"),
        format!("[{ca}]{ca}:在线...\n"),
    ];
    want.sort();
    assert_eq!(a.read_lines_sorted(2), want);
    b.send(b"who\n");
    b.expect_line(&format!("[{ba}]{ba}:在线...\n"));

    // Broadcasts stay in their room; private messages cross rooms.
    a.send(b"hello tea room\n");
    a.expect_line(&format!("[{aa}]alice:hello tea room\n"));
    c.expect_line(&format!("[{aa}]alice:hello tea room\n"));
    b.send(b"hello 101\n");
    b.expect_line(&format!("[{ba}]{ba}:hello 101\n"));
    b.send(b"to|alice|psst\n");
    a.expect_line(&format!("{ba}对您说psst\n"));
    a.send(format!("to|{ba}|back\n").as_bytes());
    b.expect_line("alice对您说back\n");

    // rooms: by name, with counts, one line each, nothing after.
    a.send(b"rooms\n");
    a.expect_line("101：1\n");
    a.expect_line("茶室：2\n");

    // Moving to one's own room is answered again, and nobody is told.
    a.send("room|茶室\n".as_bytes());
    a.expect_line("您已进入房间：茶室\n");

    // Invalid names: one clear line each, no move.
    for bad in ["room|", "room|a:b", "room| x", "room|a|b", "room|\u{200b}x"] {
        a.send(format!("{bad}\n").as_bytes());
        a.expect_line("房间名不合法\n");
    }
    a.send(format!("room|{}\n", "房".repeat(33)).as_bytes());
    a.expect_line("房间名不合法\n");
    a.send(b"room\n");
    a.expect_line("当前房间：茶室\n");
    a.expect_silence(QUIET);
    b.expect_silence(QUIET);
    c.expect_silence(QUIET);

    // Leaving tells only one's own room.
    drop(a);
    c.expect_line(&format!("[{aa}]alice:已下线\n"));
    b.send(b"rooms\n");
    b.expect_line("101：1\n");
    b.expect_line("茶室：1\n");
    // The last one out frees the room.
    c.send(b"room|101\n");
    c.expect_line("您已进入房间：101\n");
    b.expect_line(&format!("[{ca}]{ca}:已上线\n"));
    c.send(b"rooms\n");
    c.expect_line("101：2\n");
    c.expect_silence(QUIET);
    b.expect_silence(QUIET);
}

#[test]
fn room_texts_in_english() {
    let server = start(&["--lang", "en"]);
    let mut a = common::connect_raw(server.addr);
    let me = a.addr.clone();
    a.expect_line(&format!("[{me}]{me}:online\n"));
    a.send(b"room\n");
    a.expect_line("current room: 101\n");
    a.send(b"room|lounge\n");
    a.expect_line("you are now in room lounge\n");
    a.send(b"rooms\n");
    a.expect_line("lounge: 1\n");
    a.send(b"room|a:b\n");
    a.expect_line("invalid room name\n");
}

#[test]
fn hub_users_pick_a_room_with_the_query() {
    let server = start_web(&[]);
    let web = server.web.unwrap();
    let mut lobby = connect(server.addr);
    let mut line = connect(server.addr);
    let la = line.addr.clone();
    lobby.expect_line(&format!("[{la}]{la}:已上线\n"));
    line.send("room|茶室\n".as_bytes());
    line.expect_line("您已进入房间：茶室\n");
    lobby.expect_line(&format!("[{la}]{la}:已下线\n"));

    let mut hub = ws::connect(web, "/ws/7?room=%E8%8C%B6%E5%AE%A4");
    let ha = hub.get_ref().local_addr().unwrap().to_string();
    assert_eq!(
        ws::recv(&mut hub),
        json!({"type":0,"sender":7,"receiver":0,"content":"已上线"})
    );
    line.expect_line(&format!("[{ha}]7:已上线\n"));
    line.send(b"tea for hub\n");
    line.expect_line(&format!("[{la}]{la}:tea for hub\n"));
    assert_eq!(
        ws::recv(&mut hub),
        json!({"type":3,"sender":la,"receiver":0,"content":"tea for hub"})
    );
    ws::send(&mut hub, json!({"type":3,"content":"hub says hi"}));
    line.expect_line(&format!("[{ha}]7:hub says hi\n"));
    assert_eq!(ws::recv(&mut hub)["content"], "hub says hi");
    lobby.expect_silence(QUIET);

    // No room in the query: the line users' room, as before.
    let mut plain = ws::connect(web, "/ws/8");
    let pa = plain.get_ref().local_addr().unwrap().to_string();
    lobby.expect_line(&format!("[{pa}]8:已上线\n"));
    assert_eq!(ws::recv(&mut plain)["type"], 0);
    ws_silent(&mut hub, "the hub user in 茶室 heard of a 101 arrival");

    // An invalid room is refused before the upgrade, like an invalid id.
    for path in [
        "/ws/9?room=",
        "/ws/9?room=a%3Ab",
        "/ws/9?room=%20a",
        "/ws/9?room=a%7Cb",
    ] {
        let (status, body) = http(
            web,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        );
        assert_eq!(
            (status, body.as_str()),
            (400, r#"{"code":400,"msg":"Bad Request","data":null}"#),
            "{path}"
        );
    }
    lobby.expect_silence(QUIET);
    line.expect_silence(QUIET);
}

#[test]
fn im_app_ids_are_rooms_named_by_their_number_and_the_api_lists_rooms() {
    let server = start_web(&[]);
    let api = server.http.unwrap();
    let (status, body) = get(api, "/room/list");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"code":200,"msg":"Success","data":[]}"#)
    );

    let mut line = connect(server.addr);
    let la = line.addr.clone();
    let mut other = connect(server.addr);
    line.expect_line(&format!("[{}]{}:已上线\n", other.addr, other.addr));
    let mut im = ws::connect(server.web.unwrap(), "/im");
    ws::send(
        &mut im,
        json!({"seq":"1","cmd":"login","data":{"userID":"web","appID":103}}),
    );
    assert_eq!(ws::recv(&mut im)["response"]["code"], 200);
    line.send(b"room|103\n");
    line.expect_line("您已进入房间：103\n");
    other.expect_line(&format!("[{la}]{la}:已下线\n"));
    let enter = ws::recv(&mut im);
    assert_eq!(
        (&enter["cmd"], &enter["response"]["data"]["from"]),
        (&json!("enter"), &json!(la))
    );
    line.send(b"hi web\n");
    line.expect_line(&format!("[{la}]{la}:hi web\n"));
    let said: Value = ws::recv(&mut im);
    assert_eq!(said["response"]["data"]["msg"], "hi web");
    ws::send(
        &mut im,
        json!({"seq":"2","cmd":"msg","data":{"msg":"hi line"}}),
    );
    line.expect_line(&format!(
        "[{}]web:hi line\n",
        im.get_ref().local_addr().unwrap()
    ));
    other.expect_silence(QUIET);

    let (status, body) = get(api, "/room/list");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"code":200,"msg":"Success","data":[{"room":"101","count":1},{"room":"103","count":2}]}"#
        )
    );
    let (_, body) = get(api, "/user/list?appID=103");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["userCount"], 2, "{v}");
    let (_, body) = get(api, "/user/online?appID=103&userID=web");
    assert!(body.contains(r#""online":true"#), "{body}");
    let (status, _) = http(
        api,
        "POST /room/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
}
