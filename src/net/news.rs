//! What the cluster hands back, acted on: Redis's answers to the claims, look-ups and
//! history reads the chat service (`host`) asked, each completing the [`Waiting`] it
//! carries; what other servers' users did; and the offline letters due.
//!
//! Acting on one item may add another (a message handed on whose speaker left, letters
//! due after a signed login): [`State::apply_news`] goes on until nothing is left, so
//! nothing waits a turn.

use super::conn::ConnState;
use super::host::{Purpose, Speaker, State, Waiting};
use crate::chat::history::Page;
use crate::chat::offline::{Delivery, Letter};
use crate::chat::{Event, Remote};
use crate::cluster::{Echo, Found, News};
use crate::proto::{self, Claim, Recalled, Routed};
use crate::text::{self, User};
use log::debug;
use mio::Token;
use std::time::Instant;

impl State {
    /// Delivers the letters kept for a user who signed in: a notice with their count, then
    /// each as a private message from its sender, in the user's protocol. Letters that
    /// expired meanwhile are dropped; if the user left first, they are kept again.
    fn deliver_mail(&mut self, mail: Delivery, now: Instant) {
        let now_ms = self.mail.unix_ms(now);
        let ttl = self.config.offline.ttl;
        let Delivery {
            peer,
            name,
            mut letters,
        } = mail;
        letters.retain(|l| l.fresh(now_ms, ttl));
        let token = Token(peer.0);
        let to = match self.conns.get(token).filter(|c| c.state == ConnState::Open) {
            Some(conn) => conn.user.and_then(|id| self.chat.get(id)),
            None => None,
        };
        let Some(to) = to.filter(|m| m.shown().name == Some(&*name)) else {
            return self.put_back(&name, letters, now);
        };
        if letters.is_empty() {
            return;
        }
        debug!("{} gets {} offline messages", to.addr, letters.len());
        self.metrics.offline.delivered += letters.len() as u64;
        let mut notice = Vec::new();
        let texts = self.texts();
        let text = text::offline_notice(texts, letters.len());
        proto::render_notice(to.kind, texts, to.shown(), &text, &mut notice);
        self.conns.queue(token, &notice);
        for letter in &letters {
            let from = User {
                addr: &letter.addr,
                name: Some(&letter.from),
            };
            self.fanout.one(&mut self.conns, to, from, &letter.text);
        }
    }

    /// Keeps again letters whose recipient left before they could be delivered.
    fn put_back(&mut self, name: &str, letters: Vec<Letter>, now: Instant) {
        if letters.is_empty() {
            return;
        }
        let now_ms = self.mail.unix_ms(now);
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.put_back(name, &letters, now);
        } else if let Some(store) = self.mail.store.as_mut() {
            store.put_back(name, letters, now_ms);
        }
    }

    /// Acts on what the cluster answered or heard, and delivers the letters due.
    pub fn apply_news(&mut self, now: Instant) {
        while !self.news.is_empty() || !self.mail.due.is_empty() {
            for mail in std::mem::take(&mut self.mail.due) {
                self.deliver_mail(mail, now);
            }
            let news = std::mem::take(&mut self.news);
            for item in news {
                self.apply(item, now);
            }
        }
    }

    fn apply(&mut self, news: News<Waiting>, now: Instant) {
        match news {
            News::Claimed { ctx, name, won } => self.claimed(ctx, &name, won, now),
            News::Routed {
                ctx,
                name,
                text,
                found,
            } => self.routed(ctx, &name, &text, found, now),
            News::Mail(mail) => self.deliver_mail(mail, now),
            News::Arrived { name, user } => self.remote_event(&name, &user, Event::Online),
            News::Left { name, user } => self.remote_event(&name, &user, Event::Offline),
            News::Said {
                name,
                user,
                text,
                seq,
            } => {
                let event = Event::Say {
                    text: &text,
                    seq: Some(seq),
                };
                self.remote_event(&name, &user, event);
            }
            News::Numbered { echo, seq } => self.numbered(&echo, seq),
            News::LocalOnly { by } => self.local_only(by),
            News::Delivered { ctx, ok } => {
                // Answered even if the asker left: a delivered message keeps the HTTP
                // API's `msgID`, an undelivered one gives it back.
                let outcome = if ok { Routed::Sent } else { Routed::Unknown };
                proto::routed(ctx.reply, outcome, &mut self.ctx(ctx.token, now));
            }
            News::History { ctx, room, page } => self.recalled(ctx, &room, page, now),
            News::Whispered {
                from,
                addr,
                to,
                text,
            } => {
                if let Some(id) = self.chat.find(to.as_bytes()) {
                    self.deliver(&Speaker::Named(addr, from), id, &text);
                }
            }
        }
    }

    /// A broadcast said here, now numbered by Redis (`None`: not taken): the users of its
    /// room here who see numbers hear it now (the others heard it when it was said).
    fn numbered(&mut self, echo: &Echo, seq: Option<u64>) {
        let Some(room) = self.chat.room_id(&echo.room) else {
            return;
        };
        let from = User {
            addr: &echo.addr,
            name: Some(&echo.name),
        };
        let event = Event::Say {
            text: &echo.text,
            seq,
        };
        let (chat, conns) = (&self.chat, &mut self.conns);
        self.fanout
            .room_where(chat, conns, room, from, event, |s| proto::shows_seq(s.kind));
    }

    /// A history read that waited for Redis (`None`: Redis went away first). A user who
    /// left the room meanwhile gets an empty page: nothing more of that room.
    fn recalled(&mut self, waiting: Waiting, room: &str, page: Option<Page>, now: Instant) {
        let here = self.conns.get(waiting.token).and_then(|c| c.user);
        let same_room = here
            .and_then(|id| self.chat.get(id))
            .is_some_and(|m| self.chat.room_name(m.room) == room);
        let outcome = match page {
            None => Recalled::Unavailable,
            Some(mut page) => {
                if !same_room {
                    page.entries.clear();
                    page.gap = false;
                }
                Recalled::Page(page)
            }
        };
        proto::recalled(waiting.reply, outcome, &mut self.ctx(waiting.token, now));
    }

    /// Something a user of another server did, told to its room here.
    fn remote_event(&mut self, name: &str, user: &Remote, event: Event<'_>) {
        let Some(room) = self.chat.room_id(&user.room) else {
            return;
        };
        let from = User {
            addr: &user.addr,
            name: Some(name),
        };
        self.fanout
            .room(&self.chat, &mut self.conns, room, from, event, None);
    }

    /// Completes a claim: `won` is Redis's answer, `None` when Redis went away first.
    fn claimed(&mut self, waiting: Waiting, name: &str, won: Option<bool>, now: Instant) {
        let Waiting {
            token,
            reply,
            purpose,
        } = waiting;
        if !self.is_open(token) {
            if won == Some(true) {
                self.release(name, now); // the asker left meanwhile
            }
            return;
        }
        let outcome = match (won, purpose) {
            (None, _) => Claim::Unavailable,
            (Some(false), _) => Claim::Taken,
            (Some(true), Purpose::Rename) => self.rename_claimed(token, name, now),
            (Some(true), Purpose::Login { kind, room, signed }) => {
                let logged_in = self.conns.get(token).is_some_and(|c| c.user.is_some());
                if logged_in || self.enter(token, kind, Some(name), &room, now).is_err() {
                    // A second login that was waiting: the first one stands.
                    self.release(name, now);
                    Claim::Taken
                } else {
                    // Logged in: a signed login's expiry may come before the login
                    // deadline on the wheel.
                    self.schedule(token);
                    if signed {
                        self.signed_in(token, name, now);
                    }
                    Claim::Granted
                }
            }
            (Some(true), Purpose::Route { .. } | Purpose::Deliver | Purpose::History) => {
                Claim::Taken
            }
        };
        proto::claimed(reply, outcome, &mut self.ctx(token, now));
    }

    /// A rename that Redis granted: applied here, and the other servers told.
    fn rename_claimed(&mut self, token: Token, new: &str, now: Instant) -> Claim {
        let Some(id) = self.conns.get(token).and_then(|c| c.user) else {
            self.release(new, now);
            return Claim::Taken;
        };
        let Ok(old) = self.chat.rename(id, new) else {
            self.release(new, now);
            return Claim::Taken;
        };
        if let (Some(cluster), Some(member)) = (self.cluster.as_mut(), self.chat.get(id)) {
            let room = self.chat.room_name(member.room);
            cluster.renamed(&old, new, room, member.addr, now);
        }
        Claim::Granted
    }

    /// Redis answered where a name is (`None`: Redis went away).
    fn routed(
        &mut self,
        waiting: Waiting,
        name: &str,
        text: &[u8],
        found: Option<Found>,
        now: Instant,
    ) {
        let Waiting {
            token,
            reply,
            purpose,
        } = waiting;
        if !self.is_open(token) {
            // Nothing was sent: the asker's protocol may have state to undo (the HTTP
            // API forgets the `msgID`, so a retry is not taken for a duplicate).
            proto::routed(reply, Routed::Unknown, &mut self.ctx(token, now));
            return;
        }
        let Purpose::Route { as_name, need_text } = purpose else {
            return;
        };
        let outcome = match found {
            None => Routed::Unknown,
            Some(Found::Offline(keep)) => self.routed_offline(keep),
            // The seed's order: the recipient is checked before the text.
            Some(Found::At(_)) if need_text && text.is_empty() => Routed::Empty,
            Some(Found::At(node)) => {
                let speaker = match (as_name, self.conns.get(token)) {
                    (Some(name), Some(conn)) => Some(Speaker::Named(conn.peer_addr(), name)),
                    (None, Some(conn)) => conn.user.map(Speaker::User),
                    _ => None,
                };
                let Some(speaker) = speaker else {
                    return proto::routed(reply, Routed::Nowhere, &mut self.ctx(token, now));
                };
                let waiting = Waiting {
                    token,
                    reply,
                    purpose: Purpose::Deliver,
                };
                self.whisper_remote(&speaker, &node, name, text, waiting, now);
                return;
            }
        };
        proto::routed(reply, outcome, &mut self.ctx(token, now));
    }

    /// Frees a name claimed in Redis for nobody.
    fn release(&mut self, name: &str, now: Instant) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.release(name, now);
        }
    }
}
