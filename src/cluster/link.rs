//! The Redis link: three non-blocking connections to one Redis, registered in the loop's
//! own `Poll` under reserved tokens, with their own buffers. No thread, no runtime, no
//! blocking call: a Redis that is slow, stalls or goes away can delay cross-server
//! features, never the loop.
//!
//! - The *command* link pipelines commands; replies come back in order and are matched to
//!   what asked for them through a FIFO of asks (`A`, the caller's type: this module knows
//!   nothing of chat).
//! - The *subscriber* link holds the `SUBSCRIBE` and yields published messages.
//! - The *reader* link is a second command link for commands that block in Redis
//!   (`XREAD BLOCK`): on the command link they would hold every later reply back. Its
//!   replies are matched the same way, and each command says how long Redis may hold it.
//!
//! RESP is encoded and decoded by the redis-protocol crate. Faults are handled in one
//! place, `Backplane::fail`: on an I/O error, an output buffer over its bound, or a reply
//! later than [`REPLY_TIMEOUT`] (plus the time a blocking command may wait), all links are
//! dropped, every pending ask is handed back as [`Event::Failed`], and a reconnect is
//! tried after an exponential backoff. The outage is logged once at warn, the recovery once
//! at info.
//!
//! With credentials (`redis://user:password@...`), every (re)connect starts every link with
//! `AUTH [user] password`, before `SELECT` and `SUBSCRIBE`. Redis refusing it (or asking for
//! a password none was given for) is a fault like any other, retried with the same backoff,
//! and logged at warn as `Redis refused the password: WRONGPASS ...` once per outage, even
//! if the outage was first logged for another reason.

use crate::config::RedisAuth;
use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};
use std::collections::VecDeque;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A reply later than this means Redis has stalled: the link is dropped and retried.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Unsent commands past which Redis counts as stalled (the same cap as a slow client).
pub const MAX_OUT_BYTES: usize = 8 * 1024 * 1024;

/// What the link has to tell the loop.
#[derive(Debug)]
pub enum Event<A> {
    /// Every link is connected (again): re-announce and resubscribe state.
    Up,
    /// The link was lost: what is known of other servers is stale.
    Down,
    /// The reply to the command asked as `A`.
    Reply(A, OwnedFrame),
    /// The command asked as `A` will get no reply: Redis went away or stalled.
    Failed(A),
    /// A message published on `channel`.
    Message {
        /// The channel.
        channel: Vec<u8>,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// Deepest array nesting accepted in a reply (ours are at most two deep).
const MAX_REPLY_NESTING: usize = 32;

/// How deep the arrays of the first reply at the front of `buf` nest, as far as it has
/// arrived, counted without recursion (RESP2: `*N` arrays, `$N` bulk strings, one-line
/// `+`, `-`, `:`). Stops counting past [`MAX_REPLY_NESTING`].
fn nesting(buf: &[u8]) -> usize {
    let mut pending: Vec<i64> = Vec::new(); // elements still due at each open level
    let mut deepest = 0;
    let mut at = 0;
    while let Some(end) = buf
        .get(at..)
        .and_then(|r| r.windows(2).position(|w| w == b"\r\n"))
    {
        let line = buf.get(at..at + end).unwrap_or_default();
        at += end + 2;
        let count = || {
            std::str::from_utf8(line.get(1..).unwrap_or_default())
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(-1)
        };
        match line.first() {
            Some(b'*') if count() > 0 => {
                pending.push(count());
                deepest = deepest.max(pending.len());
                if deepest > MAX_REPLY_NESTING {
                    return deepest;
                }
                continue;
            }
            Some(b'$') if count() >= 0 => at += usize::try_from(count()).unwrap_or(0) + 2,
            _ => {}
        }
        // One element done: close every level it completes.
        while let Some(left) = pending.last_mut() {
            *left -= 1;
            if *left > 0 {
                break;
            }
            pending.pop();
        }
        if pending.is_empty() {
            return deepest;
        }
    }
    deepest
}

/// One socket to Redis with its buffers, and (command and reader links) what asked for each
/// reply still due, in order, with the time by which it is due.
#[derive(Debug)]
struct Link<A> {
    socket: Option<TcpStream>,
    connected: bool,
    /// `AUTH` was sent first: the first reply on this socket is its answer.
    awaiting_auth: bool,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// One entry per command in flight; `None` ignores the reply.
    pending: VecDeque<(Option<A>, Instant)>,
}

impl<A> Default for Link<A> {
    fn default() -> Self {
        Link {
            socket: None,
            connected: false,
            awaiting_auth: false,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            pending: VecDeque::new(),
        }
    }
}

impl<A> Link<A> {
    /// Writes what it can; false on an error.
    fn flush(&mut self) -> bool {
        let Some(socket) = self.socket.as_mut() else {
            return true;
        };
        if !self.connected {
            return true;
        }
        let mut written = 0;
        while written < self.outbuf.len() {
            match socket.write(self.outbuf.get(written..).unwrap_or_default()) {
                Ok(0) => return false,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.outbuf.drain(..written);
        true
    }

    /// Reads everything available into `inbuf`; false on EOF or an error.
    fn fill(&mut self, scratch: &mut [u8]) -> bool {
        let Some(socket) = self.socket.as_mut() else {
            return true;
        };
        loop {
            match socket.read(scratch) {
                Ok(0) => return false,
                Ok(n) => self
                    .inbuf
                    .extend_from_slice(scratch.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Whether a connect in progress has completed; `Err` if it failed.
    fn check_connected(&mut self) -> Result<(), ()> {
        let Some(socket) = self.socket.as_ref() else {
            return Err(());
        };
        if self.connected {
            return Ok(());
        }
        match socket.take_error() {
            Ok(None) => {}
            _ => return Err(()),
        }
        match socket.peer_addr() {
            Ok(_) => {
                self.connected = true;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(()),
            Err(_) => Err(()),
        }
    }

    /// Queues one command whose reply is due by `due`.
    fn push(&mut self, args: &[&[u8]], ask: Option<A>, due: Instant) {
        push_command(&mut self.outbuf, args);
        self.pending.push_back((ask, due));
    }
}

/// Why decoding what Redis sent ended the link.
enum Fault {
    /// Not RESP, or a reply nobody asked for.
    Garbled(&'static str),
    /// Redis refused the password, wants one, or refused `SUBSCRIBE`.
    Refused(String),
}

/// Counters for the metrics page.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkStats {
    /// Commands sent.
    pub commands_out: u64,
    /// Replies and messages received.
    pub messages_in: u64,
    /// Times the link came back after an outage.
    pub reconnects: u64,
}

/// Which of the three sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Cmd,
    Sub,
    Read,
}

/// The link to Redis, generic over what the caller attaches to each command.
#[derive(Debug)]
pub struct Backplane<A> {
    addr: SocketAddr,
    db: u32,
    /// Sent with `AUTH` first on every link on every connect.
    auth: Option<RedisAuth>,
    /// The command, subscriber and reader links' tokens.
    tokens: [Token; 3],
    cmd: Link<A>,
    sub: Link<A>,
    read: Link<A>,
    /// Channels the subscriber link subscribes to on every (re)connect.
    channels: Vec<Vec<u8>>,
    up: bool,
    /// Subscriptions Redis has confirmed on the current subscriber link.
    subscribed: usize,
    /// Set while down: when to try again, and the wait after that (doubling).
    retry: (Option<Instant>, Duration),
    /// Whether the current outage has been logged.
    outage_logged: bool,
    /// Whether a refusal (of the password, say) has been logged in the current outage.
    refusal_logged: bool,
    ever_up: bool,
    stats: LinkStats,
    /// Since when commands wait in an output buffer: the loop must come back at once to
    /// write them (a flush that could not write them all waits for writability instead).
    unsent_since: Option<Instant>,
}

impl<A> Backplane<A> {
    /// A link to Redis at `addr` (database `db`, logging in with `auth` if any) using three
    /// reserved tokens (command, subscriber, reader); it connects on the first
    /// [`Backplane::tick`].
    pub fn new(
        addr: SocketAddr,
        db: u32,
        auth: Option<RedisAuth>,
        tokens: [Token; 3],
        channels: Vec<Vec<u8>>,
    ) -> Self {
        Backplane {
            addr,
            db,
            auth,
            tokens,
            cmd: Link::default(),
            sub: Link::default(),
            read: Link::default(),
            channels,
            up: false,
            subscribed: 0,
            retry: (Some(Instant::now()), MIN_BACKOFF),
            outage_logged: false,
            refusal_logged: false,
            ever_up: false,
            stats: LinkStats::default(),
            unsent_since: None,
        }
    }

    /// Whether every link is connected and commands will be answered.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether `token` is one of the link's.
    pub fn owns(&self, token: Token) -> bool {
        self.tokens.contains(&token)
    }

    /// Commands waiting for a reply.
    pub fn pending(&self) -> usize {
        self.cmd.pending.len() + self.read.pending.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Queues one command (pipelined); its reply comes back as an [`Event`] carrying `ask`.
    /// Returns false, queuing nothing, while Redis is down.
    pub fn command(&mut self, args: &[&[u8]], ask: Option<A>, now: Instant) -> bool {
        if !self.up {
            return false;
        }
        self.cmd.push(args, ask, now + REPLY_TIMEOUT);
        self.stats.commands_out += 1;
        self.unsent_since.get_or_insert(now);
        true
    }

    /// Queues one command on the reader link, which Redis may hold for up to `wait` before
    /// it answers (`XREAD BLOCK`); like [`Backplane::command`] otherwise.
    pub fn read(&mut self, args: &[&[u8]], ask: Option<A>, wait: Duration, now: Instant) -> bool {
        if !self.up {
            return false;
        }
        self.read.push(args, ask, now + wait + REPLY_TIMEOUT);
        self.stats.commands_out += 1;
        self.unsent_since.get_or_insert(now);
        true
    }

    /// The earliest time a reply is due.
    fn reply_due(&self) -> Option<Instant> {
        [self.cmd.pending.front(), self.read.pending.front()]
            .into_iter()
            .flatten()
            .map(|(_, due)| *due)
            .min()
    }

    /// When [`Backplane::tick`] or [`Backplane::flush`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retry.0, self.reply_due(), self.unsent_since]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reconnects when the backoff has passed, and gives up on a stalled Redis.
    pub fn tick(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event<A>>) {
        if self.retry.0.is_some_and(|t| now >= t) {
            self.retry.0 = None;
            self.connect(registry, now, out);
        }
        if self.reply_due().is_some_and(|due| now >= due) {
            self.fail(registry, now, "Redis did not answer in time", out);
        }
    }

    fn which(&self, token: Token) -> Which {
        match self.tokens.iter().position(|t| *t == token) {
            Some(0) => Which::Cmd,
            Some(1) => Which::Sub,
            _ => Which::Read,
        }
    }

    fn link(&mut self, which: Which) -> &mut Link<A> {
        match which {
            Which::Cmd => &mut self.cmd,
            Which::Sub => &mut self.sub,
            Which::Read => &mut self.read,
        }
    }

    /// Handles readiness of one of the link's sockets.
    pub fn on_ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        scratch: &mut [u8],
        out: &mut Vec<Event<A>>,
    ) {
        let which = self.which(token);
        let link = self.link(which);
        if link.check_connected().is_err() {
            return self.fail(registry, now, "cannot connect to Redis", out);
        }
        if !link.fill(scratch) {
            return self.fail(registry, now, "Redis closed the connection", out);
        }
        match self.decode(which, out) {
            Ok(()) => {}
            Err(Fault::Garbled(why)) => return self.fail(registry, now, why, out),
            Err(Fault::Refused(why)) => return self.refused(registry, now, &why, out),
        }
        // Up only once every SUBSCRIBE is confirmed: what the caller reads from Redis
        // after `Up` is then never older than the first event it will receive.
        if !self.up
            && self.cmd.connected
            && self.read.connected
            && self.subscribed == self.channels.len()
        {
            self.up = true;
            self.retry.1 = MIN_BACKOFF;
            if self.outage_logged {
                info!("Redis at {} is back", self.addr);
                self.stats.reconnects += 1;
            } else if !self.ever_up {
                info!("connected to Redis at {}", self.addr);
            }
            self.ever_up = true;
            self.outage_logged = false;
            self.refusal_logged = false;
            out.push(Event::Up);
        }
        self.flush_all(registry, now, out);
    }

    /// Writes queued commands; called once per loop turn after commands were queued.
    pub fn flush(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event<A>>) {
        if self.up {
            self.flush_all(registry, now, out);
        }
    }

    fn flush_all(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event<A>>) {
        if !self.cmd.flush() || !self.sub.flush() || !self.read.flush() {
            return self.fail(registry, now, "cannot write to Redis", out);
        }
        // What is left waits for writability, which wakes the loop by itself.
        self.unsent_since = None;
        if self.cmd.outbuf.len() > MAX_OUT_BYTES || self.read.outbuf.len() > MAX_OUT_BYTES {
            self.fail(registry, now, "Redis is not reading", out);
        }
    }

    fn decode(&mut self, which: Which, out: &mut Vec<Event<A>>) -> Result<(), Fault> {
        let mut used = 0;
        loop {
            let link = self.link(which);
            let rest = link.inbuf.get(used..).unwrap_or_default();
            // The decoder recurses once per nested array: a reply nested thousands deep
            // (which no command of ours asks for) would overflow the stack. Refuse it.
            if nesting(rest) > MAX_REPLY_NESTING {
                return Err(Fault::Garbled("Redis sent a reply nested too deep"));
            }
            let (frame, n) = match decode(rest) {
                Ok(Some(done)) => done,
                Ok(None) => break,
                Err(_) => return Err(Fault::Garbled("Redis sent something that is not RESP")),
            };
            used += n;
            self.stats.messages_in += 1;
            let link = self.link(which);
            if std::mem::take(&mut link.awaiting_auth) {
                link.pending.pop_front(); // AUTH's own entry, if this link has a FIFO
                match frame {
                    OwnedFrame::Error(msg) => {
                        return Err(Fault::Refused(format!("Redis refused the password: {msg}")))
                    }
                    _ => continue,
                }
            }
            if which != Which::Sub {
                let Some((ask, _)) = link.pending.pop_front() else {
                    return Err(Fault::Garbled("Redis sent a reply nobody asked for"));
                };
                if let Some(ask) = ask {
                    out.push(Event::Reply(ask, frame));
                }
            } else if let OwnedFrame::Error(msg) = frame {
                // The only command on this link is SUBSCRIBE: it was refused.
                return Err(Fault::Refused(if msg.starts_with("NOAUTH") {
                    format!(
                        "Redis wants a password, and --redis gives none \
                         (redis://[user:password@]HOST[:PORT][/DB]): {msg}"
                    )
                } else {
                    format!("Redis refused SUBSCRIBE: {msg}")
                }));
            } else if let OwnedFrame::Array(mut parts) = frame {
                // ["message", channel, payload], or ["subscribe", channel, count].
                let kind = match parts.first() {
                    Some(OwnedFrame::BulkString(k)) => k.as_slice(),
                    _ => b"",
                };
                if kind == b"subscribe" {
                    self.subscribed += 1;
                    continue;
                }
                if parts.len() == 3 && kind == b"message" {
                    let payload = parts.pop();
                    let channel = parts.pop();
                    if let (
                        Some(OwnedFrame::BulkString(channel)),
                        Some(OwnedFrame::BulkString(payload)),
                    ) = (channel, payload)
                    {
                        out.push(Event::Message { channel, payload });
                    }
                }
            }
        }
        self.link(which).inbuf.drain(..used);
        Ok(())
    }

    /// Opens the three sockets and queues the first commands (AUTH, SELECT, SUBSCRIBE).
    fn connect(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event<A>>) {
        for (which, token) in [Which::Cmd, Which::Sub, Which::Read]
            .into_iter()
            .zip(self.tokens)
        {
            let opened = TcpStream::connect(self.addr).and_then(|mut socket| {
                let _ = socket.set_nodelay(true);
                registry.register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
                Ok(socket)
            });
            let link = self.link(which);
            *link = Link::default();
            match opened {
                Ok(socket) => link.socket = Some(socket),
                Err(_) => return self.fail(registry, now, "cannot connect to Redis", out),
            }
        }
        // Queued before the link is up, so they go first whatever the caller sends; AUTH
        // goes before anything else on every link. The subscriber link has no FIFO: its
        // AUTH answer is recognised by `awaiting_auth` alone.
        let due = now + REPLY_TIMEOUT;
        if let Some(auth) = &self.auth {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            args.extend(auth.user.as_deref().map(str::as_bytes));
            args.push(auth.password.as_bytes());
            for link in [&mut self.cmd, &mut self.read] {
                link.push(&args, None, due);
                link.awaiting_auth = true;
            }
            push_command(&mut self.sub.outbuf, &args);
            self.sub.awaiting_auth = true;
        }
        if self.db != 0 {
            let db = self.db.to_string();
            for link in [&mut self.cmd, &mut self.read] {
                link.push(&[b"SELECT", db.as_bytes()], None, due);
            }
        }
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(self.channels.iter().map(|c| c.as_slice()));
        push_command(&mut self.sub.outbuf, &args);
    }

    /// Like [`Backplane::fail`] for Redis refusing us (a wrong password, say): logged at
    /// warn once per outage even if the outage was logged already for another reason
    /// (Redis not up yet when this server started), since the operator must act on it.
    fn refused(&mut self, registry: &Registry, now: Instant, why: &str, out: &mut Vec<Event<A>>) {
        if !self.refusal_logged {
            self.refusal_logged = true;
            self.outage_logged = false;
        }
        self.fail(registry, now, why, out);
    }

    /// Drops every link, hands back every pending ask, and schedules a reconnect.
    fn fail(&mut self, registry: &Registry, now: Instant, why: &str, out: &mut Vec<Event<A>>) {
        for link in [&mut self.cmd, &mut self.sub, &mut self.read] {
            if let Some(mut socket) = link.socket.take() {
                let _ = registry.deregister(&mut socket);
            }
            for (ask, _) in link.pending.drain(..) {
                if let Some(ask) = ask {
                    out.push(Event::Failed(ask));
                }
            }
            *link = Link::default();
        }
        if self.up {
            out.push(Event::Down);
        }
        if !self.outage_logged {
            warn!(
                "{why} ({}): cross-server features are unavailable; retrying",
                self.addr
            );
            self.outage_logged = true;
        } else {
            debug!("{why} ({}); retrying in {:?}", self.addr, self.retry.1);
        }
        self.up = false;
        self.subscribed = 0;
        self.unsent_since = None;
        self.retry = (
            Some(now + self.retry.1),
            (self.retry.1 * 2).min(MAX_BACKOFF),
        );
    }
}

/// Appends one command as a RESP array of bulk strings.
fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let parts: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    let frame = BorrowedFrame::Array(&parts);
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    // The buffer was sized by the codec itself, so encoding cannot run out of room.
    let written =
        encode_borrowed(out.get_mut(start..).unwrap_or_default(), &frame, false).unwrap_or(0);
    out.truncate(start + written);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_nesting_is_counted_without_recursion() {
        assert_eq!(nesting(b"+OK\r\n"), 0);
        assert_eq!(nesting(b"*2\r\n$3\r\nfoo\r\n*1\r\n:1\r\n"), 2);
        assert_eq!(nesting(b"*1\r\n*1\r\n"), 2); // not all arrived yet
        assert_eq!(nesting(b"*0\r\n*5\r\n"), 0); // the next reply is not this one's
        let deep = b"*1\r\n".repeat(100_000);
        assert!(nesting(&deep) > MAX_REPLY_NESTING);
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        push_command(&mut out, &[b"SET", b"k", b"v\r\n", b"NX"]);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\nNX\r\n"
        );
    }
}
