//! Many servers, one chat: this server's side of the Redis backplane (`--redis`).
//!
//! - [`link`]: three non-blocking Redis sockets in the loop's own poll, pipelined commands
//!   and a FIFO of what asked for each reply;
//! - [`wire`]: the keys, channels and wire form of the events servers exchange;
//! - [`stream`]: the room streams, which carry broadcasts between servers and keep each
//!   room's history (one `XADD` per broadcast, read back with `XREAD BLOCK`);
//! - [`Cluster`] (here): what this server tells the others (presence: one PUBLISH per
//!   event; broadcasts: one entry in the room's stream; whispers: a turn's whispers to one
//!   server in one PUBLISH to it, confirmed by Redis's count of receivers), what it hears
//!   from them (kept in the chat core's replica of remote users, and handed to the loop as
//!   [`News`] for the fan-out), name claims (`SET NX`) and look-ups (`GET`), liveness,
//!   and recovery after Redis comes back.
//!
//! A question to Redis carries the caller's context `C` (who asked, and how to answer),
//! opaque here, and comes back with it in [`News::Claimed`], [`News::Routed`],
//! [`News::Delivered`] or [`News::History`]; nothing here knows a protocol or a connection.
//!
//! Presence stays on PUBLISH: it is state, not a log. An event missed in an outage is
//! repaired by the `im:users` snapshot every server reads when it reconnects, and the
//! replica must hear of users in every room, not only the rooms this server reads.
//!
//! Offline private messages (with `--auth-secret`): a look-up for a name online nowhere
//! keeps the message for it in the same step, if it signed in with a token before; a
//! signed login records itself and takes what was kept, whichever server it comes back
//! to ([`mailbox`]).
//!
//! Liveness: every `node_timeout / 5` the server refreshes `im:alive:{node}` (TTL 3/5 of
//! the timeout) and asks whether the others' keys still exist; a server whose key is gone
//! is dead, and its users are announced offline and their names freed within the timeout.

pub mod link;
pub mod mailbox;
mod news;
mod relay;
pub mod stream;
pub mod wire;

use crate::chat::history::Query;
use crate::chat::offline::{Delivery, Letter};
use crate::chat::{Chat, Peer, Remote};
use crate::config::{OfflineSettings, RedisUrl};
use crate::metrics;
use link::{Backplane, Event as Link};
use log::{debug, info};
pub use mailbox::Found;
use mio::{Registry, Token};
use news::{Ask, Sayer};
pub use news::{Echo, Envelope, News, Speech};
use redis_protocol::resp2::types::OwnedFrame;
use relay::Relay;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use stream::Outbox;
use wire::Wire;

/// Frees a name only if `node` still holds it, with its `im:users` entry: a late or
/// repeated cleanup must never take a name from its new owner.
/// KEYS: `im:name:{name}`, `im:users`; ARGV: node, name.
const FORGET_NAME_LUA: &[u8] = b"if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('DEL', KEYS[1]) \
    local v = redis.call('HGET', KEYS[2], ARGV[2]) \
    if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '\\0' then \
      redis.call('HDEL', KEYS[2], ARGV[2]) end \
    return 1 end return 0";

/// The cluster state of one server.
pub struct Cluster<C> {
    link: Backplane<Ask<C>>,
    node: Box<str>,
    /// Between (re)connecting and the `im:users` snapshot: names whose leaving was already
    /// heard, so the older snapshot does not bring them back.
    left_before_snapshot: Option<HashSet<Box<str>>>,
    timeout: Duration,
    next_beat: Instant,
    /// Names claimed for users who are gone, whose release could not reach Redis (a claim
    /// that timed out may still have been applied): released on the next connect.
    orphans: Vec<Box<str>>,
    /// The room streams: broadcasts out and in, history.
    relay: Relay,
    /// This turn's whispers to other servers, by server, each with its asker's context:
    /// one PUBLISH per server at the end of the turn.
    whispers: Outbox<C>,
    /// Times the link came up: an outage ends with each.
    ups: u64,
    /// With `--auth-secret`: private messages to signed-in users who are offline are kept.
    mail: Option<OfflineSettings>,
}

impl<C> Cluster<C> {
    /// The cluster state for node `node`, talking to the Redis of `url` at `addr` (`url`
    /// resolved), under three reserved tokens of the loop's poll; rooms keep `history`
    /// broadcasts; `mail`: private messages to signed-in users who are offline are kept in
    /// Redis so.
    pub fn new(
        addr: SocketAddr,
        url: &RedisUrl,
        node: &str,
        timeout: Duration,
        tokens: [Token; 3],
        history: usize,
        mail: Option<OfflineSettings>,
    ) -> Self {
        let channels = vec![wire::ROOM_CHANNEL.to_vec(), wire::node_channel(node)];
        Cluster {
            link: Backplane::new(addr, url.db, url.auth.clone(), tokens, channels),
            node: node.into(),
            left_before_snapshot: None,
            timeout,
            next_beat: Instant::now(),
            orphans: Vec::new(),
            relay: Relay::new(history),
            whispers: Outbox::default(),
            ups: 0,
            mail,
        }
    }

    /// How many times the link came up: a broadcast that reached only this server's
    /// users is told once per outage, that is, per value of this.
    pub fn ups(&self) -> u64 {
        self.ups
    }

    /// Whether `token` is one of the Redis sockets'.
    pub fn owns(&self, token: Token) -> bool {
        self.link.owns(token)
    }

    /// Whether Redis is reachable now.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// When the cluster next needs the loop.
    pub fn next_deadline(&self) -> Option<Instant> {
        let beat = self.link.is_up().then_some(self.next_beat);
        let (says, whispers) = (self.relay.due(), self.whispers.due());
        [self.link.next_deadline(), beat, says, whispers]
            .into_iter()
            .flatten()
            .min()
    }

    /// Gauges for the metrics page (`remote_users` is the chat core's to fill in).
    pub fn stats(&self) -> metrics::Backplane {
        let s = self.link.stats();
        metrics::Backplane {
            messages_in: s.messages_in,
            commands_out: s.commands_out,
            pending: self.link.pending(),
            reconnects: s.reconnects,
            stream_lost: self.relay.lost(),
            remote_users: 0,
        }
    }

    /// Readiness of a Redis socket: what it brought is applied to `chat` and handed over.
    pub fn on_ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        scratch: &mut [u8],
        chat: &mut Chat,
        news: &mut Vec<News<C>>,
    ) {
        let mut events = Vec::new();
        self.link
            .on_ready(token, registry, now, scratch, &mut events);
        self.apply(events, chat, now, news);
    }

    /// Once per turn: reconnects, stall detection, heartbeats and liveness checks, then
    /// writes what the turn queued for Redis.
    pub fn turn(
        &mut self,
        registry: &Registry,
        now: Instant,
        chat: &mut Chat,
        news: &mut Vec<News<C>>,
    ) {
        let mut events = Vec::new();
        self.link.tick(registry, now, &mut events);
        if self.link.is_up() && now >= self.next_beat {
            self.next_beat = now + self.timeout / 5;
            let ttl = (self.timeout * 3 / 5).as_millis().max(1).to_string();
            let alive = wire::alive_key(&self.node);
            self.link
                .command(&[b"SET", &alive, b"1", b"PX", ttl.as_bytes()], None, now);
            for node in chat.remote_nodes() {
                let key = wire::alive_key(&node);
                self.link
                    .command(&[b"EXISTS", &key], Some(Ask::Alive { node }), now);
            }
        }
        self.send_whispers(now, news);
        self.relay.pump(&mut self.link, now, news);
        self.link.flush(registry, now, &mut events);
        self.apply(events, chat, now, news);
    }

    fn apply(
        &mut self,
        events: Vec<Link<Ask<C>>>,
        chat: &mut Chat,
        now: Instant,
        news: &mut Vec<News<C>>,
    ) {
        for event in events {
            match event {
                Link::Up => self.on_up(chat, now),
                Link::Down => {
                    chat.set_cluster_up(false);
                    self.left_before_snapshot = None;
                    self.relay.down();
                }
                Link::Reply(ask, frame) => self.on_reply(ask, frame, chat, now, news),
                Link::Failed(ask) => self.on_failed(ask, news),
                Link::Message { payload, .. } => self.on_message(&payload, chat, news),
            }
        }
    }

    /// (Re)connected: load the scripts, check the epoch, claim our users' names again,
    /// list them, tell the others quietly, and read everyone else's.
    fn on_up(&mut self, chat: &mut Chat, now: Instant) {
        chat.set_cluster_up(true);
        self.ups += 1;
        self.next_beat = now;
        self.relay.up(&mut self.link, &self.node, self.ups, now);
        let mut name = String::new();
        let mut count = 0;
        for (_, member) in chat.members() {
            name.clear();
            member.name_into(&mut name);
            let user = Remote {
                node: self.node.clone(),
                room: chat.room_name(member.room).into(),
                addr: member.addr,
            };
            self.present(&name, user, false, now);
            count += 1;
        }
        let node = self.node.clone();
        for name in std::mem::take(&mut self.orphans) {
            // A name a user of ours holds again (a takeover while Redis was away) was
            // just claimed anew above: it is no orphan.
            if chat.find(name.as_bytes()).is_none() {
                self.forget_name(&name, &node, now);
            }
        }
        self.left_before_snapshot = Some(HashSet::new());
        self.link
            .command(&[b"HGETALL", wire::USERS_KEY], Some(Ask::Users), now);
        info!("cluster: node {} announced {count} users", self.node);
    }

    fn on_reply(
        &mut self,
        ask: Ask<C>,
        frame: OwnedFrame,
        chat: &mut Chat,
        now: Instant,
        news: &mut Vec<News<C>>,
    ) {
        match ask {
            Ask::Claim { name, ctx } => {
                let won = matches!(frame, OwnedFrame::SimpleString(ref s) if s == b"OK");
                news.push(News::Claimed {
                    ctx,
                    name,
                    won: Some(won),
                });
            }
            Ask::Users => self.load_users(frame, chat, now),
            Ask::Alive { node } => {
                if frame == OwnedFrame::Integer(0) {
                    self.node_dead(&node, chat, now, news);
                }
            }
            Ask::Route { name, text, ctx } => {
                let found = mailbox::found(frame, &self.node);
                news.push(News::Routed {
                    ctx,
                    name,
                    text,
                    found,
                });
            }
            Ask::Deliver { ctxs } => {
                // The receiver count is the batch's: its server took all or none of it.
                let ok = matches!(frame, OwnedFrame::Integer(n) if n >= 1);
                delivered(ctxs, ok, news);
            }
            Ask::Stream(ask) => self.relay.on_reply(ask, frame, &self.node, news),
            Ask::SignIn { name, peer } => {
                let letters = mailbox::letters(frame);
                if !letters.is_empty() {
                    news.push(News::Mail(Delivery {
                        peer,
                        name,
                        letters,
                    }));
                }
            }
        }
    }

    fn on_failed(&mut self, ask: Ask<C>, news: &mut Vec<News<C>>) {
        match ask {
            Ask::Claim { name, ctx } => {
                // Redis may have applied the claim before it went away: free it on
                // reconnect unless the claim is used meanwhile.
                self.orphans.push(name.clone());
                news.push(News::Claimed {
                    ctx,
                    name,
                    won: None,
                });
            }
            Ask::Route { name, text, ctx } => news.push(News::Routed {
                ctx,
                name,
                text,
                found: None,
            }),
            Ask::Deliver { ctxs } => delivered(ctxs, false, news),
            Ask::Stream(ask) => self.relay.on_failed(ask, news),
            // Kept letters stay kept unless the script ran before Redis went away.
            Ask::Users | Ask::Alive { .. } | Ask::SignIn { .. } => {}
        }
    }

    /// Merges `HGETALL im:users` into the replica. The snapshot was read after our
    /// SUBSCRIBE was confirmed, so every later change reaches us as an event; events
    /// already applied are newer than the snapshot and win (users heard leaving stay
    /// gone, users heard arriving stay as heard).
    fn load_users(&mut self, frame: OwnedFrame, chat: &mut Chat, now: Instant) {
        let left = self.left_before_snapshot.take().unwrap_or_default();
        let OwnedFrame::Array(items) = frame else {
            return;
        };
        let mut stale = Vec::new();
        for pair in items.chunks(2) {
            let [OwnedFrame::BulkString(name), OwnedFrame::BulkString(value)] = pair else {
                continue;
            };
            let (Ok(name), Some(user)) = (std::str::from_utf8(name), wire::parse_user_value(value))
            else {
                continue;
            };
            if *user.node != *self.node {
                if !left.contains(name) {
                    chat.remote_known(name, user);
                }
            } else if chat.find(name.as_bytes()).is_none() {
                // Ours, but nobody here has it: left from before a crash of this node.
                stale.push(name.to_owned());
            }
        }
        let node = self.node.clone();
        for name in stale {
            self.forget_name(&name, &node, now);
        }
        debug!("cluster: {} users on other servers", chat.remote_count());
    }

    /// A server's heartbeat key expired: its users are gone, and their names free.
    fn node_dead(&mut self, node: &str, chat: &mut Chat, now: Instant, news: &mut Vec<News<C>>) {
        let gone = chat.remote_node_gone(node);
        info!("cluster: node {node} is gone with {} users", gone.len());
        for (name, user) in gone {
            self.forget_name(&name, node, now);
            news.push(News::Left { name, user });
        }
    }

    /// A message another server published: each event it carries (a turn's whispers come
    /// in one, [`wire::events`]), in order.
    fn on_message(&mut self, payload: &[u8], chat: &mut Chat, news: &mut Vec<News<C>>) {
        for event in wire::events(payload).filter_map(Wire::decode) {
            // Our own events were delivered locally already.
            if event.node() != &*self.node {
                self.on_wire(event, chat, news);
            }
        }
    }

    /// An event another server published: applied to the replica, handed over.
    fn on_wire(&mut self, event: Wire<'_>, chat: &mut Chat, news: &mut Vec<News<C>>) {
        match event {
            Wire::Online { name, user, notify } => {
                chat.remote_arrived(name, user.clone());
                if notify {
                    news.push(News::Arrived {
                        name: name.into(),
                        user,
                    });
                }
            }
            Wire::Offline { name, user } => {
                if let Some(left) = self.left_before_snapshot.as_mut() {
                    left.insert(name.into());
                }
                if let Some(user) = chat.remote_left(name, &user.node) {
                    news.push(News::Left {
                        name: name.into(),
                        user,
                    });
                }
            }
            Wire::Rename { old, new, user } => {
                if let Some(left) = self.left_before_snapshot.as_mut() {
                    left.insert(old.into());
                }
                chat.remote_left(old, &user.node);
                chat.remote_arrived(new, user);
            }
            // Broadcasts travel in the room streams (`on_read`), never on this channel.
            Wire::Say { .. } => {}
            Wire::Whisper {
                from,
                user,
                to,
                text,
            } => news.push(News::Whispered {
                from: from.into(),
                addr: user.addr,
                to: to.into(),
                text: text.to_vec(),
            }),
        }
    }

    /// Asks Redis for `name`; the answer comes back as [`News::Claimed`] with `ctx`.
    /// False (and nothing sent) when Redis is unreachable.
    pub fn claim(&mut self, name: &str, ctx: C, now: Instant) -> bool {
        let key = wire::name_key(name);
        let ask = Ask::Claim {
            name: name.into(),
            ctx,
        };
        let node = self.node.clone();
        self.link
            .command(&[b"SET", &key, node.as_bytes(), b"NX"], Some(ask), now)
    }

    /// Asks Redis where `name` is, to deliver `text`; with offline messages, `letter` is
    /// kept for `name` if it is online nowhere but signed in before (`None`: only ask
    /// whether it did). The answer comes back as [`News::Routed`] with `ctx`, or at once
    /// as a failure when Redis is unreachable.
    pub fn route(
        &mut self,
        name: &str,
        text: &[u8],
        letter: Option<&Letter>,
        ctx: C,
        now: Instant,
        news: &mut Vec<News<C>>,
    ) {
        let ask = Ask::Route {
            name: name.into(),
            text: text.to_vec(),
            ctx,
        };
        if !self.link.is_up() {
            return self.on_failed(ask, news);
        }
        match self.mail {
            None => {
                let key = wire::name_key(name);
                self.link.command(&[b"GET", &key], Some(ask), now);
            }
            Some(mail) => {
                let args = mailbox::route_or_keep(mail, name, letter);
                self.send(&args, Some(ask), now);
            }
        }
    }

    /// A signed login of `name` on connection `peer`: recorded for the TTL, and what was
    /// kept for it comes back as [`News::Mail`]. Nothing without offline messages, or
    /// while Redis is unreachable (the letters wait for the next login).
    pub fn sign_in(&mut self, name: &str, peer: Peer, now: Instant) {
        let Some(mail) = self.mail else {
            return;
        };
        let ask = Ask::SignIn {
            name: name.into(),
            peer,
        };
        self.send(&mailbox::sign_in(mail, name), Some(ask), now);
    }

    /// A signed-in user of ours left: mail for it is kept for the TTL from now.
    pub fn signed_out(&mut self, name: &str, now: Instant) {
        if let Some(mail) = self.mail {
            self.send(&mailbox::signed_out(mail, name), None, now);
        }
    }

    /// Keeps again letters taken for a login that left before they arrived, ahead of any
    /// kept since (the TTL renewed, like a new letter's).
    pub fn put_back(&mut self, name: &str, letters: &[Letter], now: Instant) {
        let Some(mail) = self.mail else {
            return;
        };
        for args in mailbox::put_back(mail, name, letters) {
            self.send(&args, None, now);
        }
    }

    /// Queues a command built by [`mailbox`] (nothing while Redis is down).
    fn send(&mut self, args: &mailbox::Command, ask: Option<Ask<C>>, now: Instant) {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.link.command(&args, ask, now);
    }

    /// A user of ours came online: recorded in Redis, the others told, and its room's
    /// stream read from now on.
    pub fn announce(&mut self, name: &str, user: Remote, now: Instant) {
        self.relay.enter(&user.room);
        self.present(name, user, true, now);
    }

    /// Records a user of ours in Redis and tells the others (`notify`: with an online
    /// notice; false when re-announcing after a reconnect). The one "announce" sequence:
    /// SET the name, HSET the user, PUBLISH the arrival.
    fn present(&mut self, name: &str, user: Remote, notify: bool, now: Instant) {
        let key = wire::name_key(name);
        let node = self.node.clone();
        self.link
            .command(&[b"SET", &key, node.as_bytes()], None, now);
        self.record(name, &user, now);
        self.publish(
            wire::ROOM_CHANNEL,
            &Wire::Online { name, user, notify },
            None,
            now,
        );
    }

    /// A user of ours left: its name is freed and the others are told.
    pub fn left(&mut self, name: &str, room: &str, addr: SocketAddr, now: Instant) {
        let node = self.node.clone();
        self.forget_name(name, &node, now);
        self.relay.leave(room);
        let user = self.user(room, addr);
        self.publish(wire::ROOM_CHANNEL, &Wire::Offline { name, user }, None, now);
    }

    /// A user of ours was renamed (the claim of `new` already granted).
    pub fn renamed(&mut self, old: &str, new: &str, room: &str, addr: SocketAddr, now: Instant) {
        let node = self.node.clone();
        self.forget_name(old, &node, now);
        let user = self.user(room, addr);
        self.record(new, &user, now);
        self.publish(
            wire::ROOM_CHANNEL,
            &Wire::Rename { old, new, user },
            None,
            now,
        );
    }

    /// Writes our user `name`'s `im:users` entry.
    fn record(&mut self, name: &str, user: &Remote, now: Instant) {
        let value = wire::user_value(user);
        self.link.command(
            &[b"HSET", wire::USERS_KEY, name.as_bytes(), &value],
            None,
            now,
        );
    }

    /// A user of ours moved from room `old` to `room`: its entry is rewritten, the others
    /// hear it leave the old room and arrive in the new one (their notices), and this
    /// server reads the new room's stream.
    pub fn moved(&mut self, name: &str, old: &str, room: &str, addr: SocketAddr, now: Instant) {
        self.relay.leave(old);
        self.relay.enter(room);
        let user = self.user(room, addr);
        self.record(name, &user, now);
        let gone = self.user(old, addr);
        let event = Wire::Offline { name, user: gone };
        self.publish(wire::ROOM_CHANNEL, &event, None, now);
        let event = Wire::Online {
            name,
            user,
            notify: true,
        };
        self.publish(wire::ROOM_CHANNEL, &event, None, now);
    }

    /// A user of ours (at `by`; `None`: the HTTP API) said `speech`: one entry in the
    /// room's stream (see [`stream::SAY_LUA`]), sent with the turn's other broadcasts to
    /// that room ([`stream::Outbox`]). With `echo`, the users here who see numbers hear it
    /// once Redis has numbered it ([`News::Numbered`]). False, sending nothing, while
    /// Redis is down: the broadcast reached this server's users only. If Redis does not
    /// take it in time, [`News::LocalOnly`] says so later.
    pub fn said(&mut self, speech: Speech<'_>, by: Option<Peer>, echo: bool, now: Instant) -> bool {
        if !self.link.is_up() {
            return false;
        }
        let user = self.user(speech.room, speech.addr);
        let mut event = Vec::new();
        let (name, text) = (speech.name, speech.text);
        Wire::Say { name, user, text }.encode(&mut event);
        let echo = echo.then(|| Echo {
            name: name.into(),
            addr: speech.addr,
            room: speech.room.into(),
            text: text.to_vec(),
        });
        self.relay.say(speech.room, event, Sayer { by, echo }, now);
        true
    }

    /// Hands `envelope` to server `node`: kept for the end of the turn, when the turn's
    /// whispers to that server go in one PUBLISH ([`Cluster::send_whispers`]), whose answer
    /// comes back as [`News::Delivered`] with `ctx` (at once, unconfirmed, while Redis is
    /// down).
    pub fn whisper(
        &mut self,
        node: &str,
        envelope: Envelope<'_>,
        ctx: C,
        now: Instant,
        news: &mut Vec<News<C>>,
    ) {
        if !self.link.is_up() {
            return news.push(News::Delivered { ctx, ok: false });
        }
        let event = Wire::Whisper {
            from: envelope.from,
            user: self.user("", envelope.addr),
            to: envelope.to,
            text: envelope.text,
        };
        let mut bytes = Vec::new();
        event.encode(&mut bytes);
        self.whispers.push(node, bytes, ctx, now);
    }

    /// Once per turn: the turn's whispers, one PUBLISH per server carrying all of its
    /// whispers in order ([`wire::batch`]; several past [`wire::MAX_BATCH_BYTES`]), whose
    /// receiver count answers each whisper it carries. If Redis went away since they were
    /// queued, each is answered unconfirmed at once.
    fn send_whispers(&mut self, now: Instant, news: &mut Vec<News<C>>) {
        if self.link.is_up() {
            return self.publish_whispers(now);
        }
        for (_, batch) in self.whispers.take() {
            delivered(batch.tags, false, news);
        }
    }

    /// Queues the whispers waiting so far on the link (which is up), one PUBLISH per
    /// server and [`wire::MAX_BATCH_BYTES`].
    fn publish_whispers(&mut self, now: Instant) {
        for (node, batch) in self.whispers.take() {
            let channel = wire::node_channel(&node);
            let mut ctxs = batch.tags.into_iter();
            for run in wire::runs(&batch.events, wire::MAX_BATCH_BYTES) {
                let ctxs: Vec<C> = ctxs.by_ref().take(run.len()).collect();
                let message = wire::batch(run);
                let ask = Some(Ask::Deliver { ctxs });
                self.link
                    .command(&[b"PUBLISH", &channel, &message], ask, now);
            }
        }
    }

    /// Asks for `query` on `room`'s history, the last `keep` broadcasts of its stream.
    /// The answer comes back as [`News::History`] with `ctx` (at once, failed, while
    /// Redis is down).
    pub fn history(
        &mut self,
        room: &str,
        query: Query,
        keep: usize,
        ctx: C,
        now: Instant,
        news: &mut Vec<News<C>>,
    ) {
        let failed = self
            .relay
            .history(&mut self.link, room, query, keep, ctx, now);
        news.extend(failed);
    }

    /// Frees a name this server claimed for nobody (the asker left meanwhile).
    pub fn release(&mut self, name: &str, now: Instant) {
        let node = self.node.clone();
        self.forget_name(name, &node, now);
    }

    fn user(&self, room: &str, addr: SocketAddr) -> Remote {
        Remote {
            node: self.node.clone(),
            room: room.into(),
            addr,
        }
    }

    /// Frees `name` in Redis if `node` still holds it (see [`FORGET_NAME_LUA`]); kept for
    /// the next connect if Redis is down.
    fn forget_name(&mut self, name: &str, node: &str, now: Instant) {
        let key = wire::name_key(name);
        let args: [&[u8]; 7] = [
            b"EVAL",
            FORGET_NAME_LUA,
            b"2",
            &key,
            wire::USERS_KEY,
            node.as_bytes(),
            name.as_bytes(),
        ];
        if !self.link.command(&args, None, now) && node == &*self.node {
            self.orphans.push(name.into());
        }
    }

    /// Publishes a presence event, after the turn's whispers said before it: a whisper
    /// and then a leave or a rename reach the other servers in that order.
    fn publish(&mut self, channel: &[u8], event: &Wire<'_>, ask: Option<Ask<C>>, now: Instant) {
        if self.link.is_up() && self.whispers.due().is_some() {
            self.publish_whispers(now);
        }
        let mut bytes = Vec::new();
        event.encode(&mut bytes);
        self.link.command(&[b"PUBLISH", channel, &bytes], ask, now);
    }
}

/// Answers each whisper of a batch, in order: confirmed (`ok`) or not.
fn delivered<C>(ctxs: Vec<C>, ok: bool, news: &mut Vec<News<C>>) {
    news.extend(ctxs.into_iter().map(|ctx| News::Delivered { ctx, ok }));
}
