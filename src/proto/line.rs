//! The line protocol of the Go chat server this follows: newline-framed commands (`who`,
//! `rename|NEW`, `to|NAME|TEXT`, anything else is said to the room), answered with the
//! lines of the text table; and rooms (`room|NAME`, `room`, `rooms`) with their history
//! (`history`, `history|K`).

use super::{Claim, Host, Pace, Reply, Routed, Voice};
use crate::chat::Event;
use crate::codec::line::{next_line, parse, Command, Line, ProtocolError};
use crate::text::{self, Texts, User};
use log::debug;

/// A line connection's protocol state.
#[derive(Debug, Default)]
pub struct LineSession {
    /// Whether the rest of an over-long line is being skipped up to its newline.
    discarding: bool,
    /// Whether any byte has arrived yet (the first ones tell a TLS client apart).
    started: bool,
}

/// The first bytes of a TLS handshake record: content type 22, version 3.x.
const TLS_RECORD_START: [u8; 2] = [0x16, 0x03];

/// The one line that answers a malformed command.
pub fn error_text(texts: &Texts, e: ProtocolError) -> &'static str {
    match e {
        ProtocolError::MissingRecipient => texts.line.bad_format,
        ProtocolError::InvalidName => texts.line.name_invalid,
        ProtocolError::LineTooLong => texts.line.too_long,
        ProtocolError::InvalidRoom => texts.line.room_invalid,
        ProtocolError::BadCount => texts.line.history_bad_count,
    }
}

impl LineSession {
    /// Executes the complete lines at the front of `data`; returns the bytes consumed.
    pub fn feed<H: Host>(&mut self, data: &[u8], host: &mut H) -> usize {
        if !self.started && !data.is_empty() {
            self.started = true;
            if data.starts_with(&TLS_RECORD_START) {
                // A TLS client on the plain port: its handshake is no chat line for anyone.
                debug!("{} spoke TLS to the plain line port", host.addr());
                host.send(host.texts().limits.not_tls.as_bytes());
                host.finish();
                return data.len();
            }
        }
        let max = host.config().max_line_bytes;
        let mut pos = 0;
        while pos < data.len() {
            if !host.is_open() {
                return data.len();
            }
            let rest = data.get(pos..).unwrap_or_default();
            if self.discarding {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.discarding = false;
                        pos += i + 1;
                    }
                    None => return data.len(),
                }
                continue;
            }
            match next_line(rest, max) {
                Line::Complete { text, used } => match host.pace() {
                    Pace::Go => {
                        pos += used;
                        execute(text, host);
                    }
                    Pace::Wait => return pos,
                    Pace::Kick => {
                        flooded(host);
                        return data.len();
                    }
                },
                Line::Incomplete => break,
                Line::TooLong => {
                    debug!("{} sent a line over {max} bytes", host.addr());
                    self.discarding = true;
                    host.send(error_text(host.texts(), ProtocolError::LineTooLong).as_bytes());
                }
            }
        }
        pos
    }
}

/// Runs one line.
fn execute<H: Host>(line: &[u8], host: &mut H) {
    host.metrics().messages_in += 1;
    let texts = host.texts();
    match parse(line) {
        Ok(Command::Empty) => {}
        Ok(Command::Who) => who(host),
        Ok(Command::Rename(name)) => {
            let outcome = host.rename(name, Reply::Line);
            answer_rename(outcome, host);
        }
        Ok(Command::To { name, body }) => {
            let outcome = host.whisper(Voice::Me, name, body, true, || Reply::Line);
            answer_routed(outcome, host);
        }
        Ok(Command::Room(Some(room))) => {
            host.enter_room(room);
            answer_room(texts.line.room_entered, host);
        }
        Ok(Command::Room(None)) => answer_room(texts.line.room_current, host),
        Ok(Command::Rooms) => rooms(host),
        Ok(Command::History(count)) => history(count, host),
        Ok(Command::Say(text)) => host.say(Voice::Me, None, text),
        Err(e) => {
            debug!("{}: {e}", host.addr());
            host.send(error_text(texts, e).as_bytes());
        }
    }
}

/// `who`: one line per online user of the sender's room, of any protocol and any server,
/// in one block.
fn who<H: Host>(host: &mut H) {
    let entry = host.texts().line.who_entry.as_bytes();
    let mut out = Vec::new();
    let chat = host.chat();
    let mine = host.me().map(|me| chat.room_name(me.room));
    for (user, room) in chat.everyone() {
        if Some(room) == mine {
            text::user_line(&mut out, user, entry);
        }
    }
    host.send(&out);
}

/// Answers `room|NAME` (`label`: entered) and `room` (current) with the user's room:
/// moving to one's own room is answered the same, and changes nothing.
fn answer_room<H: Host>(label: &str, host: &mut H) {
    let Some(me) = host.me() else {
        return;
    };
    let mut out = Vec::new();
    text::labelled(&mut out, label, host.chat().room_name(me.room));
    host.send(&out);
}

/// `rooms`: one line per room with users (here and on other servers), by name, in one
/// block, like `who`.
fn rooms<H: Host>(host: &mut H) {
    let texts = host.texts();
    let mut out = Vec::new();
    for (room, count) in host.chat().rooms() {
        text::room_line(&mut out, texts, room, count);
    }
    host.send(&out);
}

/// `history|K`: the last K (all kept when `None`, at most `--history`) messages of the
/// user's room, oldest first, then the end line with their number, in one block: the
/// whole answer is queued in this turn, before any later command (a move) runs.
fn history<H: Host>(count: Option<usize>, host: &mut H) {
    let texts = host.texts();
    let store = host.history();
    if !store.is_on() {
        return host.send(texts.line.history_off.as_bytes());
    }
    let Some(me) = host.me() else {
        return;
    };
    let room = host.chat().room_name(me.room);
    let k = count.unwrap_or(usize::MAX).min(store.keep());
    let mut out = Vec::new();
    let mut sent = 0;
    for entry in store.last(room, k).entries {
        text::history_line(&mut out, entry.time_ms, entry.sender(), entry.text());
        sent += 1;
    }
    text::history_end(&mut out, texts, sent);
    host.send(&out);
}

/// Answers `rename|NEW`.
pub fn answer_rename<H: Host>(outcome: Claim, host: &mut H) {
    let texts = host.texts();
    match outcome {
        Claim::Granted => {
            let mut name = String::new();
            if let Some(me) = host.me() {
                me.name_into(&mut name);
            }
            let mut out = Vec::new();
            text::renamed(&mut out, texts, &name);
            host.send(&out);
        }
        Claim::Taken => host.send(texts.line.name_taken.as_bytes()),
        Claim::Unavailable => host.send(texts.line.cluster_unavailable.as_bytes()),
        Claim::Pending => {}
    }
}

/// Answers `to|NAME|TEXT`, in the seed's order: recipient first, then text.
pub fn answer_routed<H: Host>(outcome: Routed, host: &mut H) {
    let texts = host.texts();
    let line = match outcome {
        Routed::Sent | Routed::Pending => return,
        Routed::Nowhere => texts.line.no_such_user,
        Routed::Unknown => texts.line.cluster_unavailable,
        Routed::Empty => texts.line.empty_body,
        Routed::Saved => texts.offline.saved,
        Routed::Full => texts.offline.full,
    };
    host.send(line.as_bytes());
}

/// An idle user's last line.
pub fn kick_idle<H: Host>(host: &mut H) {
    debug!("{} idle: kicked", host.addr());
    host.metrics().idle_kicks += 1;
    host.send(host.texts().line.kicked.as_bytes());
    host.finish();
}

/// A flooder's last line.
fn flooded<H: Host>(host: &mut H) {
    debug!("{} flooded: disconnected", host.addr());
    host.send(host.texts().limits.flooding.as_bytes());
    host.finish();
}

/// Every user's last line on shutdown.
pub fn shutting_down<H: Host>(host: &mut H) {
    host.send(host.texts().line.shutting_down.as_bytes());
    host.finish();
}

/// The line before the messages kept for a user while offline: `离线消息（N 条）：`.
pub fn render_offline_notice(notice: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(notice.as_bytes());
    out.push(b'\n');
}

/// `[addr]name:TEXT` lines for notices and the room; `NAME对您说TEXT` for a whisper.
pub fn render(texts: &Texts, from: User<'_>, event: Event<'_>, out: &mut Vec<u8>) {
    let body = match event {
        Event::Online => texts.line.online.as_bytes(),
        Event::Offline => texts.line.offline.as_bytes(),
        Event::Say { text, .. } => text,
        Event::Whisper(text) => return text::whisper(out, texts, from, text),
    };
    text::user_line(out, from, body);
}
