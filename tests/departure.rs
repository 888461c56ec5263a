//! A mass departure: many users leaving at once must not make the server queue each
//! leaver's offline notice to every other leaver (quadratic work and memory for nobody).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::{connect, http, metric, start};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Users that leave at once.
const USERS: u64 = 300;

/// Opens `n` line connections to `addr`, says `ready`, and holds them without reading
/// until it is killed: the kernel then closes them all at once.
const HOLDER: &str = r#"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
held = [socket.create_connection((host, int(port))) for _ in range(int(sys.argv[2]))]
print("ready", flush=True)
time.sleep(60)
"#;

fn users(api: SocketAddr) -> u64 {
    let (_, body) = http(
        api,
        "GET /system/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["users"].as_u64().unwrap()
}

fn wait_users(api: SocketAddr, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while users(api) != want {
        assert!(Instant::now() < deadline, "users never reached {want}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn users_leaving_at_once_are_not_sent_each_others_offline_notices() {
    let server = start(&["--http-port", "0", "--idle-timeout", "0"]);
    let api = server.http.unwrap();
    let mut holder = Command::new("python3")
        .args(["-c", HOLDER, &server.addr.to_string(), &USERS.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    wait_users(api, USERS);
    // One user who stays sees every departure.
    let mut stayer = connect(server.addr);
    let before = metric(api, "imserver_messages_out_total");
    holder.kill().unwrap();
    holder.wait().unwrap();
    wait_users(api, 1);
    let mut offline = 0;
    while offline < USERS {
        let line = stayer.read_line();
        assert!(line.ends_with(":已下线\n"), "{line:?}");
        offline += 1;
    }
    let queued = metric(api, "imserver_messages_out_total") - before;
    // The stayer's offline notices are USERS of them; queuing every notice to every leaver
    // still online would be about USERS² / 2 (45,000 here).
    assert!(
        queued < USERS * USERS / 8,
        "{queued} messages queued while {USERS} users left"
    );
}
