//! `imclient`: the menu client for imserver-mio (public chat, private chat, rename, change
//! room), after the client of the Go chat server tutorials this project follows.
//!
//! Blocking std sockets and one reader thread that copies what the server says to stdout
//! while the main thread reads the user's lines from stdin. `--raw` turns it into a plain
//! line pipe, like `nc`.
//!
//! What the server relays is other people's text, so in menu mode it is shown as text and
//! never obeyed by the terminal (see [`visible`]): control characters and escape sequences
//! are printed in caret notation, `ESC [ 2 J` as `^[[2J`. `--raw` stays byte-exact.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

/// How long we wait for the server to close after our half-close before leaving anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long we wait for the server's answer (greeting, `who`, rename) before going on.
const ANSWER_WAIT: Duration = Duration::from_millis(1000);
/// Once an answer started arriving, how long a pause ends it.
const ANSWER_QUIET: Duration = Duration::from_millis(50);

#[derive(Parser)]
#[command(name = "imclient", version, about = "Menu client for imserver-mio")]
struct Args {
    /// Server IP address (or host name).
    #[arg(long, default_value = "127.0.0.1")]
    ip: String,
    /// Server port.
    #[arg(long, value_name = "PORT", default_value_t = 8888,
          allow_negative_numbers = true, value_parser = imserver_mio::cli::parse_port)]
    port: u16,
    /// Language of the client's texts.
    #[arg(long, value_enum, default_value_t = Lang::Zh)]
    lang: Lang,
    /// No menu: send stdin line by line unchanged and print everything the server says.
    #[arg(long)]
    raw: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Lang {
    Zh,
    En,
}

/// Every text the client prints. A field missing from one language fails to compile.
struct Texts {
    connected: &'static str,
    menu: &'static str,
    invalid: &'static str,
    public_prompt: &'static str,
    name_prompt: &'static str,
    message_prompt: &'static str,
    rename_prompt: &'static str,
    room_prompt: &'static str,
    bye: &'static str,
    closed: &'static str,
    cannot_connect: &'static str,
    send_failed: &'static str,
}

impl Texts {
    const ZH: Texts = Texts {
        connected: "连接成功",
        menu: "1.公聊模式\n2.私聊模式\n3.更新用户名\n4.切换房间\n0.退出",
        invalid: "请输入合法范围内的数字",
        public_prompt: "输入消息，exit退出",
        name_prompt: ">>>>请输入聊天对象[用户名], exit退出:",
        message_prompt: ">>>>请输入消息内容, exit退出:",
        rename_prompt: ">>>>请输入用户名:",
        room_prompt: ">>>>请输入房间名, exit退出:",
        bye: "退出",
        closed: "连接已关闭",
        cannot_connect: "无法连接到",
        send_failed: "发送失败",
    };
    const EN: Texts = Texts {
        connected: "connected",
        menu: "1.public chat\n2.private chat\n3.change user name\n4.change room\n0.exit",
        invalid: "please enter a number from the menu",
        public_prompt: "type a message, exit to leave",
        name_prompt: ">>>>enter the user to chat with, exit to leave:",
        message_prompt: ">>>>enter a message, exit to leave:",
        rename_prompt: ">>>>enter the new user name:",
        room_prompt: ">>>>enter the room to go to, exit to leave:",
        bye: "bye",
        closed: "connection closed",
        cannot_connect: "cannot connect to",
        send_failed: "send failed",
    };
}

/// Prints one line to stdout in a single locked write. Errors (stdout gone) are ignored.
fn say(text: &str) {
    out(format!("{text}\n").as_bytes());
}

/// What the server said, made safe to show on a terminal: text, never terminal commands.
///
/// Invalid UTF-8 becomes U+FFFD. `\n` ends a line and `\t` stays a tab; every other C0
/// control is shown in caret notation (`^@` for NUL .. `^_` for 0x1F: ESC as `^[`, BEL as
/// `^G`, and `\r` as `^M`, so a carriage return cannot fake the start of a new line), DEL
/// as `^?`, and the C1 controls U+0080..U+009F in Rust's escape form (`\u{9b}`), which
/// cannot be confused with the ESC sequence a C1 control stands for.
fn visible(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => shown.push(c),
            '\0'..='\x1f' => {
                shown.push('^');
                shown.push(char::from(c as u8 + b'@'));
            }
            '\x7f' => shown.push_str("^?"),
            '\u{80}'..='\u{9f}' => shown.extend(c.escape_unicode()),
            _ => shown.push(c),
        }
    }
    shown
}

/// Prints what the server sent: byte-exact with `--raw`, else as [`visible`] text.
fn show(bytes: &[u8], raw: bool) {
    if raw {
        out(bytes);
    } else {
        out(visible(bytes).as_bytes());
    }
}

fn out(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

struct Client {
    sock: TcpStream,
    texts: &'static Texts,
    stdin: io::StdinLock<'static>,
    /// Set before we half-close, so the reader knows the coming EOF is our doing.
    closing: Arc<AtomicBool>,
    /// One message per chunk the reader printed; a disconnect means it reached EOF.
    printed: Receiver<()>,
}

impl Client {
    /// Reads one line from stdin without its line ending; at end of input, quits cleanly.
    fn line_or_quit(&mut self) -> String {
        let mut buf = Vec::new();
        match self.stdin.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => self.quit(None),
            Ok(_) => String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        }
    }

    fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.sock.write_all(bytes) {
            // Most likely the server is gone: give the reader time to say so and exit 0.
            self.wait_reader(CLOSE_WAIT);
            eprintln!("{}: {e}", self.texts.send_failed);
            exit(1);
        }
    }

    /// Waits at most `limit` for the reader to reach the end of the connection.
    fn wait_reader(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let left = || deadline.saturating_duration_since(Instant::now());
        while self.printed.recv_timeout(left()).is_ok() {}
    }

    /// Waits (bounded) for the server's answer so it shows before our next prompt.
    fn await_answer(&self) {
        if self.printed.recv_timeout(ANSWER_WAIT).is_ok() {
            while self.printed.recv_timeout(ANSWER_QUIET).is_ok() {}
        }
    }

    /// Forgets chunks printed so far, so `await_answer` waits for new ones.
    fn forget_printed(&self) {
        while self.printed.try_recv().is_ok() {}
    }

    /// Half-closes, lets the server deliver what it owes and close (bounded), exits 0.
    fn quit(&mut self, farewell: Option<&str>) -> ! {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(Shutdown::Write);
        self.wait_reader(CLOSE_WAIT);
        if let Some(text) = farewell {
            say(text);
        }
        exit(0);
    }

    fn menu(&mut self) -> ! {
        loop {
            say(self.texts.menu);
            match self.line_or_quit().trim() {
                "1" => self.public_chat(),
                "2" => self.private_chat(),
                "3" => self.rename(),
                "4" => self.change_room(),
                "0" => self.quit(Some(self.texts.bye)),
                _ => say(self.texts.invalid),
            }
        }
    }

    fn public_chat(&mut self) {
        say(self.texts.public_prompt);
        loop {
            let line = self.line_or_quit();
            match line.trim() {
                "exit" => return,
                "" => {}
                _ => self.send(&line),
            }
        }
    }

    /// Asks with `prompt` until a word is typed; `None` for `exit`.
    fn ask(&mut self, prompt: &str) -> Option<String> {
        loop {
            say(prompt);
            match self.line_or_quit().trim() {
                "exit" => return None,
                "" => {}
                word => return Some(word.to_string()),
            }
        }
    }

    fn private_chat(&mut self) {
        self.forget_printed();
        self.send("who");
        self.await_answer();
        let Some(name) = self.ask(self.texts.name_prompt) else {
            return;
        };
        say(self.texts.message_prompt);
        loop {
            let line = self.line_or_quit();
            match line.trim() {
                "exit" => return,
                "" => {}
                _ => self.send(&format!("to|{name}|{line}")),
            }
        }
    }

    fn rename(&mut self) {
        let name = loop {
            say(self.texts.rename_prompt);
            let line = self.line_or_quit();
            if !line.trim().is_empty() {
                break line.trim().to_string();
            }
        };
        self.forget_printed();
        self.send(&format!("rename|{name}"));
        self.await_answer();
    }

    /// Shows the rooms (`rooms`), asks for one and moves there (`room|NAME`).
    fn change_room(&mut self) {
        self.forget_printed();
        self.send("rooms");
        self.await_answer();
        let Some(room) = self.ask(self.texts.room_prompt) else {
            return;
        };
        self.forget_printed();
        self.send(&format!("room|{room}"));
        self.await_answer();
    }

    /// `--raw`: stdin lines go out unchanged, until end of input.
    fn raw(&mut self) -> ! {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match self.stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => self.quit(None),
                Ok(_) => self.send_bytes(&buf),
            }
        }
    }
}

/// Copies the socket to stdout. In menu mode only whole lines are printed, so a server
/// message never gets split by one of our prompts. On a close we did not ask for, prints
/// the rest and (in menu mode) the closed line, then exits 0.
fn reader(mut sock: TcpStream, raw: bool, texts: &Texts, closing: &AtomicBool, tx: Sender<()>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break, // reset: the server is gone
        };
        pending.extend_from_slice(&buf[..n]);
        let end = if raw {
            pending.len()
        } else {
            pending
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if end > 0 {
            show(&pending[..end], raw);
            pending.drain(..end);
            let _ = tx.send(());
        }
    }
    show(&pending, raw);
    if !closing.load(Ordering::SeqCst) {
        if !raw {
            if !pending.is_empty() {
                out(b"\n");
            }
            say(texts.closed);
        }
        exit(0);
    }
}

fn connect(ip: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in (ip, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(sock) => return Ok(sock),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn main() {
    let args = Args::parse();
    let texts: &'static Texts = match args.lang {
        Lang::Zh => &Texts::ZH,
        Lang::En => &Texts::EN,
    };
    let shown = if args.ip.contains(':') {
        format!("[{}]:{}", args.ip, args.port)
    } else {
        format!("{}:{}", args.ip, args.port)
    };
    let (sock, read_half) = match connect(&args.ip, args.port).and_then(|s| {
        let r = s.try_clone()?;
        Ok((s, r))
    }) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("{} {shown}: {e}", texts.cannot_connect);
            exit(1);
        }
    };
    if !args.raw {
        say(texts.connected);
    }
    let closing = Arc::new(AtomicBool::new(false));
    let (tx, printed) = mpsc::channel();
    let reader_closing = Arc::clone(&closing);
    let raw = args.raw;
    std::thread::spawn(move || reader(read_half, raw, texts, &reader_closing, tx));
    let mut client = Client {
        sock,
        texts,
        stdin: io::stdin().lock(),
        closing,
        printed,
    };
    if raw {
        client.raw();
    }
    client.await_answer(); // the server's greeting (our own online notice)
    client.menu();
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn controls_are_shown_in_caret_notation() {
        assert_eq!(visible(b"a\x1b[2J\x1b[6n\x07b\n"), "a^[[2J^[[6n^Gb\n");
        assert_eq!(visible(b"ok\r[x]admin:forged\n"), "ok^M[x]admin:forged\n");
        assert_eq!(visible(b"\0\x1f\x7f\t"), "^@^_^?\t");
    }

    #[test]
    fn c1_controls_are_escaped_and_bad_utf8_is_replaced() {
        assert_eq!(visible("\u{9b}1m\u{85}".as_bytes()), "\\u{9b}1m\\u{85}");
        assert_eq!(visible(b"\xff\x9b"), "\u{fffd}\u{fffd}");
        assert_eq!(visible("你好 é".as_bytes()), "你好 é");
    }
}
