//! The flush phase: each dirty connection's output written once per turn, WRITABLE interest
//! armed only while a socket is full.

use super::conn::{ConnState, Flush};
use super::{Server, WRITE_BUDGET_BYTES};
use log::debug;
use mio::Interest;

impl Server {
    /// Writes each dirty connection's output once. WRITABLE interest is armed only when the
    /// socket is full with bytes left, and disarmed once drained.
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.st.conns.dirty);
        for token in dirty.drain(..) {
            let Some(conn) = self.st.conns.get_mut(token) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Closing {
                continue;
            }
            let pending = conn.pending();
            let outcome = conn.flush(WRITE_BUDGET_BYTES);
            let written = pending - conn.pending().min(pending);
            self.st.metrics.bytes_out += written as u64;
            self.trim.0 += written as u64;
            self.st.conns.wrote(written);
            let Some(conn) = self.st.conns.get_mut(token) else {
                continue;
            };
            let want_write = match outcome {
                Flush::Drained if conn.state == ConnState::CloseAfterFlush => {
                    self.st.conns.close_now(token);
                    continue;
                }
                Flush::Drained => false,
                Flush::WouldBlock => true,
                Flush::OverBudget => {
                    self.st.conns.mark_dirty(token);
                    continue;
                }
                Flush::Failed(e) => {
                    debug!("{conn} write failed: {e}");
                    self.st.conns.close_now(token);
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
                        self.st.conns.close_now(token);
                    }
                }
            }
        }
        if self.st.conns.dirty.is_empty() {
            self.st.conns.dirty = dirty; // keep the allocation
        }
    }
}
