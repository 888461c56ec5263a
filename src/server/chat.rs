//! The line protocol's commands (seeds 000–002): framing with [`next_line`], then one
//! handler per [`Command`]. Replies and fan-out go through the loop's shared helpers, so a
//! line user's broadcast reaches WebSocket users too, in their own form.

use super::cluster::{ClaimFor, Place, Then};
use super::{lookup, Server};
use crate::codec::line::{next_line, parse, Command, Line, ProtocolError};
use crate::conn::ConnState;
use crate::text;
use log::debug;
use mio::Token;

impl Server {
    /// Executes the complete lines at the front of `data` and returns the bytes consumed;
    /// what remains is a partial line within the length limit.
    pub(super) fn run_lines(&mut self, token: Token, data: &[u8]) -> usize {
        let max = self.config.max_line_bytes;
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = lookup(&mut self.conns, token) else {
                return data.len();
            };
            if conn.state != ConnState::Open {
                return data.len();
            }
            let rest = data.get(pos..).unwrap_or_default();
            if conn.discarding {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        conn.discarding = false;
                        pos += i + 1;
                    }
                    None => return data.len(),
                }
                continue;
            }
            match next_line(rest, max) {
                Line::Complete { text, used } => {
                    pos += used;
                    self.execute(token, text);
                }
                Line::Incomplete => break,
                Line::TooLong => {
                    debug!("{conn} sent a line over {max} bytes");
                    conn.discarding = true;
                    self.reply(token, self.texts.error(ProtocolError::LineTooLong));
                }
            }
        }
        pos
    }

    /// Runs one line from `token`'s user.
    fn execute(&mut self, token: Token, line: &[u8]) {
        self.metrics.messages_in += 1;
        match parse(line) {
            Ok(Command::Empty) => {}
            Ok(Command::Who) => self.cmd_who(token),
            Ok(Command::Rename(name)) => self.cmd_rename(token, name),
            Ok(Command::To { name, body }) => self.cmd_to(token, name, body),
            Ok(Command::Say(text)) => self.cmd_say(token, text),
            Err(e) => {
                debug!("{token:?}: {e}");
                self.reply(token, self.texts.error(e));
            }
        }
    }

    /// `who`: one line per online user of any protocol and any server, to the asker only,
    /// in one block.
    fn cmd_who(&mut self, token: Token) {
        self.msg.clear();
        for (_, c) in self.conns.iter().filter(|(_, c)| c.online) {
            text::user_line(&mut self.msg, c.user(), self.texts.who_entry.as_bytes());
        }
        if let Some(cluster) = &self.cluster {
            for (name, user) in cluster.remote_users() {
                let user = text::User {
                    addr: &user.addr,
                    name: Some(name),
                };
                text::user_line(&mut self.msg, user, self.texts.who_entry.as_bytes());
            }
        }
        self.queue_msg(token);
    }

    /// `rename|NEW`, NEW already valid: taken names are refused, nothing changes then. In a
    /// cluster the claim is Redis's to grant, and the answer comes when it replies.
    fn cmd_rename(&mut self, token: Token, new: &str) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        if self.cluster.is_some() && conn.chosen_name.as_deref() != Some(new) {
            if self.dir.lookup(new.as_bytes()).is_some() || self.held_remotely(new) {
                return self.reply(token, self.texts.name_taken);
            }
            if !self.claim(token, new, ClaimFor::Rename, self.now) {
                self.reply(token, self.texts.cluster_unavailable);
            }
            return;
        }
        match self
            .dir
            .rename(conn.addr, conn.chosen_name.as_deref(), new, token)
        {
            Ok(()) => {
                debug!("{conn} renamed to {new}");
                conn.chosen_name = Some(new.into());
                self.reply_renamed(token, new);
            }
            Err(_) => self.reply(token, self.texts.name_taken),
        }
    }

    /// `to|NAME|TEXT`, checked in the seed's order: recipient online, then text present.
    fn cmd_to(&mut self, token: Token, name: &[u8], body: &[u8]) {
        let reply = match self.locate(name) {
            Place::Nowhere if self.cluster_up() => {
                // Not known here: it may have just arrived elsewhere. Redis decides.
                let name = String::from_utf8_lossy(name);
                return self.route_by_redis(token, &name, body, Then::Line, self.now);
            }
            Place::Nowhere => self.texts.no_such_user,
            Place::Unknown => self.texts.cluster_unavailable,
            Place::Local(_) | Place::Remote(_) if body.is_empty() => self.texts.empty_body,
            Place::Local(_) | Place::Remote(_) => {
                if self.speak_as(token) {
                    // `locate` found the name, so it is UTF-8.
                    let name = String::from_utf8_lossy(name);
                    self.send_to(&name, body, self.now);
                }
                return;
            }
        };
        self.reply(token, reply);
    }

    /// Anything else: `[addr]name:LINE` to everyone in the room, the sender included.
    fn cmd_say(&mut self, token: Token, line: &[u8]) {
        let Some(room) = lookup(&mut self.conns, token).map(|c| c.room()) else {
            return;
        };
        if self.speak_as(token) {
            self.say(room, line, self.now);
        }
    }
}
