//! The event loop: one `mio::Poll` on one thread owns the listener, every connection (in a
//! `Slab`), the user directory and the idle-timer wheel.
//!
//! One turn of the loop, in order (the shape of Redis's `aeProcessEvents` and sozu's
//! `Server::run`):
//! 1. `poll`, with a timeout of zero while work is left over, else the next timer deadline;
//! 2. read the clock once;
//! 3. dispatch events by token: accept, read and execute complete lines, note writability;
//! 4. expire idle timers;
//! 5. free the connections marked for closing (their offline notices are queued here);
//! 6. flush every dirty connection once: one `write` per recipient per turn, however many
//!    messages it was sent during the turn.
//!
//! Connections are never freed during dispatch, so a slab key cannot be handed to a new
//! connection while an event for the old one is still in the batch; tokens also carry a
//! generation, and an event or timer whose generation does not match is dropped.

use crate::config::Config;
use crate::conn::{Conn, ConnState, Flush, OverLimit, ReadOutcome};
use crate::directory::Directory;
use crate::heap;
use crate::protocol::{next_line, parse, Command, Line, ProtocolError};
use crate::text::{self, Texts};
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

/// The listening socket's token. Reserved tokens sit at the top of the range, far above any
/// connection token (slab key in the low 32 bits, generation in the high 32).
pub const LISTENER: Token = Token(usize::MAX);
/// The signal pipe's token.
pub const SIGNALS: Token = Token(usize::MAX - 1);

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
    /// Binding the listener failed (port in use, no permission, bad address).
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
            } => {
                write!(f, "cannot resolve {addr}: {e}")
            }
            StartError::Resolve { addr, source: None } => {
                write!(f, "cannot resolve {addr}: no address")
            }
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Setup(e) => write!(f, "cannot set up the event loop: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Counters of what the server did, logged at exit.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections accepted into the chat.
    pub accepted: u64,
    /// Connections refused at `--max-conns`.
    pub refused_full: u64,
    /// Lines executed.
    pub lines_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Messages queued to recipients (one broadcast to N users counts N).
    pub deliveries: u64,
    /// Users kicked for idling.
    pub idle_kicks: u64,
    /// Slow readers disconnected at `--max-outbuf`.
    pub slow_consumer_kicks: u64,
}

/// Output bookkeeping, kept apart from the slab so a fan-out can borrow both at once.
#[derive(Debug)]
struct Outbox {
    /// Connections with output queued this turn, each listed once (`Conn::dirty`).
    dirty: Vec<Token>,
    /// Connections to free in the close phase.
    closing: Vec<Token>,
    /// The per-connection output limit.
    max_outbuf_bytes: usize,
    deliveries: u64,
    slow_consumer_kicks: u64,
}

impl Outbox {
    /// Queues `bytes` to `conn`; a reader too slow for its limit is marked for closing.
    fn queue(&mut self, conn: &mut Conn, token: Token, bytes: &[u8]) {
        match conn.queue(bytes, self.max_outbuf_bytes) {
            Ok(()) => {
                self.deliveries += 1;
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

/// The chat server: bind with [`Server::bind`], then [`Server::run`] until a signal.
pub struct Server {
    poll: Poll,
    events: Events,
    /// `None` once shutdown has begun.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
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
    /// One outgoing message, encoded once and copied to every recipient.
    msg: Vec<u8>,
    fired: Vec<Token>,
    shutdown_deadline: Option<Instant>,
    stats: Stats,
    /// Bytes written since the heap was last trimmed.
    bytes_since_trim: u64,
    last_trim: Instant,
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

impl Server {
    /// Binds the listener and sets up the loop.
    ///
    /// # Errors
    /// [`StartError`] when the address does not resolve or bind, or the poll or the signal
    /// handlers cannot be created.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let addr_text = format!("{}:{}", config.host, config.port);
        let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|e| StartError::Resolve {
                addr: addr_text.clone(),
                source: Some(e),
            })?
            .collect();
        let mut last_err = None;
        let mut bound = None;
        for addr in addrs {
            match TcpListener::bind(addr) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let mut listener = match (bound, last_err) {
            (Some(l), _) => l,
            (None, Some(source)) => {
                return Err(StartError::Bind {
                    addr: addr_text,
                    source,
                })
            }
            (None, None) => {
                return Err(StartError::Resolve {
                    addr: addr_text,
                    source: None,
                })
            }
        };
        // mio listens with std's backlog of 128: a burst of connects beyond it (a load test,
        // a reconnect storm) has SYNs dropped and retried a second later. Linux lets a
        // second `listen` raise it; the kernel caps it at net.core.somaxconn.
        socket2::SockRef::from(&listener)
            .listen(LISTEN_BACKLOG)
            .map_err(StartError::Setup)?;
        let local_addr = listener.local_addr().map_err(StartError::Setup)?;
        let poll = Poll::new().map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(StartError::Setup)?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(StartError::Setup)?;
        info!("listening on {local_addr}");
        Ok(Server {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listener: Some(listener),
            local_addr,
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
                deliveries: 0,
                slow_consumer_kicks: 0,
            },
            again: Vec::new(),
            texts: config.lang.texts(),
            config,
            next_generation: 0,
            scratch: vec![0; READ_CHUNK_BYTES],
            msg: Vec::new(),
            fired: Vec::new(),
            shutdown_deadline: None,
            stats: Stats::default(),
            bytes_since_trim: 0,
            last_trim: Instant::now(),
        })
    }

    /// The address the listener is bound to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        Stats {
            deliveries: self.out.deliveries,
            slow_consumer_kicks: self.out.slow_consumer_kicks,
            ..self.stats.clone()
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
            self.dispatch(now);
            self.expire(now);
            self.close_pending();
            self.flush_dirty();
            // Free what the flush just finished, so its slot counts as free for the next
            // accept; offline notices queued here are flushed next turn.
            self.close_pending();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || now >= deadline {
                    let s = self.stats();
                    info!(
                        "stopped: {} accepted, {} refused (full), {} lines, {} deliveries, \
                         {} idle kicks, {} slow-consumer kicks, {} connections cut at the grace limit",
                        s.accepted,
                        s.refused_full,
                        s.lines_in,
                        s.deliveries,
                        s.idle_kicks,
                        s.slow_consumer_kicks,
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
                LISTENER => self.on_listener(now),
                SIGNALS => self.on_signals(now),
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
            self.on_listener(now);
        }
    }

    /// Accepts every pending connection. On running out of descriptors, pauses accepting
    /// for a while instead of spinning: the listener's edge would not fire again for the
    /// connections still queued, so the pause timer retries them.
    fn on_listener(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((socket, peer)) => {
                    if self.accept_failing {
                        info!("accepting again");
                        self.accept_failing = false;
                    }
                    self.admit(socket, peer, now);
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

    /// Takes a new connection into the chat, or refuses it when the server is full.
    fn admit(&mut self, mut socket: TcpStream, peer: SocketAddr, now: Instant) {
        if self.conns.len() >= self.config.max_conns {
            self.stats.refused_full += 1;
            warn!(
                "{peer} refused: {} connections is the limit",
                self.config.max_conns
            );
            // Best effort, as Redis does: a fresh socket has room for one short line.
            let _ = socket.write(self.texts.server_full.as_bytes());
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
        // Chat lines are small and latency matters more than packet count; the loop
        // already batches everything queued in one turn into one write.
        let _ = socket.set_nodelay(true);
        let conn = entry.insert(Conn::new(socket, generation, peer, now));
        if self.dir.join(peer, token).is_err() {
            // Unreachable while the old socket with this address is open; be safe anyway.
            self.out.close_now(conn, token);
            return;
        }
        conn.online = true;
        self.stats.accepted += 1;
        debug!("{peer} connected as {token:?}");
        if let Some(idle) = self.config.idle_timeout {
            self.wheel.schedule(now + idle, token);
        }
        self.msg.clear();
        text::user_line(&mut self.msg, conn.user(), self.texts.online.as_bytes());
        self.broadcast();
    }

    /// Reads until the socket is drained or the budget is spent, executing every complete
    /// line as it arrives. Input after EOF, a kick or shutdown is read and dropped, so the
    /// kernel does not answer our final close with a reset that could destroy owed output.
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
                    if conn.state == ConnState::Open {
                        conn.last_active = now;
                        self.take_input(token, &scratch[..n]);
                    }
                    if n >= budget {
                        self.again.push(token);
                        break;
                    }
                    budget -= n;
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    debug!("{} sent EOF", conn);
                    self.finish(token, now);
                    break;
                }
                ReadOutcome::Failed(e) => {
                    debug!("{} read failed: {e}", conn);
                    self.out.close_now(conn, token);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Feeds `chunk` after any partial line kept from earlier reads.
    fn take_input(&mut self, token: Token, chunk: &[u8]) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        if conn.inbuf.is_empty() {
            // The common case: lines are executed straight from the shared read buffer and
            // only a trailing partial line is copied.
            let used = self.run_lines(token, chunk);
            self.keep_partial(token, Vec::new(), &chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(chunk);
            let used = self.run_lines(token, &buf);
            buf.drain(..used);
            self.keep_partial(token, buf, &[]);
        }
    }

    /// Stores the unfinished line (at most `--max-line` bytes, or the framing would have
    /// reported it too long) for the next read.
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

    /// Executes the complete lines at the front of `data` and returns the bytes consumed;
    /// what remains is a partial line within the length limit.
    fn run_lines(&mut self, token: Token, data: &[u8]) -> usize {
        let max = self.config.max_line_bytes;
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = lookup(&mut self.conns, token) else {
                return data.len();
            };
            if conn.state != ConnState::Open {
                return data.len();
            }
            let rest = &data[pos..];
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
                    debug!("{} sent a line over {max} bytes", conn);
                    conn.discarding = true;
                    self.reply(token, self.texts.error(ProtocolError::LineTooLong));
                }
            }
        }
        pos
    }

    /// Runs one line from `token`'s user.
    fn execute(&mut self, token: Token, line: &[u8]) {
        self.stats.lines_in += 1;
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

    /// `who`: one line per online user, to the asker only, in one queued block.
    fn cmd_who(&mut self, token: Token) {
        self.msg.clear();
        for (_, c) in self.conns.iter().filter(|(_, c)| c.online) {
            text::user_line(&mut self.msg, c.user(), self.texts.who_entry.as_bytes());
        }
        self.queue_msg(token);
    }

    /// `rename|NEW`, NEW already valid: taken names are refused, nothing changes then.
    fn cmd_rename(&mut self, token: Token, new: &str) {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return;
        };
        match self
            .dir
            .rename(conn.addr, conn.chosen_name.as_deref(), new, token)
        {
            Ok(()) => {
                debug!("{conn} renamed to {new}");
                conn.chosen_name = Some(new.into());
                self.msg.clear();
                text::renamed(&mut self.msg, self.texts, new);
                self.queue_msg(token);
            }
            Err(_) => self.reply(token, self.texts.name_taken),
        }
    }

    /// `to|NAME|TEXT`, checked in the seed's order: recipient online, then text present.
    fn cmd_to(&mut self, token: Token, name: &[u8], body: &[u8]) {
        let Some(target) = self.dir.lookup(name) else {
            return self.reply(token, self.texts.no_such_user);
        };
        if body.is_empty() {
            return self.reply(token, self.texts.empty_body);
        }
        let Some(sender) = lookup(&mut self.conns, token) else {
            return;
        };
        self.msg.clear();
        text::whisper(&mut self.msg, self.texts, sender.user(), body);
        self.queue_msg(target);
    }

    /// Anything else: `[addr]name:LINE` to everyone, the sender included.
    fn cmd_say(&mut self, token: Token, line: &[u8]) {
        let Some(sender) = lookup(&mut self.conns, token) else {
            return;
        };
        self.msg.clear();
        text::user_line(&mut self.msg, sender.user(), line);
        self.broadcast();
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

    /// Appends the message in `self.msg` to every online user's output: the fan-out. The
    /// bytes are copied, never re-encoded, and nothing is written until the flush phase.
    fn broadcast(&mut self) {
        for (key, conn) in self.conns.iter_mut().filter(|(_, c)| c.online) {
            let token = conn_token(key, conn.generation);
            self.out.queue(conn, token, &self.msg);
        }
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

    /// Takes a user offline: out of the directory, and (outside shutdown) an offline notice
    /// to everyone still online.
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
        if self.shutdown_deadline.is_none() {
            self.msg.clear();
            text::user_line(&mut self.msg, conn.user(), self.texts.offline.as_bytes());
            self.broadcast();
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
        self.wheel.schedule(now + self.config.shutdown_grace, token);
    }

    /// Fires due timers. An entry is only a reminder: the connection's own state says
    /// whether it is stale (gone or closing), early (activity since: schedule again), or due.
    fn expire(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.poll(now, &mut fired);
        for token in fired.drain(..) {
            let Some(conn) = lookup(&mut self.conns, token) else {
                continue;
            };
            let deadline = match (conn.state, self.config.idle_timeout) {
                (ConnState::Open, Some(idle)) => conn.last_active + idle,
                (ConnState::CloseAfterFlush, _) => conn.last_active + self.config.shutdown_grace,
                _ => continue,
            };
            if deadline > now {
                self.wheel.schedule(deadline, token);
            } else if conn.state == ConnState::Open {
                debug!("{conn} idle: kicked");
                self.stats.idle_kicks += 1;
                self.reply(token, self.texts.kicked);
                self.finish(token, now);
            } else {
                debug!("{} did not take its last output in time", conn);
                self.out.close_now(conn, token);
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
                debug!("{} closed", conn);
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
            let written = pending - conn.pending().min(pending);
            self.stats.bytes_out += written as u64;
            self.bytes_since_trim += written as u64;
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
                    debug!("{} write failed: {e}", conn);
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
                        debug!("{} reregister failed: {e}", conn);
                        self.out.close_now(conn, token);
                    }
                }
            }
        }
        if self.out.dirty.is_empty() {
            self.out.dirty = dirty; // keep the allocation
        }
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
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Open)
            .map(|(key, c)| conn_token(key, c.generation))
            .collect();
        for token in tokens {
            self.reply(token, self.texts.shutting_down);
            self.finish(token, now);
        }
    }
}
