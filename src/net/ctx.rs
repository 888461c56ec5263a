//! [`Ctx`]: the chat service bound to one connection, as its protocol adapter sees it
//! ([`Host`]). The flows behind it live on [`State`].

use super::flood::{millis, Verdict};
use super::host::{Purpose, Speaker, State, Waiting};
use crate::chat::history::History;
use crate::chat::{Chat, Event, Kind, Member, NameTaken, Peer, Place};
use crate::config::Config;
use crate::metrics::{Gauges, Metrics};
use crate::proto::{self, api::Web, Claim, Host, Pace, Reply, Routed, Voice};
use crate::text::Texts;
use log::debug;
use mio::Token;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The state bound to one connection: what its protocol adapter works through.
pub struct Ctx<'a> {
    st: &'a mut State,
    token: Token,
    now: Instant,
}

impl<'a> Ctx<'a> {
    /// Binds `st` to connection `token` for this turn.
    pub fn new(st: &'a mut State, token: Token, now: Instant) -> Self {
        Ctx { st, token, now }
    }
}

impl Host for Ctx<'_> {
    fn texts(&self) -> &'static Texts {
        self.st.texts()
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn config(&self) -> &Config {
        &self.st.config
    }

    fn metrics(&mut self) -> &mut Metrics {
        &mut self.st.metrics
    }

    fn snapshot(&self) -> Metrics {
        self.st.snapshot()
    }

    fn gauges(&self) -> Gauges {
        self.st.gauges()
    }

    fn web(&mut self) -> &mut Web {
        &mut self.st.web
    }

    /// Ready for traffic: the cluster (if any) reachable, and not shutting down.
    fn ready(&self) -> bool {
        !self.st.shutting_down && self.st.cluster.as_ref().is_none_or(|c| c.is_up())
    }

    fn is_open(&self) -> bool {
        self.st.is_open(self.token)
    }

    fn pace(&mut self) -> Pace {
        let rule = self.st.flood_rule();
        let now_ms = millis(self.st.epoch, self.now);
        let kick_after = self.st.config.limits.flood_kick;
        let Some(conn) = self.st.conns.get_mut(self.token) else {
            return Pace::Wait;
        };
        let was_throttled = conn.flood.throttled;
        match conn.flood.take(rule, now_ms) {
            Verdict::Go => Pace::Go,
            Verdict::Wait(backlog) if backlog >= kick_after => {
                self.st.metrics.guard.flood_kicks += 1;
                Pace::Kick
            }
            Verdict::Wait(_) => {
                if !was_throttled {
                    self.st.metrics.guard.throttled += 1;
                    debug!("{:?} over the flood limit: reading paused", self.token);
                }
                let wait = conn.flood.refill_in(rule, now_ms).max(1);
                let at = self.now + Duration::from_millis(wait);
                self.st.wheel.schedule(at, self.token);
                Pace::Wait
            }
        }
    }

    fn unpace(&mut self) {
        let rule = self.st.flood_rule();
        if let Some(conn) = self.st.conns.get_mut(self.token) {
            conn.flood.refund(rule);
        }
    }

    fn addr(&self) -> SocketAddr {
        self.st
            .conns
            .get(self.token)
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.peer_addr())
    }

    fn send(&mut self, bytes: &[u8]) {
        self.st.conns.queue(self.token, bytes);
    }

    fn finish(&mut self) {
        self.st.finish(self.token, self.now);
    }

    fn chat(&self) -> &Chat {
        &self.st.chat
    }

    fn history(&self) -> &History {
        &self.st.history
    }

    fn me(&self) -> Option<&Member> {
        let id = self.st.conns.get(self.token)?.user?;
        self.st.chat.get(id)
    }

    /// `voice` of this connection says `text` to `room` (`None`: the speaker's room): into
    /// the room's history, to everyone here at once, to the other servers through one
    /// PUBLISH.
    fn say(&mut self, voice: Voice<'_>, room: Option<&str>, text: &[u8]) {
        let Some(speaker) = self.st.speaker(self.token, voice) else {
            return;
        };
        let chat = &self.st.chat;
        let Some((from, own_room)) = speaker.shown(chat) else {
            return;
        };
        // A room named by the API may have nobody here (its id is `None` then).
        let (id, name) = match (room, own_room) {
            (Some(name), _) => (chat.room_id(name), name),
            (None, Some(id)) => (Some(id), chat.room_name(id)),
            (None, None) => return,
        };
        let time = self.st.unix_ms(self.now);
        let seq = self.st.history.push(name, from, time, text);
        if let Some(id) = id {
            let event = Event::Say { text, seq };
            let conns = &mut self.st.conns;
            self.st.fanout.room(chat, conns, id, from, event, None);
        }
        if let Some(cluster) = self.st.cluster.as_mut() {
            let speaker = from.name_string();
            cluster.said(&speaker, name, *from.addr, text, self.now);
        }
    }

    /// `voice` of this connection says `text` to the user called `to`, wherever it is.
    fn whisper(
        &mut self,
        voice: Voice<'_>,
        to: &[u8],
        text: &[u8],
        need_text: bool,
        reply: impl FnOnce() -> Reply,
    ) -> Routed {
        let Some(speaker) = self.st.speaker(self.token, voice) else {
            return Routed::Nowhere;
        };
        match self.st.chat.locate(to) {
            Place::Nowhere => {
                // Kept for the recipient if it is offline but signed in before.
                let letter = self.st.letter(&speaker, text, need_text, self.now);
                let Some(cluster) = self.st.cluster.as_mut() else {
                    return self.st.keep(to, letter, self.now);
                };
                // Not known here: it may have just arrived elsewhere. Redis decides.
                let as_name = match speaker {
                    Speaker::Named(_, name) => Some(name),
                    Speaker::User(_) => None,
                };
                let waiting = Waiting {
                    token: self.token,
                    reply: reply(),
                    purpose: Purpose::Route { as_name, need_text },
                };
                let name = String::from_utf8_lossy(to);
                let news = &mut self.st.news;
                cluster.route(&name, text, letter.as_ref(), waiting, self.now, news);
                Routed::Pending
            }
            Place::Unknown => Routed::Unknown,
            Place::Local(_) | Place::Remote(_) if need_text && text.is_empty() => Routed::Empty,
            Place::Local(id) => {
                self.st.deliver(&speaker, id, text);
                Routed::Sent
            }
            Place::Remote(node) => {
                // `locate` found the name, so it is UTF-8.
                let to = String::from_utf8_lossy(to);
                self.st.whisper_remote(&speaker, &node, &to, text, self.now);
                Routed::Sent
            }
        }
    }

    /// Renames the user of this connection; in a cluster the claim is Redis's to grant.
    fn rename(&mut self, new: &str, reply: Reply) -> Claim {
        let Some(id) = self.st.conns.get(self.token).and_then(|c| c.user) else {
            return Claim::Taken;
        };
        let same = self.st.chat.find(new.as_bytes()) == Some(id);
        if let (Some(cluster), false) = (self.st.cluster.as_mut(), same) {
            let chat = &self.st.chat;
            if chat.find(new.as_bytes()).is_some()
                || chat.held_remotely(new)
                || !chat.may_take(new, Some(id))
            {
                return Claim::Taken;
            }
            let waiting = Waiting {
                token: self.token,
                reply,
                purpose: Purpose::Rename,
            };
            return match cluster.claim(new, waiting, self.now) {
                true => Claim::Pending,
                false => Claim::Unavailable,
            };
        }
        match self.st.chat.rename(id, new) {
            Ok(_) => {
                debug!("{:?} renamed to {new}", self.token);
                Claim::Granted
            }
            Err(NameTaken) => Claim::Taken,
        }
    }

    /// Logs this connection in as `name` (see [`Host::login`]).
    fn login(
        &mut self,
        name: &str,
        kind: Kind,
        room: &str,
        signed: bool,
        reply: impl FnOnce() -> Reply,
    ) -> Claim {
        if let Some(holder) = self.st.chat.find(name.as_bytes()) {
            let Some(member) = self.st.chat.get(holder) else {
                return Claim::Taken;
            };
            if member.kind != kind || member.peer == Peer(self.token.0) {
                return Claim::Taken;
            }
            debug!("{name} logged in again: closing the older connection");
            let older = Token(member.peer.0);
            let mut bytes = Vec::new();
            proto::render_replaced(kind, self.st.texts(), &mut bytes);
            self.st.conns.queue(older, &bytes);
            self.st.finish(older, self.now);
            // The name stays this server's in the cluster: no claim needed.
        } else if let Some(cluster) = self.st.cluster.as_mut() {
            if self.st.chat.held_remotely(name) || !self.st.chat.may_take(name, None) {
                return Claim::Taken;
            }
            let waiting = Waiting {
                token: self.token,
                reply: reply(),
                purpose: Purpose::Login {
                    kind,
                    room: room.into(),
                    signed,
                },
            };
            return match cluster.claim(name, waiting, self.now) {
                true => Claim::Pending,
                false => Claim::Unavailable,
            };
        }
        match self.st.enter(self.token, kind, Some(name), room, self.now) {
            Ok(()) => {
                if signed {
                    self.st.signed_in(self.token, name, self.now);
                }
                Claim::Granted
            }
            Err(NameTaken) => Claim::Taken,
        }
    }

    fn enter_room(&mut self, room: &str) {
        self.st.move_to(self.token, room, self.now);
    }
}
