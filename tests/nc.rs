//! Chat through real `nc` processes, as a user would (netcat-openbsd; .ci/run installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::start;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// One `nc` process: lines typed into its stdin, lines it prints read through a channel.
struct Nc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Its address as the server sees it, learnt from its own online notice.
    addr: String,
}

impl Nc {
    fn open(server: SocketAddr, extra: &[&str]) -> Nc {
        let mut child = Command::new("nc")
            .args(extra)
            .arg(server.ip().to_string())
            .arg(server.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("nc is installed (apt-get install netcat-openbsd)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut nc = Nc {
            child,
            stdin,
            lines,
            addr: String::new(),
        };
        let first = nc.line();
        let addr = first
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .unwrap_or_else(|| panic!("not an online notice: {first:?}"))
            .to_owned();
        assert_eq!(first, format!("[{addr}]{addr}:已上线"));
        nc.addr = addr;
        nc
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(5))
            .expect("nc printed a line in time")
    }

    fn expect(&self, want: &str) {
        assert_eq!(self.line(), want);
    }
}

impl Drop for Nc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_nc_users_chat_rename_whisper_list_and_get_kicked() {
    let server = start(&["--idle-timeout", "2"]);
    let mut a = Nc::open(server.addr, &[]);
    let mut b = Nc::open(server.addr, &[]);
    a.expect(&format!("[{0}]{0}:已上线", b.addr));
    let mut c = Nc::open(server.addr, &[]);
    a.expect(&format!("[{0}]{0}:已上线", c.addr));
    b.expect(&format!("[{0}]{0}:已上线", c.addr));

    a.type_line("rename|alice");
    a.expect("您已更新用户名：alice");
    b.type_line("rename|bob");
    b.expect("您已更新用户名：bob");
    c.type_line("rename|bob");
    c.expect("当前用户名被使用了");
    c.type_line("rename|卡罗尔");
    c.expect("您已更新用户名：卡罗尔");

    a.type_line("hello everyone");
    let hello = format!("[{}]alice:hello everyone", a.addr);
    for nc in [&a, &b, &c] {
        nc.expect(&hello);
    }

    b.type_line("to|卡罗尔|just between us");
    c.expect("bob对您说just between us");
    b.type_line("to|dave|anyone?");
    b.expect("不存在该用户");

    c.type_line("who");
    let mut who: Vec<String> = (0..3).map(|_| c.line()).collect();
    who.sort();
    let mut want = vec![
        format!("[{}]alice:在线...", a.addr),
        format!("[{}]bob:在线...", b.addr),
        format!("[{}]卡罗尔:在线...", c.addr),
    ];
    want.sort();
    assert_eq!(who, want);

    // Nobody types for 2 s: everyone is kicked, and each sees the others leave first or
    // after, in some order; the kick line is always there.
    for nc in [&a, &b, &c] {
        let mut got = Vec::new();
        while got.len() < 3 && !got.iter().any(|l| l == "你被踢了") {
            match nc.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(l) => got.push(l),
                Err(_) => break,
            }
        }
        assert!(got.contains(&"你被踢了".to_string()), "{got:?}");
    }
}

#[test]
fn echo_who_into_nc_with_half_close_gets_the_answer() {
    let server = start(&[]);
    let mut nc = Nc::open(server.addr, &["-N"]);
    nc.type_line("who");
    nc.stdin = None; // EOF on nc's stdin: nc -N half-closes the socket
    nc.expect(&format!("[{0}]{0}:在线...", nc.addr));
    assert!(nc.lines.recv_timeout(Duration::from_secs(5)).is_err());
}
