//! The flush phase: each dirty connection's output written in one `writev` per turn,
//! WRITABLE interest armed only while a socket is full; and adaptive write coalescing.
//!
//! Coalescing: while the loop is idle, every dirty connection is flushed at the end of its
//! turn (the lowest latency). Under load, which is input left unread after a read budget,
//! or a last flush that took a quarter of the bound or more with no rest since, a
//! connection's output is held across turns until it has `--coalesce-bytes` or the held
//! list has waited `--coalesce-us`, whichever comes first, so one send carries more
//! messages. Holding only pays while more input keeps arriving, so the loop never sleeps
//! on held output: it polls without waiting, and the first poll that brings nothing (the
//! loop would go idle) sends everything held (in a closed loop, where clients wait for
//! what is held, that is at once). Holding changes when bytes go out, never which bytes or
//! their order. A connection that is closing, a socket that became writable, and shutdown
//! are never held.

use super::conn::{ConnState, Flush, Listed, READ_INTEREST};
use super::{Server, WRITE_BUDGET_BYTES};
use log::debug;
use mio::{Interest, Token};
use std::time::{Duration, Instant};

/// The loop's recent load, which decides whether a turn holds output back.
#[derive(Debug)]
pub(super) struct Pressure {
    /// `--coalesce-us`: the longest output is held; zero never holds.
    wait: Duration,
    /// How long the last flush phase that wrote anything took.
    last_flush: Duration,
    /// When the last flush phase ended (the loop rested after it, or not).
    ended: Option<Instant>,
}

impl Pressure {
    /// No load seen yet; output is held at most `wait`.
    pub(super) fn new(wait: Duration) -> Self {
        Pressure {
            wait,
            last_flush: Duration::ZERO,
            ended: None,
        }
    }

    /// Whether this turn holds output back: input is waiting beyond a read budget, or the
    /// last flush took a quarter of the bound or more (writes are the loop's main work,
    /// so fewer of them buy the most) and the loop has not rested for the bound since.
    fn holding(&self, now: Instant, input_waiting: bool) -> bool {
        if self.wait.is_zero() {
            return false;
        }
        let busy = self
            .ended
            .is_some_and(|t| now.saturating_duration_since(t) < self.wait);
        input_waiting || (busy && self.last_flush >= self.wait / 4)
    }
}

impl Server {
    /// Seals the turn's fan-out segments, then writes each dirty connection's output once,
    /// or holds it back (see the module doc); `idle`: this turn's poll brought nothing.
    /// WRITABLE interest is armed only when the socket is full with bytes left, and
    /// disarmed once drained.
    pub(super) fn flush_dirty(&mut self, now: Instant, idle: bool) {
        self.st.fanout.seal();
        let holding =
            !idle && !self.st.shutting_down && self.pressure.holding(now, !self.again.is_empty());
        let conns = &mut self.st.conns;
        let due = !holding || conns.held_until.is_some_and(|t| now >= t);
        let mut held = Vec::new();
        if due {
            conns.held_until = None;
            held = std::mem::take(&mut conns.held);
        }
        let mut dirty = std::mem::take(&mut conns.dirty);
        if dirty.is_empty() && held.is_empty() {
            conns.dirty = dirty;
            return;
        }
        let started = Instant::now();
        let mut wrote = false;
        for token in dirty.drain(..) {
            if holding && self.may_hold(token) {
                self.st.conns.hold(token, now + self.pressure.wait);
                self.st.metrics.held += 1;
            } else {
                wrote |= self.flush_one(token);
            }
        }
        for token in held.drain(..) {
            // A stale entry: the connection went out through the dirty list meanwhile.
            if self
                .st
                .conns
                .get(token)
                .is_some_and(|c| c.listed == Listed::Held)
            {
                wrote |= self.flush_one(token);
            }
        }
        if self.st.conns.dirty.is_empty() {
            self.st.conns.dirty = dirty; // keep the allocation
        }
        let ended = Instant::now();
        if wrote {
            self.pressure.last_flush = ended - started;
        }
        self.pressure.ended = Some(ended);
    }

    /// Whether a dirty connection's output may wait: it is open and has some, less than
    /// `--coalesce-bytes`, and nothing of the transport's own (a TLS handshake) waits.
    fn may_hold(&self, token: Token) -> bool {
        let limit = self.st.config.coalesce.bytes;
        self.st.conns.get(token).is_some_and(|c| {
            c.state == ConnState::Open
                && (1..limit).contains(&c.pending())
                && !c.transport_wants_write()
        })
    }

    /// Writes one connection's output; true if it wrote anything.
    fn flush_one(&mut self, token: Token) -> bool {
        let Some(conn) = self.st.conns.get_mut(token) else {
            return false;
        };
        conn.listed = Listed::No;
        if conn.state == ConnState::Closing {
            return false;
        }
        let pending = conn.pending();
        let (outcome, sends) = conn.flush(WRITE_BUDGET_BYTES);
        let written = pending - conn.pending().min(pending);
        self.st.metrics.writes += sends;
        self.st.metrics.bytes_out += written as u64;
        self.trim.0 += written as u64;
        self.st.conns.wrote(written);
        let Some(conn) = self.st.conns.get_mut(token) else {
            return sends > 0;
        };
        let want_write = match outcome {
            Flush::Drained if conn.state == ConnState::CloseAfterFlush => {
                self.st.conns.close_now(token);
                return sends > 0;
            }
            Flush::Drained => false,
            Flush::WouldBlock => true,
            Flush::OverBudget => {
                self.st.conns.mark_dirty(token);
                return sends > 0;
            }
            Flush::Failed(e) => {
                debug!("{conn} write failed: {e}");
                self.st.conns.close_now(token);
                return sends > 0;
            }
        };
        if conn.write_armed != want_write {
            let interest = if want_write {
                READ_INTEREST | Interest::WRITABLE
            } else {
                READ_INTEREST
            };
            match self
                .poll
                .registry()
                .reregister(&mut conn.socket, token, interest)
            {
                Ok(()) => conn.write_armed = want_write,
                Err(e) => {
                    debug!("{conn} reregister failed: {e}");
                    self.st.conns.close_now(token);
                }
            }
        }
        sends > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_loop_never_holds_and_zero_means_never() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut p = Pressure::new(us(500));
        assert!(!p.holding(t0, false), "nothing seen yet");
        assert!(p.holding(t0, true), "input waits beyond a read budget");
        p.last_flush = us(200);
        p.ended = Some(t0);
        assert!(p.holding(t0 + us(100), false), "slow flush, no rest");
        assert!(!p.holding(t0 + us(600), false), "rested past the bound");
        p.last_flush = us(100);
        assert!(!p.holding(t0 + us(100), false), "a quick flush");
        let mut off = Pressure::new(Duration::ZERO);
        off.last_flush = us(10_000);
        off.ended = Some(t0);
        assert!(!off.holding(t0, true));
    }
}
