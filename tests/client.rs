//! `imclient` end to end: the real client binary, driven through its stdin and stdout (and
//! once through a tmux terminal, as a person would), against a real server on port 0.
//!
//! Every wait is bounded; children are killed on drop. Output is compared byte for byte.
//! Interactive tests type one line at a time and wait for its answer, so the order of what
//! the client prints is fixed; script tests (all of stdin at once) check the server's lines
//! separately from the client's own, because the two arrive from different threads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Server;

const MENU: &str = "1.公聊模式\n2.私聊模式\n3.更新用户名\n4.切换房间\n0.退出\n";
const INVALID: &str = "请输入合法范围内的数字\n";
const PUBLIC: &str = "输入消息，exit退出\n";
const WHO_PROMPT: &str = ">>>>请输入聊天对象[用户名], exit退出:\n";
const MSG_PROMPT: &str = ">>>>请输入消息内容, exit退出:\n";
const RENAME_PROMPT: &str = ">>>>请输入用户名:\n";
const ROOM_PROMPT: &str = ">>>>请输入房间名, exit退出:\n";
const WAIT: Duration = Duration::from_secs(5);

fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_imclient")
}

/// A running `imclient` with piped stdio; killed on drop.
struct Ui {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    /// The threads copying stdout and stderr; they end when the client's pipes close.
    collectors: Vec<JoinHandle<()>>,
    /// How much of `out` the test has already checked.
    seen: usize,
    /// The client's address (and default user name), from its online notice.
    addr: String,
}

fn collect(mut from: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, handle)
}

fn spawn(args: &[&str]) -> Ui {
    let mut child = Command::new(client_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imclient");
    let (out, out_copier) = collect(child.stdout.take().unwrap());
    let (err, err_copier) = collect(child.stderr.take().unwrap());
    Ui {
        stdin: child.stdin.take(),
        child,
        out,
        err,
        collectors: vec![out_copier, err_copier],
        seen: 0,
        addr: String::new(),
    }
}

fn port_args(server: &Server) -> Vec<String> {
    vec![
        "--ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        server.addr.port().to_string(),
    ]
}

/// Starts the menu client and checks its greeting: 连接成功, its own online notice, the menu.
fn menu_client(server: &Server, extra: &[&str]) -> Ui {
    let mut args = port_args(server);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut ui = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ui.expect("连接成功\n");
    let notice = ui.read_line();
    let addr = notice
        .strip_prefix('[')
        .and_then(|s| s.split(']').next())
        .unwrap_or_else(|| panic!("not an online notice: {notice:?}"))
        .to_string();
    assert_eq!(notice, format!("[{addr}]{addr}:已上线\n"));
    ui.expect(MENU);
    ui.addr = addr;
    ui
}

impl Ui {
    fn output(&self) -> String {
        String::from_utf8(self.out.lock().unwrap().clone()).expect("client prints UTF-8")
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Types one line (the newline is added).
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to imclient");
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits until the next unchecked output is exactly `want`.
    fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.out.lock().unwrap().clone();
            let have = &out[self.seen.min(out.len())..];
            let n = have.len().min(want.len());
            if have[..n] != want.as_bytes()[..n] || n == want.len() || Instant::now() > deadline {
                assert_eq!(
                    String::from_utf8_lossy(&have[..n]),
                    want,
                    "imclient output so far: {:?}",
                    String::from_utf8_lossy(&out)
                );
                self.seen += want.len();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the next whole line of output.
    fn read_line(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.out.lock().unwrap().clone();
            if let Some(i) = out[self.seen..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8(out[self.seen..self.seen + i + 1].to_vec()).unwrap();
                self.seen += i + 1;
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no line from imclient; output so far: {:?}",
                String::from_utf8_lossy(&out)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next `want.len()` lines, in any order (the server's `who` order is unspecified).
    fn expect_lines_any_order(&mut self, want: &[String]) {
        let mut got: Vec<String> = want.iter().map(|_| self.read_line()).collect();
        let mut want = want.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    /// Waits for the client to exit on its own, then for the rest of its output.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes closed with the client: its output is complete once copied.
                for copier in self.collectors.drain(..) {
                    copier.join().unwrap();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "imclient did not exit; output: {:?}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts a clean exit (code 0) with nothing printed after what was checked.
    fn expect_clean_exit(&mut self) {
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(0), "stderr: {}", self.stderr());
        assert_eq!(
            &self.output()[self.seen..],
            "",
            "unexpected trailing output"
        );
        assert_eq!(self.stderr(), "");
    }

    fn who_lines(&self, others: &[(&str, &str)]) -> Vec<String> {
        let mut v = vec![format!("[{0}]{0}:在线...\n", self.addr)];
        v.extend(others.iter().map(|(a, n)| format!("[{a}]{n}:在线...\n")));
        v
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs imclient with all of `input` on stdin (then end of input), bounded in time.
fn run_script(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut ui = spawn(args);
    ui.stdin
        .as_mut()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    ui.close_stdin();
    let status = ui.wait_exit();
    (status.code(), ui.output(), ui.stderr())
}

fn named(server: &Server, name: &str) -> common::Client {
    let mut c = common::connect(server.addr);
    c.send(format!("rename|{name}\n").as_bytes());
    c.expect_line(&format!("您已更新用户名：{name}\n"));
    c
}

#[test]
fn public_chat_sends_whole_lines_with_spaces_and_chinese() {
    let server = common::start(&[]);
    let mut watcher = common::connect(server.addr);
    let mut ui = menu_client(&server, &[]);
    let a = ui.addr.clone();
    watcher.expect_line(&format!("[{a}]{a}:已上线\n"));

    ui.type_line("1");
    ui.expect(PUBLIC);
    ui.type_line("hello world 你好 世界");
    let line = format!("[{a}]{a}:hello world 你好 世界\n");
    ui.expect(&line);
    watcher.expect_line(&line);
    ui.type_line(""); // empty lines are not sent
    ui.type_line("second");
    let line = format!("[{a}]{a}:second\n");
    ui.expect(&line);
    watcher.expect_line(&line);
    ui.type_line("exit");
    ui.expect(MENU);
    ui.type_line("0");
    ui.expect("退出\n");
    ui.expect_clean_exit();
    watcher.expect_line(&format!("[{a}]{a}:已下线\n"));
}

#[test]
fn invalid_choices_get_the_message_and_the_menu_again() {
    let server = common::start(&[]);
    let mut ui = menu_client(&server, &[]);
    for bad in ["9", "abc", "", "12", "退出"] {
        ui.type_line(bad);
        ui.expect(INVALID);
        ui.expect(MENU);
    }
    ui.close_stdin();
    ui.expect_clean_exit();
}

#[test]
fn private_chat_reaches_the_second_client() {
    let server = common::start(&[]);
    let mut bob = named(&server, "bob");
    let mut ui = menu_client(&server, &[]);
    let a = ui.addr.clone();
    bob.expect_line(&format!("[{a}]{a}:已上线\n"));

    ui.type_line("2");
    ui.expect_lines_any_order(&ui.who_lines(&[(&bob.addr, "bob")]));
    ui.expect(WHO_PROMPT);
    ui.type_line("bob");
    ui.expect(MSG_PROMPT);
    ui.type_line("hi bob, 你好 有空格");
    bob.expect_line(&format!("{a}对您说hi bob, 你好 有空格\n"));
    ui.type_line("exit");
    ui.expect(MENU);

    // An unknown user: the server's error is shown.
    ui.type_line("2");
    ui.expect_lines_any_order(&ui.who_lines(&[(&bob.addr, "bob")]));
    ui.expect(WHO_PROMPT);
    ui.type_line("nobody");
    ui.expect(MSG_PROMPT);
    ui.type_line("anyone there?");
    ui.expect("不存在该用户\n");
    ui.type_line("exit");
    ui.expect(MENU);

    // exit at the name prompt goes back to the menu.
    ui.type_line("2");
    ui.expect_lines_any_order(&ui.who_lines(&[(&bob.addr, "bob")]));
    ui.expect(WHO_PROMPT);
    ui.type_line("exit");
    ui.expect(MENU);
    ui.type_line("0");
    ui.expect("退出\n");
    ui.expect_clean_exit();
    bob.expect_line(&format!("[{a}]{a}:已下线\n"));
}

#[test]
fn change_room_lists_the_rooms_and_moves() {
    let server = common::start(&[]);
    let mut other = named(&server, "bob");
    let mut ui = menu_client(&server, &[]);
    let a = ui.addr.clone();
    other.expect_line(&format!("[{a}]{a}:已上线\n"));

    ui.type_line("4");
    ui.expect("101：2\n");
    ui.expect(ROOM_PROMPT);
    ui.type_line("exit");
    ui.expect(MENU);
    ui.type_line("4");
    ui.expect("101：2\n");
    ui.expect(ROOM_PROMPT);
    ui.type_line("a:b");
    ui.expect("房间名不合法\n");
    ui.expect(MENU);
    ui.type_line("4");
    ui.expect("101：2\n");
    ui.expect(ROOM_PROMPT);
    ui.type_line("茶室");
    ui.expect("您已进入房间：茶室\n");
    ui.expect(MENU);
    other.expect_line(&format!("[{a}]{a}:已下线\n"));
    ui.type_line("1");
    ui.expect(PUBLIC);
    ui.type_line("only tea");
    ui.expect(&format!("[{a}]{a}:only tea\n"));
    other.expect_silence(Duration::from_millis(200));
    ui.close_stdin();
    ui.expect_clean_exit();
}

#[test]
fn rename_shows_the_server_answer() {
    let server = common::start(&[]);
    let mut other = named(&server, "taken");
    let mut ui = menu_client(&server, &[]);
    let a = ui.addr.clone();
    other.expect_line(&format!("[{a}]{a}:已上线\n"));

    ui.type_line("3");
    ui.expect(RENAME_PROMPT);
    ui.type_line("alice");
    ui.expect("您已更新用户名：alice\n");
    ui.expect(MENU);
    ui.type_line("3");
    ui.expect(RENAME_PROMPT);
    ui.type_line("taken");
    ui.expect("当前用户名被使用了\n");
    ui.expect(MENU);
    ui.type_line("1");
    ui.expect(PUBLIC);
    ui.type_line("我是 alice");
    let line = format!("[{a}]alice:我是 alice\n");
    ui.expect(&line);
    other.expect_line(&line);
    ui.close_stdin();
    ui.expect_clean_exit();
}

#[test]
fn piped_script_shows_replies_before_exiting() {
    let server = common::start(&[]);
    let port = server.addr.port().to_string();
    let args = ["--port", port.as_str()];
    for (input, bye) in [
        ("1\nhello script\nexit\n0\n", true),
        ("1\nhello script\n", false),
    ] {
        let (code, out, err) = run_script(&args, input);
        assert_eq!(code, Some(0), "stderr: {err}");
        assert_eq!(err, "");
        // The client's own lines are in a fixed order; the echo of our message comes from
        // the reader thread, somewhere after the prompt, but before the client exits.
        let lines: Vec<&str> = out.split_inclusive('\n').collect();
        let a = lines[1]
            .strip_prefix('[')
            .and_then(|s| s.split(']').next())
            .unwrap();
        let echo = format!("[{a}]{a}:hello script\n");
        let at = lines.iter().position(|l| *l == echo).expect("echo shown");
        let prompt = lines.iter().position(|l| *l == PUBLIC).unwrap();
        assert!(at > prompt, "{out}");
        let rest: String = lines
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != at)
            .map(|(_, l)| *l)
            .collect();
        let mut want = format!("连接成功\n[{a}]{a}:已上线\n{MENU}{PUBLIC}");
        if bye {
            want += &format!("{MENU}退出\n");
            assert_eq!(lines.last(), Some(&"退出\n"));
        }
        assert_eq!(rest, want, "whole output: {out}");
    }
}

#[test]
fn server_shutdown_while_the_client_waits() {
    let server = common::start(&[]);
    let mut ui = menu_client(&server, &[]);
    server.signal("TERM");
    ui.expect("服务器关闭\n连接已关闭\n");
    ui.expect_clean_exit();
}

#[test]
fn idle_kick_closes_the_client() {
    let server = common::start(&["--idle-timeout", "1"]);
    let mut ui = menu_client(&server, &[]);
    ui.expect("你被踢了\n连接已关闭\n");
    ui.expect_clean_exit();
}

#[test]
fn server_gone_closes_the_client() {
    let mut server = common::start(&[]);
    let mut ui = menu_client(&server, &[]);
    server.signal("KILL");
    assert!(server.wait_exit(WAIT).is_some());
    ui.expect("连接已关闭\n");
    ui.expect_clean_exit();
}

#[test]
fn raw_mode_is_a_line_pipe() {
    let server = common::start(&[]);
    let mut bob = named(&server, "bob");
    let mut args = port_args(&server);
    args.push("--raw".into());
    let mut ui = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let notice = ui.read_line();
    let a = notice[1..notice.find(']').unwrap()].to_string();
    assert_eq!(notice, format!("[{a}]{a}:已上线\n"));
    ui.addr = a.clone();
    bob.expect_line(&notice);
    ui.type_line("who");
    ui.expect_lines_any_order(&ui.who_lines(&[(&bob.addr, "bob")]));
    ui.type_line("to|bob|raw 你好 hi");
    bob.expect_line(&format!("{a}对您说raw 你好 hi\n"));
    ui.type_line("rename|rawuser");
    ui.expect("您已更新用户名：rawuser\n");
    ui.close_stdin();
    ui.expect_clean_exit();
    bob.expect_line(&format!("[{a}]rawuser:已下线\n"));
}

/// What a hostile server (or user) might send: screen clear, a cursor-position query (whose
/// answer a terminal would type into our stdin), a carriage return faking a new line, BEL,
/// a tab, DEL, the C1 CSI (U+009B) and a byte that is not UTF-8.
const HOSTILE: &[u8] =
    b"ok\r[127.0.0.1:5]admin:forged \x1b[2J\x1b[6n\x07\tx\x7f \xc2\x9b31m \xff\n";
/// How imclient shows [`HOSTILE`] in menu mode.
const HOSTILE_SHOWN: &str = "ok^M[127.0.0.1:5]admin:forged ^[[2J^[[6n^G\tx^? \\u{9b}31m \u{fffd}\n";

/// A one-connection server that sends `bytes`, then waits (bounded) for the client to close.
fn fake_server(bytes: &'static [u8]) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.write_all(bytes).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
    });
    (port, handle)
}

#[test]
fn the_menu_shows_control_characters_as_text_not_terminal_commands() {
    let (port, fake) = fake_server(HOSTILE);
    let mut ui = spawn(&["--ip", "127.0.0.1", "--port", &port.to_string()]);
    ui.expect("连接成功\n");
    ui.expect(HOSTILE_SHOWN);
    ui.expect(MENU);
    ui.close_stdin();
    ui.expect_clean_exit();
    fake.join().unwrap();
}

#[test]
fn raw_mode_prints_control_characters_byte_for_byte() {
    let (port, fake) = fake_server(HOSTILE);
    let mut ui = spawn(&["--ip", "127.0.0.1", "--port", &port.to_string(), "--raw"]);
    let deadline = Instant::now() + WAIT;
    while ui.out.lock().unwrap().len() < HOSTILE.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    ui.close_stdin();
    assert_eq!(ui.wait_exit().code(), Some(0), "stderr: {}", ui.stderr());
    assert_eq!(ui.out.lock().unwrap().as_slice(), HOSTILE);
    fake.join().unwrap();
}

#[test]
fn a_user_cannot_clear_the_screen_or_forge_a_line_through_the_server() {
    let server = common::start(&[]);
    let mut ui = menu_client(&server, &[]);
    let mut mallory = named(&server, "mallory");
    let m = mallory.addr.clone();
    ui.expect(&format!("[{m}]{m}:已上线\n"));
    mallory.send(b"\x1b[2J\x1b[6nhi\r[127.0.0.1:5]admin:forged\x07\n");
    ui.expect(&format!(
        "[{m}]mallory:^[[2J^[[6nhi^M[127.0.0.1:5]admin:forged^G\n"
    ));
    ui.close_stdin();
    ui.expect_clean_exit();
}

#[test]
fn english_texts_with_lang_en() {
    let server = common::start(&[]);
    let mut args = port_args(&server);
    args.extend(["--lang".into(), "en".into()]);
    let mut ui = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ui.expect("connected\n");
    ui.read_line(); // the server's online notice (the server's language is its own)
    let menu = "1.public chat\n2.private chat\n3.change user name\n4.change room\n0.exit\n";
    ui.expect(menu);
    ui.type_line("5");
    ui.expect("please enter a number from the menu\n");
    ui.expect(menu);
    ui.type_line("1");
    ui.expect("type a message, exit to leave\n");
    ui.type_line("exit");
    ui.expect(menu);
    ui.type_line("0");
    ui.expect("bye\n");
    ui.expect_clean_exit();
}

#[test]
fn cannot_connect_is_one_line_and_exit_1() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, out, err) = run_script(&["--ip", "127.0.0.1", "--port", &port.to_string()], "");
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_negative_port_is_refused_as_not_a_port() {
    let out = Command::new(client_bin())
        .args(["--port", "-1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: invalid value '-1' for '--port <PORT>': the port must be a number 0-65535\n"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_flags_are_refused() {
    for args in [
        &["--port", "x"][..],
        &["--port", "70000"],
        &["--lang", "fr"],
        &["--nope"],
    ] {
        let Output {
            status,
            stdout,
            stderr,
        } = Command::new(client_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
        assert!(stdout.is_empty());
        let err = String::from_utf8_lossy(&stderr);
        assert!(
            err.starts_with("error:") && !err.contains("panicked"),
            "{err}"
        );
    }
}

/// A tmux server on its own socket; killed on drop (which also ends the client in it).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-u", "-L", &self.socket])
            .args(args)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .expect("tmux is required for this test (apt-get install -y tmux)");
        assert!(out.status.success(), "tmux {args:?}: {:?}", out);
        out
    }

    fn keys(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "chat", "-l", text]);
        self.cmd(&["send-keys", "-t", "chat", "Enter"]);
    }

    /// The whole pane (scrollback included), without trailing blanks, empty lines and
    /// tmux's own "Pane is dead" line.
    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-S", "-", "-E", "-", "-t", "chat"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with("Pane is dead"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Polls the screen (bounded) until it shows exactly `want`.
    fn expect_screen(&self, want: &str) {
        for _ in 0..100 {
            if self.screen() == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.screen(), want, "the terminal never showed this");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn a_person_chats_in_a_terminal() {
    let server = common::start(&[]);
    let mut friend = named(&server, "friend");
    let addr: SocketAddr = server.addr;
    let tmux = Tmux {
        socket: format!("imclient-test-{}", std::process::id()),
    };
    // The shell shows the client's exit status on the screen once it has exited.
    let command = format!(
        "{} --port {}; echo \"[exit $?]\"",
        client_bin(),
        addr.port()
    );
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "chat",
        "-x",
        "100",
        "-y",
        "40",
        &command,
    ]);
    tmux.cmd(&["set-option", "-t", "chat", "remain-on-exit", "on"]);
    let online = friend.read_line();
    let a = online[1..online.find(']').unwrap()].to_string();
    let f = friend.addr.clone();
    let mut want = format!("连接成功\n{online}{MENU}");
    tmux.expect_screen(&want);

    tmux.keys("1");
    want += &format!("1\n{PUBLIC}");
    tmux.expect_screen(&want);
    tmux.keys("hello 你好 from a terminal");
    let line = format!("[{a}]{a}:hello 你好 from a terminal\n");
    want += &format!("hello 你好 from a terminal\n{line}");
    tmux.expect_screen(&want);
    friend.expect_line(&line);
    friend.send("friend says hi\n".as_bytes());
    let line = format!("[{f}]friend:friend says hi\n");
    friend.expect_line(&line);
    want += &line;
    tmux.expect_screen(&want);
    tmux.keys("exit");
    want += &format!("exit\n{MENU}");
    tmux.expect_screen(&want);
    tmux.keys("3");
    want += &format!("3\n{RENAME_PROMPT}");
    tmux.expect_screen(&want);
    tmux.keys("张三");
    want += &format!("张三\n您已更新用户名：张三\n{MENU}");
    tmux.expect_screen(&want);
    tmux.keys("0");
    want += "0\n退出\n[exit 0]\n";
    tmux.expect_screen(&want);
    friend.expect_line(&format!("[{a}]张三:已下线\n"));
}
