//! A second WebSocket client from another ecosystem: `tests/py/ws_clients.py` (Python's
//! `websockets`) runs the /im and /ws/{id} protocols, with a line user beside them, against a
//! fresh server. Needs Python with `websockets` >= 13, found as `common::python` says
//! (`.ci/run` installs it in `target/pyenv`); the test fails and says so when it is
//! missing. The script and the server are killed if they overrun.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server with line and WebSocket listeners; returns (server, line addr, ws addr).
fn start_server() -> (common::Server, SocketAddr, SocketAddr) {
    let server = common::start(&["--ws-port", "0", "--http-port", "0", "--idle-timeout", "0"]);
    let (line, ws) = (server.addr, server.web.expect("a WebSocket listener"));
    (server, line, ws)
}

#[test]
fn python_websockets_client() {
    let python = common::python::require_websockets();

    let (_server, line, ws) = start_server();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_clients.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(ws.to_string())
        .arg(line.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read_all(child.stdout.take().map(|r| Box::new(r) as _));
    let err = read_all(child.stderr.take().map(|r| Box::new(r) as _));
    let mut script_guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = script_guard.0.try_wait().expect("wait for the script") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(script_guard);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    println!("{stdout}{stderr}");

    let status = status.unwrap_or_else(|| panic!("ws_clients.py ran over 120 s:\n{stdout}"));
    assert!(
        status.success(),
        "ws_clients.py failed ({status}):\n{stdout}{stderr}"
    );
    for step in [
        "OK login with userID/appID and userId/appId",
        "OK ping, heartbeat before and after login",
        "OK error codes 1010 1001 1003 1002 1000",
        "OK two /im users: broadcast, private, enter/exit",
        "OK second login kicks the older socket (1008)",
        "OK hub /ws/7 -> /ws/8 type 1, success send, not online",
        "OK hub broadcast reaches /im 101 and a line user",
        "OK oversize message closes with 1009",
    ] {
        assert!(
            stdout.lines().any(|l| l == step),
            "ws_clients.py did not report {step:?}:\n{stdout}"
        );
    }
}
