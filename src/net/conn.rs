//! One client socket with its buffers and lifecycle state. It knows nothing of other
//! connections or of chat commands: the server decides what to queue and when to close.
//!
//! Buffers are sized on demand and released when empty, so an idle connection holds no
//! buffer memory at all: `inbuf` exists only while a partial line waits for its newline, and
//! `outbuf` only while output waits for the socket.

use crate::chat::UserId;
use crate::proto::Session;
use mio::net::TcpStream;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Online: its lines are executed and it receives broadcasts.
    Open,
    /// Offline already (EOF, kick, refusal, shutdown): owed output is flushed, then it closes.
    CloseAfterFlush,
    /// To be freed at the end of this turn, output or not (I/O error, slow consumer).
    Closing,
}

/// The result of one `read` call.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Bytes were read into the front of the buffer.
    Data(usize),
    /// Nothing more for now: the readiness edge is drained.
    WouldBlock,
    /// The peer closed its sending side.
    Eof,
    /// The socket failed; the connection is over.
    Failed(io::Error),
}

/// The result of flushing the write buffer.
#[derive(Debug)]
pub enum Flush {
    /// Everything was written; the buffer was released.
    Drained,
    /// The socket is full; wait for WRITABLE.
    WouldBlock,
    /// The budget for this turn ran out with bytes left and the socket still writable.
    OverBudget,
    /// The socket failed; the connection is over.
    Failed(io::Error),
}

/// Queuing refused: the pending output would exceed the connection's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket, registered with the loop's poll.
    pub socket: TcpStream,
    /// Distinguishes this connection from earlier users of the same slab key.
    pub generation: u32,
    /// Lifecycle state.
    pub state: ConnState,
    /// The protocol it speaks, with that protocol's state.
    pub session: Session,
    /// Its user in the chat core, while online.
    pub user: Option<UserId>,
    /// Whether the peer hung up (seen in this turn's events): fan-outs skip it, so a mass
    /// departure does not queue notices to connections that are already gone.
    pub hung_up: bool,
    /// When the user last sent anything: the idle deadline is this plus the timeout.
    pub last_active: Instant,
    /// A partial line waiting for its newline; empty (unallocated) otherwise.
    pub inbuf: Vec<u8>,
    /// Whether the token is already on the server's dirty list this turn.
    pub dirty: bool,
    /// Whether WRITABLE interest is registered.
    pub write_armed: bool,
    outbuf: Vec<u8>,
    /// Bytes of `outbuf` already written.
    out_pos: usize,
}

impl Conn {
    /// A new open connection.
    pub fn new(socket: TcpStream, generation: u32, session: Session, now: Instant) -> Self {
        Conn {
            socket,
            generation,
            state: ConnState::Open,
            session,
            user: None,
            hung_up: false,
            last_active: now,
            inbuf: Vec::new(),
            dirty: false,
            write_armed: false,
            outbuf: Vec::new(),
            out_pos: 0,
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.outbuf.len() - self.out_pos
    }

    /// Appends `bytes` to the output, unless that would put more than `limit` bytes in wait.
    ///
    /// # Errors
    /// [`OverLimit`] when the reader is too slow; nothing is queued then.
    pub fn queue(&mut self, bytes: &[u8], limit: usize) -> Result<(), OverLimit> {
        if self.pending() + bytes.len() > limit {
            return Err(OverLimit);
        }
        // Reclaim the written front once it is the larger part, so a slow reader's buffer
        // is not shifted on every partial write.
        if self.out_pos > 0 && self.out_pos >= self.outbuf.len() / 2 {
            self.outbuf.drain(..self.out_pos);
            self.out_pos = 0;
        }
        self.outbuf.extend_from_slice(bytes);
        Ok(())
    }

    /// Drops all pending output (the connection is being thrown away).
    pub fn discard_output(&mut self) {
        self.outbuf = Vec::new();
        self.out_pos = 0;
    }

    /// One `read` into `buf`, retrying on `Interrupted`.
    pub fn read_some(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.socket.read(buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Failed(e),
            };
        }
    }

    /// Writes pending output until it is drained, the socket is full, or `budget` bytes have
    /// gone out this turn. A drained buffer is released, so idle connections hold none.
    pub fn flush(&mut self, budget: usize) -> Flush {
        let mut written = 0;
        while self.out_pos < self.outbuf.len() {
            if written >= budget {
                return Flush::OverBudget;
            }
            match self.socket.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => return Flush::Failed(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Flush::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Flush::Failed(e),
            }
        }
        self.discard_output();
        Flush::Drained
    }
}

impl Conn {
    /// The peer's address, asked of the socket: an idle connection does not carry one
    /// (its user's, in the chat core, is what notices show).
    pub fn peer_addr(&self) -> SocketAddr {
        self.socket
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// Shows a connection in logs by its peer address.
impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_addr())
    }
}
