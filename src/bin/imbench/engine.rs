//! The event loop: one `mio::Poll`, every simulated user one socket in a `Slab`.
//!
//! Registrations are edge-triggered for READABLE | WRITABLE once and never changed: reads
//! are drained to `WouldBlock` into one shared scratch buffer, whole messages (lines, or
//! WebSocket frames after the upgrade) are handled straight from it, and only a trailing
//! partial one is copied into the user's `inbuf`. What a message means is `transport`'s.
//! Sends only append to the user's `outbuf`; one flush phase per turn writes each dirty
//! user with as few `write` calls as the kernel allows.
//!
//! One turn: poll → dispatch events by token (connect completion, read, write) → let
//! senders with an open window append their messages → flush. The phases in `modes.rs`
//! drive turns until their goal is met, and a deadline bounds every phase.
//!
//! User `i` connects to server `i % k` of the `k` addresses given, so the users of one run
//! may be spread over several servers of one cluster; a user learns its name from its own
//! online notice.
//!
//! Users are never inserted during dispatch, so a key freed in a batch (a churn user whose
//! connect failed) cannot be handed to a stranger before the batch ends.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::sys;
use crate::track::{self, Decoded, Histogram, Payload, Tracker};
use crate::transport::{Listen, Transport};
use crate::ws;

/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Room for what the server puts around a payload (`[addr]name:`, `to|…` replies, JSON,
/// a frame header); also the longest WebSocket upgrade response.
const LINE_OVERHEAD_BYTES: usize = 4096;
/// Events taken per `poll`.
const EVENTS_PER_POLL: usize = 1024;
/// Longest non-payload line kept for error messages.
const KEPT_LINE_BYTES: usize = 200;
/// Progress lines start once a run is this old…
const PROGRESS_AFTER: Duration = Duration::from_secs(2);
/// …and come this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a run stopped early.
#[derive(Debug)]
pub enum Fail {
    /// The deadline passed.
    Timeout,
    /// Not a single connection succeeded: the server is not there.
    NoServer(String),
    /// Anything else: a closed connection, a failed connect mid-run, a poll error.
    Error(String),
}

/// Where sockets connect from.
pub struct Sources {
    /// Empty: let the kernel choose (127.0.0.1 for a 127.0.0.1 server). Otherwise bind
    /// user `i` to `addrs[i % len]` before connecting.
    addrs: Vec<Ipv4Addr>,
}

impl Sources {
    /// `n` source addresses 127.0.0.1 ..= 127.0.0.n; `n <= 1` lets the kernel choose.
    pub fn new(n: u8) -> Sources {
        let addrs = if n <= 1 {
            Vec::new()
        } else {
            (1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
        };
        Sources { addrs }
    }

    fn connect(&self, dst: SocketAddr, id: usize) -> io::Result<TcpStream> {
        match self.addrs.get(id % self.addrs.len().max(1)) {
            None => TcpStream::connect(dst),
            Some(&src) => sys::connect_from(src, dst),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserState {
    /// `connect` started, not yet established.
    Connecting,
    /// WebSocket only: connected, upgrade request sent, `101` not yet heard.
    Upgrading,
    /// Connected (and upgraded), waiting for its own online notice (or, on a pub/sub peer,
    /// the confirmation of its subscription).
    Joining,
    /// Heard its own notice.
    Online,
}

/// One simulated chat user.
struct User {
    /// The user's number: payload sender id, index in the tracker, and in error messages.
    id: usize,
    stream: TcpStream,
    /// What identifies it before it is online: its local address, or its hub id.
    ident: String,
    /// Its name on the server, from its own online notice (empty before).
    name: String,
    state: UserState,
    /// When its connect started, ns since the run's start.
    started_ns: u64,
    /// A trailing partial line (or frame, or upgrade response) from the last read.
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Bytes of `outbuf` already written.
    out_pos: usize,
    /// Listed in `Shared::dirty`.
    dirty: bool,
    /// What goes before each payload: nothing (an imserver broadcast), a publish to the
    /// room (a pub/sub peer's broadcast), or in private mode the whisper to its partner
    /// (`to|PARTNER|`, the hub JSON, a publish to the partner's channel).
    to_prefix: Vec<u8>,
    /// Churn: sends one line once online.
    chats: bool,
    /// Churn: its line is sent and it has not heard it back yet.
    echo_pending: bool,
    /// The last line that was neither a payload nor a presence notice (kick, server full).
    last_other: Vec<u8>,
}

impl User {
    /// Writes `outbuf` until it is empty or the kernel's buffer is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.outbuf.len() {
            match self.stream.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.outbuf.clear();
        self.out_pos = 0;
        Ok(())
    }

    fn keep_other(&mut self, line: &[u8]) {
        self.last_other.clear();
        self.last_other
            .extend_from_slice(&line[..line.len().min(KEPT_LINE_BYTES)]);
    }

    /// "127.0.0.1:40000, before its online notice, last line …": details for error messages.
    fn details(&self) -> String {
        let mut s = self.ident.clone();
        if !self.name.is_empty() && self.name != self.ident {
            s.push_str(&format!(" named {}", self.name));
        }
        match self.state {
            UserState::Online => {}
            UserState::Upgrading => s.push_str(", before its WebSocket upgrade"),
            UserState::Connecting | UserState::Joining => s.push_str(", before its online notice"),
        }
        if !self.last_other.is_empty() {
            s.push_str(&format!(
                ", last line {:?}",
                String::from_utf8_lossy(&self.last_other)
            ));
        }
        s
    }
}

/// Churn counters kept by the line handler.
#[derive(Default)]
pub struct ChurnCounts {
    /// Own line sent → heard back, ns.
    pub echo_latency: Histogram,
    /// Lines sent and not yet heard back.
    pub echo_pending: usize,
    /// Other churn users' lines heard.
    pub chat_lines: u64,
    /// Payloads of this run that did not parse.
    pub garbled: u64,
}

/// Failed connects in a mode that tolerates them (churn).
#[derive(Default)]
pub struct ConnectErrors {
    /// How many.
    pub count: u64,
    /// The first one's message.
    pub first: Option<String>,
}

/// Where a private run's probe stands for one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Sent, not yet heard by the partner.
    InFlight,
    /// The sender's server did not know the partner yet: send again.
    Refused,
    /// The partner heard it: the sender's server routes to the partner.
    Arrived,
}

/// Private mode's check, before traffic, that each sender's server can reach its partner:
/// in a cluster a server learns another server's users through Redis, a moment after they
/// saw their own online notice.
#[derive(Default)]
struct Probes {
    /// Each sender's probe, by user id.
    state: Vec<Probe>,
    /// Senders whose probe has not arrived.
    pending: usize,
    /// Probes sent again after a refusal.
    retries: u64,
}

/// Everything the message handler changes besides the user itself.
struct Shared {
    transport: Transport,
    /// The servers, user `i` on `servers[i % len]`.
    servers: Vec<SocketAddr>,
    run: u16,
    size: usize,
    /// Scratch for one WebSocket message's body.
    body: Vec<u8>,
    base: Instant,
    /// Connects started and not yet joined.
    connecting: usize,
    /// Joins so far.
    joined: usize,
    join_latency: Histogram,
    /// Keys of users that joined, in order (churn takes leavers from the front).
    newly_joined: Vec<usize>,
    dirty: Vec<usize>,
    tracker: Option<Tracker>,
    /// Kind of this run's tracked payloads.
    kind: u8,
    churn: ChurnCounts,
    connect_errors: ConnectErrors,
    probes: Probes,
}

impl Shared {
    /// The server of user `id`.
    fn server_of(&self, id: usize) -> SocketAddr {
        self.servers[id % self.servers.len()]
    }

    fn now_ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn mark_dirty(&mut self, key: usize, user: &mut User) {
        if !user.dirty {
            user.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Handles the whole messages at the front of `data`, which came from the server to
    /// `user`; returns the bytes used (the rest is a partial message, kept for the next read).
    fn on_bytes(
        &mut self,
        key: usize,
        user: &mut User,
        data: &[u8],
        cap: usize,
        now_ns: u64,
    ) -> Result<usize, Fail> {
        match self.transport {
            Transport::Ws => self.on_ws(key, user, data, cap, now_ns),
            Transport::Line | Transport::Redis | Transport::Nats => {
                self.on_lines(key, user, data, now_ns)
            }
        }
    }

    /// The whole lines of `data`; returns the bytes they took.
    fn on_lines(
        &mut self,
        key: usize,
        user: &mut User,
        data: &[u8],
        now_ns: u64,
    ) -> Result<usize, Fail> {
        let mut start = 0;
        while let Some(i) = track::find_byte(b'\n', &data[start..]) {
            let line = &data[start..start + i];
            self.on_message(key, user, line.strip_suffix(b"\r").unwrap_or(line), now_ns)?;
            start += i + 1;
        }
        Ok(start)
    }

    /// The upgrade response (until it has come) and the whole frames of `data`; returns the
    /// bytes they took. A ping is answered; a close frame ends the run.
    fn on_ws(
        &mut self,
        key: usize,
        user: &mut User,
        data: &[u8],
        cap: usize,
        now_ns: u64,
    ) -> Result<usize, Fail> {
        let mut pos = 0;
        if user.state == UserState::Upgrading {
            match ws::handshake(data, cap) {
                ws::Handshake::Incomplete => return Ok(0),
                ws::Handshake::Accepted { used } => {
                    pos = used;
                    user.state = UserState::Joining;
                }
                ws::Handshake::Refused(why) => {
                    return Err(self.upgrade_failed(user, &why));
                }
            }
        }
        loop {
            let frame = match ws::next(&data[pos..], cap) {
                Ok(ws::Next::Incomplete) => return Ok(pos),
                Ok(ws::Next::Frame { frame, used }) => {
                    pos += used;
                    frame
                }
                Err(e) => {
                    return Err(Fail::Error(format!(
                        "server sent user {} {e} ({})",
                        user.id,
                        user.details()
                    )))
                }
            };
            match frame {
                ws::Frame::Text(msg) => self.on_message(key, user, msg, now_ns)?,
                ws::Frame::Ping(payload) => {
                    ws::encode_pong(&mut user.outbuf, payload);
                    self.mark_dirty(key, user);
                }
                ws::Frame::Pong | ws::Frame::Binary => {}
                ws::Frame::Close { code, reason } => {
                    let code = code.map_or_else(|| "no code".to_owned(), |c| c.to_string());
                    return Err(Fail::Error(format!(
                        "server closed connection of user {} mid-run ({}, close frame {code} {:?})",
                        user.id,
                        user.details(),
                        String::from_utf8_lossy(reason)
                    )));
                }
            }
        }
    }

    /// The server did not switch to WebSocket: no WebSocket server there (before anyone
    /// joined), or a failure mid-run.
    fn upgrade_failed(&self, user: &User, why: &str) -> Fail {
        self.refused(format!(
            "no WebSocket upgrade for user {} at {}: {why} (is --addr the server's --ws-port?)",
            user.id,
            self.server_of(user.id)
        ))
    }

    /// The server refused a user before it was online: the wrong server (before anyone
    /// joined), or a failure mid-run.
    fn refused(&self, msg: String) -> Fail {
        if self.joined == 0 {
            Fail::NoServer(msg)
        } else {
            Fail::Error(msg)
        }
    }

    /// One message from the server to `user`: a line without its newline, or a text frame.
    ///
    /// # Errors
    /// A pub/sub peer refused the user's subscription.
    fn on_message(
        &mut self,
        key: usize,
        user: &mut User,
        msg: &[u8],
        now_ns: u64,
    ) -> Result<(), Fail> {
        let t = self.transport;
        if let Some(answer) = t.answer(msg) {
            user.outbuf.extend_from_slice(answer);
            self.mark_dirty(key, user);
            return Ok(());
        }
        if user.state != UserState::Online {
            if let Some(name) = t.own_name(&user.ident, msg) {
                user.name = String::from_utf8_lossy(name).into_owned();
                user.state = UserState::Online;
                self.on_join(key, user, now_ns);
            } else if t.is_server_message(msg) {
                user.keep_other(msg);
                // A peer that refuses the subscription (`-NOAUTH`, `-ERR 'Authorization
                // Violation'`, Redis before 6 without `HELLO`) would leave the user waiting
                // until the timeout. (imserver's refusals, "server full", come with a close.)
                if t.is_peer() {
                    return Err(self.refused(format!(
                        "{} at {} refused user {}: {}",
                        t.name(),
                        self.server_of(user.id),
                        user.id,
                        String::from_utf8_lossy(msg)
                    )));
                }
            }
            return Ok(());
        }
        let Some(payload) = t.payload(msg) else {
            if t.is_server_message(msg) {
                user.keep_other(msg);
                self.on_refusal(user);
            }
            return Ok(());
        };
        match track::decode(payload, self.run, self.size) {
            Decoded::Ours(p) => self.on_payload(user, &p, now_ns),
            Decoded::Garbled => match self.tracker.as_mut() {
                Some(t) => t.counts.garbled += 1,
                None => self.churn.garbled += 1,
            },
            Decoded::Foreign => {}
        }
        Ok(())
    }

    fn on_join(&mut self, key: usize, user: &mut User, now_ns: u64) {
        self.connecting = self.connecting.saturating_sub(1);
        self.joined += 1;
        self.join_latency
            .record(now_ns.saturating_sub(user.started_ns));
        self.newly_joined.push(key);
        if user.chats {
            self.send(key, user, track::KIND_CHURN, now_ns);
            user.echo_pending = true;
            self.churn.echo_pending += 1;
        }
    }

    /// Appends one payload of `kind` from `user` (seq 0), to its partner if it has one.
    fn send(&mut self, key: usize, user: &mut User, kind: u8, now_ns: u64) {
        let p = Payload {
            kind,
            sender: user.id as u64,
            seq: 0,
            ts_ns: now_ns,
        };
        let (run, size) = (self.run, self.size);
        self.transport
            .push_message(&mut user.outbuf, &mut self.body, &user.to_prefix, |out| {
                track::encode(out, run, &p, size);
            });
        self.mark_dirty(key, user);
    }

    /// The server spoke to `user` for itself: if it is a sender whose probe is in flight,
    /// that is its answer (the partner is not known there yet).
    fn on_refusal(&mut self, user: &User) {
        if let Some(probe) = self.probes.state.get_mut(user.id) {
            if *probe == Probe::InFlight {
                *probe = Probe::Refused;
            }
        }
    }

    /// `user` heard a probe: its sender's server routes to `user`.
    fn on_probe(&mut self, user: &User, p: &Payload) {
        let sender = usize::try_from(p.sender).unwrap_or(usize::MAX);
        match self.probes.state.get_mut(sender) {
            Some(probe) if sender == user.id ^ 1 && *probe != Probe::Arrived => {
                *probe = Probe::Arrived;
                self.probes.pending -= 1;
            }
            _ => {
                if let Some(t) = self.tracker.as_mut() {
                    t.counts.misdelivered += 1;
                }
            }
        }
    }

    fn on_payload(&mut self, user: &mut User, p: &Payload, now_ns: u64) {
        let latency = now_ns.saturating_sub(p.ts_ns);
        if p.kind == track::KIND_PROBE {
            self.on_probe(user, p);
        } else if let Some(t) = self.tracker.as_mut() {
            if p.kind == self.kind {
                let sender = usize::try_from(p.sender).unwrap_or(usize::MAX);
                t.deliver(user.id, sender, p.seq, latency);
            } else {
                t.counts.misdelivered += 1;
            }
        } else if p.kind == track::KIND_CHURN && p.sender == user.id as u64 && user.echo_pending {
            user.echo_pending = false;
            self.churn.echo_pending = self.churn.echo_pending.saturating_sub(1);
            self.churn.echo_latency.record(latency);
        } else {
            self.churn.chat_lines += 1;
        }
    }
}

/// What a connect-in-progress socket says when it becomes ready.
enum ConnectState {
    Pending,
    Connected,
    Failed(io::Error),
}

fn connect_state(stream: &TcpStream) -> ConnectState {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectState::Failed(e),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectState::Connected,
        Err(e) if e.kind() == ErrorKind::NotConnected => ConnectState::Pending,
        Err(e) => ConnectState::Failed(e),
    }
}

/// Settings of the loop.
pub struct Settings {
    /// The servers (at least one); user `i` connects to `servers[i % len]`.
    pub servers: Vec<SocketAddr>,
    /// The protocol spoken to it.
    pub transport: Transport,
    /// Where sockets connect from.
    pub sources: Sources,
    /// Payload size, bytes.
    pub size: usize,
    /// Whole-run limit.
    pub timeout: Duration,
    /// Print progress lines to stderr.
    pub progress: bool,
    /// A connect failure after the first join ends the run (false in churn: it is counted).
    pub connect_errors_fatal: bool,
    /// Processes whose resident memory is sampled between turns for the run's peak.
    pub pids: Vec<u32>,
    /// The channel each user of a pub/sub peer subscribes to.
    pub listen: Listen,
}

/// The loop and everything it owns.
pub struct Engine {
    poll: Poll,
    events: Events,
    /// (key, readable, writable) of the current batch.
    batch: Vec<(usize, bool, bool)>,
    users: Slab<User>,
    scratch: Vec<u8>,
    /// Longest partial line accepted before a newline.
    line_cap: usize,
    settings: Settings,
    next_id: usize,
    deadline: Instant,
    next_progress: Instant,
    /// Churn: joined users, oldest first.
    online: VecDeque<usize>,
    /// The watched processes' peak memory during this run, sampled between turns.
    rss: sys::PeakRss,
    sh: Shared,
}

impl Engine {
    /// A loop whose run starts now.
    ///
    /// # Errors
    /// When the poll cannot be created.
    pub fn new(settings: Settings) -> io::Result<Engine> {
        let base = Instant::now();
        let line_cap = settings.size + LINE_OVERHEAD_BYTES;
        // Run id: differs between runs so two runs against one server ignore each other.
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() >> 10);
        let run = (clock ^ std::process::id()) as u16;
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_PER_POLL),
            batch: Vec::with_capacity(EVENTS_PER_POLL),
            users: Slab::new(),
            scratch: vec![0; line_cap + READ_CHUNK_BYTES],
            line_cap,
            next_id: 0,
            deadline: base + settings.timeout,
            next_progress: base + PROGRESS_AFTER,
            online: VecDeque::new(),
            rss: sys::PeakRss::new(&settings.pids, base),
            sh: Shared {
                transport: settings.transport,
                servers: settings.servers.clone(),
                run,
                size: settings.size,
                body: Vec::new(),
                base,
                connecting: 0,
                joined: 0,
                join_latency: Histogram::new(),
                newly_joined: Vec::new(),
                dirty: Vec::new(),
                tracker: None,
                kind: track::KIND_BROADCAST,
                churn: ChurnCounts::default(),
                connect_errors: ConnectErrors::default(),
                probes: Probes::default(),
            },
            settings,
        })
    }

    /// The run's start.
    pub fn base(&self) -> Instant {
        self.sh.base
    }

    /// Joins so far.
    pub fn joined(&self) -> usize {
        self.sh.joined
    }

    /// Connects started and not yet joined.
    pub fn connecting(&self) -> usize {
        self.sh.connecting
    }

    /// Connect → own notice, ns, of every join since the last [`Engine::take_join_latency`].
    pub fn take_join_latency(&mut self) -> Histogram {
        std::mem::take(&mut self.sh.join_latency)
    }

    /// The traffic tracker, if one is installed.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.sh.tracker.as_ref()
    }

    /// Churn counters.
    pub fn churn_counts(&self) -> &ChurnCounts {
        &self.sh.churn
    }

    /// Failed connects counted so far (churn).
    pub fn connect_errors(&self) -> &ConnectErrors {
        &self.sh.connect_errors
    }

    /// Users currently online (churn's deque).
    pub fn online(&self) -> usize {
        self.online.len()
    }

    /// Starts connecting one more user; `chats`: it sends one line once online.
    ///
    /// # Errors
    /// A connect that fails at once, when connect errors are fatal, or a registry failure.
    pub fn start_connect(&mut self, chats: bool) -> Result<(), Fail> {
        let id = self.next_id;
        self.next_id += 1;
        let now_ns = self.sh.now_ns(Instant::now());
        let mut stream = match self.settings.sources.connect(self.sh.server_of(id), id) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(id, &e),
        };
        // Small payloads must not wait for Nagle's algorithm; a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let t = self.settings.transport;
        let ident = match stream.local_addr() {
            Ok(a) => t.ident(a, self.sh.run, id, self.settings.listen),
            Err(e) => return self.connect_failed(id, &e),
        };
        let to_prefix = t.broadcast_prefix(&ident);
        let entry = self.users.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| Fail::Error(format!("cannot register user {id}: {e}")))?;
        log::debug!("user {id} connecting from {ident}");
        entry.insert(User {
            id,
            stream,
            ident,
            name: String::new(),
            state: UserState::Connecting,
            started_ns: now_ns,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            out_pos: 0,
            dirty: false,
            to_prefix,
            chats,
            echo_pending: false,
            last_other: Vec::new(),
        });
        self.sh.connecting += 1;
        Ok(())
    }

    /// Records a failed connect; the error to stop with, if it is fatal.
    fn connect_failed(&mut self, id: usize, e: &io::Error) -> Result<(), Fail> {
        let addr = self.sh.server_of(id);
        if self.sh.joined == 0 {
            return Err(Fail::NoServer(format!("cannot connect to {addr}: {e}")));
        }
        let msg = format!("user {id} cannot connect to {addr}: {e}");
        if self.settings.connect_errors_fatal {
            return Err(Fail::Error(msg));
        }
        log::debug!("{msg}");
        let errors = &mut self.sh.connect_errors;
        errors.count += 1;
        errors.first.get_or_insert(msg);
        Ok(())
    }

    /// Installs the tracker of a fanout (`kind` b) or private (`kind` p) run.
    pub fn set_tracker(&mut self, tracker: Tracker, kind: u8) {
        self.sh.tracker = Some(tracker);
        self.sh.kind = kind;
    }

    /// Private mode: every user `2k` whispers to `2k+1` and back, by the names their own
    /// online notices gave them (users `2k` and `2k+1` are on different servers when there
    /// are several).
    pub fn pair_up(&mut self) {
        // Traffic runs never remove users, so a user's key is its id.
        let t = self.settings.transport;
        let prefixes: Vec<(usize, Vec<u8>)> = self
            .users
            .iter()
            .map(|(key, u)| (key ^ 1, t.whisper_prefix(&u.name)))
            .collect();
        for (partner, prefix) in prefixes {
            if let Some(user) = self.users.get_mut(partner) {
                user.to_prefix = prefix;
            }
        }
    }

    /// Private mode, after [`Engine::pair_up`]: every user whispers one probe to its partner.
    pub fn start_probes(&mut self) {
        self.sh.probes = Probes {
            state: vec![Probe::InFlight; self.users.len()],
            pending: self.users.len(),
            retries: 0,
        };
        let now_ns = self.sh.now_ns(Instant::now());
        for (key, user) in &mut self.users {
            self.sh.send(key, user, track::KIND_PROBE, now_ns);
        }
    }

    /// Sends the probes that were refused again.
    pub fn retry_probes(&mut self) {
        let now_ns = self.sh.now_ns(Instant::now());
        for (key, user) in &mut self.users {
            let Some(probe) = self.sh.probes.state.get_mut(user.id) else {
                continue;
            };
            if *probe == Probe::Refused {
                *probe = Probe::InFlight;
                self.sh.probes.retries += 1;
                self.sh.send(key, user, track::KIND_PROBE, now_ns);
            }
        }
    }

    /// Probes not yet heard by their partners.
    pub fn probes_pending(&self) -> usize {
        self.sh.probes.pending
    }

    /// Probes sent again so far.
    pub fn probe_retries(&self) -> u64 {
        self.sh.probes.retries
    }

    /// Whether a failed connect after the first join ends the run (true) or is counted.
    pub fn set_connect_errors_fatal(&mut self, fatal: bool) {
        self.settings.connect_errors_fatal = fatal;
    }

    /// Starts traffic: every sender fills its window in the next turn.
    pub fn start_traffic(&mut self) {
        if let Some(t) = self.sh.tracker.as_mut() {
            t.start();
        }
    }

    /// Churn: the users that joined since the last call go to the back of the online queue.
    pub fn collect_joined(&mut self) {
        self.online.extend(self.sh.newly_joined.drain(..));
    }

    /// Churn: the longest-online user disconnects; false if nobody is online.
    pub fn leave_oldest(&mut self) -> bool {
        let Some(key) = self.online.pop_front() else {
            return false;
        };
        if let Some(mut user) = self.users.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut user.stream);
            if user.echo_pending {
                self.sh.churn.echo_pending = self.sh.churn.echo_pending.saturating_sub(1);
            }
            log::debug!("user {} leaves", user.id);
        }
        true
    }

    /// One turn of the loop; waits at most until `wake_at`, the next progress line or the
    /// deadline. Returns the time after the poll.
    ///
    /// # Errors
    /// The deadline passed, a connection closed, or a fatal connect failure.
    pub fn turn(&mut self, wake_at: Option<Instant>) -> Result<Instant, Fail> {
        let before = Instant::now();
        if before >= self.deadline {
            return Err(Fail::Timeout);
        }
        let mut until = self.deadline.min(self.next_progress);
        if let Some(w) = wake_at {
            until = until.min(w);
        }
        if let Some(sample_at) = self.rss.next_at() {
            until = until.min(sample_at);
        }
        let busy =
            !self.sh.dirty.is_empty() || self.sh.tracker.as_ref().is_some_and(Tracker::has_ready);
        let timeout = if busy {
            Duration::ZERO
        } else {
            until.saturating_duration_since(before)
        };
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(Fail::Error(format!("poll failed: {e}")));
            }
        }
        self.batch.clear();
        self.batch.extend(self.events.iter().map(|e| {
            (
                e.token().0,
                e.is_readable() || e.is_read_closed() || e.is_error(),
                e.is_writable() || e.is_error(),
            )
        }));
        for i in 0..self.batch.len() {
            let (key, readable, writable) = self.batch[i];
            self.on_event(key, readable, writable)?;
        }
        self.pump();
        self.flush_dirty()?;
        let now = Instant::now();
        self.rss.sample_if_due(now);
        Ok(now)
    }

    /// The peak resident memory of each `pids` process seen so far in this run, kB.
    pub fn rss_peak_kb(&self) -> &[u64] {
        self.rss.peak_kb()
    }

    fn on_event(&mut self, key: usize, readable: bool, writable: bool) -> Result<(), Fail> {
        let Some(user) = self.users.get_mut(key) else {
            return Ok(()); // left (churn) or failed earlier in this batch
        };
        if user.state == UserState::Connecting {
            match connect_state(&user.stream) {
                ConnectState::Pending => return Ok(()),
                ConnectState::Connected => {
                    let server = self.sh.server_of(user.id);
                    let t = self.settings.transport;
                    t.greet(&mut user.outbuf, server, &user.ident);
                    if !user.outbuf.is_empty() {
                        self.sh.mark_dirty(key, user);
                    }
                    user.state = if t.upgrades() {
                        UserState::Upgrading
                    } else {
                        UserState::Joining
                    };
                }
                ConnectState::Failed(e) => {
                    let id = user.id;
                    if let Some(mut user) = self.users.try_remove(key) {
                        let _ = self.poll.registry().deregister(&mut user.stream);
                    }
                    self.sh.connecting = self.sh.connecting.saturating_sub(1);
                    return self.connect_failed(id, &e);
                }
            }
        }
        if readable {
            self.read_user(key)?;
        }
        if writable {
            if let Some(user) = self.users.get_mut(key) {
                if !user.outbuf.is_empty() {
                    user.flush().map_err(|e| closed(user, &e))?;
                }
            }
        }
        Ok(())
    }

    /// Drains `key`'s socket, handling every whole line.
    fn read_user(&mut self, key: usize) -> Result<(), Fail> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.read_into(key, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn read_into(&mut self, key: usize, scratch: &mut [u8]) -> Result<(), Fail> {
        let Some(user) = self.users.get_mut(key) else {
            return Ok(());
        };
        loop {
            let carry = user.inbuf.len();
            let Some(free) = scratch.get_mut(carry..) else {
                return Err(too_long(user, self.line_cap));
            };
            match user.stream.read(free) {
                Ok(0) => {
                    return Err(Fail::Error(format!(
                        "server closed connection of user {} mid-run ({})",
                        user.id,
                        user.details()
                    )))
                }
                Ok(n) => {
                    scratch[..carry].copy_from_slice(&user.inbuf);
                    user.inbuf.clear();
                    let now_ns = self.sh.now_ns(Instant::now());
                    let data = &scratch[..carry + n];
                    let used = self.sh.on_bytes(key, user, data, self.line_cap, now_ns)?;
                    let rest = &data[used..];
                    if rest.len() > self.line_cap {
                        return Err(too_long(user, self.line_cap));
                    }
                    user.inbuf.extend_from_slice(rest);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(closed(user, &e)),
            }
        }
    }

    /// Lets every sender with room in its window append its next messages.
    fn pump(&mut self) {
        let ts_ns = self.sh.now_ns(Instant::now());
        let (run, size, kind) = (self.sh.run, self.sh.size, self.sh.kind);
        let (transport, body) = (self.sh.transport, &mut self.sh.body);
        let Some(tracker) = self.sh.tracker.as_mut() else {
            return;
        };
        if !tracker.has_ready() {
            return;
        }
        while let Some(sender) = tracker.pop_ready() {
            // Traffic runs never remove users, so a user's key is its id.
            let Some(user) = self.users.get_mut(sender) else {
                continue;
            };
            debug_assert_eq!(user.id, sender);
            while let Some(seq) = tracker.next_send(sender) {
                let p = Payload {
                    kind,
                    sender: sender as u64,
                    seq,
                    ts_ns,
                };
                transport.push_message(&mut user.outbuf, body, &user.to_prefix, |out| {
                    track::encode(out, run, &p, size);
                });
            }
            if !user.dirty {
                user.dirty = true;
                self.sh.dirty.push(sender);
            }
        }
    }

    fn flush_dirty(&mut self) -> Result<(), Fail> {
        let mut dirty = std::mem::take(&mut self.sh.dirty);
        let mut result = Ok(());
        for key in dirty.drain(..) {
            let Some(user) = self.users.get_mut(key) else {
                continue;
            };
            user.dirty = false;
            if let Err(e) = user.flush() {
                result = Err(closed(user, &e));
                break;
            }
        }
        dirty.clear();
        self.sh.dirty = dirty;
        result
    }

    /// Prints `what` as a progress line when one is due.
    pub fn progress(&mut self, now: Instant, what: impl FnOnce() -> String) {
        if now < self.next_progress {
            return;
        }
        self.next_progress = now + PROGRESS_EVERY;
        if self.settings.progress {
            let secs = now.saturating_duration_since(self.sh.base).as_secs_f64();
            crate::say(&format!("{secs:.0} s: {}", what()));
        }
    }
}

fn closed(user: &User, e: &io::Error) -> Fail {
    Fail::Error(format!(
        "server closed connection of user {} mid-run ({}: {e})",
        user.id,
        user.details()
    ))
}

fn too_long(user: &User, cap: usize) -> Fail {
    Fail::Error(format!(
        "server sent user {} a line over {cap} bytes ({})",
        user.id,
        user.details()
    ))
}
