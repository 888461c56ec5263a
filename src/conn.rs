//! One client socket with its buffers and lifecycle state. It knows nothing of other
//! connections or of chat commands: the server decides what to queue and when to close.
//!
//! Buffers are sized on demand and released when empty, so an idle connection holds no
//! buffer memory at all: `inbuf` exists only while a partial line waits for its newline, and
//! `outbuf` only while output waits for the socket.

use crate::codec::im::DEFAULT_APP_ID;
use crate::codec::ws::WsReader;
use crate::text::User;
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

/// How a connection frames its bytes. A web connection starts as `Http` and may be
/// upgraded to `Ws` in place: the socket, buffers and slab slot stay, only this changes.
#[derive(Debug)]
pub enum Proto {
    /// The newline-framed line protocol.
    Line,
    /// HTTP/1.1 requests (the API and the page), before any upgrade.
    Http {
        /// When the request in progress (or the keep-alive wait) began: a request must be
        /// complete within the HTTP timeout of it, however slowly its bytes trickle in.
        since: Instant,
    },
    /// A WebSocket after the handshake.
    Ws {
        /// Frame decoder state (no heap unless a fragmented message is in progress).
        reader: WsReader,
        /// Which JSON protocol the socket speaks.
        app: WsApp,
    },
}

/// The JSON protocol of a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsApp {
    /// Seed 003's `/im` protocol; the user is in room `app_id` once logged in.
    Im {
        /// The room (appID).
        app_id: u16,
    },
    /// Seed 004's `/ws/{id}` hub; always in the line users' room.
    Hub,
}

/// The shape a user's messages take on the wire, one per protocol that has users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `[addr]name:TEXT` lines.
    Line = 0,
    /// seed 003 JSON pushes in WebSocket frames.
    Im = 1,
    /// seed 004 hub messages in WebSocket frames.
    Hub = 2,
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
    /// The peer address: the `[addr]` of every notice, and the name until one is chosen.
    pub addr: SocketAddr,
    /// The name the user chose with `rename`, if any.
    pub chosen_name: Option<Box<str>>,
    /// Lifecycle state.
    pub state: ConnState,
    /// How its bytes are framed.
    pub proto: Proto,
    /// Whether the user is listed in the directory (and so gets an offline notice).
    pub online: bool,
    /// When the user last sent anything: the idle deadline is this plus the timeout.
    pub last_active: Instant,
    /// A partial line waiting for its newline; empty (unallocated) otherwise.
    pub inbuf: Vec<u8>,
    /// Whether the rest of an over-long line is being skipped up to its newline.
    pub discarding: bool,
    /// Whether the token is already on the server's dirty list this turn.
    pub dirty: bool,
    /// Whether WRITABLE interest is registered.
    pub write_armed: bool,
    outbuf: Vec<u8>,
    /// Bytes of `outbuf` already written.
    out_pos: usize,
}

impl Conn {
    /// A new open connection from `addr`, named after it.
    pub fn new(
        socket: TcpStream,
        generation: u32,
        addr: SocketAddr,
        proto: Proto,
        now: Instant,
    ) -> Self {
        Conn {
            socket,
            generation,
            addr,
            chosen_name: None,
            state: ConnState::Open,
            proto,
            online: false,
            last_active: now,
            inbuf: Vec::new(),
            discarding: false,
            dirty: false,
            write_armed: false,
            outbuf: Vec::new(),
            out_pos: 0,
        }
    }

    /// The user as texts show it.
    pub fn user(&self) -> User<'_> {
        User {
            addr: &self.addr,
            name: self.chosen_name.as_deref(),
        }
    }

    /// How this user's messages are encoded; `None` for HTTP, which gets no chat.
    pub fn form(&self) -> Option<Form> {
        match self.proto {
            Proto::Line => Some(Form::Line),
            Proto::Ws {
                app: WsApp::Im { .. },
                ..
            } => Some(Form::Im),
            Proto::Ws {
                app: WsApp::Hub, ..
            } => Some(Form::Hub),
            Proto::Http { .. } => None,
        }
    }

    /// The room (appID) the user chats in: line and hub users share [`DEFAULT_APP_ID`].
    pub fn room(&self) -> u16 {
        match self.proto {
            Proto::Ws {
                app: WsApp::Im { app_id },
                ..
            } => app_id,
            _ => DEFAULT_APP_ID,
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

/// Shows a connection in logs as `addr (name)`.
impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.chosen_name {
            Some(name) => write!(f, "{} ({name})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}
