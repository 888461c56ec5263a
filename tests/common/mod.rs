//! Shared helpers for the integration tests: start a real server binary on port 0 and talk
//! to it over real sockets on 127.0.0.1.
//!
//! The server under test is `imserver-mio` unless `IMSERVER_BIN` names another binary that
//! speaks the same protocol (the async comparison variant runs the same tests this way).
//! Every read has a timeout and every wait loop a count, so no test can hang.
#![allow(dead_code)] // each test file uses its own subset of these helpers

pub mod imbench;
pub mod jwt;
pub mod nats;
pub mod python;
pub mod redis;
pub mod ws;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single read waits before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The server binary under test.
pub fn server_bin() -> PathBuf {
    match std::env::var_os("IMSERVER_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_imserver-mio")),
    }
}

/// A running server process; killed and reaped on drop.
pub struct Server {
    /// The line protocol's address.
    pub addr: SocketAddr,
    /// The WebSocket listener's address (`--ws-port`, or `--http-port` alone).
    pub web: Option<SocketAddr>,
    /// The HTTP listener's address (the last plain web listener).
    pub http: Option<SocketAddr>,
    /// The line protocol over TLS (`--tls-port`).
    pub tls: Option<SocketAddr>,
    /// HTTPS and WebSocket over TLS (`--wss-port`).
    pub wss: Option<SocketAddr>,
    pub child: Child,
}

/// Sends signal `sig` (`"STOP"`, `"CONT"`) to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let done = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(done.success(), "kill -{sig} {pid}");
}

/// Every flag of the server can come from an `IMSERVER_*` variable, so a stray one in the
/// test runner's environment would change every server the tests start: the server's
/// commands get none of them but those a test sets itself.
pub fn clear_server_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IMSERVER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The server under test as a command, with no `IMSERVER_*` variable (see
/// [`clear_server_env`]).
pub fn server_cmd() -> Command {
    let mut cmd = Command::new(server_bin());
    clear_server_env(&mut cmd);
    cmd
}

/// Starts the server under test on 127.0.0.1 port 0 with extra `args`, and reads the bound
/// address from the first line of its stdout.
pub fn start(args: &[&str]) -> Server {
    start_bin(&server_bin(), args)
}

/// Like [`start`], with WebSocket and HTTP listeners on free ports too.
pub fn start_web(extra: &[&str]) -> Server {
    let mut args = vec!["--ws-port", "0", "--http-port", "0"];
    args.extend_from_slice(extra);
    start(&args)
}

/// Like [`start`], with the environment variables `vars` set for the server.
pub fn start_with_env(vars: &[(&str, &str)], args: &[&str]) -> Server {
    let mut cmd = server_cmd();
    cmd.envs(vars.iter().copied());
    start_cmd(cmd, args)
}

/// Like [`start`], for any binary that prints its bound address first on stdout.
pub fn start_bin(bin: &std::path::Path, args: &[&str]) -> Server {
    let mut cmd = Command::new(bin);
    clear_server_env(&mut cmd);
    start_cmd(cmd, args)
}

/// Like [`start`], with the server run through `sh -c 'ulimit -n FDS; exec server ...'`, so
/// it can be run out of file descriptors on purpose.
pub fn start_with_fd_limit(fds: u32, args: &[&str]) -> Server {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(server_bin());
    clear_server_env(&mut cmd);
    start_cmd(cmd, args)
}

/// The server's log (its stderr) as it comes, kept for assertions and echoed to the
/// test's own stderr so a failure still shows it.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// The lines logged so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits at most `limit` for a line containing `needle`, polling; returns it.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines_with(needle).into_iter().next() {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Like [`start`], keeping the server's stderr (its log, `RUST_LOG=warn` unless the test
/// runner sets another level) in a [`Log`].
pub fn start_logged(args: &[&str]) -> (Server, Log) {
    let mut server = start_cmd_with(server_cmd(), args, Stdio::piped());
    let stderr = server.child.stderr.take().expect("stderr is piped");
    let log = Log::default();
    let lines = log.0.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            eprintln!("{line}");
            lines.lock().unwrap().push(line);
        }
    });
    (server, log)
}

fn start_cmd(cmd: Command, args: &[&str]) -> Server {
    start_cmd_with(cmd, args, Stdio::inherit())
}

fn start_cmd_with(mut cmd: Command, args: &[&str], stderr: Stdio) -> Server {
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let mut child = cmd
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stdout = BufReader::new(stdout);
    // One address line per listener: the line protocol's, then --ws-port's, then
    // --http-port's (unless it is the same non-zero port as --ws-port), then --tls-port's,
    // then --wss-port's.
    let web = ["--ws-port", "--http-port"]
        .iter()
        .filter(|f| args.contains(f))
        .count();
    let shared = web == 2 && {
        let value = |f: &str| args.iter().position(|a| *a == f).map(|i| args[i + 1]);
        value("--ws-port") == value("--http-port") && value("--ws-port") != Some("0")
    };
    let plain = 1 + web - usize::from(shared);
    let (tls, wss) = (args.contains(&"--tls-port"), args.contains(&"--wss-port"));
    let mut addrs = Vec::new();
    for _ in 0..plain + usize::from(tls) + usize::from(wss) {
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("server prints its address");
        let addr: SocketAddr = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("stdout line is not an address: {line:?}"));
        addrs.push(addr);
    }
    Server {
        addr: addrs[0],
        web: addrs.get(1).copied(),
        http: addrs.get(plain - 1).copied().filter(|_| web > 0),
        tls: addrs.get(plain).copied().filter(|_| tls),
        wss: addrs.get(plain + usize::from(tls)).copied().filter(|_| wss),
        child,
    }
}

impl Server {
    /// Sends a signal (`TERM`, `STOP`, `CONT`) through the `kill` command.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One chat user on a real TCP socket.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The local address, which is also the user's default name and its `[addr]`.
    pub addr: String,
}

/// Connects without reading anything.
pub fn connect_raw(addr: SocketAddr) -> Client {
    Client::from_stream(TcpStream::connect(addr).expect("connect to server"))
}

/// Connects and consumes the user's own online notice.
pub fn connect(addr: SocketAddr) -> Client {
    let mut c = connect_raw(addr);
    let me = c.addr.clone();
    c.expect_line(&format!("[{me}]{me}:已上线\n"));
    c
}

/// Connects two users; the first has read the second's online notice.
pub fn connect_two(addr: SocketAddr) -> (Client, Client) {
    let mut a = connect(addr);
    let b = connect(addr);
    a.expect_line(&format!("[{}]{}:已上线\n", b.addr, b.addr));
    (a, b)
}

impl Client {
    /// A client on a socket connected some other way; reads time out as [`connect_raw`]'s.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let addr = stream.local_addr().unwrap().to_string();
        Client {
            stream,
            reader,
            addr,
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Reads one line including its "\n"; panics on timeout or EOF.
    pub fn read_line(&mut self) -> String {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => panic!("server closed the connection; expected a line"),
            Ok(_) => String::from_utf8(buf).expect("server sends UTF-8"),
            Err(e) => panic!(
                "no line from server ({e}); got so far {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }

    /// Reads one line and asserts it equals `want` exactly.
    pub fn expect_line(&mut self, want: &str) {
        assert_eq!(self.read_line(), want);
    }

    /// Renames the user, expecting the (Chinese) answer.
    pub fn rename(&mut self, name: &str) {
        self.send(format!("rename|{name}\n").as_bytes());
        self.expect_line(&format!("您已更新用户名：{name}\n"));
    }

    /// Reads `n` lines, returned sorted (for replies whose order is not specified).
    pub fn read_lines_sorted(&mut self, n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|_| self.read_line()).collect();
        v.sort();
        v
    }

    /// Asserts that nothing arrives within `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
        let mut byte = [0u8; 1];
        let got = self.reader.read(&mut byte);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match got {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("connection closed; expected silence"),
            other => panic!("expected silence, got {other:?} {:?}", byte),
        }
    }

    /// Reads until the server closes the connection and returns everything received.
    pub fn read_to_close(&mut self) -> String {
        let mut all = Vec::new();
        match self.reader.read_to_end(&mut all) {
            Ok(_) => String::from_utf8(all).expect("UTF-8"),
            Err(e) => panic!(
                "server did not close ({e}); got {:?}",
                String::from_utf8_lossy(&all)
            ),
        }
    }

    /// Reads raw bytes (not necessarily UTF-8) until they contain `needle`, for at most
    /// `limit`; returns everything read. Panics if the connection closes or time runs out.
    pub fn read_until_contains(&mut self, needle: &[u8], limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        while !all.windows(needle.len()).any(|w| w == needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {:?} within {limit:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&all)
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.reader.read(&mut chunk) {
                Ok(0) => panic!("connection closed; got {:?}", String::from_utf8_lossy(&all)),
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        all
    }

    /// Half-closes: the server sees EOF but can still write to us.
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// Sends one raw HTTP request on a fresh connection and returns the status and the body
/// (the request should say `Connection: close`).
pub fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all).into_owned();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// GETs `path` (`Connection: close`); returns the status and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// The value of the counter or gauge `name` (unlabelled) in `GET /metrics` of `api`.
pub fn metric(api: SocketAddr, name: &str) -> u64 {
    let (status, body) = get(api, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// POSTs a form to the HTTP API (`Connection: close`) and returns the status and the raw
/// body, for tests that assert the exact bytes.
pub fn post_raw(addr: SocketAddr, path: &str, form: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
}

/// POSTs a form to the HTTP API; the answer must be 200 with a JSON body.
pub fn post(addr: SocketAddr, path: &str, form: &str) -> serde_json::Value {
    let (status, body) = post_raw(addr, path, form);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body:?}"))
}
