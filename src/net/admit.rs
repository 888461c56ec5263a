//! Taking connections in: accepting from a listener, the limits that may turn a newcomer
//! away (full server, too many from one address), the transport (TLS) and the session it
//! starts with, and putting a line user online once its transport is established.

use super::conn::{ConnState, READ_INTEREST};
use super::flood::{millis, Bucket};
use super::per_ip::Refused;
use super::{Server, TURN_AWAY_SLOTS};
use crate::chat::{Kind, DEFAULT_ROOM};
use crate::proto::Session;
use log::debug;
use mio::Token;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

impl Server {
    /// Accepts every pending connection on listener `i` (see [`Accept`] for running out
    /// of descriptors).
    pub(super) fn on_listener(&mut self, i: usize, now: Instant) {
        while let Some(listener) = self.listeners.get(i) {
            let (web, tls) = (listener.web, listener.tls);
            let Some((socket, peer)) = self.accept.next(listener, now) else {
                return;
            };
            self.admit(socket, peer, (web, tls), now);
        }
    }

    /// Takes a new connection in, or refuses it when the server is full. A line user is
    /// online as soon as its transport is established; a web connection first speaks
    /// HTTP.
    fn admit(
        &mut self,
        mut socket: mio::net::TcpStream,
        peer: SocketAddr,
        (web, tls): (bool, bool),
        now: Instant,
    ) {
        let token = self.st.conns.next_token();
        let limits = &self.st.config.limits;
        let limited = limits.limit_loopback || !peer.ip().to_canonical().is_loopback();
        let caps = (limits.max_conns_per_ip, limits.conn_rate_per_ip);
        let held = self.st.conns.len();
        let refusal = if held >= self.st.config.max_conns {
            self.st.metrics.refused_full += 1;
            self.accept.refused.hit();
            Some(503)
        } else if let Err(why) = match limited {
            true => self.accept.per_ip.admit(peer.ip(), token, caps, now),
            false => Ok(()),
        } {
            match why {
                Refused::TooMany => self.st.metrics.guard.refused_per_ip += 1,
                Refused::TooFast => self.st.metrics.guard.refused_rate += 1,
            }
            self.accept.refused_ip.hit();
            Some(429)
        } else {
            None
        };
        if let Some(status) = refusal {
            debug!("{peer} refused ({status})");
            // A web client is taken in just long enough to answer its request (a reset
            // would lose the answer); a line client gets one line, best effort, as Redis
            // does (a TLS client cannot be told anything before its handshake).
            let room = held < self.st.config.max_conns + TURN_AWAY_SLOTS;
            if !(web && room) {
                let texts = self.st.texts();
                let line = match status {
                    503 => texts.line.server_full,
                    _ => texts.limits.too_many_conns,
                };
                if !web && !tls {
                    let _ = io::Write::write(&mut socket, line.as_bytes());
                }
                return;
            }
        }
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, token, READ_INTEREST)
        {
            debug!("{peer} dropped: cannot register: {e}");
            if refusal.is_none() {
                self.accept.per_ip.release(token, now, caps.1);
            }
            return;
        }
        // Chat messages are small and latency matters more than packet count; the loop
        // already batches everything queued in one turn into one write.
        let _ = socket.set_nodelay(true);
        let session = match (web, refusal) {
            (true, Some(status)) => Session::http_refusing(now, status),
            (true, None) => Session::http(now),
            (false, _) => Session::default(),
        };
        let transport = match (&self.tls, tls) {
            (Some(config), true) => match rustls::ServerConnection::new(config.clone()) {
                Ok(t) => Some(Box::new(t)),
                Err(e) => {
                    debug!("{peer} dropped: TLS: {e}");
                    let _ = self.poll.registry().deregister(&mut socket);
                    if refusal.is_none() {
                        self.accept.per_ip.release(token, now, caps.1);
                    }
                    return;
                }
            },
            _ => None,
        };
        let flood = Bucket::new(self.st.flood_rule(), limited, millis(self.st.epoch, now));
        let token = self
            .st
            .conns
            .insert(socket, session, (transport, flood), now);
        self.st.metrics.accepted += 1;
        debug!("{peer} connected as {token:?}");
        self.st.schedule(token);
        self.enter_line_user(token, now);
    }

    /// Puts a line connection's user online once its transport is established (at once
    /// over TCP, after the handshake over TLS, so a failed handshake disturbs nobody).
    pub(super) fn enter_line_user(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.st.conns.get(token) else {
            return;
        };
        let waiting = conn.state == ConnState::Open
            && conn.user.is_none()
            && matches!(conn.session, Session::Line(_))
            && conn.established();
        if waiting
            && self
                .st
                .enter(token, Kind::Line, None, DEFAULT_ROOM, now)
                .is_err()
        {
            // Unreachable while the old socket with this address is open; be safe anyway.
            self.st.conns.close_now(token);
        }
    }
}
