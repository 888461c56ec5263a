//! TLS on the loop, with real clients: `openssl s_client` and Python's `ssl` as line users,
//! Python's `ssl` on the HTTPS API, Python's `websockets` over `wss://`, and headless
//! Chromium on the page served over `https://`, each beside plain line users; then the
//! faults: bad certificate or key files (one line on stderr, exit non-zero), garbage and
//! plain text on the TLS port, a TLS client on the plain port, and stalled handshakes (closed
//! after 10 s): each ends its own connection only, and plain users see nothing of it.
//!
//! The certificate is made at test time with rcgen (self-signed for `localhost` and
//! `127.0.0.1`) in a temporary directory; the clients verify it as their CA, except
//! Chromium, which runs with `--ignore-certificate-errors`. Needs `openssl`, `chromium` (or
//! `$CHROMIUM`) and Python with `websockets` >= 13 (see `common::python`). Every read has a
//! timeout and every child process a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
mod common;

use common::{connect, Client, Server};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The server's handshake deadline (`net::tls::HANDSHAKE_TIMEOUT`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A self-signed certificate and its key as PEM files, plus a second, unrelated pair, in a
/// directory removed on drop.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new() -> Certs {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "imserver-tls-{}-{nanos}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for prefix in ["", "other-"] {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let made = rcgen::generate_simple_self_signed(names).expect("rcgen makes a cert");
            std::fs::write(dir.join(format!("{prefix}cert.pem")), made.cert.pem()).unwrap();
            std::fs::write(
                dir.join(format!("{prefix}key.pem")),
                made.key_pair.serialize_pem(),
            )
            .unwrap();
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn cert(&self) -> String {
        self.path("cert.pem")
    }

    fn key(&self) -> String {
        self.path("key.pem")
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server with the plain line port, `--tls-port` and `--wss-port`.
fn start_tls(certs: &Certs) -> Server {
    let (cert, key) = (certs.cert(), certs.key());
    let server = common::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-port",
        "0",
        "--wss-port",
        "0",
        "--idle-timeout",
        "0",
        // page_check.py floods a room past its history to see the gap notice (as with the
        // plain page in tests/browser.rs).
        "--history",
        "20",
    ]);
    assert!(server.tls.is_some() && server.wss.is_some());
    server
}

/// Two plain line users who know each other: (alice, bob), each with its notices read.
fn two_plain_users(server: &Server) -> (Client, Client) {
    let mut alice = connect(server.addr);
    let bob = connect(server.addr);
    let b = bob.addr.clone();
    alice.expect_line(&format!("[{b}]{b}:已上线\n"));
    (alice, bob)
}

/// Alice and bob saw nothing, and still chat both ways.
fn still_chatting(alice: &mut Client, bob: &mut Client, what: &str) {
    alice.expect_silence(Duration::from_millis(300));
    bob.expect_silence(Duration::from_millis(300));
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    alice.send(format!("after {what}\n").as_bytes());
    bob.expect_line(&format!("[{a}]{a}:after {what}\n"));
    alice.expect_line(&format!("[{a}]{a}:after {what}\n"));
    bob.send(format!("to|{a}|still here\n").as_bytes());
    alice.expect_line(&format!("{b}对您说still here\n"));
}

/// Runs `cmd` for at most `limit`; returns (exit status if it ended, stdout, stderr).
fn run_bounded(
    mut cmd: Command,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let collect = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = collect(child.stdout.take().map(|r| Box::new(r) as _));
    let err = collect(child.stderr.take().map(|r| Box::new(r) as _));
    let mut guard = Guard(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(guard); // kills it if still running, which closes its pipes
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

// ---- real clients ------------------------------------------------------------------------

/// `openssl s_client -quiet` as a line user: its stdin and its stdout's lines.
struct SClient {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: JoinHandle<String>,
    _child: Guard,
}

impl SClient {
    fn connect(addr: SocketAddr, ca: &str) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-nocommands"])
            .args(["-connect", &addr.to_string()])
            .args([
                "-CAfile",
                ca,
                "-verify_ip",
                "127.0.0.1",
                "-verify_return_error",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs `openssl` (apt-get install openssl): {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        SClient {
            stdin,
            lines,
            stderr,
            _child: Guard(child),
        }
    }

    fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to s_client");
        self.stdin.flush().unwrap();
    }

    /// The next line from the server, which must be `want`.
    fn expect_line(&mut self, want: &str) {
        match self.lines.recv_timeout(common::READ_TIMEOUT) {
            Ok(line) => assert_eq!(line, want, "s_client received"),
            Err(e) => panic!("s_client: no line ({e}); expected {want:?}"),
        }
    }

    /// The first line, the user's own online notice; returns the user's address.
    fn online(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("s_client: no online notice ({e})"));
        let addr = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .map(|(a, _)| a.to_owned())
            .unwrap_or_else(|| panic!("s_client: not an online notice: {line:?}"));
        assert_eq!(line, format!("[{addr}]{addr}:已上线"));
        addr
    }

    fn stderr(self) -> String {
        drop(self._child);
        self.stderr.join().unwrap_or_default()
    }
}

#[test]
fn openssl_s_client_line_user_chats_with_a_plain_user() {
    let certs = Certs::new();
    let server = start_tls(&certs);
    let mut plain = connect(server.addr);
    let p = plain.addr.clone();
    plain.send(b"rename|plain\n");
    plain.expect_line("您已更新用户名：plain\n");

    let mut tls = SClient::connect(server.tls.unwrap(), &certs.cert());
    let t = tls.online();
    plain.expect_line(&format!("[{t}]{t}:已上线\n"));

    tls.send("rename|ossl");
    tls.expect_line("您已更新用户名：ossl");
    tls.send("hello over tls 你好");
    plain.expect_line(&format!("[{t}]ossl:hello over tls 你好\n"));
    tls.expect_line(&format!("[{t}]ossl:hello over tls 你好"));

    plain.send("hello in the clear\n".as_bytes());
    tls.expect_line(&format!("[{p}]plain:hello in the clear"));
    plain.expect_line(&format!("[{p}]plain:hello in the clear\n"));

    plain.send(b"to|ossl|psst tls\n");
    tls.expect_line("plain对您说psst tls");
    tls.send("to|plain|psst plain");
    plain.expect_line("ossl对您说psst plain\n");

    tls.send("who");
    let mut who = vec![
        tls.lines.recv_timeout(common::READ_TIMEOUT).unwrap(),
        tls.lines.recv_timeout(common::READ_TIMEOUT).unwrap(),
    ];
    who.sort();
    let mut want = vec![format!("[{p}]plain:在线..."), format!("[{t}]ossl:在线...")];
    want.sort();
    assert_eq!(who, want);

    let stderr = tls.stderr(); // kills s_client: the server sees the TCP close
    plain.expect_line(&format!("[{t}]ossl:已下线\n"));
    plain.expect_silence(Duration::from_millis(200));
    assert!(
        stderr.contains("verify return:1") && !stderr.contains("verify error"),
        "s_client verified the certificate against the test's CA:\n{stderr}"
    );
}

#[test]
fn python_ssl_line_https_api_and_wss() {
    let python = common::python::require_websockets();
    let certs = Certs::new();
    let server = start_tls(&certs);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_clients.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .args(["--ca", &certs.cert()])
        .args(["--line", &server.addr.to_string()])
        .args(["--tls", &server.tls.unwrap().to_string()])
        .args(["--wss", &server.wss.unwrap().to_string()]);
    let (status, stdout, stderr) = run_bounded(cmd, Duration::from_secs(120));
    println!("{stdout}{stderr}");
    let status = status.unwrap_or_else(|| panic!("tls_clients.py ran over 120 s:\n{stdout}"));
    assert!(
        status.success(),
        "tls_clients.py failed ({status}):\n{stdout}{stderr}"
    );
    for step in [
        "OK python ssl line user chats with a plain line user",
        "OK https GET /user/list and /system/state",
        "OK wss /im login and msg, both ways with a plain line user",
        "OK wss /ws/7 -> /ws/8",
    ] {
        assert!(
            stdout.lines().any(|l| l == step),
            "tls_clients.py did not report {step:?}:\n{stdout}"
        );
    }
}

// ---- the page over https in headless Chromium ---------------------------------------------

const ALICE_MSG: &str = "hello from alice 你好";
const LINE_MSG: &str = "hello from the line 你好";

/// A plain line user on a thread: renamed to `carol`, it answers alice's message once and
/// returns every line it received when `stop` is set (or after 180 s).
fn line_user_answering_alice(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Vec<String>> {
    let mut user = connect(addr);
    user.send(b"rename|carol\n");
    user.expect_line("您已更新用户名：carol\n");
    std::thread::spawn(move || {
        user.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut reader = BufReader::new(user.stream.try_clone().unwrap());
        let deadline = Instant::now() + Duration::from_secs(180);
        let (mut seen, mut partial, mut answered) = (Vec::new(), Vec::new(), false);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match reader.read_until(b'\n', &mut partial) {
                Ok(0) => break,
                Ok(_) if partial.ends_with(b"\n") => {
                    let line = String::from_utf8_lossy(&partial).trim_end().to_owned();
                    partial.clear();
                    if !answered && line.ends_with(&format!("]alice:{ALICE_MSG}")) {
                        user.send(format!("{LINE_MSG}\n").as_bytes());
                        answered = true;
                    }
                    seen.push(line);
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("line user read: {e}"),
            }
        }
        seen
    })
}

#[test]
fn https_page_in_chromium_chats_with_a_plain_line_user() {
    let python = common::python::require_websockets();
    let chromium_found = std::env::var_os("CHROMIUM").is_some()
        || std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join("chromium").is_file() || d.join("chromium-browser").is_file());
    assert!(
        chromium_found,
        "this test needs Chromium: `apt-get install -y chromium`, or set CHROMIUM"
    );
    let certs = Certs::new();
    let server = start_tls(&certs);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = manifest.join("target/browser/chat-https.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);

    let stop = Arc::new(AtomicBool::new(false));
    let line = line_user_answering_alice(server.addr, stop.clone());

    // page_check.py starts Chromium itself, with --ignore-certificate-errors for an https
    // url, and kills its process group at the end (its own bound is 90 s).
    let mut driver = Command::new(&python);
    driver
        .arg(manifest.join("tests/browser/page_check.py"))
        .args(["--url", &format!("https://{}/", server.wss.unwrap())])
        .arg("--shot")
        .arg(&shot)
        .args(["--line-name", "carol"]);
    let (status, stdout, stderr) = run_bounded(driver, Duration::from_secs(150));
    stop.store(true, Ordering::Relaxed);
    let lines = line.join().expect("line user thread");
    println!("driver output:\n{stdout}{stderr}");
    println!("line user received:\n{}", lines.join("\n"));
    assert!(
        status.is_some_and(|s| s.success()),
        "page_check.py over https failed ({status:?}):\n{stdout}{stderr}"
    );
    for step in [
        "OK alice and bob log in",
        "OK user list and join notice",
        "OK alice -> bob broadcast",
        "OK line user -> alice's page",
        "OK bob -> alice private message",
    ] {
        assert!(stdout.contains(step), "driver did not report {step:?}");
    }
    let has = |what: &str, pred: &dyn Fn(&str) -> bool| {
        assert!(
            lines.iter().any(|l| pred(l)),
            "line user never received {what}; got {lines:?}"
        );
    };
    has("alice's online notice", &|l| l.ends_with("]alice:已上线"));
    has("alice's broadcast from the https page", &|l| {
        l.ends_with(&format!("]alice:{ALICE_MSG}"))
    });
    has("its own answer echoed", &|l| {
        l.ends_with(&format!("]carol:{LINE_MSG}"))
    });
}

// ---- start-up errors ---------------------------------------------------------------------

/// Runs the server with `args` (which must make it refuse to start) and returns its one
/// stderr line after checking it exited non-zero, printed nothing on stdout, and did not
/// panic.
fn refuses_to_start(args: &[&str]) -> String {
    let mut cmd = common::server_cmd();
    cmd.args(["--host", "127.0.0.1", "--port", "0"]).args(args);
    // The default log level, as a user would run it.
    cmd.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
    let (status, stdout, stderr) = run_bounded(cmd, Duration::from_secs(10));
    let status = status.unwrap_or_else(|| {
        panic!("the server kept running with {args:?}; stdout {stdout:?} stderr {stderr:?}")
    });
    assert!(!status.success(), "exit status {status} with {args:?}");
    assert_eq!(stdout, "", "nothing bound, nothing printed on stdout");
    assert!(
        !stderr.contains("panicked") && !stderr.to_lowercase().contains("backtrace"),
        "a panic: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line on stderr with {args:?}: {stderr:?}"
    );
    assert!(stderr.ends_with('\n'));
    println!("{args:?} -> {status}: {stderr}");
    stderr.trim_end().to_owned()
}

#[test]
fn a_missing_certificate_file_is_one_line() {
    let certs = Certs::new();
    let missing = certs.path("no-such-cert.pem");
    let line = refuses_to_start(&[
        "--tls-cert",
        &missing,
        "--tls-key",
        &certs.key(),
        "--tls-port",
        "0",
    ]);
    assert!(
        line.contains("certificate") && line.contains(&missing),
        "{line}"
    );
}

#[test]
fn a_missing_key_file_is_one_line() {
    let certs = Certs::new();
    let missing = certs.path("no-such-key.pem");
    let line = refuses_to_start(&[
        "--tls-cert",
        &certs.cert(),
        "--tls-key",
        &missing,
        "--wss-port",
        "0",
    ]);
    assert!(line.contains("key") && line.contains(&missing), "{line}");
}

#[test]
fn files_that_are_not_pem_are_one_line() {
    let certs = Certs::new();
    let junk = certs.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let line = refuses_to_start(&[
        "--tls-cert",
        &junk,
        "--tls-key",
        &certs.key(),
        "--tls-port",
        "0",
    ]);
    assert!(line.contains(&junk), "{line}");
    // The certificate given as the key.
    let line = refuses_to_start(&[
        "--tls-cert",
        &certs.cert(),
        "--tls-key",
        &certs.cert(),
        "--tls-port",
        "0",
    ]);
    assert!(line.contains("key"), "{line}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_one_line() {
    let certs = Certs::new();
    let line = refuses_to_start(&[
        "--tls-cert",
        &certs.cert(),
        "--tls-key",
        &certs.path("other-key.pem"),
        "--tls-port",
        "0",
        "--wss-port",
        "0",
    ]);
    assert!(line.contains("do not fit"), "{line}");
}

#[test]
fn tls_ports_without_a_certificate_are_one_line() {
    let certs = Certs::new();
    let (cert, key) = (certs.cert(), certs.key());
    for args in [
        &["--tls-port", "0"][..],
        &["--wss-port", "0"][..],
        &["--tls-port", "0", "--tls-cert", &cert][..],
        &["--wss-port", "0", "--tls-key", &key][..],
    ] {
        let line = refuses_to_start(args);
        assert!(
            line.contains("--tls-cert") && line.contains("--tls-key"),
            "{line}"
        );
    }
}

// ---- bad clients ---------------------------------------------------------------------------

/// Connects to `addr`, sends `bytes`, and reads until the server closes (at most 5 s):
/// returns what it answered.
fn send_and_read_to_close(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(bytes).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!(
                "the server did not close after {:?} ({e}); answered {all:02x?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }
}

/// The server's answer is at most one TLS alert record (content type 21), never chat text.
fn assert_at_most_an_alert(answer: &[u8], what: &str) {
    assert!(
        answer.is_empty() || (answer.len() <= 7 && answer.starts_with(&[0x15, 0x03])),
        "{what}: expected at most a TLS alert, got {answer:02x?} {:?}",
        String::from_utf8_lossy(answer)
    );
}

/// Deterministic bytes that are no TLS record (first byte 0xff is no content type).
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    let mut v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    v[0] = 0xff;
    v
}

#[test]
fn garbage_to_the_tls_ports_is_closed_and_disturbs_nobody() {
    let certs = Certs::new();
    let server = start_tls(&certs);
    let (mut alice, mut bob) = two_plain_users(&server);
    for addr in [server.tls.unwrap(), server.wss.unwrap()] {
        let answer = send_and_read_to_close(addr, &garbage(300));
        assert_at_most_an_alert(&answer, "garbage");
        // A record header that looks right, with a body that is no handshake.
        let mut bad_record = vec![0x16, 0x03, 0x01, 0x00, 0x40];
        bad_record.extend(garbage(0x40));
        let answer = send_and_read_to_close(addr, &bad_record);
        assert_at_most_an_alert(&answer, "a bad handshake record");
    }
    still_chatting(&mut alice, &mut bob, "garbage");
}

#[test]
fn plain_text_on_the_tls_ports_is_closed_and_disturbs_nobody() {
    let certs = Certs::new();
    let server = start_tls(&certs);
    let (mut alice, mut bob) = two_plain_users(&server);
    let tls = server.tls.unwrap();
    let answer = send_and_read_to_close(tls, "rename|sneaky\nhello in the clear 你好\n".as_bytes());
    assert_at_most_an_alert(&answer, "line protocol in the clear on --tls-port");
    let answer = send_and_read_to_close(
        server.wss.unwrap(),
        b"GET /user/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_at_most_an_alert(&answer, "plain HTTP on --wss-port");
    still_chatting(&mut alice, &mut bob, "plain text");
    // Nobody named sneaky came online.
    alice.send(b"to|sneaky|hi\n");
    alice.expect_line("不存在该用户\n");
}

#[test]
fn a_tls_client_on_the_plain_port_does_not_stop_the_server() {
    let certs = Certs::new();
    let server = start_tls(&certs);
    let (mut alice, mut bob) = two_plain_users(&server);
    // openssl's ClientHello reaches the line protocol, which sees a TLS record where a line
    // should be: it answers in plain text and closes, and broadcasts none of it.
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &server.addr.to_string()]);
    let (status, stdout, stderr) = run_bounded(cmd, Duration::from_secs(15));
    let status = status.unwrap_or_else(|| {
        panic!("s_client on the plain port did not end in 15 s: {stdout} {stderr}")
    });
    assert!(
        !status.success(),
        "s_client cannot succeed on the plain port: {stdout}"
    );
    // Whatever alice and bob were told about it ends with its offline notice (which the
    // server may hold back a moment, see `fanout::Departures`); then a marker.
    let offline = ":已下线\n".as_bytes();
    let seen_by_alice = alice.read_until_contains(offline, Duration::from_secs(5));
    let mut seen_by_bob = bob.read_until_contains(offline, Duration::from_secs(5));
    // Its online and offline notices, and nothing of its handshake bytes.
    let seen = String::from_utf8_lossy(&seen_by_alice).into_owned();
    let lines: Vec<&str> = seen.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2, "{seen:?}");
    assert!(
        lines[0].starts_with('[') && lines[0].ends_with(":已上线\n"),
        "{seen:?}"
    );
    assert!(lines[1].ends_with(":已下线\n"), "{seen:?}");
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    alice.send(b"marker after the tls client\n");
    let marker = format!("[{a}]{a}:marker after the tls client\n");
    seen_by_bob.extend(bob.read_until_contains(marker.as_bytes(), Duration::from_secs(5)));
    alice.expect_line(&marker);
    println!(
        "bob saw of the TLS client on the plain port: {:?}",
        String::from_utf8_lossy(&seen_by_bob)
    );
    bob.send(format!("to|{a}|still here\n").as_bytes());
    alice.expect_line(&format!("{b}对您说still here\n"));
    // And new users, plain and TLS, still get in.
    let mut carol = connect(server.addr);
    let c = carol.addr.clone();
    alice.expect_line(&format!("[{c}]{c}:已上线\n"));
    bob.expect_line(&format!("[{c}]{c}:已上线\n"));
    carol.send(b"hi\n");
    alice.expect_line(&format!("[{c}]{c}:hi\n"));
    let mut ossl = SClient::connect(server.tls.unwrap(), &certs.cert());
    let t = ossl.online();
    alice.expect_line(&format!("[{t}]{t}:已上线\n"));
}

#[test]
fn a_tls_record_on_the_plain_port_is_answered_in_plain_text() {
    let certs = Certs::new();
    let server = start_tls(&certs);
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, b'\n', 3, 4])
        .unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.ends_with("此端口不支持 TLS，请使用 TLS 端口\n"),
        "{got:?}"
    );
}

/// Connects to `addr`, sends `bytes` (dripped one per `drip` if given), and returns how long
/// after connecting the server closed the connection (panics after 20 s).
fn time_to_close(addr: SocketAddr, bytes: Vec<u8>, drip: Option<Duration>) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || match drip {
        None => {
            let _ = w.write_all(&bytes);
        }
        Some(every) => {
            for b in bytes {
                if w.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(every);
            }
        }
    });
    let mut chunk = [0u8; 256];
    let mut got = Vec::new();
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break start.elapsed(),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break start.elapsed(),
            Err(e) => panic!("{addr}: not closed after {:?} ({e})", start.elapsed()),
        }
    };
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    assert_at_most_an_alert(&got, "a stalled handshake");
    closed
}

#[test]
fn stalled_handshakes_are_closed_after_ten_seconds_and_disturb_nobody() {
    let certs = Certs::new();
    let server = start_tls(&certs);
    let (mut alice, mut bob) = two_plain_users(&server);
    // Half a ClientHello: a record header promising 0xc8 bytes, the handshake header, the
    // version and 32 bytes of random: 43 of the 205 bytes.
    let mut half_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    half_hello.extend([0x5a; 32]);
    let (tls, wss) = (server.tls.unwrap(), server.wss.unwrap());
    let cases: Vec<(&str, SocketAddr, Vec<u8>, Option<Duration>)> = vec![
        ("silent on --tls-port", tls, vec![], None),
        (
            "half a ClientHello on --tls-port",
            tls,
            half_hello.clone(),
            None,
        ),
        ("silent on --wss-port", wss, vec![], None),
        (
            "half a ClientHello on --wss-port",
            wss,
            half_hello.clone(),
            None,
        ),
        // Bytes keep coming, but a handshake that never completes still ends at 10 s.
        (
            "a ClientHello dripped a byte per 400 ms",
            tls,
            half_hello,
            Some(Duration::from_millis(400)),
        ),
    ];
    let waits: Vec<_> = cases
        .into_iter()
        .map(|(what, addr, bytes, drip)| {
            (
                what,
                std::thread::spawn(move || time_to_close(addr, bytes, drip)),
            )
        })
        .collect();
    // Meanwhile the loop serves everyone else.
    std::thread::sleep(Duration::from_secs(2));
    let a = alice.addr.clone();
    alice.send(b"during the stall\n");
    bob.expect_line(&format!("[{a}]{a}:during the stall\n"));
    alice.expect_line(&format!("[{a}]{a}:during the stall\n"));
    for (what, wait) in waits {
        let took = wait
            .join()
            .unwrap_or_else(|_| panic!("{what}: the wait panicked"));
        println!("{what}: closed after {took:?}");
        assert!(
            took >= HANDSHAKE_TIMEOUT - Duration::from_millis(500)
                && took <= HANDSHAKE_TIMEOUT + Duration::from_secs(3),
            "{what}: closed after {took:?}, expected about {HANDSHAKE_TIMEOUT:?}"
        );
    }
    still_chatting(&mut alice, &mut bob, "the stalls");
}
