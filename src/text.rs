//! The one table of every text the server says, in Chinese (the seeds' texts, the default)
//! and English.
//!
//! Each language is one `const` of the same struct, so a text missing from one language
//! fails to compile. Texts with parameters are encoder functions below the table: they
//! append to a caller-owned buffer, because fan-out encodes a message once and copies the
//! bytes to every recipient, and an allocation per message would show up in the profile.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;

/// Every text the server sends, in three parts. Fields ending in a newline are whole lines;
/// the others are pieces that an encoder below puts around user data.
#[derive(Debug)]
pub struct Texts {
    /// The line protocol's lines, and the notices every protocol shows.
    pub line: LineTexts,
    /// The `codeMsg` of each response code.
    pub codes: CodeTexts,
    /// The WebSocket protocols' and the HTTP API's own texts.
    pub web: WebTexts,
    /// What a client hears when a limit on clients stops it.
    pub limits: LimitTexts,
    /// Private messages to signed-in users who are offline: the sender's answers, and the
    /// notice before the recipient gets them.
    pub offline: OfflineTexts,
}

/// Private messages to signed-in users who are offline (a line for line users; the data
/// or content of an answer for the others).
#[derive(Debug)]
pub struct OfflineTexts {
    /// A private message kept for the recipient's next signed login.
    pub saved: &'static str,
    /// A private message not kept: the offline recipient's mailbox is full.
    pub full: &'static str,
    /// Before the count in the notice that precedes the messages kept for a user.
    pub notice_before: &'static str,
    /// After the count.
    pub notice_after: &'static str,
}

/// What a client hears when a limit on clients stops it (a line for line users; the text
/// of a close frame or a JSON error for the others).
#[derive(Debug)]
pub struct LimitTexts {
    /// A sender over the flood limit for too long, disconnected.
    pub flooding: &'static str,
    /// A connection refused because its address holds or opened too many.
    pub too_many_conns: &'static str,
    /// A TLS client on the plain line protocol's port.
    pub not_tls: &'static str,
}

/// The line protocol's lines, and the notices every protocol shows.
#[derive(Debug)]
pub struct LineTexts {
    /// Body of the notice `[addr]name:BODY` sent to everyone when a user connects.
    pub online: &'static str,
    /// Body of the notice sent to everyone still online when a user leaves.
    pub offline: &'static str,
    /// Body of each `who` line.
    pub who_entry: &'static str,
    /// `rename|NEW` where NEW belongs to someone else.
    pub name_taken: &'static str,
    /// `rename|NEW` where NEW breaks the name rules.
    pub name_invalid: &'static str,
    /// Before the new name in the answer to a successful rename.
    pub renamed: &'static str,
    /// `to|` with an empty recipient.
    pub bad_format: &'static str,
    /// `to|NAME|...` where NAME is not online.
    pub no_such_user: &'static str,
    /// `to|NAME|` with no text.
    pub empty_body: &'static str,
    /// Between sender and text in a private message: `SENDER says TEXT`.
    pub whisper: &'static str,
    /// The last line an idle user gets.
    pub kicked: &'static str,
    /// A line longer than `--max-line` was discarded.
    pub too_long: &'static str,
    /// A connection refused at `--max-conns`.
    pub server_full: &'static str,
    /// The last line every user gets on SIGINT/SIGTERM.
    pub shutting_down: &'static str,
    /// A cross-server request while Redis is unreachable.
    pub cluster_unavailable: &'static str,
    /// A broadcast made while Redis is unreachable (said once per outage).
    pub local_only: &'static str,
    /// `room|NAME` where NAME breaks the name rules.
    pub room_invalid: &'static str,
    /// Before the room's name in the answer to `room|NAME`.
    pub room_entered: &'static str,
    /// Before the room's name in the answer to `room`.
    pub room_current: &'static str,
    /// Between a room's name and its user count in each `rooms` line.
    pub room_count: &'static str,
    /// Around the number of messages in the line that ends a `history` answer: before it,
    /// after a count of one, after any other count.
    pub history_end: (&'static str, &'static str, &'static str),
    /// `history` while `--history 0` keeps none.
    pub history_off: &'static str,
    /// `history|K` where K is not a whole number from 1.
    pub history_bad_count: &'static str,
}

/// The `codeMsg` of each response code of the `/im` protocol and the HTTP API.
#[derive(Debug)]
pub struct CodeTexts {
    /// `codeMsg` of code 200 (also the HTTP API's `msg`).
    pub code_success: &'static str,
    /// `codeMsg` 1000: the command needs a login.
    pub code_not_logged_in: &'static str,
    /// `codeMsg` 1001: bad parameters.
    pub code_bad_params: &'static str,
    /// `codeMsg` 1002: the user id breaks the name rules.
    pub code_bad_user_id: &'static str,
    /// `codeMsg` 1003: appID not allowed.
    pub code_unauthorized: &'static str,
    /// `codeMsg` 1009: the operation failed.
    pub code_failed: &'static str,
    /// `codeMsg` 1010: unknown command or path.
    pub code_no_route: &'static str,
    /// `codeMsg` for a WebSocket frame that is not JSON.
    pub bad_data: &'static str,
}

/// What the WebSocket protocols and the HTTP API say besides codes.
#[derive(Debug)]
pub struct WebTexts {
    /// `msg` of the `enter` push when someone comes online.
    pub enter: &'static str,
    /// `msg` of the `exit` push when someone leaves.
    pub exit: &'static str,
    /// Hub reply: the private message was delivered.
    pub hub_sent: &'static str,
    /// Hub reply: the recipient is not online.
    pub hub_not_online: &'static str,
    /// Hub reply to a frame that is not a hub message.
    pub hub_invalid: &'static str,
    /// To a WebSocket user whose name was taken by a newer login.
    pub replaced: &'static str,
    /// Close reason for a WebSocket user silent too long.
    pub heartbeat_timeout: &'static str,
    /// Close reason when a hub id belongs to a user of another protocol.
    pub name_in_use: &'static str,
    /// The sender name of messages sent through the HTTP API.
    pub system_sender: &'static str,
    /// Close reason for a WebSocket not logged in within `--login-timeout`.
    pub login_timeout: &'static str,
    /// Close reason for a signed-in WebSocket user whose token expired.
    pub token_expired: &'static str,
    /// `msg` of a 401: an HTTP API write without a valid `Authorization: Bearer` token.
    pub api_unauthorized: &'static str,
    /// `msg` of a 401: a `/ws/{id}` upgrade without a valid `?token=`.
    pub login_unauthorized: &'static str,
    /// `msg` of a 403: a request from a browser page of another origin.
    pub origin_forbidden: &'static str,
    /// `msg` of `/readyz` while the server cannot serve (cluster down, shutting down).
    pub not_ready: &'static str,
}

/// The seeds' texts, byte for byte.
pub const ZH: Texts = Texts {
    line: LineTexts {
        online: "已上线",
        offline: "已下线",
        who_entry: "在线...",
        name_taken: "当前用户名被使用了\n",
        name_invalid: "用户名不合法\n",
        renamed: "您已更新用户名：",
        bad_format: "消息格式不正确\n",
        no_such_user: "不存在该用户\n",
        empty_body: "无消息内容，请重发\n",
        whisper: "对您说",
        kicked: "你被踢了\n",
        too_long: "消息过长，已丢弃\n",
        server_full: "服务器已满\n",
        shutting_down: "服务器关闭\n",
        cluster_unavailable: "集群暂不可用\n",
        local_only: "集群暂不可用，消息仅发送给本服务器的用户\n",
        room_invalid: "房间名不合法\n",
        room_entered: "您已进入房间：",
        room_current: "当前房间：",
        room_count: "：",
        history_end: ("历史消息结束（", " 条）", " 条）"),
        history_off: "历史消息未开启\n",
        history_bad_count: "历史消息条数须为正整数\n",
    },
    codes: CodeTexts {
        code_success: "Success",
        code_not_logged_in: "未登录",
        code_bad_params: "参数不合法",
        code_bad_user_id: "非法的用户ID",
        code_unauthorized: "未授权",
        code_failed: "操作失败",
        code_no_route: "路由不存在",
        bad_data: "数据不合法",
    },
    web: WebTexts {
        enter: "哈喽~",
        exit: "用户已经离开~",
        hub_sent: "success send",
        hub_not_online: "not online",
        hub_invalid: "invalid message",
        replaced: "logged in elsewhere",
        heartbeat_timeout: "heartbeat timeout",
        name_in_use: "name in use",
        system_sender: "system",
        login_timeout: "登录超时",
        token_expired: "登录令牌已过期",
        api_unauthorized: "未授权：需要正确的 Authorization: Bearer 令牌",
        login_unauthorized: "未授权：需要有效的登录令牌",
        origin_forbidden: "不允许的来源",
        not_ready: "服务暂不可用",
    },
    limits: LimitTexts {
        flooding: "发送过快，已断开\n",
        too_many_conns: "连接过多\n",
        not_tls: "此端口不支持 TLS，请使用 TLS 端口\n",
    },
    offline: OfflineTexts {
        saved: "对方不在线，消息已保存\n",
        full: "对方不在线，离线消息已满，未保存\n",
        notice_before: "离线消息（",
        notice_after: " 条）：",
    },
};

/// English equivalents, selected with `--lang en`.
pub const EN: Texts = Texts {
    line: LineTexts {
        online: "online",
        offline: "offline",
        who_entry: "online...",
        name_taken: "that name is already taken\n",
        name_invalid: "invalid user name\n",
        renamed: "your name is now: ",
        bad_format: "bad message format, use to|name|text\n",
        no_such_user: "no such user\n",
        empty_body: "empty message, please resend\n",
        whisper: " says to you: ",
        kicked: "you were kicked for idling\n",
        too_long: "message too long, discarded\n",
        server_full: "server is full\n",
        shutting_down: "server shutting down\n",
        cluster_unavailable: "cluster unavailable\n",
        local_only: "cluster unavailable: message reached this server's users only\n",
        room_invalid: "invalid room name\n",
        room_entered: "you are now in room ",
        room_current: "current room: ",
        room_count: ": ",
        history_end: ("end of history (", " message)", " messages)"),
        history_off: "history is off\n",
        history_bad_count: "history count must be a whole number from 1\n",
    },
    codes: CodeTexts {
        code_success: "Success",
        code_not_logged_in: "not logged in",
        code_bad_params: "invalid parameters",
        code_bad_user_id: "invalid user id",
        code_unauthorized: "unauthorized",
        code_failed: "operation failed",
        code_no_route: "no such route",
        bad_data: "invalid data",
    },
    web: WebTexts {
        enter: "hello~",
        exit: "user has left~",
        hub_sent: "success send",
        hub_not_online: "not online",
        hub_invalid: "invalid message",
        replaced: "logged in elsewhere",
        heartbeat_timeout: "heartbeat timeout",
        name_in_use: "name in use",
        system_sender: "system",
        login_timeout: "login timeout",
        token_expired: "login token expired",
        api_unauthorized: "unauthorized: a valid Authorization: Bearer token is required",
        login_unauthorized: "unauthorized: a valid login token is required",
        origin_forbidden: "origin not allowed",
        not_ready: "not ready",
    },
    limits: LimitTexts {
        flooding: "flooding, disconnected\n",
        too_many_conns: "too many connections from your address\n",
        not_tls: "this port speaks the plain line protocol; use the TLS port\n",
    },
    offline: OfflineTexts {
        saved: "user offline, message saved\n",
        full: "user offline and their offline messages are full, message not saved\n",
        notice_before: "offline messages (",
        notice_after: "):",
    },
};

/// The language of the server's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Chinese, as in the seeds.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The table for this language.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// The error for a language name other than `zh` or `en`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLang(pub String);

impl fmt::Display for UnknownLang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown language {:?} (expected zh or en)", self.0)
    }
}

impl std::error::Error for UnknownLang {}

impl FromStr for Lang {
    type Err = UnknownLang;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zh" => Ok(Lang::Zh),
            "en" => Ok(Lang::En),
            other => Err(UnknownLang(other.to_owned())),
        }
    }
}

/// A user as the texts show them: the peer address, and the name the user chose, if any
/// (until then the name is the address). Keeping the address as a `SocketAddr` and the name
/// optional means a connection holds no heap memory for its identity.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    /// The peer address: the `[addr]` of notices and the default name.
    pub addr: &'a SocketAddr,
    /// The chosen name, once renamed.
    pub name: Option<&'a str>,
}

impl User<'_> {
    /// Appends the user's current name.
    pub fn push_name(&self, out: &mut Vec<u8>) {
        match self.name {
            Some(name) => out.extend_from_slice(name.as_bytes()),
            None => push_addr(out, self.addr),
        }
    }
}

impl User<'_> {
    /// The user's current name, as a new `String` (for the JSON protocols).
    pub fn name_string(&self) -> String {
        let mut name = String::new();
        self.push_name_str(&mut name);
        name
    }

    /// Appends the user's current name to a `String`.
    pub fn push_name_str(&self, out: &mut String) {
        match self.name {
            Some(name) => out.push_str(name),
            None => match v4_text(self.addr, &mut [0; V4_TEXT_MAX_BYTES]) {
                Some(text) => out.push_str(text),
                None => {
                    let _ = fmt::Write::write_fmt(out, format_args!("{}", self.addr));
                }
            },
        }
    }
}

/// The longest `a.b.c.d:port`: 15 bytes of address, a colon, 5 of port.
const V4_TEXT_MAX_BYTES: usize = 21;

/// `a.b.c.d:port` of an IPv4 address, written digit by digit into `buf`; `None` for IPv6.
/// A user's default name is its address, so this runs for every message such a user
/// sends, and `core::fmt` showed up at 17 % of the server's time in a whisper benchmark.
fn v4_text<'b>(addr: &SocketAddr, buf: &'b mut [u8; V4_TEXT_MAX_BYTES]) -> Option<&'b str> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [a, b, c, d] = v4.ip().octets().map(u16::from);
    let mut len = 0;
    for (n, then) in [(a, b'.'), (b, b'.'), (c, b'.'), (d, b':')] {
        len = put_decimal(buf, len, n);
        if let Some(slot) = buf.get_mut(len) {
            *slot = then;
            len += 1;
        }
    }
    len = put_decimal(buf, len, v4.port());
    std::str::from_utf8(buf.get(..len)?).ok()
}

/// Writes `n` in decimal into `buf` at `at`; returns where it ends.
fn put_decimal(buf: &mut [u8], at: usize, n: u16) -> usize {
    let len = match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    let mut rest = n;
    if let Some(digits) = buf.get_mut(at..at + len) {
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    at + len
}

fn push_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match v4_text(addr, &mut [0; V4_TEXT_MAX_BYTES]) {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        // Writing to a Vec cannot fail.
        None => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// Appends `[addr]name:body\n`: the shape of chat lines, notices and `who` entries alike.
pub fn user_line(out: &mut Vec<u8>, user: User<'_>, body: &[u8]) {
    out.push(b'[');
    push_addr(out, user.addr);
    out.push(b']');
    user.push_name(out);
    out.push(b':');
    push_one_line(out, body);
    out.push(b'\n');
}

/// Appends `body` with any newline turned into a space: text from a WebSocket or the HTTP
/// API may hold newlines, and a line user must never see it as a second, forged line.
/// (A line user's own text never holds one: the framing cut it there.)
fn push_one_line(out: &mut Vec<u8>, body: &[u8]) {
    if body.contains(&b'\n') {
        out.extend(body.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    } else {
        out.extend_from_slice(body);
    }
}

/// Appends the private message `SENDER对您说TEXT\n` (the seed forgot the newline).
pub fn whisper(out: &mut Vec<u8>, texts: &Texts, sender: User<'_>, body: &[u8]) {
    sender.push_name(out);
    out.extend_from_slice(texts.line.whisper.as_bytes());
    push_one_line(out, body);
    out.push(b'\n');
}

/// The notice before the `n` messages kept for a user while offline: `离线消息（N 条）：`
/// (no newline: the line protocol adds one, the JSON ones carry it as a field).
pub fn offline_notice(texts: &Texts, n: usize) -> String {
    let o = &texts.offline;
    format!("{}{n}{}", o.notice_before, o.notice_after)
}

/// Appends the answer to a successful rename: `您已更新用户名：NEW\n`.
pub fn renamed(out: &mut Vec<u8>, texts: &Texts, name: &str) {
    labelled(out, texts.line.renamed, name);
}

/// Appends `LABELvalue\n`: a text's label (`您已进入房间：`) and a name.
pub fn labelled(out: &mut Vec<u8>, label: &str, value: &str) {
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Appends one `rooms` line: `NAME：COUNT\n` (`NAME: COUNT` in English).
pub fn room_line(out: &mut Vec<u8>, texts: &Texts, room: &str, count: usize) {
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(texts.line.room_count.as_bytes());
    let _ = write!(out, "{count}"); // writing to a Vec cannot fail
    out.push(b'\n');
}

/// Appends a kept message: `[YYYY-MM-DD HH:MM:SS][addr]name:body\n`, its time in UTC.
pub fn history_line(out: &mut Vec<u8>, time_ms: u64, user: User<'_>, body: &[u8]) {
    out.push(b'[');
    push_utc(out, time_ms);
    out.push(b']');
    user_line(out, user, body);
}

/// Appends the line that ends a `history` answer: `历史消息结束（K 条）\n`.
pub fn history_end(out: &mut Vec<u8>, texts: &Texts, count: usize) {
    let (before, one, other) = texts.line.history_end;
    let after = if count == 1 { one } else { other };
    out.extend_from_slice(before.as_bytes());
    let _ = write!(out, "{count}"); // writing to a Vec cannot fail
    out.extend_from_slice(after.as_bytes());
    out.push(b'\n');
}

const MS_PER_DAY: u64 = 86_400_000;

/// Appends `ms` (since the Unix epoch) as `YYYY-MM-DD HH:MM:SS` in UTC.
fn push_utc(out: &mut Vec<u8>, ms: u64) {
    let (year, month, day) = civil_from_days(ms / MS_PER_DAY);
    let secs = (ms % MS_PER_DAY) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let _ = write!(out, "{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}");
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>), for days
/// that are never negative. Counting from 0000-03-01 puts the leap day last in its year;
/// an era is 400 years, 146097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn user_line_matches_the_seed_format() {
        let (mut out, a) = (Vec::new(), addr());
        let bob = User {
            addr: &a,
            name: Some("bob"),
        };
        user_line(&mut out, bob, ZH.line.online.as_bytes());
        assert_eq!(out, "[127.0.0.1:5000]bob:已上线\n".as_bytes());
    }

    #[test]
    fn the_default_name_is_the_address() {
        let (mut out, a) = (Vec::new(), addr());
        let anon = User {
            addr: &a,
            name: None,
        };
        user_line(&mut out, anon, b"hi");
        whisper(&mut out, &ZH, anon, b"psst");
        assert_eq!(
            out,
            "[127.0.0.1:5000]127.0.0.1:5000:hi\n127.0.0.1:5000对您说psst\n".as_bytes()
        );
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:5000",
            "255.255.255.255:65535",
            "10.0.10.1:80",
            "1.20.100.9:1000",
            "9.99.199.0:10000",
            "[::1]:7000",
        ] {
            let a: SocketAddr = text.parse().unwrap();
            let mut out = Vec::new();
            push_addr(&mut out, &a);
            assert_eq!(out, text.as_bytes());
            let mut s = String::new();
            User {
                addr: &a,
                name: None,
            }
            .push_name_str(&mut s);
            assert_eq!(s, text);
        }
    }

    #[test]
    fn a_body_with_newlines_stays_one_line() {
        let (mut out, a) = (Vec::new(), addr());
        let ws = User {
            addr: &a,
            name: Some("web"),
        };
        user_line(&mut out, ws, b"hi\n[1.2.3.4:5]boss:fake");
        whisper(&mut out, &ZH, ws, b"a\nb");
        assert_eq!(
            out,
            "[127.0.0.1:5000]web:hi [1.2.3.4:5]boss:fake\nweb对您说a b\n".as_bytes()
        );
    }

    #[test]
    fn whisper_ends_with_a_newline() {
        let (mut out, a) = (Vec::new(), addr());
        let alice = User {
            addr: &a,
            name: Some("alice"),
        };
        whisper(&mut out, &ZH, alice, b"hi|there");
        assert_eq!(out, "alice对您说hi|there\n".as_bytes());
    }

    #[test]
    fn renamed_names_the_new_name() {
        let mut out = Vec::new();
        renamed(&mut out, &EN, "张三");
        assert_eq!(out, "your name is now: 张三\n".as_bytes());
    }

    #[test]
    fn room_answers_and_lines() {
        let mut out = Vec::new();
        labelled(&mut out, ZH.line.room_entered, "茶室");
        labelled(&mut out, EN.line.room_current, "101");
        room_line(&mut out, &ZH, "101", 3);
        room_line(&mut out, &EN, "x", 12);
        assert_eq!(
            out,
            "您已进入房间：茶室\ncurrent room: 101\n101：3\nx: 12\n".as_bytes()
        );
    }

    #[test]
    fn times_are_utc_civil_dates() {
        for (ms, want) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (946_684_799_999, "1999-12-31 23:59:59"),
            (1_709_251_199_000, "2024-02-29 23:59:59"),
            (4_107_587_696_000, "2100-03-01 12:34:56"),
        ] {
            let mut out = Vec::new();
            push_utc(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{ms}");
        }
        // Every day of 400 years follows the one before, by the Gregorian month lengths.
        let leap =
            |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
        let length = |y: u64, m: u64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1969, 12, 31);
        for days in 0..146_097 {
            (y, m, d) = match (y, m, d) {
                (y, m, d) if d < length(y, m) => (y, m, d + 1),
                (y, 12, _) => (y + 1, 1, 1),
                (y, m, _) => (y, m + 1, 1),
            };
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        }
        assert_eq!(civil_from_days(146_096), (2369, 12, 31));
    }

    #[test]
    fn history_lines_and_their_end() {
        let (mut out, a) = (Vec::new(), addr());
        let bob = User {
            addr: &a,
            name: Some("bob"),
        };
        history_line(&mut out, 1_709_251_199_000, bob, b"hi\nthere");
        history_end(&mut out, &ZH, 1);
        history_end(&mut out, &EN, 0);
        history_end(&mut out, &EN, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2024-02-29 23:59:59][127.0.0.1:5000]bob:hi there\n历史消息结束（1 条）\n\
             end of history (0 messages)\nend of history (1 message)\n"
        );
    }

    #[test]
    fn whole_line_texts_end_in_newline_in_every_language() {
        for t in [&ZH, &EN] {
            for line in [
                t.line.name_taken,
                t.line.name_invalid,
                t.line.bad_format,
                t.line.no_such_user,
                t.line.empty_body,
                t.line.kicked,
                t.line.too_long,
                t.line.server_full,
                t.line.shutting_down,
                t.line.cluster_unavailable,
                t.line.local_only,
                t.line.room_invalid,
                t.line.history_off,
                t.line.history_bad_count,
                t.offline.saved,
                t.offline.full,
            ] {
                assert!(line.ends_with('\n'), "{line:?}");
                assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            }
        }
    }

    #[test]
    fn the_offline_notice_counts_the_messages() {
        assert_eq!(offline_notice(&ZH, 3), "离线消息（3 条）：");
        assert_eq!(offline_notice(&EN, 1), "offline messages (1):");
    }

    #[test]
    fn lang_parses_zh_and_en_only() {
        assert_eq!("zh".parse::<Lang>(), Ok(Lang::Zh));
        assert_eq!("en".parse::<Lang>(), Ok(Lang::En));
        assert!("fr".parse::<Lang>().is_err());
    }
}
