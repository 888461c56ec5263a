//! Every connection in one `Slab`, with the turn's output bookkeeping: which connections
//! have output to flush this turn (dirty), which hold theirs back to coalesce it (held, see
//! `flush`), which are to be freed, and the limits on what may wait.
//!
//! Tokens carry a generation beside the slab key, so an event or timer for a freed
//! connection whose key was reused is recognised and dropped; connections are freed only in
//! the loop's close phase, never during dispatch.

use super::conn::{Conn, ConnState, Listed, OverLimit};
use super::flood::Bucket;
use super::out::Shared;
use super::storm::Storm;
use crate::proto::{Family, Session};
use log::debug;
use mio::net::TcpStream;
use mio::Token;
use rustls::ServerConnection;
use slab::Slab;
use std::time::Instant;

/// The generation of a connection token (its high 32 bits).
pub fn token_generation(token: Token) -> u32 {
    (token.0 >> 32) as u32
}

fn token_key(token: Token) -> usize {
    token.0 & 0xFFFF_FFFF
}

/// The live connection `token` names in `slab` (a free function, so the caller may go on
/// using the other fields of [`Conns`] meanwhile).
fn slot(slab: &mut Slab<Conn>, token: Token) -> Option<&mut Conn> {
    let generation = token_generation(token);
    slab.get_mut(token_key(token))
        .filter(|c| c.generation == generation)
}

fn conn_token(key: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | key)
}

/// The connections and what the turn owes them.
#[derive(Debug)]
pub struct Conns {
    slab: Slab<Conn>,
    next_generation: u32,
    /// Connections with output to flush this turn, each listed once (`Conn::listed`).
    pub dirty: Vec<Token>,
    /// Connections whose output is held back to be coalesced; an entry counts only while
    /// its connection is `Listed::Held` (one promoted to dirty leaves a stale entry).
    pub held: Vec<Token>,
    /// When the held output must go out: the coalescing bound after the earliest of it
    /// was held.
    pub held_until: Option<Instant>,
    /// Held output this large goes out at once, deadline or not (`--coalesce-bytes`).
    coalesce_bytes: usize,
    /// Connections to free in the close phase.
    pub closing: Vec<Token>,
    /// The per-connection output limit, `--max-outbuf`, and the limit on all of it
    /// together, `--max-outbuf-total`.
    max_outbuf_bytes: (usize, usize),
    /// Unsent output of every connection together.
    pub pending_total: usize,
    /// Messages queued to recipients.
    pub messages_out: u64,
    /// Slow readers disconnected at the limit.
    pub slow_consumer_kicks: u64,
    /// The same, grouped into episodes for the log.
    pub slow: Storm,
    /// Open connections by protocol family.
    families: [usize; 3],
}

impl Conns {
    /// No connections yet; each may have `max_outbuf_bytes.0` waiting, all together
    /// `max_outbuf_bytes.1`; held output goes out once it reaches `coalesce_bytes`.
    pub fn new(max_outbuf_bytes: (usize, usize), coalesce_bytes: usize) -> Self {
        Conns {
            slab: Slab::new(),
            next_generation: 0,
            dirty: Vec::new(),
            held: Vec::new(),
            held_until: None,
            coalesce_bytes,
            closing: Vec::new(),
            max_outbuf_bytes,
            pending_total: 0,
            messages_out: 0,
            slow_consumer_kicks: 0,
            slow: Storm::default(),
            families: [0; 3],
        }
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The token the next [`Conns::insert`] will use.
    pub fn next_token(&mut self) -> Token {
        conn_token(self.slab.vacant_key(), self.next_generation)
    }

    /// Holds a new connection under [`Conns::next_token`].
    pub fn insert(
        &mut self,
        socket: TcpStream,
        session: Session,
        transport: (Option<Box<ServerConnection>>, Bucket),
        now: Instant,
    ) -> Token {
        let token = self.next_token();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        self.count(session.family(), true);
        self.slab
            .insert(Conn::new(socket, generation, session, transport, now));
        token
    }

    /// Lets go of a connection (the close phase); `None` for a stale token.
    pub fn remove(&mut self, token: Token) -> Option<Conn> {
        self.get(token)?;
        let conn = self.slab.try_remove(token_key(token))?;
        self.count(conn.session.family(), false);
        Some(conn)
    }

    /// Notes that a connection changed protocol (an HTTP upgrade).
    pub fn recount(&mut self, was: Family, now: Family) {
        if was != now {
            self.count(was, false);
            self.count(now, true);
        }
    }

    fn count(&mut self, family: Family, up: bool) {
        if let Some(n) = self.families.get_mut(family as usize) {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// Connections by family: line, WebSocket, HTTP.
    pub fn families(&self) -> (usize, usize, usize) {
        let [line, ws, http] = self.families;
        (line, ws, http)
    }

    /// The live connection `token` names, or `None` for a stale or reserved token.
    pub fn get(&self, token: Token) -> Option<&Conn> {
        let generation = token_generation(token);
        self.slab
            .get(token_key(token))
            .filter(|c| c.generation == generation)
    }

    /// The live connection `token` names, mutably.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut Conn> {
        slot(&mut self.slab, token)
    }

    /// Every connection's token, for shutdown and the Redis re-announce.
    pub fn tokens(&self) -> Vec<Token> {
        self.slab
            .iter()
            .map(|(key, c)| conn_token(key, c.generation))
            .collect()
    }

    /// Queues `bytes`, for this connection alone, to an open connection; see
    /// [`Conns::queue_shared`].
    pub fn queue(&mut self, token: Token, bytes: &[u8]) {
        self.queue_with(token, bytes.len(), |conn, limit| conn.queue(bytes, limit));
    }

    /// Queues a fan-out's shared bytes to an open connection; a reader too slow for its
    /// limit is marked for closing. Output for a connection already on its way out is
    /// dropped: what it is owed was queued before it began to close. Held output that
    /// reaches `--coalesce-bytes` moves to the dirty list, to go out this turn.
    pub fn queue_shared(&mut self, token: Token, shared: Shared<'_>) {
        self.queue_with(token, shared.bytes.len(), |conn, limit| {
            conn.queue_shared(shared, limit)
        });
    }

    fn queue_with(
        &mut self,
        token: Token,
        len: usize,
        put: impl FnOnce(&mut Conn, usize) -> Result<(), OverLimit>,
    ) {
        let limit = self.max_outbuf_bytes.0;
        let Some(conn) = slot(&mut self.slab, token) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        match put(conn, limit) {
            Ok(()) => {
                self.messages_out += 1;
                self.pending_total += len;
                let full = conn.pending() >= self.coalesce_bytes;
                if conn.listed == Listed::No || (conn.listed == Listed::Held && full) {
                    conn.listed = Listed::Dirty;
                    self.dirty.push(token);
                }
            }
            Err(OverLimit) => {
                debug!(
                    "{conn} is not reading: {} bytes unsent, disconnecting",
                    conn.pending()
                );
                self.slow_consumer_kicks += 1;
                self.slow.hit();
                self.close_now(token);
            }
        }
    }

    /// Puts a connection on the dirty list (output to write, or a close to complete),
    /// held output included: a close or a writable socket does not wait.
    pub fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = slot(&mut self.slab, token) {
            if conn.listed != Listed::Dirty {
                conn.listed = Listed::Dirty;
                self.dirty.push(token);
            }
        }
    }

    /// Holds a dirty connection's output back until the held list's deadline (`until`, if
    /// none is set yet).
    pub fn hold(&mut self, token: Token, until: Instant) {
        if let Some(conn) = slot(&mut self.slab, token) {
            conn.listed = Listed::Held;
            self.held.push(token);
            self.held_until.get_or_insert(until);
        }
    }

    /// Notes `written` bytes of some connection's output gone to its socket.
    pub fn wrote(&mut self, written: usize) {
        self.pending_total = self.pending_total.saturating_sub(written);
    }

    /// When all unsent output together passes `--max-outbuf-total`, disconnects the
    /// largest backlogs (slow consumers) first until it fits; returns how many.
    pub fn cut_largest_backlogs(&mut self) -> usize {
        let max_total = self.max_outbuf_bytes.1;
        if self.pending_total <= max_total {
            return 0;
        }
        let mut backlogs: Vec<(usize, Token)> = self
            .slab
            .iter()
            .filter(|(_, c)| c.state != ConnState::Closing && c.pending() > 0)
            .map(|(key, c)| (c.pending(), conn_token(key, c.generation)))
            .collect();
        backlogs.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
        let mut cut = 0;
        for (_, token) in backlogs {
            if self.pending_total <= max_total {
                break;
            }
            self.close_now(token);
            cut += 1;
        }
        cut
    }

    /// Marks a connection to be freed this turn, dropping its output.
    pub fn close_now(&mut self, token: Token) {
        let Some(conn) = slot(&mut self.slab, token) else {
            return;
        };
        if conn.state != ConnState::Closing {
            conn.state = ConnState::Closing;
            self.pending_total = self.pending_total.saturating_sub(conn.pending());
            conn.discard_output();
            self.closing.push(token);
        }
    }
}
