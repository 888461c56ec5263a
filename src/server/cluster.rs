//! Many servers, one chat: this server's side of the Redis backplane (`--redis`).
//!
//! Local users are served at once, as without Redis; what other servers must know goes out
//! as one PUBLISH per event (see `cluster` for the keys, channels and wire form), and what
//! they publish is replayed here through the same fan-out as local events. A replica of the
//! other servers' users (`remote`), filled from `im:users` on connect and kept current by
//! their presence events, answers `who`, `to|NAME|..` routing and the HTTP API without a
//! round trip. Only name claims wait for Redis (`SET NX`), and a claim's answer never holds
//! up anyone else: the asking connection is answered when the reply arrives.
//!
//! Liveness: every `node_timeout / 5` the server refreshes `im:alive:{node}` (TTL 3/5 of the
//! timeout) and asks whether the others' keys still exist; a server whose key is gone is
//! dead, and its users are announced offline and their names freed within the timeout.

use super::{lookup, Event, Server};
use crate::cluster::link::{Backplane, Event as Link};
use crate::cluster::wire::{self as cluster, Remote, Wire};
use crate::codec::im::{self, Code};
use crate::codec::ws;
use crate::conn::{ConnState, Proto, WsApp};
use log::{debug, info};
use mio::Token;
use redis_protocol::resp2::types::OwnedFrame;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The command link's token (reserved tokens sit at the top of the range).
pub(super) const REDIS_CMD: Token = Token(usize::MAX - 8);
/// The subscriber link's token.
pub(super) const REDIS_SUB: Token = Token(usize::MAX - 9);

/// Frees a name only if `node` still holds it, with its `im:users` entry: a late or
/// repeated cleanup must never take a name from its new owner.
/// KEYS: `im:name:{name}`, `im:users`; ARGV: node, name.
const FORGET_NAME_LUA: &[u8] = b"if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('DEL', KEYS[1]) \
    local v = redis.call('HGET', KEYS[2], ARGV[2]) \
    if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '\\0' then \
      redis.call('HDEL', KEYS[2], ARGV[2]) end \
    return 1 end return 0";

/// What a Redis command was sent for: its reply is routed back by this.
#[derive(Debug)]
pub(super) enum Ask {
    /// `SET im:name:{name} node NX` for a connection.
    Claim {
        token: Token,
        name: Box<str>,
        why: ClaimFor,
    },
    /// `HGETALL im:users` after (re)connecting.
    Users,
    /// `EXISTS im:alive:{node}`.
    Alive { node: Box<str> },
    /// `GET im:name:{name}` for a private message to a name the replica does not know
    /// (yet: a rename or login elsewhere may not have reached us).
    Route {
        token: Token,
        name: Box<str>,
        text: Vec<u8>,
        then: Then,
    },
}

/// How to answer the sender of a private message routed through Redis.
#[derive(Debug)]
pub(super) enum Then {
    /// A line user's `to|`: `不存在该用户`, or `无消息内容，请重发` for an empty text.
    Line,
    /// An `/im` `msg` with a target, answered with this `seq`.
    Im { seq: String },
    /// A hub type 1 message: `success send` / `not online`.
    Hub,
}

/// What a name claim completes.
#[derive(Debug)]
pub(super) enum ClaimFor {
    /// `rename|NEW` of a line user.
    Rename,
    /// `/im` `login`, answered with this `seq`.
    Login { seq: String, app_id: u16 },
    /// A `/ws/{id}` connection.
    Hub,
}

/// Where a named user is.
pub(super) enum Place {
    /// On this server.
    Local(Token),
    /// On the server with this id.
    Remote(Box<str>),
    /// Nowhere in the cluster.
    Nowhere,
    /// Unknown: Redis is unreachable and the name is not local.
    Unknown,
}

/// The cluster state of one server.
pub(super) struct Cluster {
    link: Backplane<Ask>,
    node: Box<str>,
    /// Users of the other servers, by name.
    remote: HashMap<Box<str>, Remote>,
    /// Between (re)connecting and the `im:users` snapshot: names whose leaving was already
    /// heard, so the older snapshot does not bring them back.
    left_before_snapshot: Option<HashSet<Box<str>>>,
    timeout: Duration,
    next_beat: Instant,
    events: Vec<Link<Ask>>,
    wire: Vec<u8>,
    /// Names claimed for users who are gone, whose release could not reach Redis (a claim
    /// that timed out may still have been applied): released on the next connect.
    orphans: Vec<Box<str>>,
}

impl Cluster {
    /// The cluster state for node `node`, talking to Redis at `addr`.
    pub(super) fn new(addr: SocketAddr, db: u32, node: &str, timeout: Duration) -> Self {
        let channels = vec![cluster::ROOM_CHANNEL.to_vec(), cluster::node_channel(node)];
        Cluster {
            link: Backplane::new(addr, db, REDIS_CMD, REDIS_SUB, channels),
            node: node.into(),
            remote: HashMap::new(),
            left_before_snapshot: None,
            timeout,
            next_beat: Instant::now(),
            events: Vec::new(),
            wire: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// This server's id.
    pub(super) fn node(&self) -> &str {
        &self.node
    }

    /// Whether `token` is one of the Redis sockets'.
    pub(super) fn owns(&self, token: Token) -> bool {
        self.link.owns(token)
    }

    /// When the cluster next needs the loop.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let beat = self.link.is_up().then_some(self.next_beat);
        [self.link.next_deadline(), beat]
            .into_iter()
            .flatten()
            .min()
    }

    /// Users of other servers, for `who` and the HTTP API.
    pub(super) fn remote_users(&self) -> impl Iterator<Item = (&str, &Remote)> {
        self.remote.iter().map(|(n, r)| (&**n, r))
    }

    /// Gauges for the metrics page: messages in, commands out, pending, reconnects.
    pub(super) fn stats(&self) -> (u64, u64, usize, u64) {
        let s = self.link.stats();
        (
            s.messages_in,
            s.commands_out,
            self.link.pending(),
            s.reconnects,
        )
    }

    /// Frees `name` in Redis if `node` still holds it (see [`FORGET_NAME_LUA`]); kept for
    /// the next connect if Redis is down.
    fn forget_name(&mut self, name: &str, node: &str, now: Instant) {
        let key = cluster::name_key(name);
        let args: [&[u8]; 7] = [
            b"EVAL",
            FORGET_NAME_LUA,
            b"2",
            &key,
            cluster::USERS_KEY,
            node.as_bytes(),
            name.as_bytes(),
        ];
        if !self.link.command(&args, None, now) && node == &*self.node {
            self.orphans.push(name.into());
        }
    }

    fn publish(&mut self, channel: &[u8], event: &Wire<'_>, now: Instant) {
        self.wire.clear();
        event.encode(&mut self.wire);
        let wire = std::mem::take(&mut self.wire);
        self.link.command(&[b"PUBLISH", channel, &wire], None, now);
        self.wire = wire;
    }
}

impl Server {
    /// Readiness of a Redis socket.
    pub(super) fn on_redis(&mut self, token: Token, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let mut events = std::mem::take(&mut cluster.events);
        cluster.link.on_ready(
            token,
            self.poll.registry(),
            now,
            &mut self.scratch,
            &mut events,
        );
        self.apply_cluster_events(events, now);
    }

    /// Once per turn: reconnects, stall detection, heartbeats and liveness checks, then
    /// writes what the turn queued for Redis.
    pub(super) fn cluster_turn(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let mut events = std::mem::take(&mut cluster.events);
        cluster.link.tick(self.poll.registry(), now, &mut events);
        if cluster.link.is_up() && now >= cluster.next_beat {
            cluster.next_beat = now + cluster.timeout / 5;
            let ttl = (cluster.timeout * 3 / 5).as_millis().max(1).to_string();
            let alive = cluster::alive_key(&cluster.node);
            cluster
                .link
                .command(&[b"SET", &alive, b"1", b"PX", ttl.as_bytes()], None, now);
            let nodes: HashSet<Box<str>> =
                cluster.remote.values().map(|r| r.node.clone()).collect();
            for node in nodes {
                let key = cluster::alive_key(&node);
                cluster
                    .link
                    .command(&[b"EXISTS", &key], Some(Ask::Alive { node }), now);
            }
        }
        self.apply_cluster_events(events, now);
        if let Some(cluster) = self.cluster.as_mut() {
            let mut events = std::mem::take(&mut cluster.events);
            cluster.link.flush(self.poll.registry(), now, &mut events);
            self.apply_cluster_events(events, now);
        }
    }

    fn apply_cluster_events(&mut self, mut events: Vec<Link<Ask>>, now: Instant) {
        for event in events.drain(..) {
            match event {
                Link::Up => self.on_cluster_up(now),
                Link::Down => {
                    if let Some(c) = self.cluster.as_mut() {
                        c.remote.clear();
                        c.left_before_snapshot = None;
                    }
                }
                Link::Reply(ask, frame) => self.on_reply(ask, frame, now),
                Link::Failed(ask) => self.on_failed(ask, now),
                Link::Message { payload, .. } => self.on_wire(&payload),
            }
        }
        if let Some(c) = self.cluster.as_mut() {
            if c.events.is_empty() {
                c.events = events; // keep the allocation
            }
        }
    }

    /// (Re)connected: claim our users' names again, list them, tell the others quietly,
    /// and read everyone else's.
    fn on_cluster_up(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.next_beat = now;
        let mine: Vec<(String, Remote)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.online)
            .map(|(_, c)| {
                let mut name = String::new();
                c.user().push_name_str(&mut name);
                (
                    name,
                    Remote {
                        node: cluster.node.clone(),
                        room: c.room(),
                        addr: c.addr,
                    },
                )
            })
            .collect();
        for (name, user) in &mine {
            let key = cluster::name_key(name);
            let node = cluster.node.clone();
            cluster
                .link
                .command(&[b"SET", &key, node.as_bytes()], None, now);
            let value = cluster::user_value(user);
            cluster.link.command(
                &[b"HSET", cluster::USERS_KEY, name.as_bytes(), &value],
                None,
                now,
            );
            let wire = Wire::Online {
                name,
                user: user.clone(),
                notify: false,
            };
            cluster.publish(cluster::ROOM_CHANNEL, &wire, now);
        }
        let node = cluster.node.clone();
        for name in std::mem::take(&mut cluster.orphans) {
            cluster.forget_name(&name, &node, now);
        }
        cluster.left_before_snapshot = Some(HashSet::new());
        cluster
            .link
            .command(&[b"HGETALL", cluster::USERS_KEY], Some(Ask::Users), now);
        info!(
            "cluster: node {} announced {} users",
            cluster.node,
            mine.len()
        );
    }

    fn on_reply(&mut self, ask: Ask, frame: OwnedFrame, now: Instant) {
        match ask {
            Ask::Claim { token, name, why } => {
                let won = matches!(frame, OwnedFrame::SimpleString(ref s) if s == b"OK");
                self.claimed(token, &name, why, Some(won), now);
            }
            Ask::Users => self.load_users(frame),
            Ask::Alive { node } => {
                if frame == OwnedFrame::Integer(0) {
                    self.node_dead(&node, now);
                }
            }
            Ask::Route {
                token,
                name,
                text,
                then,
            } => {
                let node = match frame {
                    OwnedFrame::BulkString(node) => String::from_utf8(node).ok(),
                    _ => None,
                };
                self.routed(token, &name, &text, then, Some(node), now);
            }
        }
    }

    fn on_failed(&mut self, ask: Ask, now: Instant) {
        match ask {
            Ask::Claim { token, name, why } => self.claimed(token, &name, why, None, now),
            Ask::Route {
                token,
                name,
                text,
                then,
            } => self.routed(token, &name, &text, then, None, now),
            Ask::Users | Ask::Alive { .. } => {}
        }
    }

    /// Whether Redis is reachable now.
    pub(super) fn cluster_up(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.link.is_up())
    }

    /// Asks Redis where `name` is, to deliver `text` from `token`'s user when it answers.
    /// Callers check [`Server::cluster_up`] first; if the link dropped since, the sender
    /// is answered as for Redis going away.
    pub(super) fn route_by_redis(
        &mut self,
        token: Token,
        name: &str,
        text: &[u8],
        then: Then,
        now: Instant,
    ) {
        let up = self.cluster_up();
        match self.cluster.as_mut() {
            Some(cluster) if up => {
                let key = cluster::name_key(name);
                let ask = Ask::Route {
                    token,
                    name: name.into(),
                    text: text.to_vec(),
                    then,
                };
                cluster.link.command(&[b"GET", &key], Some(ask), now);
            }
            _ => self.routed_answer(token, name, then, Err(())),
        }
    }

    /// Redis answered where a name is (`Some(None)`: nowhere; `None`: Redis went away).
    fn routed(
        &mut self,
        token: Token,
        name: &str,
        text: &[u8],
        then: Then,
        node: Option<Option<String>>,
        now: Instant,
    ) {
        let open = lookup(&mut self.conns, token).is_some_and(|c| c.state == ConnState::Open);
        if !open {
            return;
        }
        let own = self.cluster.as_ref().map(|c| c.node.clone());
        let found = match node {
            None => Err(()),
            Some(Some(node)) if Some(node.as_str()) != own.as_deref() => Ok(Some(node)),
            Some(_) => Ok(None),
        };
        if let Ok(Some(node)) = &found {
            // The seed's order: the recipient is checked before the text.
            if matches!(then, Then::Line) && text.is_empty() {
                return self.reply(token, self.texts.empty_body);
            }
            if self.speak_as(token) {
                self.whisper_remote(node, name, text, now);
            }
        }
        self.routed_answer(token, name, then, found.map(|n| n.is_some()));
    }

    /// Answers the sender of a routed private message in its protocol's terms.
    fn routed_answer(&mut self, token: Token, name: &str, then: Then, found: Result<bool, ()>) {
        let texts = self.texts;
        match then {
            Then::Line => match found {
                Ok(true) => {}
                Ok(false) => self.reply(token, texts.no_such_user),
                Err(()) => self.reply(token, texts.cluster_unavailable),
            },
            Then::Im { seq } => {
                let (code, data) = match found {
                    Ok(true) => (Code::Success, json!(null)),
                    Ok(false) => (Code::Failed, json!(texts.no_such_user.trim_end())),
                    Err(()) => (Code::Failed, json!(texts.cluster_unavailable.trim_end())),
                };
                self.json.clear();
                im::answer(&mut self.json, texts, &seq, "msg", code, data);
                self.ws_send_json(token);
            }
            Then::Hub => {
                let reply = if found == Ok(true) {
                    texts.hub_sent
                } else {
                    texts.hub_not_online
                };
                self.hub_system(token, name, reply);
            }
        }
    }

    /// Merges `HGETALL im:users` into the replica. The snapshot was read after our
    /// SUBSCRIBE was confirmed, so every later change reaches us as an event; events
    /// already applied are newer than the snapshot and win (users heard leaving stay
    /// gone, users heard arriving stay as heard).
    fn load_users(&mut self, frame: OwnedFrame) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let left = cluster.left_before_snapshot.take().unwrap_or_default();
        let mut stale = Vec::new();
        let OwnedFrame::Array(items) = frame else {
            return;
        };
        for pair in items.chunks(2) {
            let [OwnedFrame::BulkString(name), OwnedFrame::BulkString(value)] = pair else {
                continue;
            };
            let (Ok(name), Some(user)) =
                (std::str::from_utf8(name), cluster::parse_user_value(value))
            else {
                continue;
            };
            if *user.node != *cluster.node {
                if !left.contains(name) {
                    cluster.remote.entry(name.into()).or_insert(user);
                }
            } else if self.dir.lookup(name.as_bytes()).is_none() {
                // Ours, but nobody here has it: left from before a crash of this node.
                stale.push(name.to_owned());
            }
        }
        let node = cluster.node.clone();
        for name in stale {
            cluster.forget_name(&name, &node, self.now);
        }
        debug!("cluster: {} users on other servers", cluster.remote.len());
    }

    /// A server's heartbeat key expired: its users are gone, and their names free.
    fn node_dead(&mut self, node: &str, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let gone: Vec<(Box<str>, Remote)> = cluster
            .remote
            .iter()
            .filter(|(_, r)| &*r.node == node)
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        info!("cluster: node {node} is gone with {} users", gone.len());
        for (name, user) in gone {
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.remote.remove(&name);
                cluster.forget_name(&name, node, now);
            }
            self.speak_for(user.addr, &name);
            self.announce(user.room, Event::Offline, None);
        }
    }

    /// An event another server published.
    fn on_wire(&mut self, payload: &[u8]) {
        let Some(wire) = Wire::decode(payload) else {
            return;
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if wire.node() == &*cluster.node {
            return; // our own event, delivered locally already
        }
        match wire {
            Wire::Online { name, user, notify } => {
                let (addr, room) = (user.addr, user.room);
                cluster.remote.insert(name.into(), user);
                if notify {
                    self.speak_for(addr, name);
                    self.announce(room, Event::Online, None);
                }
            }
            Wire::Offline { name, user } => {
                if let Some(left) = cluster.left_before_snapshot.as_mut() {
                    left.insert(name.into());
                }
                let theirs = cluster
                    .remote
                    .get(name)
                    .is_some_and(|r| r.node == user.node);
                if theirs && cluster.remote.remove(name).is_some() {
                    self.speak_for(user.addr, name);
                    self.announce(user.room, Event::Offline, None);
                }
            }
            Wire::Rename { old, new, user } => {
                if let Some(left) = cluster.left_before_snapshot.as_mut() {
                    left.insert(old.into());
                }
                if cluster.remote.get(old).is_some_and(|r| r.node == user.node) {
                    cluster.remote.remove(old);
                }
                cluster.remote.insert(new.into(), user);
            }
            Wire::Say { name, user, text } => {
                self.speak_for(user.addr, name);
                self.announce(user.room, Event::Say(text), None);
            }
            Wire::Whisper {
                from,
                user,
                to,
                text,
            } => {
                if let Some(target) = self.dir.lookup(to.as_bytes()) {
                    self.speak_for(user.addr, from);
                    self.whisper(target, text);
                }
            }
        }
    }

    /// Makes a user of another server (or the system) the speaker of the next fan-out.
    pub(super) fn speak_for(&mut self, addr: SocketAddr, name: &str) {
        self.speaker.addr = addr;
        self.speaker.name.clear();
        self.speaker.name.push_str(name);
    }

    /// Where the user called `name` is.
    pub(super) fn locate(&self, name: &[u8]) -> Place {
        if let Some(token) = self.dir.lookup(name) {
            return Place::Local(token);
        }
        let Some(cluster) = self.cluster.as_ref() else {
            return Place::Nowhere;
        };
        if !cluster.link.is_up() {
            return Place::Unknown;
        }
        match std::str::from_utf8(name)
            .ok()
            .and_then(|n| cluster.remote.get(n))
        {
            Some(user) => Place::Remote(user.node.clone()),
            None => Place::Nowhere,
        }
    }

    /// Sends `text` from the speaker to `to` on server `node`: one PUBLISH.
    pub(super) fn whisper_remote(&mut self, node: &str, to: &str, text: &[u8], now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let user = Remote {
            node: cluster.node.clone(),
            room: 0,
            addr: self.speaker.addr,
        };
        let wire = Wire::Whisper {
            from: &self.speaker.name,
            user,
            to,
            text,
        };
        cluster.publish(&cluster::node_channel(node), &wire, now);
    }

    /// Tells the other servers what the speaker said to `room` (after the local fan-out).
    pub(super) fn publish_say(&mut self, room: u16, text: &[u8], now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let user = Remote {
            node: cluster.node.clone(),
            room,
            addr: self.speaker.addr,
        };
        let wire = Wire::Say {
            name: &self.speaker.name,
            user,
            text,
        };
        cluster.publish(cluster::ROOM_CHANNEL, &wire, now);
    }

    /// Records a local user's arrival or departure in Redis and tells the other servers.
    pub(super) fn publish_presence(&mut self, token: Token, online: bool, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        let mut name = String::new();
        conn.user().push_name_str(&mut name);
        let user = Remote {
            node: cluster.node.clone(),
            room: conn.room(),
            addr: conn.addr,
        };
        let key = cluster::name_key(&name);
        if online {
            let node = cluster.node.clone();
            cluster
                .link
                .command(&[b"SET", &key, node.as_bytes()], None, now);
            let value = cluster::user_value(&user);
            cluster.link.command(
                &[b"HSET", cluster::USERS_KEY, name.as_bytes(), &value],
                None,
                now,
            );
            let wire = Wire::Online {
                name: &name,
                user,
                notify: true,
            };
            cluster.publish(cluster::ROOM_CHANNEL, &wire, now);
        } else {
            let node = cluster.node.clone();
            cluster.forget_name(&name, &node, now);
            let wire = Wire::Offline { name: &name, user };
            cluster.publish(cluster::ROOM_CHANNEL, &wire, now);
        }
    }

    /// Asks Redis for `name` on behalf of `token`; false when Redis is unreachable.
    pub(super) fn claim(&mut self, token: Token, name: &str, why: ClaimFor, now: Instant) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        let key = cluster::name_key(name);
        let node = cluster.node.clone();
        let ask = Ask::Claim {
            token,
            name: name.into(),
            why,
        };
        cluster
            .link
            .command(&[b"SET", &key, node.as_bytes(), b"NX"], Some(ask), now)
    }

    /// Completes a claim: `won` is Redis's answer, `None` when Redis went away first.
    fn claimed(
        &mut self,
        token: Token,
        name: &str,
        why: ClaimFor,
        won: Option<bool>,
        now: Instant,
    ) {
        if won.is_none() {
            // Redis may have applied the claim before it went away: free it on reconnect.
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.orphans.push(name.into());
            }
        }
        let open = lookup(&mut self.conns, token).is_some_and(|c| c.state == ConnState::Open);
        if !open {
            if won == Some(true) {
                self.release_claim(name, now); // the asker left meanwhile
            }
            return;
        }
        match why {
            ClaimFor::Rename => match won {
                Some(true) => self.rename_claimed(token, name, now),
                Some(false) => self.reply(token, self.texts.name_taken),
                None => self.reply(token, self.texts.cluster_unavailable),
            },
            ClaimFor::Login { seq, app_id } => {
                let (code, data) = match won {
                    Some(true) => {
                        // A second login sent before the first was granted replaces it.
                        self.go_offline(token);
                        (self.im_login_local(token, name, app_id), json!(null))
                    }
                    Some(false) => (Code::Failed, json!(null)),
                    None => (
                        Code::Failed,
                        json!(self.texts.cluster_unavailable.trim_end()),
                    ),
                };
                self.json.clear();
                im::answer(&mut self.json, self.texts, &seq, "login", code, data);
                self.ws_send_json(token);
            }
            ClaimFor::Hub => match won {
                Some(true) => self.hub_join_local(token, name),
                Some(false) => self.ws_close(token, ws::close::POLICY, self.texts.name_in_use, now),
                None => {
                    let reason = self.texts.cluster_unavailable.trim_end();
                    self.ws_close(token, ws::close::POLICY, reason, now);
                }
            },
        }
    }

    fn release_claim(&mut self, name: &str, now: Instant) {
        if let Some(cluster) = self.cluster.as_mut() {
            let node = cluster.node.clone();
            cluster.forget_name(name, &node, now);
        }
    }

    /// A line user's rename that Redis granted: apply it here and tell the others.
    fn rename_claimed(&mut self, token: Token, new: &str, now: Instant) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        let mut old = String::new();
        conn.user().push_name_str(&mut old);
        if self
            .dir
            .rename(conn.addr, conn.chosen_name.as_deref(), new, token)
            .is_err()
        {
            self.release_claim(new, now);
            return self.reply(token, self.texts.name_taken);
        }
        conn.chosen_name = Some(new.into());
        let user = Remote {
            node: Box::from(""),
            room: conn.room(),
            addr: conn.addr,
        };
        self.reply_renamed(token, new);
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let user = Remote {
            node: cluster.node.clone(),
            ..user
        };
        let node = cluster.node.clone();
        cluster.forget_name(&old, &node, now);
        let value = cluster::user_value(&user);
        cluster.link.command(
            &[b"HSET", cluster::USERS_KEY, new.as_bytes(), &value],
            None,
            now,
        );
        let wire = Wire::Rename {
            old: &old,
            new,
            user,
        };
        cluster.publish(cluster::ROOM_CHANNEL, &wire, now);
    }

    /// Whether `name` is held on another server as far as the replica knows (a fast
    /// refusal; Redis stays the authority).
    pub(super) fn held_remotely(&self, name: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.remote.contains_key(name))
    }

    /// Whether a connection is an `/im` or hub WebSocket (for name takeovers).
    pub(super) fn is_ws_app(&mut self, token: Token, hub: bool) -> bool {
        lookup(&mut self.conns, token).is_some_and(|c| match c.proto {
            Proto::Ws {
                app: WsApp::Hub, ..
            } => hub,
            Proto::Ws {
                app: WsApp::Im { .. },
                ..
            } => !hub,
            _ => false,
        })
    }
}
