//! History per room (issue 13, item 2), through real sockets: line `history` and
//! `history|K` with every bad count, `--history 0`, `/im` `history` with `limit`, `since`
//! and `gap`, room messages numbered in `/im` pushes, and the bounds: a flooded room with
//! `--history 5` keeps 5, and `--history-bytes` caps all rooms together.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
mod common;

use common::ws::{self, Ws};
use common::{connect, get, start, start_web, Client};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const QUIET: Duration = Duration::from_millis(200);

/// Says `text` and reads its echo.
fn say(c: &mut Client, shown: &str, text: &str) {
    c.send(format!("{text}\n").as_bytes());
    c.expect_line(&format!("[{}]{shown}:{text}\n", c.addr));
}

/// Splits a history line into its time and the rest, checking the time's shape
/// (`YYYY-MM-DD HH:MM:SS`) and that it is within a minute of now (UTC).
fn timed(line: &str) -> String {
    let (time, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once(']'))
        .unwrap_or_else(|| panic!("no [time] in {line:?}"));
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-dd dd:dd:dd", "{line:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secs_of_day = |t: &str| -> u64 {
        let hms: Vec<u64> = t[11..].split(':').map(|x| x.parse().unwrap()).collect();
        hms[0] * 3600 + hms[1] * 60 + hms[2]
    };
    let diff = (now % 86_400).abs_diff(secs_of_day(time));
    assert!(
        !(60..=86_400 - 60).contains(&diff),
        "{time} is not now (UTC)"
    );
    assert!(time.starts_with("20"), "{time}");
    rest.to_owned()
}

/// Sends `history...` and reads the answer: the lines without their times, and the end.
fn history(c: &mut Client, command: &str, n: usize) -> Vec<String> {
    c.send(format!("{command}\n").as_bytes());
    let mut got: Vec<String> = (0..n).map(|_| timed(&c.read_line())).collect();
    got.push(c.read_line());
    got
}

fn login(w: &mut Ws, user: &str, app: u16) {
    ws::send(
        w,
        json!({"seq":"1","cmd":"login","data":{"userID":user,"appID":app}}),
    );
    assert_eq!(ws::recv(w)["response"]["code"], 200);
}

/// Sends an `/im` `history` request and returns the answer's `response`.
fn im_history(w: &mut Ws, data: Value) -> Value {
    ws::send(w, json!({"seq":"h","cmd":"history","data":data}));
    let v = ws::recv(w);
    assert_eq!(
        (&v["seq"], &v["cmd"]),
        (&json!("h"), &json!("history")),
        "{v}"
    );
    v["response"].clone()
}

/// The messages of a history answer as `seq:sender:content`, checking each time.
fn messages(response: &Value) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    response["data"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {response}"))
        .iter()
        .map(|m| {
            let time = m["time"].as_u64().unwrap();
            assert!(now.abs_diff(time) < 60_000, "{m}");
            format!(
                "{}:{}:{}",
                m["seq"],
                m["sender"].as_str().unwrap(),
                m["content"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn line_history_shows_the_rooms_last_messages_and_refuses_bad_counts() {
    let server = start(&[]);
    let (mut a, mut b) = common::connect_two(server.addr);
    let (aa, ba) = (a.addr.clone(), b.addr.clone());
    a.rename("alice");
    for text in ["one", "two 你好", "three|x"] {
        say(&mut a, "alice", text);
        b.expect_line(&format!("[{aa}]alice:{text}\n"));
    }
    // Whispers and notices are not history.
    b.send(b"to|alice|secret\n");
    a.expect_line(&format!("{ba}对您说secret\n"));

    let all = [
        format!("[{aa}]alice:one\n"),
        format!("[{aa}]alice:two 你好\n"),
        format!("[{aa}]alice:three|x\n"),
    ];
    let end = |k: usize| format!("历史消息结束（{k} 条）\n");
    assert_eq!(
        history(&mut b, "history", 3),
        [&all[..], &[end(3)]].concat()
    );
    assert_eq!(
        history(&mut b, "history|2", 2),
        [&all[1..], &[end(2)]].concat()
    );
    // More than the room has, or more than any number: what there is.
    assert_eq!(
        history(&mut b, "history|1000", 3),
        [&all[..], &[end(3)]].concat()
    );
    assert_eq!(
        history(&mut b, "history|999999999999999999999999", 3),
        [&all[..], &[end(3)]].concat()
    );
    for bad in [
        "history|",
        "history|0",
        "history|-1",
        "history|abc",
        "history|1.5",
        "history| 2",
    ] {
        b.send(format!("{bad}\n").as_bytes());
        b.expect_line("历史消息条数须为正整数\n");
    }
    a.expect_silence(QUIET);

    // Another room has its own history; the default room's is still there.
    b.send(b"room|x\n");
    b.expect_line("您已进入房间：x\n");
    a.expect_line(&format!("[{ba}]{ba}:已下线\n"));
    assert_eq!(history(&mut b, "history", 0), [end(0)]);
    say(&mut b, &ba, "in x");
    assert_eq!(
        history(&mut b, "history", 1),
        [format!("[{ba}]{ba}:in x\n"), end(1)]
    );

    // The history outlives everyone leaving the room.
    drop(a);
    b.send(b"room|101\n");
    b.expect_line("您已进入房间：101\n");
    assert_eq!(
        history(&mut b, "history", 3),
        [&all[..], &[end(3)]].concat()
    );
}

#[test]
fn line_history_in_english_and_off() {
    let server = start(&["--lang", "en", "--history", "0"]);
    let mut a = common::connect_raw(server.addr);
    let me = a.addr.clone();
    a.expect_line(&format!("[{me}]{me}:online\n"));
    a.send(b"hi\n");
    a.expect_line(&format!("[{me}]{me}:hi\n"));
    for command in ["history", "history|3"] {
        a.send(format!("{command}\n").as_bytes());
        a.expect_line("history is off\n");
    }
    a.send(b"history|x\n");
    a.expect_line("history count must be a whole number from 1\n");

    let server = start(&["--lang", "en"]);
    let mut a = common::connect_raw(server.addr);
    let me = a.addr.clone();
    a.expect_line(&format!("[{me}]{me}:online\n"));
    a.send(b"hi\n");
    a.expect_line(&format!("[{me}]{me}:hi\n"));
    assert_eq!(
        history(&mut a, "history", 1),
        [
            format!("[{me}]{me}:hi\n"),
            "end of history (1 message)\n".to_owned()
        ]
    );
}

#[test]
fn a_flooded_room_keeps_only_its_last_n() {
    let server = start_web(&["--history", "5"]);
    let mut a = connect(server.addr);
    a.rename("alice");
    let mut flood = Vec::new();
    for i in 1..=200 {
        flood.extend_from_slice(format!("flood {i}\n").as_bytes());
    }
    a.send(&flood);
    for i in 1..=200 {
        a.expect_line(&format!("[{}]alice:flood {i}\n", a.addr));
    }
    let got = history(&mut a, "history|100", 5);
    let want: Vec<String> = (196..=200)
        .map(|i| format!("[{}]alice:flood {i}\n", a.addr))
        .chain(["历史消息结束（5 条）\n".to_owned()])
        .collect();
    assert_eq!(got, want);
    let metrics = get_text(server.http.unwrap(), "/metrics");
    assert!(
        metrics.contains("\nimserver_history_messages 5\n"),
        "{metrics}"
    );
    let mut w = ws::connect(server.web.unwrap(), "/im");
    login(&mut w, "web", 101);
    let r = im_history(&mut w, json!({"since": 0}));
    assert_eq!(r["data"]["gap"], true, "{r}");
    assert_eq!(
        messages(&r),
        (196..=200)
            .map(|i| format!("{i}:alice:flood {i}"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn history_bytes_caps_all_rooms_together() {
    let cap = 50_000;
    let server = start_web(&["--history-bytes", &cap.to_string(), "--max-line", "10000"]);
    let mut a = connect(server.addr);
    a.rename("alice");
    a.send(b"hello quiet room\n");
    a.expect_line(&format!("[{}]alice:hello quiet room\n", a.addr));
    let big = "x".repeat(2000);
    for room in 0..10 {
        a.send(format!("room|r{room}\n").as_bytes());
        a.expect_line(&format!("您已进入房间：r{room}\n"));
        let mut lines = Vec::new();
        for _ in 0..20 {
            lines.extend_from_slice(format!("{big}\n").as_bytes());
        }
        a.send(&lines);
        for _ in 0..20 {
            a.expect_line(&format!("[{}]alice:{big}\n", a.addr));
        }
    }
    let metrics = get_text(server.http.unwrap(), "/metrics");
    let bytes: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("imserver_history_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(bytes <= cap, "{bytes} > {cap}");
    // The quiet room keeps its one message: the largest histories paid.
    a.send(b"room|101\n");
    a.expect_line("您已进入房间：101\n");
    assert_eq!(
        history(&mut a, "history", 1),
        [
            format!("[{}]alice:hello quiet room\n", a.addr),
            "历史消息结束（1 条）\n".to_owned()
        ]
    );
}

fn get_text(addr: SocketAddr, path: &str) -> String {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn im_history_with_limit_since_and_gap() {
    let server = start_web(&["--history", "4"]);
    let web = server.web.unwrap();
    let mut w = ws::connect(web, "/im");
    // Not logged in: 1000, as every command but login.
    let r = im_history(&mut w, json!({}));
    assert_eq!(r["code"], 1000, "{r}");
    login(&mut w, "web", 102);
    let mut line = connect(server.addr);
    let la = line.addr.clone();
    line.send(b"room|102\n");
    line.expect_line("您已进入房间：102\n");
    assert_eq!(ws::recv(&mut w)["cmd"], "enter");

    // Room messages carry their number in /im pushes; private ones do not.
    say(&mut line, &la, "one");
    let p = ws::recv(&mut w);
    assert_eq!(
        p["response"]["data"],
        json!({"target":"","type":"text","msg":"one","from":la,"seq":1})
    );
    ws::send(&mut w, json!({"seq":"2","cmd":"msg","data":{"msg":"two"}}));
    line.expect_line(&format!("[{}]web:two\n", w.get_ref().local_addr().unwrap()));
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let v = ws::recv(&mut w);
        if v["cmd"] == "msg" && v["seq"] == "" {
            seqs.push(v["response"]["data"]["seq"].clone());
        }
    }
    assert_eq!(seqs, [json!(2)]);
    line.send(b"to|web|private\n");
    let p = ws::recv(&mut w);
    assert_eq!(p["response"]["data"]["msg"], "private");
    assert!(p["response"]["data"].get("seq").is_none(), "{p}");

    let r = im_history(&mut w, json!({}));
    assert_eq!(r["code"], 200);
    assert_eq!(
        (&r["data"]["room"], &r["data"]["gap"]),
        (&json!("102"), &json!(false))
    );
    assert_eq!(
        messages(&r),
        [format!("1:{la}:one"), "2:web:two".to_owned()]
    );
    let r = im_history(&mut w, json!({"limit": 1}));
    assert_eq!(messages(&r), ["2:web:two"]);
    let r = im_history(&mut w, json!({"since": 1}));
    assert_eq!(
        (messages(&r), &r["data"]["gap"]),
        (vec!["2:web:two".to_owned()], &json!(false))
    );
    // since in the future, or up to date: nothing, no error, no gap.
    for since in [2u64, 3, 1_000_000, u64::MAX] {
        let r = im_history(&mut w, json!({ "since": since }));
        assert_eq!(r["code"], 200, "{since}");
        assert_eq!(r["data"]["messages"], json!([]), "{since}");
        assert_eq!(r["data"]["gap"], false, "{since}");
    }
    // Numbers beyond u64 (as JSON floats or digits): a huge since is in the future, a huge
    // limit is capped, as `history|K` caps a huge K.
    for since in [json!(1e20), json!("99999999999999999999")] {
        let r = im_history(&mut w, json!({ "since": since }));
        assert_eq!(r["code"], 200, "{since}");
        assert_eq!(r["data"]["messages"], json!([]), "{since}");
    }
    for limit in [json!(1e20), json!("99999999999999999999")] {
        let r = im_history(&mut w, json!({ "limit": limit }));
        assert_eq!(messages(&r).len(), 2, "{limit}");
    }
    // The room keeps 4: after 6 more, asking from 1 finds a gap; limit counts from since.
    for i in 3..=8 {
        say(&mut line, &la, &format!("m{i}"));
        assert_eq!(ws::recv(&mut w)["response"]["data"]["seq"], i);
    }
    let r = im_history(&mut w, json!({"since": 1}));
    assert_eq!(r["data"]["gap"], true);
    assert_eq!(messages(&r).len(), 4);
    let r = im_history(&mut w, json!({"since": 5, "limit": 2}));
    assert_eq!(r["data"]["gap"], false);
    assert_eq!(messages(&r), [format!("6:{la}:m6"), format!("7:{la}:m7")]);
    let r = im_history(&mut w, json!({"limit": 1000}));
    assert_eq!(messages(&r).len(), 4);
    // Bad parameters: 1001.
    for data in [
        json!({"limit": 0}),
        json!({"limit": -1}),
        json!({"limit": "abc"}),
        json!({"since": -5}),
        json!({"since": 1.5}),
    ] {
        assert_eq!(im_history(&mut w, data.clone())["code"], 1001, "{data}");
    }
    // The API's room broadcast is history too.
    let v = common::post(
        server.http.unwrap(),
        "/user/sendMessageAll",
        "appID=102&userID=api&message=from%20the%20api",
    );
    assert_eq!(v["code"], 200);
    assert_eq!(ws::recv(&mut w)["response"]["data"]["seq"], 9);
    let r = im_history(&mut w, json!({"limit": 1}));
    assert_eq!(messages(&r), ["9:api:from the api"]);
}

#[test]
fn im_history_when_off() {
    let server = start_web(&["--history", "0"]);
    let mut w = ws::connect(server.web.unwrap(), "/im");
    login(&mut w, "web", 101);
    ws::send(&mut w, json!({"seq":"2","cmd":"msg","data":{"msg":"hi"}}));
    let mut pushes = Vec::new();
    for _ in 0..2 {
        pushes.push(ws::recv(&mut w));
    }
    let push = pushes.iter().find(|v| v["seq"] == "").unwrap();
    assert!(push["response"]["data"].get("seq").is_none(), "{push}");
    let r = im_history(&mut w, json!({"limit": 5}));
    assert_eq!(
        r,
        json!({"code":1009,"codeMsg":"操作失败","data":"历史消息未开启"})
    );
}

#[test]
fn a_move_right_after_history_gets_the_whole_answer_then_nothing_of_the_old_room() {
    let server = start(&["--history", "50"]);
    let (mut a, mut b) = common::connect_two(server.addr);
    let ba = b.addr.clone();
    b.rename("bob");
    // 50 long messages: more than a socket buffer holds, so the answer spans many writes.
    let long = "y".repeat(3000);
    let mut lines = Vec::new();
    for i in 0..50 {
        lines.extend_from_slice(format!("{i}{long}\n").as_bytes());
    }
    b.send(&lines);
    for i in 0..50 {
        b.expect_line(&format!("[{ba}]bob:{i}{long}\n"));
        a.expect_line(&format!("[{ba}]bob:{i}{long}\n"));
    }
    // The request and the move in one packet, while bob keeps talking in 101.
    a.send(b"history\nroom|elsewhere\n");
    b.send(b"after\n");
    let mut got = Vec::new();
    loop {
        let line = a.read_line();
        let done = line == "您已进入房间：elsewhere\n";
        got.push(line);
        if done {
            break;
        }
        assert!(got.len() < 60, "no move answer: {got:?}");
    }
    // bob's "after" may come before the answer (said while a was still in 101: then it
    // is the history's newest), never inside it, never after the move.
    let live = format!("[{ba}]bob:after\n");
    let live_first = got.first() == Some(&live);
    let answer = &got[usize::from(live_first)..];
    let mut want: Vec<String> = (0..50).map(|i| format!("[{ba}]bob:{i}{long}\n")).collect();
    if live_first {
        want.remove(0);
        want.push(live.clone());
    }
    assert_eq!(answer.len(), 52, "{answer:?}");
    let shown: Vec<String> = answer[..50].iter().map(|l| timed(l)).collect();
    assert_eq!(shown, want);
    assert_eq!(answer[50], "历史消息结束（50 条）\n");
    let mut want_b = vec![live, format!("[{}]{}:已下线\n", a.addr, a.addr)];
    want_b.sort();
    assert_eq!(b.read_lines_sorted(2), want_b);
    b.send(b"later\n");
    b.expect_line(&format!("[{ba}]bob:later\n"));
    a.expect_silence(QUIET);
}
