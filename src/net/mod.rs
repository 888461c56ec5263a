//! The loop: one `mio::Poll` on one thread owns the listeners, every connection (in a
//! `Slab`), the timer wheel, the signal pipe and the Redis sockets.
//!
//! One turn, in order (the shape of Redis's `aeProcessEvents` and sozu's `Server::run`):
//! 1. `poll`, with a timeout of zero while work is left over, else the next deadline;
//! 2. read the clock once;
//! 3. note every hang-up in the batch, so presence notices skip peers already gone;
//! 4. dispatch events by token: accept, read and hand complete commands to the
//!    connection's session, note writability;
//! 5. expire timers (idle kicks, heartbeats, HTTP deadlines, lingering closes);
//! 6. free the connections marked for closing, and tell rooms who left (held back while
//!    hang-ups keep arriving, see `fanout::Departures`);
//! 7. the cluster's turn (with `--redis`): reconnects, heartbeats, and what the turn queued
//!    for Redis written out, before the clients are written to;
//! 8. flush every dirty connection once: one `writev` per recipient per turn, however many
//!    messages it was sent during the turn (the turn's broadcasts are shared segments its
//!    queue refers to, see `out`); under load, output is held across turns up to
//!    `--coalesce-us` to send more per call (see `flush`).
//!
//! Connections are never freed during dispatch, so a slab key cannot be handed to a new
//! connection while an event for the old one is still in the batch; tokens also carry a
//! generation, and an event or timer whose generation does not match is dropped.
//!
//! The loop knows no chat rule and spells no text: bytes go to the connection's session
//! (`proto`), which calls the chat service (`host`, with `news` for what the cluster hands
//! back); what is queued goes back out here.

mod admit;
mod conn;
mod conns;
mod ctx;
mod fanout;
mod flood;
mod flush;
mod host;
mod listen;
mod mail;
mod news;
mod out;
mod per_ip;
mod storm;
mod tls;

use crate::chat::history::History;
use crate::chat::Chat;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::heap;
use crate::metrics::Metrics;
use crate::proto::api::Web;
use crate::timer::Wheel;
use conn::{ConnState, ReadOutcome};
use conns::Conns;
use fanout::{Departures, Fanout};
use flood::millis;
use flush::Pressure;
use host::State;
pub use listen::{random_node_id, reserve_all as reserve_ports, Reserved, Role, StartError};
use listen::{Accept, Listener};
use log::{debug, info, trace, warn};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::collections::HashSet;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reserved tokens, at the top of the range, far above any connection token (slab
/// key in the low 32 bits, generation in the high 32).
mod reserved {
    use mio::Token;
    /// The signal pipe.
    pub const SIGNALS: Token = Token(usize::MAX);
    /// Listener `i` has token `LISTENER_TOP - i` (at most five listeners).
    pub const LISTENER_TOP: usize = usize::MAX - 1;
    /// The Redis command, subscriber and stream reader links.
    pub const REDIS: [Token; 3] = [
        Token(usize::MAX - 8),
        Token(usize::MAX - 9),
        Token(usize::MAX - 10),
    ];
}

/// Events taken from the kernel per `poll`.
const EVENTS_CAPACITY: usize = 1024;
/// Size of the one read buffer shared by every connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes read from one connection per turn before the others get their turn.
const READ_BUDGET_BYTES: usize = 64 * 1024;
/// Read budgets spent at most on dropping what a flooder kicked while paused had sent.
const KICK_DRAIN_READS: usize = 32;
/// Connections past `--max-conns` taken in only to be answered 503 (or 429) and closed.
const TURN_AWAY_SLOTS: usize = 64;
/// Bytes written to one connection per turn before the others get their turn.
const WRITE_BUDGET_BYTES: usize = 1024 * 1024;

/// The chat server: bind with [`Server::bind`], then [`Server::run`] until a signal.
pub struct Server {
    poll: Poll,
    events: Events,
    /// Emptied once shutdown has begun.
    listeners: Vec<Listener>,
    /// The listeners' addresses as bound (kept after shutdown closes them).
    addrs: Vec<SocketAddr>,
    accept: Accept,
    signals: Signals,
    /// Everything a command can touch.
    st: State,
    /// Connections whose read budget ran out with bytes maybe left: read again next turn.
    again: Vec<Token>,
    shutdown_deadline: Option<Instant>,
    /// The read buffer shared by every connection.
    scratch: Vec<u8>,
    /// Bytes written since the heap was last trimmed, and when that was.
    trim: (u64, Instant),
    /// The TLS configuration every TLS connection shares, with TLS listeners.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections cut at `--max-outbuf-total`, for the log.
    output_cut: storm::Storm,
    /// The loop's recent load: whether output is held back to be coalesced.
    pressure: Pressure,
}

impl Server {
    /// Binds the listeners and sets up the loop.
    ///
    /// # Errors
    /// [`StartError`] when an address does not resolve or bind, or the poll or the signal
    /// handlers cannot be created.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let poll = Poll::new().map_err(StartError::Setup)?;
        let t = &config.tls;
        let tls = if t.cert.is_some() || t.key.is_some() || t.port.is_some() || t.wss_port.is_some()
        {
            Some(tls::server_config(t).map_err(StartError::Tls)?)
        } else {
            None
        };
        let listeners = listen::bind_all(&config, &poll)?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut signals, reserved::SIGNALS, Interest::READABLE)
            .map_err(StartError::Setup)?;
        let web_ports: Vec<u16> = listeners
            .iter()
            .filter(|l| l.web)
            .map(|l| l.addr.port())
            .collect();
        let (cluster, node) = match &config.cluster.redis {
            None => (None, None),
            Some(url) => {
                let addr = url.resolve().map_err(|e| StartError::Resolve {
                    addr: format!("{}:{}", url.host, url.port),
                    source: Some(e),
                })?;
                let node = config
                    .cluster
                    .node_id
                    .clone()
                    .unwrap_or_else(random_node_id);
                info!("cluster node id {node}, Redis at {addr}");
                // Offline private messages live in Redis with signed logins.
                let mail = config.access.auth_secret.as_ref().map(|_| config.offline);
                let cluster = Cluster::new(
                    addr,
                    url,
                    &node,
                    config.cluster.node_timeout,
                    reserved::REDIS,
                    config.history,
                    mail,
                );
                (Some(cluster), Some(node))
            }
        };
        let texts = config.lang.texts();
        let addrs = listeners.iter().map(|l| l.addr).collect();
        let epoch = Instant::now();
        let coalesce = config.coalesce;
        Ok(Server {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listeners,
            addrs,
            accept: Accept::default(),
            signals,
            st: State {
                conns: Conns::new(
                    (
                        config.max_outbuf_bytes,
                        config.limits.max_outbuf_total_bytes,
                    ),
                    coalesce.bytes,
                ),
                chat: Chat::new(node.as_deref()),
                cluster,
                news: Vec::new(),
                web: Web::new(&web_ports),
                metrics: Metrics::default(),
                wheel: Wheel::new(Instant::now()),
                fanout: Fanout::new(texts),
                departures: Departures::default(),
                shutting_down: false,
                local_only: (0, HashSet::new()),
                epoch,
                epoch_unix_ms: unix_now_ms(),
                history: History::new(config.history, config.max_line_bytes, config.history_bytes),
                mail: mail::Mail::new(&config, epoch),
                config,
            },
            again: Vec::new(),
            shutdown_deadline: None,
            scratch: vec![0; READ_CHUNK_BYTES],
            trim: (0, Instant::now()),
            tls,
            output_cut: storm::Storm::default(),
            pressure: Pressure::new(coalesce.wait),
        })
    }

    /// The line-protocol listener's address (the real port when asked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }

    /// Every listener's address: the line protocol's, then the WebSocket one's, then the
    /// HTTP one's, as configured.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// What the server has done so far.
    pub fn metrics(&self) -> Metrics {
        self.st.snapshot()
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
            // Nothing came and nothing was left to read: the loop would otherwise go idle.
            let idle = self.events.is_empty() && self.again.is_empty();
            self.note_hang_ups(now);
            self.dispatch(now);
            self.expire(now);
            self.close_pending(now);
            self.st.announce_departures(now);
            self.cut_backlogs();
            // Redis before the clients: a room this turn's newcomer entered is read from
            // a position Redis fixed before the newcomer hears it is online, so whatever
            // is said after that reaches it.
            self.cluster_turn(now);
            self.flush_dirty(now, idle);
            // Free what the flush just finished, so its slot counts as free for the next
            // accept; offline notices queued here are flushed next turn (and what they
            // tell Redis is written then, at once: the link's deadline).
            self.close_pending(now);
            self.report_storms(now);
            self.st.metrics.observe_loop(now.elapsed());
            if self.stopped(now) {
                return Ok(());
            }
        }
    }

    /// Whether shutdown has run its course (everyone gone, or the grace spent).
    fn stopped(&self, now: Instant) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        if !self.st.conns.is_empty() && now < deadline {
            return false;
        }
        let m = self.metrics();
        info!(
            "stopped: {} accepted, {} refused (full), {} messages in, {} out, {} idle kicks, \
             {} slow-consumer kicks, {} connections cut at the grace limit",
            m.accepted,
            m.refused_full,
            m.messages_in,
            m.messages_out,
            m.idle_kicks,
            m.slow_consumer_kicks,
            self.st.conns.len()
        );
        true
    }

    /// Runs before each poll: when the loop is about to wait after much output, gives the
    /// freed buffer memory back to the OS (see `heap`). Returns the poll timeout.
    fn housekeeping(&mut self, now: Instant) -> Option<Duration> {
        let timeout = self.next_timeout(now);
        let (written, last_trim) = self.trim;
        if timeout == Some(Duration::ZERO) || written < heap::TRIM_AFTER_BYTES {
            return timeout;
        }
        let due = last_trim + heap::TRIM_INTERVAL;
        if now < due {
            // Come back when a trim is allowed, or the loop may sleep on the garbage.
            let wait = due - now;
            return Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        heap::release_free_memory();
        self.trim = (0, now);
        timeout
    }

    /// Zero while work is left over (held output included: see `flush`), else until the
    /// earliest timer, pause or deadline.
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let conns = &self.st.conns;
        if !conns.dirty.is_empty()
            || !conns.held.is_empty()
            || !conns.closing.is_empty()
            || !self.again.is_empty()
        {
            return Some(Duration::ZERO);
        }
        [
            self.st.wheel.next_deadline(),
            self.accept.paused_until,
            self.shutdown_deadline,
            self.st.cluster.as_ref().and_then(|c| c.next_deadline()),
            self.accept.refused.next_deadline(),
            self.accept.refused_ip.next_deadline(),
            self.st.departures.next_deadline(),
            conns.slow.next_deadline(),
            self.output_cut.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    /// Marks every connection whose peer hung up in this batch, before any event runs:
    /// the notices this turn fans out then skip them (a mass departure would otherwise
    /// queue each leaver's notice to every other leaver). Marks too those that sent urgent
    /// data, whose reads may stop short (see [`conn::Conn::urgent`]).
    fn note_hang_ups(&mut self, now: Instant) {
        for event in self.events.iter() {
            if event.is_priority() {
                if let Some(conn) = self.st.conns.get_mut(event.token()) {
                    conn.urgent = true;
                }
            }
            if event.is_read_closed() || event.is_error() {
                if let Some(conn) = self.st.conns.get_mut(event.token()) {
                    conn.hung_up = true;
                    self.st.departures.hang_ups_seen(now);
                }
            }
        }
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
                reserved::SIGNALS => self.on_signals(now),
                Token(t) if t > reserved::LISTENER_TOP - self.listeners.len() => {
                    self.on_listener(reserved::LISTENER_TOP - t, now)
                }
                token if self.st.cluster.as_ref().is_some_and(|c| c.owns(token)) => {
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
        if self.accept.paused_until.is_some_and(|t| now >= t) {
            self.accept.paused_until = None;
            for i in 0..self.listeners.len() {
                self.on_listener(i, now);
            }
        }
        self.st.apply_news(now);
    }

    /// Reads until the socket is drained or the budget is spent, handing every chunk to
    /// the connection's session. Input after EOF, a kick or shutdown is read and dropped,
    /// so the kernel does not answer our final close with a reset that could destroy owed
    /// output.
    fn on_readable(&mut self, token: Token, now: Instant) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut budget = READ_BUDGET_BYTES;
        while let Some(conn) = self.st.conns.get_mut(token) {
            // A throttled flooder is not read: its own window fills (see `flood`). Once
            // kicked, what it sent meanwhile is read and dropped like any input after a kick.
            let paused = conn.flood.throttled && conn.state == ConnState::Open;
            if conn.state == ConnState::Closing || paused {
                break;
            }
            match conn.read_some(&mut scratch) {
                outcome @ (ReadOutcome::Data(n) | ReadOutcome::Last(n)) => {
                    trace!("{token:?} read {n} bytes");
                    self.st.metrics.bytes_in += n as u64;
                    if conn.state == ConnState::Open {
                        conn.last_active = now;
                        // The first plaintext may come with the end of a TLS handshake.
                        self.enter_line_user(token, now);
                        if let Some(chunk) = scratch.get_mut(..n) {
                            self.take_input(token, chunk, now);
                        }
                    }
                    if n >= budget {
                        self.again.push(token);
                        break;
                    }
                    budget -= n;
                    // Input after a kick or EOF is read on to `WouldBlock` before the close:
                    // the short read reopened the sender's window, more is on its way.
                    if let Some(conn) = self.st.conns.get_mut(token) {
                        if matches!(outcome, ReadOutcome::Last(_)) && conn.state == ConnState::Open
                        {
                            conn.flood.drained();
                            break;
                        }
                    }
                }
                ReadOutcome::WouldBlock => {
                    conn.flood.drained();
                    break;
                }
                ReadOutcome::Eof => {
                    debug!("{conn} sent EOF");
                    self.st.finish(token, now);
                    break;
                }
                ReadOutcome::Failed(e) => {
                    debug!("{conn} read failed: {e}");
                    self.st.conns.close_now(token);
                    break;
                }
            }
        }
        self.scratch = scratch;
        // A TLS handshake answers from inside the read, and completes there.
        if self
            .st
            .conns
            .get(token)
            .is_some_and(|c| c.transport_wants_write())
        {
            self.st.conns.mark_dirty(token);
        }
        self.enter_line_user(token, now);
    }

    /// Feeds `chunk` to the session after any partial command kept from earlier reads;
    /// keeps what is left of a partial command for the next read.
    fn take_input(&mut self, token: Token, chunk: &mut [u8], now: Instant) {
        let Some(conn) = self.st.conns.get_mut(token) else {
            return;
        };
        let mut buf = std::mem::take(&mut conn.inbuf);
        let rest: Vec<u8> = if buf.is_empty() {
            // The common case: commands run straight from the shared read buffer and only
            // a trailing partial one is copied.
            let used = self
                .st
                .with_session(token, now, |s, ctx| s.feed(chunk, ctx))
                .unwrap_or(chunk.len());
            chunk.get(used..).unwrap_or_default().to_vec()
        } else {
            buf.extend_from_slice(chunk);
            let used = self
                .st
                .with_session(token, now, |s, ctx| s.feed(&mut buf, ctx))
                .unwrap_or(buf.len())
                .min(buf.len());
            buf.drain(..used);
            buf
        };
        if let Some(conn) = self.st.conns.get_mut(token) {
            // An idle connection holds no buffer.
            conn.inbuf = if rest.is_empty() || conn.state != ConnState::Open {
                Vec::new()
            } else {
                rest
            };
        }
    }

    /// Notes that a blocked connection can take output again.
    fn on_writable(&mut self, token: Token) {
        let waiting = |c: &conn::Conn| c.pending() > 0 || c.transport_wants_write();
        if self.st.conns.get(token).is_some_and(waiting) {
            self.st.conns.mark_dirty(token);
        }
    }

    /// Fires due timers. An entry is only a reminder: the connection's own state says
    /// whether it is stale (gone or closing), early (activity since: schedule again), or due.
    fn expire(&mut self, now: Instant) {
        let mut fired = Vec::new();
        self.st.wheel.poll(now, &mut fired);
        for token in fired {
            if self.resume_if_refilled(token, now) {
                continue;
            }
            let Some(deadline) = self.st.deadline(token) else {
                continue;
            };
            if deadline > now {
                self.st.wheel.schedule(deadline, token);
                continue;
            }
            match self.st.conns.get(token).map(|c| (c.state, c.established())) {
                Some((ConnState::Open, false)) => {
                    debug!("{token:?} did not finish its TLS handshake in time");
                    self.st.conns.close_now(token);
                }
                Some((ConnState::Open, true)) => {
                    self.st.with_session(token, now, |s, ctx| s.on_timeout(ctx));
                }
                Some(_) => {
                    debug!("{token:?} did not take its last output in time");
                    self.st.conns.close_now(token);
                }
                None => {}
            }
        }
    }

    /// A throttled connection's timer: once a command's allowance is back, runs what it
    /// sent meanwhile and reads on; until then, waits again. False for any other
    /// connection.
    fn resume_if_refilled(&mut self, token: Token, now: Instant) -> bool {
        let rule = self.st.flood_rule();
        let now_ms = millis(self.st.epoch, now);
        let Some(conn) = self.st.conns.get_mut(token) else {
            return false;
        };
        if !conn.flood.throttled || conn.state != ConnState::Open {
            return false;
        }
        let wait = conn.flood.refill_in(rule, now_ms);
        if wait > 0 {
            self.st
                .wheel
                .schedule(now + Duration::from_millis(wait), token);
            return true;
        }
        conn.flood.throttled = false;
        self.take_input(token, &mut [], now);
        match self
            .st
            .conns
            .get(token)
            .map(|c| (c.state, c.flood.throttled))
        {
            Some((ConnState::Open, false)) => {
                // What waited in the socket meanwhile: its edge will not fire again.
                self.again.push(token);
                self.st.schedule(token);
            }
            Some((ConnState::CloseAfterFlush, _)) => {
                // Kicked for flooding: read and drop what still waits in the socket now,
                // before the close this turn, or the kernel answers the close with a reset
                // and the kick's line may be lost. A paused socket holds about its receive
                // buffer, so a bounded number of budgets empties it.
                for _ in 0..KICK_DRAIN_READS {
                    self.on_readable(token, now);
                    if self.again.last() != Some(&token) {
                        break;
                    }
                    self.again.pop();
                }
            }
            _ => {}
        }
        true
    }

    /// Frees every connection marked for closing. Offline notices queued here may push a
    /// slow reader over its limit, which adds it to the list; the loop takes it too.
    fn close_pending(&mut self, now: Instant) {
        while let Some(token) = self.st.conns.closing.pop() {
            self.st.leave(token, now);
            if let Some(mut conn) = self.st.conns.remove(token) {
                let _ = self.poll.registry().deregister(&mut conn.socket);
                let per_minute = self.st.config.limits.conn_rate_per_ip;
                self.accept.per_ip.release(token, now, per_minute);
                debug!("{conn} closed");
            }
        }
    }

    /// Readiness of a Redis socket.
    fn on_redis(&mut self, token: Token, now: Instant) {
        let st = &mut self.st;
        if let Some(cluster) = st.cluster.as_mut() {
            let registry = self.poll.registry();
            cluster.on_ready(
                token,
                registry,
                now,
                &mut self.scratch,
                &mut st.chat,
                &mut st.news,
            );
        }
        st.apply_news(now);
    }

    /// Once per turn: the cluster's timers, then what the turn queued for Redis.
    fn cluster_turn(&mut self, now: Instant) {
        let st = &mut self.st;
        if let Some(cluster) = st.cluster.as_mut() {
            cluster.turn(self.poll.registry(), now, &mut st.chat, &mut st.news);
        }
        st.apply_news(now);
    }

    /// Keeps all unsent output within `--max-outbuf-total` (see
    /// [`Conns::cut_largest_backlogs`]).
    fn cut_backlogs(&mut self) {
        let cut = self.st.conns.cut_largest_backlogs();
        if cut > 0 {
            self.st.metrics.guard.output_cut += cut as u64;
            self.output_cut.hit_n(cut as u64);
        }
    }

    /// One warning per episode of refused connections or slow readers cut off.
    fn report_storms(&mut self, now: Instant) {
        if let Some(n) = self.accept.refused.tick(now) {
            let max = self.st.config.max_conns;
            warn!("refused {n} connections: max-conns {max} reached");
        }
        if let Some(n) = self.accept.refused_ip.tick(now) {
            warn!("refused {n} connections: too many from one address (--max-conns-per-ip, --conn-rate-per-ip)");
        }
        if let Some(n) = self.output_cut.tick(now) {
            let max = self.st.config.limits.max_outbuf_total_bytes;
            warn!("disconnected {n} slow readers: all unsent output passed {max} bytes");
        }
        if let Some(n) = self.st.conns.slow.tick(now) {
            let max = self.st.config.max_outbuf_bytes;
            warn!("disconnected {n} slow readers: over {max} bytes unsent");
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
            self.st.chat.len(),
            self.st.config.shutdown_grace
        );
        self.shutdown_deadline = Some(now + self.st.config.shutdown_grace);
        self.st.shutting_down = true;
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        self.accept.paused_until = None;
        for token in self.st.conns.tokens() {
            if self
                .st
                .conns
                .get(token)
                .is_some_and(|c| c.state == ConnState::Open)
            {
                self.st
                    .with_session(token, now, |s, ctx| s.on_shutdown(ctx));
            }
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch, read once at start: a message's
/// time is counted from here with the loop's monotonic clock (see `State::unix_ms`).
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
