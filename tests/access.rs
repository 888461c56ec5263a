//! Safe to put on the internet: API tokens, signed WebSocket logins, origins, names that
//! cannot impersonate, the login timeout and the health checks, against the real binary
//! with real clients (raw HTTP, tungstenite, `nc`-style line sockets).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::jwt::sign as jwt;
use common::ws::{close_frame, recv, send, Ws};
use common::{connect, start, Server};
use jsonwebtoken::{get_current_timestamp, Algorithm};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

const SECRET: &str = "s3cret";

fn web_server(extra: &[&str]) -> Server {
    let mut args = vec!["--ws-port", "0", "--http-port", "0"];
    args.extend_from_slice(extra);
    start(&args)
}

/// One raw HTTP exchange on a fresh connection (the request says `Connection: close`):
/// the whole response, head and body.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    String::from_utf8(all).unwrap()
}

fn status_of(response: &str) -> u16 {
    response.get(9..12).and_then(|c| c.parse().ok()).unwrap()
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// POSTs a form with extra header lines (each ending in `\r\n`).
fn post_with(addr: SocketAddr, path: &str, headers: &str, form: &str) -> String {
    exchange(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
}

fn get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"),
    )
}

fn token_for(sub: &str) -> String {
    common::jwt::token(SECRET, sub)
}

/// Opens a WebSocket on `path` with these extra request headers; `Err(status)` when the
/// server refuses the upgrade.
fn ws_open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tungstenite::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn login_answer(ws: &mut Ws, user: &str, token: Option<&str>) -> Value {
    let mut data = json!({"userID": user, "appID": 101});
    if let Some(t) = token {
        data["token"] = json!(t);
    }
    send(ws, json!({"seq": "1", "cmd": "login", "data": data}));
    recv(ws)["response"].clone()
}

#[test]
fn api_writes_need_one_of_the_tokens_and_reads_stay_open() {
    let server = web_server(&["--api-token", "old-token,new-token"]);
    let api = server.http.unwrap();
    let form = "userID=bob&message=hi";
    for headers in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Basic old-token\r\n",
    ] {
        for path in ["/user/sendMessage", "/user/sendMessageAll"] {
            let r = post_with(api, path, headers, form);
            assert_eq!(status_of(&r), 401, "{path} {headers:?}: {r}");
            assert!(r.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{r}");
            assert_eq!(
                body_of(&r),
                r#"{"code":401,"msg":"未授权：需要正确的 Authorization: Bearer 令牌","data":null}"#
            );
        }
    }
    let mut line = connect(server.addr);
    line.send(b"rename|bob\n");
    line.expect_line("您已更新用户名：bob\n");
    for token in ["old-token", "new-token"] {
        let auth = format!("Authorization: Bearer {token}\r\n");
        let r = post_with(
            api,
            "/user/sendMessage",
            &auth,
            &format!("userID=bob&message={token}"),
        );
        assert_eq!(status_of(&r), 200, "{r}");
        assert_eq!(
            body_of(&r),
            r#"{"code":200,"msg":"Success","data":{"sendResults":true}}"#
        );
        line.expect_line(&format!("system对您说{token}\n"));
        let r = post_with(api, "/user/sendMessageAll", &auth, "userID=api&message=all");
        assert_eq!(status_of(&r), 200, "{r}");
        assert!(line.read_line().ends_with("api:all\n"));
    }
    for path in [
        "/user/list",
        "/user/online?userID=bob",
        "/system/state",
        "/metrics",
        "/",
    ] {
        assert_eq!(status_of(&get_with(api, path, "")), 200, "{path}");
    }
}

#[test]
fn a_msg_id_is_de_duplicated_per_token() {
    let server = web_server(&["--api-token", "a,b"]);
    let api = server.http.unwrap();
    let mut line = connect(server.addr);
    line.send(b"rename|carol\n");
    line.expect_line("您已更新用户名：carol\n");
    let send = |token: &str| {
        let auth = format!("Authorization: Bearer {token}\r\n");
        let r = post_with(
            api,
            "/user/sendMessage",
            &auth,
            "userID=carol&message=once&msgID=m1",
        );
        assert_eq!(status_of(&r), 200, "{r}");
        serde_json::from_str::<Value>(body_of(&r)).unwrap()["data"].clone()
    };
    assert_eq!(send("a"), json!({"sendResults": true}));
    line.expect_line("system对您说once\n");
    assert_eq!(send("a"), json!({"sendResults": true, "duplicate": true}));
    assert_eq!(send("b"), json!({"sendResults": true}));
    line.expect_line("system对您说once\n");
    assert_eq!(send("b"), json!({"sendResults": true, "duplicate": true}));
    line.expect_silence(Duration::from_millis(300));
}

/// Runs the server binary with `args` (no `--host` of the test helper's) and `env`, and
/// returns its exit code and stderr once it exits (within 5 s).
fn run_refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(common::server_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server started with {args:?}; it should have refused");
}

/// Starts the server binary with `args` and `env` and returns it with the `n` addresses
/// it printed first.
fn run_started(args: &[&str], env: &[(&str, &str)], n: usize) -> (Child, Vec<SocketAddr>) {
    let mut child = Command::new(common::server_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        match line.trim().parse::<SocketAddr>() {
            Ok(addr) => addrs.push(addr),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?}: not an address: {line:?}");
            }
        }
    }
    (child, addrs)
}

#[test]
fn an_open_api_on_a_public_host_must_be_asked_for() {
    let public = ["--host", "0.0.0.0", "--port", "0", "--http-port", "0"];
    let (code, err) = run_refused(&public, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "imserver-mio: refusing to start: --host 0.0.0.0 is not loopback, so anyone could send \
         through the HTTP API; set --api-token (or IMSERVER_API_TOKEN), or --api-open to allow it\n"
    );
    let (code, err) = run_refused(&["--port", "0", "--api-token", ""], &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "imserver-mio: --api-token (IMSERVER_API_TOKEN) holds an empty token: give one or more \
         tokens, comma-separated\n"
    );
    let mut open: Vec<&str> = public.to_vec();
    open.push("--api-open");
    let (mut child, _) = run_started(&open, &[], 2);
    let _ = child.kill();
    let _ = child.wait();
    let (mut child, _) = run_started(&public, &[("IMSERVER_API_TOKEN", "t1,t2")], 2);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_api_token_can_come_from_the_environment() {
    let args = ["--host", "127.0.0.1", "--port", "0", "--http-port", "0"];
    let (mut child, addrs) = run_started(&args, &[("IMSERVER_API_TOKEN", "env-token")], 2);
    let api = addrs[1];
    let form = "userID=x&message=hi";
    let without = post_with(api, "/user/sendMessageAll", "", form);
    let with = post_with(
        api,
        "/user/sendMessageAll",
        "Authorization: Bearer env-token\r\n",
        form,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status_of(&without), 401, "{without}");
    assert_eq!(status_of(&with), 200, "{with}");
}

#[test]
fn signed_logins_need_a_valid_token_for_the_user() {
    let server = web_server(&["--auth-secret", SECRET]);
    let web = server.web.unwrap();
    let mut refused = vec![
        ("missing", None),
        (
            "wrong secret",
            Some(jwt(Algorithm::HS256, "other", "alice", 60)),
        ),
        ("expired", Some(jwt(Algorithm::HS256, SECRET, "alice", -10))),
        ("wrong sub", Some(token_for("mallory"))),
        ("hs512", Some(jwt(Algorithm::HS512, SECRET, "alice", 60))),
        ("garbage", Some("not.a.token".to_owned())),
    ];
    // alg "none": an unsigned token.
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let exp = get_current_timestamp() + 60;
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "alice", "exp": exp}))
    );
    refused.push(("alg none", Some(none)));
    let mut ws = ws_open(web, "/im", &[]).unwrap();
    for (why, token) in &refused {
        let r = login_answer(&mut ws, "alice", token.as_deref());
        assert_eq!(r["code"], 1003, "{why}: {r}");
        assert_eq!(r["codeMsg"], "未授权", "{why}");
    }
    let r = login_answer(&mut ws, "alice", Some(&token_for("alice")));
    assert_eq!(r["code"], 200, "{r}");
    // A line user cannot take the signed-in user's name.
    let mut line = connect(server.addr);
    line.send(b"rename|alice\n");
    line.expect_line("当前用户名被使用了\n");
    // Nor can an unsigned /im login, nor a hub connection without a token.
    let mut other = ws_open(web, "/im", &[]).unwrap();
    assert_eq!(login_answer(&mut other, "alice", None)["code"], 1003);
    assert_eq!(ws_open(web, "/ws/alice", &[]).err(), Some(401));
}

#[test]
fn hub_connections_take_their_token_in_the_query() {
    let server = web_server(&["--auth-secret", SECRET]);
    let web = server.web.unwrap();
    let api = server.http.unwrap();
    let r = get_with(api, "/ws/hubby?token=nonsense", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    assert_eq!(status_of(&r), 401, "{r}");
    assert!(r.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{r}");
    assert_eq!(
        body_of(&r),
        r#"{"code":401,"msg":"未授权：需要有效的登录令牌","data":null}"#
    );
    assert_eq!(ws_open(web, "/ws/hubby", &[]).err(), Some(401));
    let wrong = format!("/ws/hubby?token={}", token_for("someone"));
    assert_eq!(ws_open(web, &wrong, &[]).err(), Some(401));
    let good = format!("/ws/hubby?token={}", token_for("hubby"));
    let mut hub = ws_open(web, &good, &[]).unwrap();
    // Its own online notice (type 0) says it is in.
    let hello = recv(&mut hub);
    assert_eq!(
        (hello["type"].clone(), hello["sender"].clone()),
        (json!(0), json!("hubby"))
    );
    let (_, v) = common::http(
        api,
        "GET /user/online?userID=hubby HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(v.contains(r#""online":true"#), "{v}");
}

#[test]
fn an_expired_login_is_closed_after_the_grace() {
    let server = web_server(&["--auth-secret", SECRET]);
    let web = server.web.unwrap();
    let mut ws = ws_open(web, "/im", &[]).unwrap();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let token = jwt(Algorithm::HS256, SECRET, "brief", 2);
    let started = Instant::now();
    assert_eq!(login_answer(&mut ws, "brief", Some(&token))["code"], 200);
    // Still served within its time.
    send(&mut ws, json!({"seq": "2", "cmd": "heartbeat", "data": {}}));
    assert_eq!(recv(&mut ws)["response"]["code"], 200);
    let (code, reason) = close_frame(&mut ws);
    let waited = started.elapsed();
    assert_eq!((code, reason.as_str()), (1008, "登录令牌已过期"));
    // Expiry (1-2 s away, by whole seconds) plus the 5 s grace.
    assert!(waited >= Duration::from_secs(5), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn foreign_origins_are_refused_for_upgrades_and_the_api() {
    let server = web_server(&[
        "--allowed-origins",
        "https://chat.example,http://localhost:3000",
    ]);
    let web = server.web.unwrap();
    let api = server.http.unwrap();
    let own = format!("http://{web}");
    // The page is served by the HTTP listener and connects to the WebSocket one.
    let page = format!("http://{api}");
    for origin in [
        own.as_str(),
        page.as_str(),
        "https://chat.example",
        "HTTP://LOCALHOST:3000",
    ] {
        let mut ws = ws_open(web, "/im", &[("Origin", origin)]).unwrap();
        assert_eq!(login_answer(&mut ws, "o", None)["code"], 200, "{origin}");
        drop(ws);
        // The name is freed when the socket goes; wait for it (bounded).
        for _ in 0..50 {
            let (_, v) = common::http(
                web,
                "GET /user/online?userID=o HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            if v.contains(r#""online":false"#) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut plain = ws_open(web, "/im", &[]).unwrap();
    assert_eq!(login_answer(&mut plain, "no-origin", None)["code"], 200);
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        assert_eq!(
            ws_open(web, "/im", &[("Origin", origin)]).err(),
            Some(403),
            "{origin}"
        );
        assert_eq!(
            ws_open(web, "/ws/x", &[("Origin", origin)]).err(),
            Some(403),
            "{origin}"
        );
        let header = format!("Origin: {origin}\r\n");
        let r = get_with(api, "/user/list", &header);
        assert_eq!(status_of(&r), 403, "{r}");
        assert_eq!(
            body_of(&r),
            r#"{"code":403,"msg":"不允许的来源","data":null}"#
        );
        let r = post_with(api, "/user/sendMessageAll", &header, "userID=x&message=hi");
        assert_eq!(status_of(&r), 403, "{r}");
    }
    let own_api = format!("Origin: http://{api}\r\n");
    assert_eq!(status_of(&get_with(api, "/user/list", &own_api)), 200);
    assert_eq!(status_of(&get_with(api, "/user/list", "")), 200);
    // The page and the health checks are not the API: a foreign origin may load them.
    let evil = "Origin: http://evil.example\r\n";
    assert_eq!(status_of(&get_with(api, "/", evil)), 200);
    assert_eq!(status_of(&get_with(api, "/healthz", evil)), 200);
}

/// The next line that is not someone's online or offline notice.
fn answer_line(client: &mut common::Client) -> String {
    for _ in 0..20 {
        let line = client.read_line();
        if !line.ends_with(":已上线\n") && !line.ends_with(":已下线\n") {
            return line;
        }
    }
    panic!("only notices");
}

#[test]
fn names_cannot_hide_or_look_like_another() {
    let server = web_server(&[]);
    let web = server.web.unwrap();
    let mut line = connect(server.addr);
    // Format characters: zero-width space, bidi override, BOM.
    for bad in [
        "al\u{200B}ice",
        "\u{202E}ecila",
        "\u{FEFF}bob",
        "a\u{200D}b",
    ] {
        line.send(format!("rename|{bad}\n").as_bytes());
        assert_eq!(answer_line(&mut line), "用户名不合法\n");
    }
    let mut ws = ws_open(web, "/im", &[]).unwrap();
    assert_eq!(login_answer(&mut ws, "al\u{200B}ice", None)["code"], 1002);
    assert_eq!(ws_open(web, "/ws/al%E2%80%8Bice", &[]).err(), Some(400));
    // Look-alikes of a name in use.
    let mut alice = ws_open(web, "/im", &[]).unwrap();
    assert_eq!(login_answer(&mut alice, "alice", None)["code"], 200);
    line.send("rename|аlice\n".as_bytes()); // Cyrillic а
    assert_eq!(answer_line(&mut line), "当前用户名被使用了\n");
    assert_eq!(login_answer(&mut ws, "аlice", None)["code"], 1009);
    // Two ASCII names never clash by their looks.
    line.send(b"rename|Tom\n");
    assert_eq!(answer_line(&mut line), "您已更新用户名：Tom\n");
    let mut torn = connect(server.addr);
    torn.send(b"rename|Torn\n");
    assert_eq!(answer_line(&mut torn), "您已更新用户名：Torn\n");
    // The API's sender is reserved, in every protocol.
    torn.send(b"rename|system\n");
    assert_eq!(answer_line(&mut torn), "当前用户名被使用了\n");
    assert_eq!(login_answer(&mut ws, "system", None)["code"], 1009);
    let mut hub = ws_open(web, "/ws/system", &[]).unwrap();
    assert_eq!(close_frame(&mut hub).0, 1008);
    // Once alice leaves, her look-alike is free.
    drop(alice);
    let mut got = false;
    for _ in 0..50 {
        line.send("rename|аlice\n".as_bytes());
        if answer_line(&mut line) == "您已更新用户名：аlice\n" {
            got = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(got, "the look-alike stayed taken after alice left");
}

#[test]
fn a_websocket_must_log_in_within_the_login_timeout() {
    let server = web_server(&["--login-timeout", "1"]);
    let web = server.web.unwrap();
    let mut ws = ws_open(web, "/im", &[]).unwrap();
    let started = Instant::now();
    // Pings, heartbeats (refused: not logged in) and empty frames do not extend it.
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut closed = None;
    'traffic: for i in 0..40 {
        let sent = match i % 3 {
            0 => ws.send(Message::Ping(vec![1].into())),
            1 => ws.send(Message::text(r#"{"seq":"h","cmd":"heartbeat","data":{}}"#)),
            _ => ws.send(Message::text("")),
        };
        if let Err(e) = sent {
            panic!("send {i}: {e}");
        }
        // Take what came back, until 100 ms of silence.
        for _ in 0..10 {
            match ws.read() {
                Ok(Message::Close(Some(f))) => {
                    closed = Some((u16::from(f.code), f.reason.to_string()));
                    break 'traffic;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    break
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let waited = started.elapsed();
    assert_eq!(
        closed,
        Some((1008, "登录超时".to_owned())),
        "after {waited:?}"
    );
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    // A user who logs in in time stays.
    let mut ok = ws_open(web, "/im", &[]).unwrap();
    assert_eq!(login_answer(&mut ok, "punctual", None)["code"], 200);
    std::thread::sleep(Duration::from_millis(1500));
    send(&mut ok, json!({"seq": "2", "cmd": "heartbeat", "data": {}}));
    assert_eq!(recv(&mut ok)["response"]["code"], 200);
}

#[test]
fn an_idle_http_connection_gets_408_after_the_login_timeout() {
    let server = web_server(&["--login-timeout", "1"]);
    let mut idle = TcpStream::connect(server.http.unwrap()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = idle.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `path` until it answers `status` (at most 10 s); returns the body.
fn wait_status(addr: SocketAddr, path: &str, status: u16) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = get_with(addr, path, "");
        if status_of(&last) == status {
            return body_of(&last).to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path} never answered {status}; last: {last:?}");
}

#[test]
fn health_checks_answer_and_readiness_follows_the_cluster() {
    let server = web_server(&[]);
    let api = server.http.unwrap();
    let r = get_with(api, "/healthz", "");
    assert_eq!(status_of(&r), 200);
    assert_eq!(
        body_of(&r),
        r#"{"code":200,"msg":"Success","data":{"status":"ok"}}"#
    );
    let r = get_with(api, "/readyz", "");
    assert_eq!(status_of(&r), 200);
    assert_eq!(
        body_of(&r),
        r#"{"code":200,"msg":"Success","data":{"ready":true}}"#
    );
    assert_eq!(status_of(&post_with(api, "/healthz", "", "")), 405);

    // A Redis where nothing listens: alive, but not ready.
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let server = web_server(&["--redis", &nowhere]);
    let api = server.http.unwrap();
    assert_eq!(status_of(&get_with(api, "/healthz", "")), 200);
    let r = get_with(api, "/readyz", "");
    assert_eq!(status_of(&r), 503, "{r}");
    assert_eq!(
        body_of(&r),
        r#"{"code":503,"msg":"服务暂不可用","data":{"ready":false}}"#
    );

    // A real Redis: ready once linked, not ready again once it is gone.
    let port = free_port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let url = format!("redis://127.0.0.1:{port}");
    let server = web_server(&["--redis", &url, "--node-timeout", "2"]);
    let api = server.http.unwrap();
    let ready = wait_status(api, "/readyz", 200);
    let _ = redis.kill();
    let _ = redis.wait();
    assert_eq!(
        ready,
        r#"{"code":200,"msg":"Success","data":{"ready":true}}"#
    );
    wait_status(api, "/readyz", 503);
    assert_eq!(status_of(&get_with(api, "/healthz", "")), 200);
}
