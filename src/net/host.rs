//! The chat service the loop offers the protocol adapters: the flows that join the chat
//! core, the cluster and the connections, each written once.
//!
//! - presence: [`State::enter`], [`State::leave`] and [`State::move_to`] (the
//!   online/offline fan-out, and the one "announce a user to Redis" sequence);
//! - speech: `say` (the room's history, local fan-out, or the room's stream in Redis) and
//!   `whisper` (routing by [`Chat::locate`]: local, another server, or ask Redis), on
//!   [`Ctx`];
//! - names: `rename` and `login` on [`Ctx`] (a claim, decided here or by Redis);
//! - offline private messages (`--auth-secret`): [`State::keep`] for a signed-in user who
//!   is offline, [`State::signed_in`] for the delivery after the login's answer;
//! - what the cluster answers or hears later, and the letters due: in `news`
//!   ([`State::apply_news`]).
//!
//! [`Ctx`] binds the state to one connection and implements [`Host`] for its adapter.

use super::conn::ConnState;
use super::conns::Conns;
use super::ctx::Ctx;
use super::fanout::{Departures, Fanout};
use super::flood::Rule;
use super::mail::Mail;
use crate::chat::history::History;
use crate::chat::offline::{Delivery, Keep, Letter};
use crate::chat::{Chat, Event, Kind, Moved, NameTaken, Peer, Remote, RoomId, UserId};
use crate::cluster::{Cluster, Envelope, News};
use crate::config::Config;
use crate::metrics::{Backplane, Gauges, Metrics};
use crate::proto::{self, api::Web, Reply, Routed, Session, Voice};
use crate::text::{Texts, User};
use crate::timer::Wheel;
use log::debug;
use mio::Token;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

/// What a question to the cluster was asked for, kept with it until Redis answers.
#[derive(Debug)]
pub struct Waiting {
    /// The asking connection.
    pub(super) token: Token,
    /// How its protocol answers.
    pub(super) reply: Reply,
    /// What the answer completes.
    pub(super) purpose: Purpose,
}

/// What a claim or look-up completes.
#[derive(Debug)]
pub(super) enum Purpose {
    /// A rename of the asker's user.
    Rename,
    /// The asker logging in (`signed`: with a valid token).
    Login {
        kind: Kind,
        room: Box<str>,
        signed: bool,
    },
    /// A private message from the asker (`as_name`: under that name, not as its user);
    /// `need_text`: an empty text is refused once the recipient is known.
    Route {
        as_name: Option<Box<str>>,
        need_text: bool,
    },
    /// A private message handed to another server, answered once Redis confirms it.
    Deliver,
    /// A history read from Redis.
    History,
}

/// Everything a command can touch: the loop's state apart from the poll and listeners.
pub struct State {
    /// The connections.
    pub conns: Conns,
    /// Who is online.
    pub chat: Chat,
    /// The Redis backplane, with `--redis`.
    pub cluster: Option<Cluster<Waiting>>,
    /// What the cluster answered or heard, to act on this turn.
    pub news: Vec<News<Waiting>>,
    /// The HTTP API's memory.
    pub web: Web,
    /// Counters.
    pub metrics: Metrics,
    /// Settings.
    pub config: Config,
    /// Idle, heartbeat, request and linger deadlines.
    pub wheel: Wheel<Token>,
    /// The fan-out's encode buffers.
    pub fanout: Fanout,
    /// Users who left, whose rooms are still to be told.
    pub departures: Departures,
    /// Set once shutdown began: nobody is told about departures any more.
    pub shutting_down: bool,
    /// Speakers told in this outage that their broadcast reached this server's users
    /// only, and the outage (the cluster's count of ups when it began).
    pub local_only: (u64, HashSet<Token>),
    /// When the server started: flood buckets count milliseconds from here.
    pub epoch: Instant,
    /// The wall clock at `epoch`, in milliseconds since the Unix epoch: a message's time is
    /// counted from it with the loop's own clock, read once per turn.
    pub epoch_unix_ms: u64,
    /// Each room's recent messages.
    pub history: History,
    /// Offline private messages: the in-memory mailbox, deliveries due.
    pub mail: Mail,
}

impl State {
    /// Binds the state to one connection for its protocol adapter.
    pub fn ctx(&mut self, token: Token, now: Instant) -> Ctx<'_> {
        Ctx::new(self, token, now)
    }

    /// The server's texts.
    pub fn texts(&self) -> &'static Texts {
        self.fanout.texts()
    }

    /// `now` in milliseconds since the Unix epoch.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_millis();
        self.epoch_unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Whether `token` is a connection that still takes commands.
    pub(super) fn is_open(&self, token: Token) -> bool {
        self.conns
            .get(token)
            .is_some_and(|c| c.state == ConnState::Open)
    }

    /// Puts a connection's user online under `name` (`None`: its default name) and tells
    /// its room and the other servers.
    ///
    /// # Errors
    /// [`NameTaken`] when a local user holds the name.
    pub fn enter(
        &mut self,
        token: Token,
        kind: Kind,
        name: Option<&str>,
        room: &str,
        now: Instant,
    ) -> Result<(), NameTaken> {
        // Whoever left before this user arrived is announced first, to the users who were
        // there: a name that leaves and comes back reads "offline", then "online".
        self.flush_departures();
        let Some(conn) = self.conns.get_mut(token) else {
            return Err(NameTaken);
        };
        let addr = conn.peer_addr();
        let id = self.chat.enter(Peer(token.0), kind, addr, name, room)?;
        conn.user = Some(id);
        debug!("{addr} online as {name:?} in room {room}");
        // An `/im` user's own arrival is answered by its login instead.
        let except = (!proto::greets_self(kind)).then_some(id);
        if let Some(member) = self.chat.get(id) {
            self.tell(id, member.room, Event::Online, except);
        }
        if let (Some(cluster), Some(member)) = (self.cluster.as_mut(), self.chat.get(id)) {
            let name = member.shown().name_string();
            let user = Remote {
                node: Box::from(self.chat.node().unwrap_or_default()),
                room: room.into(),
                addr: member.addr,
            };
            cluster.announce(&name, user, now);
        }
        Ok(())
    }

    /// Moves a connection's user to the room called `room` (a valid name): its old room
    /// gets the offline notice, the new one the online notice (not the mover: its move is
    /// answered), and the other servers are told. Moving to one's own room, or without a
    /// user, changes nothing.
    pub fn move_to(&mut self, token: Token, room: &str, now: Instant) {
        let Some(id) = self.conns.get(token).and_then(|c| c.user) else {
            return;
        };
        let Some(Moved::From(old)) = self.chat.move_to(id, room) else {
            return;
        };
        let Some(new_room) = self.chat.get(id).map(|m| m.room) else {
            return;
        };
        debug!("{token:?} moved from room {old} to {room}");
        if let Some(old_room) = self.chat.room_id(&old) {
            self.tell(id, old_room, Event::Offline, None);
        }
        self.tell(id, new_room, Event::Online, Some(id));
        if let (Some(cluster), Some(member)) = (self.cluster.as_mut(), self.chat.get(id)) {
            let name = member.shown().name_string();
            cluster.moved(&name, &old, room, member.addr, now);
        }
    }

    /// Tells `room` (but `except`) about `event` from the local user `id`.
    fn tell(&mut self, id: UserId, room: RoomId, event: Event<'_>, except: Option<UserId>) {
        let Some(member) = self.chat.get(id) else {
            return;
        };
        let (chat, conns) = (&self.chat, &mut self.conns);
        self.fanout
            .room(chat, conns, room, member.shown(), event, except);
    }

    /// Takes a connection's user offline: its name is freed, the other servers are told,
    /// and (outside shutdown) its room will get the offline notice.
    pub fn leave(&mut self, token: Token, now: Instant) {
        let Some(id) = self.conns.get_mut(token).and_then(|c| c.user.take()) else {
            return;
        };
        let Some((member, room)) = self.chat.leave(id) else {
            return;
        };
        debug!("{} offline", member.addr);
        let name = member.shown().name_string();
        if member.signed {
            self.signed_out(&name, now);
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.left(&name, &room, member.addr, now);
        }
        if !self.shutting_down {
            let shown = member.shown();
            self.departures.push(room, member.addr, shown.name, now);
        }
    }

    /// Tells each room about the users who left it, once no more hang-ups are arriving:
    /// when many leave at once, the leavers still connected have all been seen hanging up
    /// by then, so nobody queues notices for peers that are gone (see [`Departures`]).
    pub fn announce_departures(&mut self, now: Instant) {
        if self.departures.due(now) {
            self.flush_departures();
        }
    }

    /// Tells each room about the users who left it, now.
    fn flush_departures(&mut self) {
        for d in self.departures.take() {
            // A room nobody here is in any more has nobody to tell.
            let Some(room) = self.chat.room_id(&d.room) else {
                continue;
            };
            let from = User {
                addr: &d.addr,
                name: d.name.as_deref(),
            };
            self.fanout.room(
                &self.chat,
                &mut self.conns,
                room,
                from,
                Event::Offline,
                None,
            );
        }
    }

    /// Ends a connection gracefully: offline now, closed once its owed output is written or
    /// the grace period runs out.
    pub fn finish(&mut self, token: Token, now: Instant) {
        self.leave(token, now);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        conn.state = ConnState::CloseAfterFlush;
        conn.close_transport();
        conn.inbuf = Vec::new();
        conn.last_active = now;
        // The flush phase closes it once drained, even if nothing is queued now.
        self.conns.mark_dirty(token);
        self.schedule(token);
    }

    /// When a connection must next be looked at, by its state and protocol.
    pub fn deadline(&self, token: Token) -> Option<Instant> {
        let conn = self.conns.get(token)?;
        match conn.state {
            ConnState::CloseAfterFlush => Some(conn.last_active + self.config.shutdown_grace),
            ConnState::Closing => None,
            ConnState::Open if !conn.established() => {
                Some(conn.last_active + self.config.login_timeout)
            }
            ConnState::Open => {
                let logged_in = conn.user.is_some();
                conn.session
                    .deadline(conn.last_active, logged_in, &self.config)
            }
        }
    }

    /// Puts a reminder for `token` on the wheel at its current deadline.
    pub fn schedule(&mut self, token: Token) {
        if let Some(at) = self.deadline(token) {
            self.wheel.schedule(at, token);
        }
    }

    /// Who speaks for `voice` from connection `token`: the user's id if it is one, and
    /// the address and name otherwise.
    pub(super) fn speaker(&self, token: Token, voice: Voice<'_>) -> Option<Speaker> {
        let conn = self.conns.get(token)?;
        let named = |name: &str| Speaker::Named(conn.peer_addr(), name.into());
        Some(match voice {
            Voice::Me => Speaker::User(conn.user?),
            Voice::User(name) => match self.chat.find(name.as_bytes()) {
                Some(id) => Speaker::User(id),
                None => named(name),
            },
            Voice::Named(name) => named(name),
        })
    }

    /// Sends `text` from `speaker` to a local user.
    pub(super) fn deliver(&mut self, speaker: &Speaker, to: UserId, text: &[u8]) {
        let Some(to) = self.chat.get(to) else {
            return;
        };
        let Some((from, _)) = speaker.shown(&self.chat) else {
            return;
        };
        self.fanout.one(&mut self.conns, to, from, text);
    }

    /// Hands `text` from `speaker` to the server `node` for its user `to`; the answer
    /// waits for Redis to confirm that server took it ([`News::Delivered`]).
    pub(super) fn whisper_remote(
        &mut self,
        speaker: &Speaker,
        node: &str,
        to: &str,
        text: &[u8],
        waiting: Waiting,
        now: Instant,
    ) -> Routed {
        match (speaker.shown(&self.chat), self.cluster.as_mut()) {
            (Some((from, _)), Some(cluster)) => {
                let envelope = Envelope {
                    from: &from.name_string(),
                    addr: *from.addr,
                    to,
                    text,
                };
                cluster.whisper(node, envelope, waiting, now, &mut self.news);
            }
            // The speaker left meanwhile: answered (undone) like any unconfirmed one.
            _ => self.news.push(News::Delivered {
                ctx: waiting,
                ok: false,
            }),
        }
        Routed::Pending
    }

    /// Tells the user at `by` that its broadcast reached this server's users only, unless
    /// it was told so already in this outage.
    pub(super) fn local_only(&mut self, by: Peer) {
        let ups = self.cluster.as_ref().map_or(0, |c| c.ups());
        if self.local_only.0 != ups {
            self.local_only = (ups, HashSet::new());
        }
        let token = Token(by.0);
        let kind = self
            .conns
            .get(token)
            .and_then(|c| c.user)
            .and_then(|id| self.chat.get(id));
        let Some(member) = kind else {
            return;
        };
        if self.local_only.1.insert(token) {
            let mut bytes = Vec::new();
            let texts = self.fanout.texts();
            proto::render_notice(
                member.kind,
                texts,
                member.shown(),
                texts.line.local_only.trim_end(),
                &mut bytes,
            );
            self.conns.queue(token, &bytes);
        }
    }

    /// The letter `speaker` would leave for an offline user: `None` without `--auth-secret`
    /// (nothing is kept), or for an empty text the protocol refuses (`need_text`).
    pub(super) fn letter(
        &self,
        speaker: &Speaker,
        text: &[u8],
        need_text: bool,
        now: Instant,
    ) -> Option<Letter> {
        self.config.access.auth_secret.as_ref()?;
        if need_text && text.is_empty() {
            return None;
        }
        let (from, _) = speaker.shown(&self.chat)?;
        Some(Letter {
            from: from.name_string().into(),
            addr: *from.addr,
            sent_ms: self.mail.unix_ms(now),
            text: text.into(),
        })
    }

    /// A private message to `to`, online nowhere, on a server without Redis: kept in memory
    /// if `to` signed in with a token before (see [`crate::chat::offline`]).
    pub(super) fn keep(&mut self, to: &[u8], letter: Option<Letter>, now: Instant) -> Routed {
        let now_ms = self.mail.unix_ms(now);
        let (Some(store), Ok(to)) = (self.mail.store.as_mut(), std::str::from_utf8(to)) else {
            return Routed::Nowhere;
        };
        let keep = store.keep(to, letter, now_ms);
        self.routed_offline(keep)
    }

    /// A user who logged in with a token left: its signed login counts from now, so mail
    /// is kept for it however long it stayed.
    fn signed_out(&mut self, name: &str, now: Instant) {
        if let Some(cluster) = self.cluster.as_mut() {
            return cluster.signed_out(name, now);
        }
        let now_ms = self.mail.unix_ms(now);
        if let Some(store) = self.mail.store.as_mut() {
            store.signed_out(name, now_ms);
        }
    }

    /// How a private message to a user online nowhere went, by what became of it (in
    /// memory or in Redis), counted.
    pub(super) fn routed_offline(&mut self, keep: Keep) -> Routed {
        let counts = &mut self.metrics.offline;
        match keep {
            Keep::NotSigned => Routed::Nowhere,
            Keep::Saved => {
                counts.saved += 1;
                Routed::Saved
            }
            Keep::Full => {
                counts.refused_full += 1;
                Routed::Full
            }
            // Signed in before, so a user: the text is what is missing.
            Keep::Signed => Routed::Empty,
        }
    }

    /// A signed login of `name` on `token` succeeded: it is remembered (for mail to come)
    /// and what was kept for it is delivered after the login's answer, oldest first.
    pub(super) fn signed_in(&mut self, token: Token, name: &str, now: Instant) {
        if let Some(id) = self.conns.get(token).and_then(|c| c.user) {
            self.chat.mark_signed(id);
        }
        let peer = Peer(token.0);
        if let Some(cluster) = self.cluster.as_mut() {
            return cluster.sign_in(name, peer, now);
        }
        let now_ms = self.mail.unix_ms(now);
        if let Some(store) = self.mail.store.as_mut() {
            let letters = store.sign_in(name, now_ms);
            if !letters.is_empty() {
                let name = name.into();
                self.mail.due.push(Delivery {
                    peer,
                    name,
                    letters,
                });
            }
        }
    }

    /// Every counter, the connections' included.
    pub fn snapshot(&self) -> Metrics {
        Metrics {
            messages_out: self.conns.messages_out,
            slow_consumer_kicks: self.conns.slow_consumer_kicks,
            ..self.metrics.clone()
        }
    }

    /// Connection and user counts.
    pub fn gauges(&self) -> Gauges {
        let (line, ws, http) = self.conns.families();
        Gauges {
            line,
            ws,
            http,
            users: self.chat.len(),
            history_messages: self.history.messages(),
            history_bytes: self.history.bytes(),
            backplane: self.cluster.as_ref().map(|c| Backplane {
                remote_users: self.chat.remote_count(),
                ..c.stats()
            }),
        }
    }

    /// The flood rule every limited connection follows.
    pub fn flood_rule(&self) -> Rule {
        let l = &self.config.limits;
        Rule {
            rate: l.flood_rate,
            burst: l.flood_burst,
        }
    }

    /// Runs `f` on connection `token`'s session with the state bound to that connection;
    /// the session is taken out meanwhile, so the adapter can borrow the whole state.
    pub fn with_session<R>(
        &mut self,
        token: Token,
        now: Instant,
        f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let before = self.deadline(token);
        let conn = self.conns.get_mut(token)?;
        let mut session = std::mem::take(&mut conn.session);
        let family = session.family();
        let result = f(&mut session, &mut self.ctx(token, now));
        let now_family = session.family();
        if let Some(conn) = self.conns.get_mut(token) {
            conn.session = session;
            self.conns.recount(family, now_family);
            // The wheel only learns of later deadlines lazily, when the old one fires; an
            // earlier one (a login whose token expires soon) must be put on it now.
            let earlier = match (before, self.deadline(token)) {
                (Some(old), Some(new)) => new < old,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if family != now_family || earlier {
                self.schedule(token);
            }
        }
        Some(result)
    }
}

/// Who speaks: a user of this server, or an address under a name (the HTTP API, a user
/// of another server).
#[derive(Debug)]
pub(super) enum Speaker {
    User(UserId),
    Named(SocketAddr, Box<str>),
}

impl Speaker {
    /// The speaker as texts show it, and its room if it is a user; `None` if that user
    /// has gone.
    pub(super) fn shown<'a>(&'a self, chat: &'a Chat) -> Option<(User<'a>, Option<RoomId>)> {
        match self {
            Speaker::User(id) => chat.get(*id).map(|m| (m.shown(), Some(m.room))),
            Speaker::Named(addr, name) => Some((
                User {
                    addr,
                    name: Some(name),
                },
                None,
            )),
        }
    }
}
