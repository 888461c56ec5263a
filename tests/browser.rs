//! The chat page (`GET /`) in a real browser.
//!
//! Starts the real server with line, WebSocket and HTTP listeners, headless Chromium, and a
//! line-protocol user on a plain `TcpStream`; `tests/browser/page_check.py` then drives two
//! tabs over the DevTools protocol: alice and bob log in, alice's message shows on bob's
//! page and reaches the line user, the line user's answer shows on alice's page, bob
//! whispers to alice, bob's reloaded page shows the room's history, alice's page recovers
//! what was said while its socket was down (and says so when more was lost than the
//! server keeps), and a screenshot of bob's page is kept at `target/browser/chat.png`.
//! On a server with `--auth-secret` (`target/browser/signed.png`): logins refused without
//! a token and with another user's, saying so on the status line; a token typed in, then
//! sent again on a reconnect; a user linked in with `#token=`.
//!
//! Needs `chromium` (or `$CHROMIUM`) and Python with `websockets` >= 13 (found as
//! `common::python` says); `.ci/run` installs both. When one is missing the test fails and
//! says what to install. Every wait is bounded, and the server, Chromium (its whole process
//! group) and the driver are killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PAGE: &str = include_str!("../src/proto/page.html");
const ALICE_MSG: &str = "hello from alice 你好";
const LINE_MSG: &str = "hello from the line 你好";
const LINE_NAME: &str = "carol";

/// A child process killed and reaped on drop; with `group`, its whole process group.
struct Guard {
    child: Child,
    group: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server with all three listeners and `extra` flags, and their addresses (line, ws,
/// http).
fn start_server(extra: &[&str]) -> (common::Server, SocketAddr, SocketAddr, SocketAddr) {
    let mut args = vec!["--ws-port", "0", "--http-port", "0", "--idle-timeout", "0"];
    args.extend_from_slice(extra);
    let server = common::start(&args);
    let ws = server.web.expect("a WebSocket listener");
    let http = server.http.expect("an HTTP listener");
    let line = server.addr;
    (server, line, ws, http)
}

/// `chromium` from `$CHROMIUM` or `PATH`, or a failure that says how to install it.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the browser test needs Chromium: `apt-get install -y chromium` (.ci/run installs it), \
         or set CHROMIUM to a Chromium binary"
    );
}

/// Headless Chromium in its own process group, and its DevTools browser address.
fn start_chromium(profile: &Path) -> (Guard, String) {
    let exe = chromium();
    let mut child = Command::new(&exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
        ])
        .args(["--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--remote-debugging-port=0", "about:blank"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let guard = Guard { child, group: true };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find("DevTools listening on ") {
                let _ = tx.send(Ok(line[i + "DevTools listening on ".len()..]
                    .trim()
                    .to_string()));
            } else if tail.len() < 20 {
                tail.push(line);
            }
        }
        let _ = tx.send(Err(tail.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(url)) => (guard, url),
        Ok(Err(tail)) => panic!("chromium exited without a DevTools address; stderr:\n{tail}"),
        Err(_) => panic!("chromium printed no DevTools address within 30 s"),
    }
}

/// Headless Chromium on a throwaway profile, and its DevTools address. Chromium is killed
/// before its profile is removed (fields drop in order).
struct Browser {
    _chromium: Guard,
    _profile: TempDir,
    devtools: String,
}

impl Browser {
    fn start() -> Browser {
        let profile = TempDir(std::env::temp_dir().join(format!(
            "imserver-browser-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        )));
        let (chromium, devtools) = start_chromium(&profile.0);
        Browser {
            _chromium: chromium,
            _profile: profile,
            devtools,
        }
    }

    /// Runs `tests/browser/page_check.py` on this browser against the page at `http`, with
    /// the line user `LINE_NAME` and `extra` arguments; the screenshot goes to
    /// `target/browser/SHOT`. Returns the driver's output, after checking that it succeeded
    /// and reported each of `steps` and a PNG screenshot.
    fn page_check(&self, http: SocketAddr, shot: &str, extra: &[&str], steps: &[&str]) -> String {
        let python = common::python::require_websockets();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shot = manifest.join("target/browser").join(shot);
        std::fs::create_dir_all(shot.parent().unwrap()).expect("create target/browser");
        let _ = std::fs::remove_file(&shot);
        let mut driver = Command::new(&python);
        driver
            .arg(manifest.join("tests/browser/page_check.py"))
            .args(["--url", &format!("http://{http}/")])
            .arg("--shot")
            .arg(&shot)
            .args(["--devtools", &self.devtools, "--line-name", LINE_NAME])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (ok, output) = run_bounded(driver, Duration::from_secs(120));
        println!("driver output:\n{output}");
        assert!(ok, "page_check.py failed:\n{output}");
        for step in steps.iter().chain(&["OK screenshot"]) {
            assert!(output.contains(step), "driver did not report {step:?}");
        }
        let png = std::fs::read(&shot).expect("the screenshot was written");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "the screenshot is a PNG"
        );
        output
    }
}

/// A line-protocol user whose reads never block for long.
struct LineUser {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    partial: Vec<u8>,
}

impl LineUser {
    fn connect(addr: SocketAddr) -> LineUser {
        let stream = TcpStream::connect(addr).expect("connect to the line port");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        LineUser {
            stream,
            reader,
            partial: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the line port");
    }

    /// The next whole line, or None if none completes within about 200 ms.
    fn poll_line(&mut self) -> Option<String> {
        match self.reader.read_until(b'\n', &mut self.partial) {
            Ok(0) => panic!("the server closed the line user's connection"),
            Ok(_) if self.partial.ends_with(b"\n") => {
                let line = String::from_utf8(std::mem::take(&mut self.partial))
                    .expect("server sends UTF-8");
                Some(line.trim_end_matches('\n').to_string())
            }
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("line user read: {e}"),
        }
    }

    /// A line user online and renamed to `LINE_NAME`.
    fn named(addr: SocketAddr) -> LineUser {
        let mut user = LineUser::connect(addr);
        user.expect_line("its own online notice", |l| l.ends_with(":已上线"));
        user.send(&format!("rename|{LINE_NAME}"));
        user.expect_line("the rename reply", |l| {
            l == format!("您已更新用户名：{LINE_NAME}")
        });
        user
    }

    fn expect_line(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(line) = self.poll_line() {
                assert!(ok(&line), "line user: expected {what}, got {line:?}");
                return line;
            }
        }
        panic!("line user: no {what} within 5 s");
    }
}

/// Runs the line user until `stop`: it answers alice's message once, and returns every line
/// it received.
fn run_line_user(mut user: LineUser, stop: Arc<AtomicBool>) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut seen = Vec::new();
        let mut answered = false;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Some(line) = user.poll_line() {
                if !answered
                    && line.starts_with('[')
                    && line.contains(&format!("]alice:{ALICE_MSG}"))
                {
                    user.send(LINE_MSG);
                    answered = true;
                }
                seen.push(line);
            }
        }
        seen
    })
}

/// One HTTP/1.1 GET; returns (status line, headers, body). Reads by Content-Length.
fn http_get(addr: SocketAddr, path: &str) -> (String, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the http port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read the response head");
        if line.is_empty() || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let len: usize = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.eq_ignore_ascii_case("content-length") {
                v.trim().parse().ok()
            } else {
                None
            }
        })
        .expect("response has a Content-Length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("read the response body");
    (status.to_string(), headers.to_string(), body)
}

#[test]
fn page_is_self_contained() {
    assert_eq!(
        PAGE.matches("__WS_PORT__").count(),
        1,
        "one port placeholder"
    );
    for external in ["<link", "src=", "@import", "url(", "https://", "http://"] {
        assert!(
            !PAGE.contains(external),
            "the page must not load anything from outside ({external:?})"
        );
    }
    for id in [
        "name", "token", "login", "status", "users", "target", "text", "send", "log",
    ] {
        assert!(PAGE.contains(&format!("id=\"{id}\"")), "element #{id}");
    }
    assert!(
        !PAGE.contains("innerHTML"),
        "user text goes through textContent only"
    );
}

#[test]
fn page_is_served_with_the_ws_port() {
    let (_server, _line, ws, http) = start_server(&[]);
    let (status, headers, body) = http_get(http, "/");
    assert!(status.contains(" 200"), "GET / answered {status:?}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/html"),
        "GET / content type: {headers:?}"
    );
    let page = String::from_utf8(body).expect("the page is UTF-8");
    assert!(
        page.contains(&format!("const WS_PORT = \"{}\";", ws.port())),
        "the placeholder is replaced with the ws port {}",
        ws.port()
    );
    assert!(!page.contains("__WS_PORT__"));
}

#[test]
fn two_browser_tabs_and_a_line_user_chat() {
    let (_server, line, _ws, http) = start_server(&["--history", "20"]);
    let stop = Arc::new(AtomicBool::new(false));
    let line_thread = run_line_user(LineUser::named(line), stop.clone());
    let browser = Browser::start();
    let steps = [
        "OK alice and bob log in",
        "OK user list and join notice",
        "OK alice -> bob broadcast",
        "OK line user -> alice's page",
        "OK bob -> alice private message",
        "OK history after reload",
        "OK recovery after reconnect",
        "OK gap after a long absence",
    ];
    browser.page_check(http, "chat.png", &[], &steps);
    let lines = stop_line_user(line_thread, &stop);
    assert_received(&lines, "alice's online notice", |l| {
        l.starts_with('[') && l.ends_with("]alice:已上线")
    });
    assert_received(&lines, "bob's online notice", |l| {
        l.starts_with('[') && l.ends_with("]bob:已上线")
    });
    assert_received(&lines, "alice's broadcast", |l| {
        l.starts_with('[') && l.ends_with(&format!("]alice:{ALICE_MSG}"))
    });
    assert_received(&lines, "its own answer echoed", |l| {
        l.ends_with(&format!("]{LINE_NAME}:{LINE_MSG}"))
    });
}

/// The page on a server with `--auth-secret`: refused without a token (and with another
/// user's), in words that say so, and not online; online with the user's token typed in,
/// its message reaching the line user; online too from a `#token=` link.
#[test]
fn the_page_signs_in_with_a_token() {
    const SECRET: &str = "page-secret";
    let (_server, line, _ws, http) = start_server(&["--auth-secret", SECRET]);
    let stop = Arc::new(AtomicBool::new(false));
    let line_thread = run_line_user(LineUser::named(line), stop.clone());
    let browser = Browser::start();
    let alice = format!("alice={}", common::jwt::token(SECRET, "alice"));
    let dave = format!("dave={}", common::jwt::token(SECRET, "dave"));
    let steps = [
        "OK refused without a token",
        "OK refused with another user's token",
        "OK alice logs in with her token and chats",
        "OK alice's reconnect sends her token again",
        "OK dave logs in from a #token= link",
    ];
    let args = ["--token", &alice, "--token", &dave];
    browser.page_check(http, "signed.png", &args, &steps);
    let lines = stop_line_user(line_thread, &stop);
    // The refused logins never came online: alice did at her login, left at the drop, and
    // came back at her reconnect.
    let presence: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_once("]alice:").map(|(_, what)| what))
        .filter(|what| what.starts_with('已'))
        .collect();
    assert_eq!(presence, ["已上线", "已下线", "已上线"], "alice's presence");
    assert_received(&lines, "alice's broadcast", |l| {
        l.starts_with('[') && l.ends_with(&format!("]alice:{ALICE_MSG}"))
    });
    assert_received(&lines, "dave's online notice", |l| {
        l.starts_with('[') && l.ends_with("]dave:已上线")
    });
}

/// Stops the line user's thread and returns every line it received.
fn stop_line_user(thread: JoinHandle<Vec<String>>, stop: &AtomicBool) -> Vec<String> {
    stop.store(true, Ordering::Relaxed);
    let lines = thread.join().expect("line user thread");
    println!("line user received:\n{}", lines.join("\n"));
    lines
}

/// Fails unless one of the line user's `lines` is `what`.
fn assert_received(lines: &[String], what: &str, is: impl Fn(&str) -> bool) {
    assert!(
        lines.iter().any(|l| is(l)),
        "line user never received {what}; got {lines:?}"
    );
}

/// Runs `cmd` for at most `limit`; returns (exited 0, stdout + stderr).
fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let collect = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = collect(child.stdout.take().map(|r| Box::new(r) as _));
    let err = collect(child.stderr.take().map(|r| Box::new(r) as _));
    let mut guard = Guard {
        child,
        group: false,
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = guard.child.try_wait().expect("wait for the driver") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(guard); // kills it if still running, which closes its pipes
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) => (s.success(), output),
        None => (false, format!("{output}\n(killed after {limit:?})")),
    }
}
