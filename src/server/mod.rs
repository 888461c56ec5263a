//! The event loop: one `mio::Poll` on one thread owns the listeners, every connection (in a
//! `Slab`), the user directory and the timer wheel.
//!
//! One turn of the loop, in order (the shape of Redis's `aeProcessEvents` and sozu's
//! `Server::run`):
//! 1. `poll`, with a timeout of zero while work is left over, else the next timer deadline;
//! 2. read the clock once;
//! 3. dispatch events by token: accept, read and execute complete commands, note
//!    writability;
//! 4. expire timers (idle kicks, heartbeats, HTTP deadlines, lingering closes);
//! 5. free the connections marked for closing (their offline notices are queued here);
//! 6. flush every dirty connection once: one `write` per recipient per turn, however many
//!    messages it was sent during the turn.
//!
//! Connections are never freed during dispatch, so a slab key cannot be handed to a new
//! connection while an event for the old one is still in the batch; tokens also carry a
//! generation, and an event or timer whose generation does not match is dropped.
//!
//! Every protocol shares this loop: a connection's [`Proto`] only decides how its bytes are
//! framed (`chat` runs the line protocol, `web` HTTP and the two WebSocket protocols). What
//! users say to each other goes through one fan-out, [`Server::announce`], which encodes a
//! message once per protocol present among the recipients and copies the bytes.

mod chat;
mod cluster;
mod web;

use crate::chat::directory::Directory;
use crate::codec::{hub, im, ws};
use crate::config::Config;
use crate::conn::{Conn, ConnState, Flush, Form, OverLimit, Proto, ReadOutcome};
use crate::heap;
use crate::metrics::{Gauges, Metrics};
use crate::text::{self, Texts, User};
use crate::timer::Wheel;
use log::{debug, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::fmt;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The signal pipe's token. Reserved tokens sit at the top of the range, far above any
/// connection token (slab key in the low 32 bits, generation in the high 32).
const SIGNALS: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_TOP - i`.
const LISTENER_TOP: usize = usize::MAX - 1;

/// Connections the kernel queues for `accept` (capped by net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;
/// Events taken from the kernel per `poll`.
const EVENTS_CAPACITY: usize = 1024;
/// Size of the one read buffer shared by every connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes read from one connection per turn before the others get their turn.
const READ_BUDGET_BYTES: usize = 64 * 1024;
/// Bytes written to one connection per turn before the others get their turn.
const WRITE_BUDGET_BYTES: usize = 1024 * 1024;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long an HTTP request may take to arrive, and a kept-alive connection may wait.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The host did not resolve to any address.
    Resolve {
        /// `host:port` as given.
        addr: String,
        /// The resolver's error, if it gave one.
        source: Option<io::Error>,
    },
    /// Binding a listener failed (port in use, no permission, bad address).
    Bind {
        /// `host:port` as given.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The poll or the signal handlers could not be set up.
    Setup(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Resolve {
                addr,
                source: Some(e),
            } => write!(f, "cannot resolve {addr}: {e}"),
            StartError::Resolve { addr, source: None } => {
                write!(f, "cannot resolve {addr}: no address")
            }
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Setup(e) => write!(f, "cannot set up the event loop: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Output bookkeeping, kept apart from the slab so a fan-out can borrow both at once.
#[derive(Debug)]
struct Outbox {
    /// Connections with output queued this turn, each listed once (`Conn::dirty`).
    dirty: Vec<Token>,
    /// Connections to free in the close phase.
    closing: Vec<Token>,
    /// The per-connection output limit.
    max_outbuf_bytes: usize,
    messages_out: u64,
    slow_consumer_kicks: u64,
}

impl Outbox {
    /// Queues `bytes` to `conn`; a reader too slow for its limit is marked for closing.
    fn queue(&mut self, conn: &mut Conn, token: Token, bytes: &[u8]) {
        match conn.queue(bytes, self.max_outbuf_bytes) {
            Ok(()) => {
                self.messages_out += 1;
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(token);
                }
            }
            Err(OverLimit) => {
                warn!(
                    "{conn} is not reading: {} bytes unsent, disconnecting",
                    conn.pending()
                );
                self.slow_consumer_kicks += 1;
                self.close_now(conn, token);
            }
        }
    }

    /// Marks `conn` to be freed this turn, dropping its output.
    fn close_now(&mut self, conn: &mut Conn, token: Token) {
        if conn.state != ConnState::Closing {
            conn.state = ConnState::Closing;
            conn.discard_output();
            self.closing.push(token);
        }
    }
}

/// A listening socket and what its connections speak first.
struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
    /// HTTP (with WebSocket upgrades) rather than the line protocol.
    web: bool,
}

/// Who a fan-out speaks for: copied out of the sender's connection so the fan-out can
/// borrow every other connection. `name` is reused, so this allocates nothing per message.
#[derive(Debug)]
struct Speaker {
    addr: SocketAddr,
    name: String,
}

impl Speaker {
    fn user(&self) -> User<'_> {
        User {
            addr: &self.addr,
            name: Some(&self.name),
        }
    }
}

/// What a fan-out tells a room.
#[derive(Debug, Clone, Copy)]
enum Event<'a> {
    /// The speaker came online.
    Online,
    /// The speaker left.
    Offline,
    /// The speaker said this.
    Say(&'a [u8]),
}

/// The chat server: bind with [`Server::bind`], then [`Server::run`] until a signal.
pub struct Server {
    poll: Poll,
    events: Events,
    /// Emptied once shutdown has begun.
    listeners: Vec<Listener>,
    /// Set while accepting is paused after running out of file descriptors.
    accept_paused_until: Option<Instant>,
    /// Whether accept is failing (logged once per episode, not once per retry).
    accept_failing: bool,
    signals: Signals,
    conns: Slab<Conn>,
    dir: Directory,
    wheel: Wheel<Token>,
    out: Outbox,
    /// Connections whose read budget ran out with bytes maybe left: read again next turn.
    again: Vec<Token>,
    config: Config,
    texts: &'static Texts,
    next_generation: u32,
    /// The read buffer shared by every connection.
    scratch: Vec<u8>,
    /// One outgoing message for one recipient.
    msg: Vec<u8>,
    /// One fan-out's message in each [`Form`], encoded when the first recipient of that
    /// form is met, then copied to the others.
    forms: [Vec<u8>; 3],
    /// JSON before it is put in a WebSocket frame.
    json: Vec<u8>,
    speaker: Speaker,
    fired: Vec<Token>,
    shutdown_deadline: Option<Instant>,
    metrics: Metrics,
    /// Bytes written since the heap was last trimmed.
    bytes_since_trim: u64,
    last_trim: Instant,
    web: web::WebState,
    /// The Redis backplane, with `--redis`.
    cluster: Option<cluster::Cluster>,
    /// The clock as read at the start of this turn, for code that needs no finer time.
    now: Instant,
}

fn conn_token(key: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | key)
}

fn token_key(token: Token) -> usize {
    token.0 & 0xFFFF_FFFF
}

/// The live connection `token` names, or `None` for a stale or reserved token.
fn lookup(conns: &mut Slab<Conn>, token: Token) -> Option<&mut Conn> {
    let generation = (token.0 >> 32) as u32;
    conns
        .get_mut(token_key(token))
        .filter(|c| c.generation == generation)
}

/// Binds one listener on `host:port`, with the larger backlog.
fn bind_listener(host: &str, port: u16) -> Result<TcpListener, StartError> {
    let addr_text = format!("{host}:{port}");
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| StartError::Resolve {
            addr: addr_text.clone(),
            source: Some(e),
        })?;
    let mut last_err = None;
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                // mio listens with std's backlog of 128: a burst of connects beyond it (a
                // load test, a reconnect storm) has SYNs dropped and retried a second
                // later. Linux lets a second `listen` raise it.
                socket2::SockRef::from(&listener)
                    .listen(LISTEN_BACKLOG)
                    .map_err(StartError::Setup)?;
                return Ok(listener);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(match last_err {
        Some(source) => StartError::Bind {
            addr: addr_text,
            source,
        },
        None => StartError::Resolve {
            addr: addr_text,
            source: None,
        },
    })
}

/// A node id for a server started without `--node-id`: unique enough among the servers of
/// one cluster (time, process id and a stack address, hashed).
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("n{:08x}", h.finish() as u32)
}

/// Appends `event` as `form` shows it, spoken by `speaker`.
fn encode_event(
    out: &mut Vec<u8>,
    json: &mut Vec<u8>,
    texts: &Texts,
    speaker: &Speaker,
    form: Form,
    event: Event<'_>,
) {
    out.clear();
    json.clear();
    match form {
        Form::Line => {
            let body = match event {
                Event::Online => texts.online.as_bytes(),
                Event::Offline => texts.offline.as_bytes(),
                Event::Say(text) => text,
            };
            text::user_line(out, speaker.user(), body);
        }
        Form::Im => {
            let (cmd, msg) = match event {
                Event::Online => ("enter", texts.enter.into()),
                Event::Offline => ("exit", texts.exit.into()),
                Event::Say(text) => ("msg", String::from_utf8_lossy(text)),
            };
            im::push(json, texts, cmd, "", &msg, &speaker.name);
            ws::encode_text(out, json);
        }
        Form::Hub => {
            let (kind, content) = match event {
                Event::Online => (hub::CONNECT, texts.online.into()),
                Event::Offline => (hub::CLOSE, texts.offline.into()),
                Event::Say(text) => (hub::BROADCAST, String::from_utf8_lossy(text)),
            };
            hub::encode(json, kind, &speaker.name, hub::SERVER_ID, &content);
            ws::encode_text(out, json);
        }
    }
}

impl Server {
    /// Binds the listeners and sets up the loop.
    ///
    /// # Errors
    /// [`StartError`] when an address does not resolve or bind, or the poll or the signal
    /// handlers cannot be created.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let poll = Poll::new().map_err(StartError::Setup)?;
        let mut ports = vec![(config.port, false)];
        ports.extend(config.ws_port.map(|p| (p, true)));
        // The same non-zero port for both means one listener serving both.
        let shared = config.http_port.is_some() && config.http_port == config.ws_port;
        if !(shared && config.http_port != Some(0)) {
            ports.extend(config.http_port.map(|p| (p, true)));
        }
        let mut listeners = Vec::new();
        for (i, (port, web)) in ports.into_iter().enumerate() {
            let mut socket = bind_listener(&config.host, port)?;
            let addr = socket.local_addr().map_err(StartError::Setup)?;
            poll.registry()
                .register(&mut socket, Token(LISTENER_TOP - i), Interest::READABLE)
                .map_err(StartError::Setup)?;
            info!(
                "listening on {addr} ({})",
                if web {
                    "HTTP and WebSocket"
                } else {
                    "line protocol"
                }
            );
            listeners.push(Listener { socket, addr, web });
        }
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(StartError::Setup)?;
        let ws_port = listeners.iter().find(|l| l.web).map(|l| l.addr.port());
        let cluster = match &config.redis {
            None => None,
            Some(url) => {
                let addr = url.resolve().map_err(|e| StartError::Resolve {
                    addr: format!("{}:{}", url.host, url.port),
                    source: Some(e),
                })?;
                let node = config.node_id.clone().unwrap_or_else(random_node_id);
                info!("cluster node id {node}, Redis at {addr}");
                Some(cluster::Cluster::new(
                    addr,
                    url.db,
                    &node,
                    config.node_timeout,
                ))
            }
        };
        Ok(Server {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listeners,
            accept_paused_until: None,
            accept_failing: false,
            signals,
            conns: Slab::new(),
            dir: Directory::new(),
            wheel: Wheel::new(Instant::now()),
            out: Outbox {
                dirty: Vec::new(),
                closing: Vec::new(),
                max_outbuf_bytes: config.max_outbuf_bytes,
                messages_out: 0,
                slow_consumer_kicks: 0,
            },
            again: Vec::new(),
            texts: config.lang.texts(),
            web: web::WebState::new(ws_port),
            config,
            next_generation: 0,
            scratch: vec![0; READ_CHUNK_BYTES],
            msg: Vec::new(),
            forms: [Vec::new(), Vec::new(), Vec::new()],
            json: Vec::new(),
            speaker: Speaker {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                name: String::new(),
            },
            fired: Vec::new(),
            shutdown_deadline: None,
            metrics: Metrics::default(),
            bytes_since_trim: 0,
            last_trim: Instant::now(),
            cluster,
            now: Instant::now(),
        })
    }

    /// The line-protocol listener's address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    /// Every listener's address: the line protocol's, then the WebSocket one's, then the
    /// HTTP one's, as configured.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// What the server has done so far.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            messages_out: self.out.messages_out,
            slow_consumer_kicks: self.out.slow_consumer_kicks,
            ..self.metrics.clone()
        }
    }

    /// Runs the loop until SIGINT or SIGTERM, then says goodbye to everyone, flushes for at
    /// most the shutdown grace, and returns.
    ///
    /// # Errors
    /// Only when `poll` itself fails, which leaves nothing to run on.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            let timeout = self.housekeeping(Instant::now());
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            self.now = now;
            self.dispatch(now);
            self.expire(now);
            self.close_pending();
            self.flush_dirty();
            // Free what the flush just finished, so its slot counts as free for the next
            // accept; offline notices queued here are flushed next turn.
            self.close_pending();
            self.cluster_turn(now);
            self.metrics.observe_loop(now.elapsed());
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || now >= deadline {
                    let m = self.metrics();
                    info!(
                        "stopped: {} accepted, {} refused (full), {} messages in, {} out, \
                         {} idle kicks, {} slow-consumer kicks, {} connections cut at the grace limit",
                        m.accepted,
                        m.refused_full,
                        m.messages_in,
                        m.messages_out,
                        m.idle_kicks,
                        m.slow_consumer_kicks,
                        self.conns.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Runs before each poll: when the loop is about to wait after much output, gives the
    /// freed buffer memory back to the OS (see `heap`). Returns the poll timeout.
    fn housekeeping(&mut self, now: Instant) -> Option<Duration> {
        let timeout = self.next_timeout(now);
        if timeout == Some(Duration::ZERO) || self.bytes_since_trim < heap::TRIM_AFTER_BYTES {
            return timeout;
        }
        let due = self.last_trim + heap::TRIM_INTERVAL;
        if now < due {
            // Come back when a trim is allowed, or the loop may sleep on the garbage.
            let wait = due - now;
            return Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        heap::release_free_memory();
        self.last_trim = now;
        self.bytes_since_trim = 0;
        timeout
    }

    /// Zero while work is left over, else until the earliest timer, pause or deadline.
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.out.dirty.is_empty() || !self.out.closing.is_empty() || !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.wheel.next_deadline(),
            self.accept_paused_until,
            self.shutdown_deadline,
            self.cluster.as_ref().and_then(|c| c.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    /// Routes this turn's events, then retries reads whose budget ran out last turn.
    fn dispatch(&mut self, now: Instant) {
        let mut again = std::mem::take(&mut self.again);
        for token in again.drain(..) {
            self.on_readable(token, now);
        }
        if self.again.is_empty() {
            self.again = again; // keep the allocation
        }
        // `Events` cannot be iterated while `self` is borrowed mutably; swap it out.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                SIGNALS => self.on_signals(now),
                Token(t) if t > LISTENER_TOP - self.listeners.len() => {
                    self.on_listener(LISTENER_TOP - t, now)
                }
                token if self.cluster.as_ref().is_some_and(|c| c.owns(token)) => {
                    self.on_redis(token, now)
                }
                token => {
                    trace!(
                        "{token:?} readable={} writable={}",
                        event.is_readable(),
                        event.is_writable()
                    );
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.on_readable(token, now);
                    }
                    if event.is_writable() {
                        self.on_writable(token);
                    }
                }
            }
        }
        self.events = events;
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            for i in 0..self.listeners.len() {
                self.on_listener(i, now);
            }
        }
    }

    /// Accepts every pending connection on listener `i`. On running out of descriptors,
    /// pauses accepting for a while instead of spinning: the listener's edge would not fire
    /// again for the connections still queued, so the pause timer retries them.
    fn on_listener(&mut self, i: usize, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            let web = listener.web;
            match listener.socket.accept() {
                Ok((socket, peer)) => {
                    if self.accept_failing {
                        info!("accepting again");
                        self.accept_failing = false;
                    }
                    self.admit(socket, peer, web, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    if !self.accept_failing {
                        warn!("accept failed: {e}; retrying every {ACCEPT_PAUSE:?} until it works");
                        self.accept_failing = true;
                    }
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Takes a new connection in, or refuses it when the server is full. A line user is
    /// online at once; a web connection first speaks HTTP.
    fn admit(&mut self, mut socket: TcpStream, peer: SocketAddr, web: bool, now: Instant) {
        if self.conns.len() >= self.config.max_conns {
            self.metrics.refused_full += 1;
            warn!(
                "{peer} refused: {} connections is the limit",
                self.config.max_conns
            );
            if !web {
                // Best effort, as Redis does: a fresh socket has room for one short line.
                let _ = socket.write(self.texts.server_full.as_bytes());
            }
            return;
        }
        let entry = self.conns.vacant_entry();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let token = conn_token(entry.key(), generation);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            warn!("{peer} dropped: cannot register: {e}");
            return;
        }
        // Chat messages are small and latency matters more than packet count; the loop
        // already batches everything queued in one turn into one write.
        let _ = socket.set_nodelay(true);
        let proto = if web {
            Proto::Http { since: now }
        } else {
            Proto::Line
        };
        let conn = entry.insert(Conn::new(socket, generation, peer, proto, now));
        self.metrics.accepted += 1;
        debug!("{peer} connected as {token:?}");
        // In a cluster the default name carries the node, so it is unique across servers.
        let joined = match &self.cluster {
            _ if web => Ok(()),
            None => self.dir.join(peer, token),
            Some(cluster) => {
                let name: Box<str> = format!("{peer}@{}", cluster.node()).into();
                let claimed = self.dir.claim(&name, token);
                conn.chosen_name = Some(name);
                claimed
            }
        };
        // Unreachable while the old socket with this address is open; be safe anyway.
        if joined.is_err() {
            self.out.close_now(conn, token);
            return;
        }
        self.schedule(token);
        if !web {
            self.go_online(token);
        }
    }

    /// Reads until the socket is drained or the budget is spent, executing every complete
    /// command as it arrives. Input after EOF, a kick or shutdown is read and dropped, so
    /// the kernel does not answer our final close with a reset that could destroy owed
    /// output.
    fn on_readable(&mut self, token: Token, now: Instant) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut budget = READ_BUDGET_BYTES;
        while let Some(conn) = lookup(&mut self.conns, token) {
            if conn.state == ConnState::Closing {
                break;
            }
            match conn.read_some(&mut scratch) {
                ReadOutcome::Data(n) => {
                    trace!("{token:?} read {n} bytes");
                    self.metrics.bytes_in += n as u64;
                    if conn.state == ConnState::Open {
                        conn.last_active = now;
                        if let Some(chunk) = scratch.get_mut(..n) {
                            self.take_input(token, chunk, now);
                        }
                    }
                    if n >= budget {
                        self.again.push(token);
                        break;
                    }
                    budget -= n;
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    debug!("{conn} sent EOF");
                    self.finish(token, now);
                    break;
                }
                ReadOutcome::Failed(e) => {
                    debug!("{conn} read failed: {e}");
                    self.out.close_now(conn, token);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Feeds `chunk` after any partial command kept from earlier reads.
    fn take_input(&mut self, token: Token, chunk: &mut [u8], now: Instant) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        if conn.inbuf.is_empty() {
            // The common case: commands are executed straight from the shared read buffer
            // and only a trailing partial one is copied.
            let used = self.feed(token, chunk, now);
            self.keep_partial(token, Vec::new(), chunk.get(used..).unwrap_or_default());
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(chunk);
            let used = self.feed(token, &mut buf, now).min(buf.len());
            buf.drain(..used);
            self.keep_partial(token, buf, &[]);
        }
    }

    /// Runs the complete commands at the front of `data` by the connection's framing and
    /// returns the bytes consumed; the rest is a partial command within its framing's limit
    /// (`--max-line`, the HTTP head and body limits, `--ws-max-message`).
    fn feed(&mut self, token: Token, data: &mut [u8], now: Instant) -> usize {
        match lookup(&mut self.conns, token).map(|c| &c.proto) {
            Some(Proto::Line) => self.run_lines(token, data),
            Some(Proto::Http { .. }) => self.run_http(token, data, now),
            Some(Proto::Ws { .. }) => self.run_frames(token, data, now),
            None => data.len(),
        }
    }

    /// Stores the unfinished command for the next read.
    fn keep_partial(&mut self, token: Token, mut buf: Vec<u8>, rest: &[u8]) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        buf.extend_from_slice(rest);
        if buf.is_empty() || conn.state != ConnState::Open {
            buf = Vec::new(); // release: an idle connection holds no buffer
        }
        conn.inbuf = buf;
    }

    /// Queues a fixed text to one connection.
    fn reply(&mut self, token: Token, line: &'static str) {
        if let Some(conn) = lookup(&mut self.conns, token) {
            self.out.queue(conn, token, line.as_bytes());
        }
    }

    /// Queues the encoded message in `self.msg` to one connection.
    fn queue_msg(&mut self, token: Token) {
        if let Some(conn) = lookup(&mut self.conns, token) {
            self.out.queue(conn, token, &self.msg);
        }
    }

    /// Makes `token`'s user the speaker of the next fan-out; false if it is gone.
    fn speak_as(&mut self, token: Token) -> bool {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return false;
        };
        self.speaker.addr = conn.addr;
        self.speaker.name.clear();
        conn.user().push_name_str(&mut self.speaker.name);
        true
    }

    /// Tells every online user in `room` about `event` of the speaker, each in the form of
    /// their own protocol: the fan-out. The message is encoded once per form present and
    /// the bytes copied; nothing is written until the flush phase. `except` is the user an
    /// `/im` enter push is about, who gets a login answer instead.
    fn announce(&mut self, room: u16, event: Event<'_>, except: Option<Token>) {
        let mut encoded = [false; 3];
        for (key, conn) in self.conns.iter_mut() {
            if !conn.online || conn.room() != room {
                continue;
            }
            let Some(form) = conn.form() else { continue };
            let token = conn_token(key, conn.generation);
            if form == Form::Im && except == Some(token) {
                continue;
            }
            let i = form as usize;
            if !encoded[i] {
                encode_event(
                    &mut self.forms[i],
                    &mut self.json,
                    self.texts,
                    &self.speaker,
                    form,
                    event,
                );
                encoded[i] = true;
            }
            self.out.queue(conn, token, &self.forms[i]);
        }
    }

    /// The speaker says `text` to `room`: everyone here at once, the other servers through
    /// the backplane.
    fn say(&mut self, room: u16, text: &[u8], now: Instant) {
        self.announce(room, Event::Say(text), None);
        self.publish_say(room, text, now);
    }

    /// Sends `text` from the speaker to the user called `name`, wherever it is; returns
    /// where that was (`Nowhere` or `Unknown`: nothing was sent).
    fn send_to(&mut self, name: &str, text: &[u8], now: Instant) -> cluster::Place {
        let place = self.locate(name.as_bytes());
        match &place {
            cluster::Place::Local(token) => self.whisper(*token, text),
            cluster::Place::Remote(node) => self.whisper_remote(node, name, text, now),
            cluster::Place::Nowhere | cluster::Place::Unknown => {}
        }
        place
    }

    /// Queues `您已更新用户名：NEW` to one connection.
    fn reply_renamed(&mut self, token: Token, name: &str) {
        self.msg.clear();
        text::renamed(&mut self.msg, self.texts, name);
        self.queue_msg(token);
    }

    /// Sends `body` from the speaker to one user, in the form of the recipient's protocol.
    fn whisper(&mut self, target: Token, body: &[u8]) {
        let Some(conn) = lookup(&mut self.conns, target) else {
            return;
        };
        self.msg.clear();
        self.json.clear();
        match conn.form() {
            Some(Form::Line) => {
                text::whisper(&mut self.msg, self.texts, self.speaker.user(), body);
            }
            Some(Form::Im) => {
                let mut to = String::new();
                conn.user().push_name_str(&mut to);
                let msg = String::from_utf8_lossy(body);
                im::push(
                    &mut self.json,
                    self.texts,
                    "msg",
                    &to,
                    &msg,
                    &self.speaker.name,
                );
                ws::encode_text(&mut self.msg, &self.json);
            }
            Some(Form::Hub) => {
                let mut to = String::new();
                conn.user().push_name_str(&mut to);
                let msg = String::from_utf8_lossy(body);
                hub::encode(&mut self.json, hub::SEND, &self.speaker.name, &to, &msg);
                ws::encode_text(&mut self.msg, &self.json);
            }
            None => return,
        }
        self.out.queue(conn, target, &self.msg);
    }

    /// Notes that a blocked connection can take output again.
    fn on_writable(&mut self, token: Token) {
        if let Some(conn) = lookup(&mut self.conns, token) {
            if conn.pending() > 0 && !conn.dirty {
                conn.dirty = true;
                self.out.dirty.push(token);
            }
        }
    }

    /// Puts a user whose name is already in the directory online, and tells its room.
    fn go_online(&mut self, token: Token) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        if conn.online {
            return; // one online notice per arrival
        }
        conn.online = true;
        let room = conn.room();
        if self.speak_as(token) {
            self.announce(room, Event::Online, Some(token));
        }
        self.publish_presence(token, true, self.now);
    }

    /// Takes a user offline: out of the directory, and (outside shutdown) an offline notice
    /// to everyone still online in its room.
    fn go_offline(&mut self, token: Token) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        if !conn.online {
            return;
        }
        conn.online = false;
        self.dir
            .leave(conn.addr, conn.chosen_name.as_deref(), token);
        debug!("{conn} offline");
        let room = conn.room();
        self.publish_presence(token, false, self.now);
        if self.shutdown_deadline.is_none() && self.speak_as(token) {
            self.announce(room, Event::Offline, None);
        }
    }

    /// Ends a connection gracefully: offline now, closed once its owed output is written or
    /// the grace period runs out.
    fn finish(&mut self, token: Token, now: Instant) {
        self.go_offline(token);
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        conn.state = ConnState::CloseAfterFlush;
        conn.inbuf = Vec::new();
        conn.last_active = now;
        if !conn.dirty {
            conn.dirty = true; // the flush phase closes it once drained, even if empty now
            self.out.dirty.push(token);
        }
        self.schedule(token);
    }

    /// When `conn` must next be looked at, by its state and protocol.
    fn deadline(&self, conn: &Conn) -> Option<Instant> {
        match (conn.state, &conn.proto) {
            (ConnState::CloseAfterFlush, _) => Some(conn.last_active + self.config.shutdown_grace),
            (ConnState::Closing, _) => None,
            (ConnState::Open, Proto::Line) => {
                self.config.idle_timeout.map(|d| conn.last_active + d)
            }
            (ConnState::Open, Proto::Ws { .. }) => {
                let timeout = self.config.heartbeat_timeout;
                (!timeout.is_zero()).then(|| conn.last_active + timeout)
            }
            (ConnState::Open, Proto::Http { since }) => Some(*since + HTTP_TIMEOUT),
        }
    }

    /// Puts a reminder for `token` on the wheel at its current deadline.
    fn schedule(&mut self, token: Token) {
        let generation = (token.0 >> 32) as u32;
        let deadline = self
            .conns
            .get(token_key(token))
            .filter(|c| c.generation == generation)
            .and_then(|c| self.deadline(c));
        if let Some(at) = deadline {
            self.wheel.schedule(at, token);
        }
    }

    /// Fires due timers. An entry is only a reminder: the connection's own state says
    /// whether it is stale (gone or closing), early (activity since: schedule again), or due.
    fn expire(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.poll(now, &mut fired);
        for token in fired.drain(..) {
            let generation = (token.0 >> 32) as u32;
            let Some(conn) = self
                .conns
                .get(token_key(token))
                .filter(|c| c.generation == generation)
            else {
                continue;
            };
            let Some(deadline) = self.deadline(conn) else {
                continue;
            };
            if deadline > now {
                self.wheel.schedule(deadline, token);
                continue;
            }
            match (conn.state, &conn.proto) {
                (ConnState::Open, Proto::Line) => {
                    debug!("{conn} idle: kicked");
                    self.metrics.idle_kicks += 1;
                    self.reply(token, self.texts.kicked);
                    self.finish(token, now);
                }
                (ConnState::Open, Proto::Ws { .. }) => {
                    debug!("{conn} missed its heartbeat: closed");
                    self.metrics.idle_kicks += 1;
                    self.ws_close(token, ws::close::POLICY, self.texts.heartbeat_timeout, now);
                }
                (ConnState::Open, Proto::Http { .. }) => {
                    debug!("{conn} HTTP request timed out");
                    self.http_fail(token, 408, now);
                }
                _ => {
                    debug!("{conn} did not take its last output in time");
                    if let Some(conn) = lookup(&mut self.conns, token) {
                        self.out.close_now(conn, token);
                    }
                }
            }
        }
        self.fired = fired;
    }

    /// Frees every connection marked for closing. Offline notices queued here may push a
    /// slow reader over its limit, which adds it to the list; the loop takes it too.
    fn close_pending(&mut self) {
        while let Some(token) = self.out.closing.pop() {
            self.go_offline(token);
            let generation = (token.0 >> 32) as u32;
            let key = token_key(token);
            if self
                .conns
                .get(key)
                .is_none_or(|c| c.generation != generation)
            {
                continue;
            }
            if let Some(mut conn) = self.conns.try_remove(key) {
                let _ = self.poll.registry().deregister(&mut conn.socket);
                debug!("{conn} closed");
            }
        }
    }

    /// Writes each dirty connection's output once. WRITABLE interest is armed only when the
    /// socket is full with bytes left, and disarmed once drained.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.out.dirty);
        for token in dirty.drain(..) {
            let Some(conn) = lookup(&mut self.conns, token) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Closing {
                continue;
            }
            let pending = conn.pending();
            let outcome = conn.flush(WRITE_BUDGET_BYTES);
            let written = (pending - conn.pending().min(pending)) as u64;
            self.metrics.bytes_out += written;
            self.bytes_since_trim += written;
            let want_write = match outcome {
                Flush::Drained => {
                    if conn.state == ConnState::CloseAfterFlush {
                        self.out.close_now(conn, token);
                        continue;
                    }
                    false
                }
                Flush::WouldBlock => true,
                Flush::OverBudget => {
                    conn.dirty = true;
                    self.out.dirty.push(token);
                    continue;
                }
                Flush::Failed(e) => {
                    debug!("{conn} write failed: {e}");
                    self.out.close_now(conn, token);
                    continue;
                }
            };
            if conn.write_armed != want_write {
                let interest = if want_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                match self
                    .poll
                    .registry()
                    .reregister(&mut conn.socket, token, interest)
                {
                    Ok(()) => conn.write_armed = want_write,
                    Err(e) => {
                        debug!("{conn} reregister failed: {e}");
                        self.out.close_now(conn, token);
                    }
                }
            }
        }
        if self.out.dirty.is_empty() {
            self.out.dirty = dirty; // keep the allocation
        }
    }

    /// Counts connections by protocol and users online, for the metrics page and state.
    fn gauges(&self) -> Gauges {
        let mut g = Gauges {
            users: self.dir.len(),
            ..Gauges::default()
        };
        if let Some(cluster) = &self.cluster {
            let (messages_in, commands_out, pending, reconnects) = cluster.stats();
            g.backplane = Some(crate::metrics::Backplane {
                messages_in,
                commands_out,
                pending,
                reconnects,
                remote_users: cluster.remote_users().count(),
            });
        }
        for (_, conn) in self.conns.iter() {
            match conn.proto {
                Proto::Line => g.line += 1,
                Proto::Ws { .. } => g.ws += 1,
                Proto::Http { .. } => g.http += 1,
            }
        }
        g
    }

    /// SIGINT/SIGTERM: the first begins a graceful shutdown; a second one ends it now.
    fn on_signals(&mut self, now: Instant) {
        let got = self
            .signals
            .pending()
            .filter(|s| *s == SIGINT || *s == SIGTERM)
            .count();
        if got == 0 {
            return;
        }
        if self.shutdown_deadline.is_some() {
            info!("second signal: stopping now");
            self.shutdown_deadline = Some(now);
            return;
        }
        info!(
            "shutting down: telling {} users, flushing for up to {:?}",
            self.dir.len(),
            self.config.shutdown_grace
        );
        self.shutdown_deadline = Some(now + self.config.shutdown_grace);
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        self.accept_paused_until = None;
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Open)
            .map(|(key, c)| conn_token(key, c.generation))
            .collect();
        for token in tokens {
            match lookup(&mut self.conns, token).map(|c| &c.proto) {
                Some(Proto::Line) => {
                    self.reply(token, self.texts.shutting_down);
                    self.finish(token, now);
                }
                Some(Proto::Ws { .. }) => {
                    let reason = self.texts.shutting_down.trim_end();
                    self.ws_close(token, ws::close::GOING_AWAY, reason, now);
                }
                Some(Proto::Http { .. }) => self.finish(token, now),
                None => {}
            }
        }
    }
}
