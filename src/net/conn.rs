//! One client socket with its buffers and lifecycle state. It knows nothing of other
//! connections or of chat commands: the server decides what to queue and when to close.
//!
//! The transport sits here, below every protocol: plain TCP, or TLS (a rustls
//! `ServerConnection` between the socket and the plaintext buffers, driven the way rustls's
//! `tlsserver-mio` example drives it: `read_tls`, `process_new_packets`, read plaintext;
//! plaintext into `writer()`, `write_tls` while it `wants_write`). Sessions see plaintext
//! only.
//!
//! Buffers are sized on demand and released when empty, so an idle connection holds no
//! buffer memory at all: `inbuf` exists only while a partial line waits for its newline, and
//! the output queue (`out`, see `net::out`: references into a turn's shared fan-out
//! segments, and bytes of its own) only while output waits for the socket.

use super::flood::Bucket;
use super::out::{Out, Shared};
use crate::chat::UserId;
use crate::proto::Session;
use mio::net::TcpStream;
use mio::Interest;
use rustls::ServerConnection;
use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Instant;

/// What a connection's socket is registered for (WRITABLE is added while output waits).
/// PRIORITY makes the event that brings TCP urgent data say so ([`Conn::urgent`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const READ_INTEREST: Interest = Interest::READABLE.add(Interest::PRIORITY);
/// What a connection's socket is registered for (WRITABLE is added while output waits).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const READ_INTEREST: Interest = Interest::READABLE;

/// Whether a short read may be taken as a drained socket: only where the loop hears of
/// urgent data, which stops a read short of what the socket holds (see [`Conn::urgent`]).
const SHORT_READ_DRAINS: bool = cfg!(any(target_os = "linux", target_os = "android"));

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
    /// Bytes were read, and they were all the socket held: a read that did not fill the
    /// buffer drained a plain socket (epoll(7)), so asking again would only be told
    /// `WouldBlock`; new bytes bring a new edge. Saves one `read` per readable event.
    /// (Not after urgent data, where a read stops short at the mark: [`Conn::urgent`].)
    Last(usize),
    /// Nothing more for now: the readiness edge is drained.
    WouldBlock,
    /// The peer closed its sending side.
    Eof,
    /// The socket failed; the connection is over.
    Failed(io::Error),
}

/// Whether a connection is on one of the turn's output lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// On neither.
    No,
    /// On the dirty list: flushed in this turn's flush phase.
    Dirty,
    /// On the held list: its output is held back to be coalesced, until the held list's
    /// deadline or until it has enough bytes (see `Conns::queue`).
    Held,
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
    /// Whether the peer has sent TCP urgent data (`MSG_OOB`, telnet's Synch): a read stops
    /// at the urgent mark with more bytes behind it and no new edge to come, so this
    /// socket is read on to `WouldBlock` from then on.
    pub urgent: bool,
    /// When the user last sent anything: the idle deadline is this plus the timeout.
    pub last_active: Instant,
    /// A partial line waiting for its newline; empty (unallocated) otherwise.
    pub inbuf: Vec<u8>,
    /// Whether the token is on the server's dirty or held list.
    pub listed: Listed,
    /// Whether WRITABLE interest is registered.
    pub write_armed: bool,
    /// The command allowance (flood control), and whether reading waits for it.
    pub flood: Bucket,
    /// The TLS session between the socket and the plaintext buffers, on TLS listeners.
    tls: Option<Box<ServerConnection>>,
    /// Output waiting for the socket.
    out: Out,
}

impl Conn {
    /// A new open connection.
    pub fn new(
        socket: TcpStream,
        generation: u32,
        session: Session,
        (tls, flood): (Option<Box<ServerConnection>>, Bucket),
        now: Instant,
    ) -> Self {
        Conn {
            socket,
            generation,
            state: ConnState::Open,
            session,
            user: None,
            hung_up: false,
            urgent: false,
            last_active: now,
            inbuf: Vec::new(),
            listed: Listed::No,
            write_armed: false,
            flood,
            tls,
            out: Out::default(),
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// Appends `bytes`, this connection's own, to the output, unless that would put more
    /// than `limit` bytes in wait.
    ///
    /// # Errors
    /// [`OverLimit`] when the reader is too slow; nothing is queued then.
    pub fn queue(&mut self, bytes: &[u8], limit: usize) -> Result<(), OverLimit> {
        if self.pending() + bytes.len() > limit {
            return Err(OverLimit);
        }
        self.out.push_owned(bytes);
        Ok(())
    }

    /// Appends shared fan-out bytes to the output, like [`Conn::queue`]: as a reference,
    /// or as a copy while the socket is full (those bytes will wait longer than a turn, and
    /// should not keep the turn's segment alive meanwhile).
    ///
    /// # Errors
    /// [`OverLimit`] when the reader is too slow; nothing is queued then.
    pub fn queue_shared(&mut self, shared: Shared<'_>, limit: usize) -> Result<(), OverLimit> {
        if self.pending() + shared.bytes.len() > limit {
            return Err(OverLimit);
        }
        if self.write_armed {
            self.out.push_owned(shared.bytes);
        } else {
            self.out.push_shared(shared);
        }
        Ok(())
    }

    /// Drops all pending output (the connection is being thrown away).
    pub fn discard_output(&mut self) {
        self.out = Out::default();
    }

    /// Whether the transport is ready for the protocol: always for plain TCP, once the
    /// handshake is done for TLS.
    pub fn established(&self) -> bool {
        self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
    }

    /// Ends the transport politely once the output owed is written: TLS queues its
    /// `close_notify` behind it, so strict clients see a clean end, not a truncation.
    pub fn close_transport(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
        }
    }

    /// Whether the transport has bytes of its own to send (a TLS handshake or alert).
    pub fn transport_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads plaintext into `buf`: straight from the socket, or through TLS (reading
    /// records until one yields plaintext, the socket would block, or the peer closes).
    pub fn read_some(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let Some(tls) = self.tls.as_mut() else {
            return match read_plain(&mut self.socket, buf) {
                // After a hang-up its one edge has come and gone: read on to the EOF.
                ReadOutcome::Data(n)
                    if n < buf.len() && SHORT_READ_DRAINS && !self.hung_up && !self.urgent =>
                {
                    ReadOutcome::Last(n)
                }
                outcome => outcome,
            };
        };
        loop {
            match tls.reader().read(buf) {
                Ok(0) => return ReadOutcome::Eof, // close_notify
                Ok(n) => return ReadOutcome::Data(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return ReadOutcome::Eof,
                Err(e) => return ReadOutcome::Failed(e),
            }
            match tls.read_tls(&mut self.socket) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return ReadOutcome::Failed(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // Garbage or a failed handshake: tell the peer with an alert if the socket
                // takes it, and end this connection only.
                let _ = tls.write_tls(&mut self.socket);
                return ReadOutcome::Failed(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes pending output until it is drained, the socket is full, or `budget` bytes have
    /// gone out this turn: every queued piece in one `writev` per call. A drained queue is
    /// released, so idle connections hold none; a full socket keeps copies, not references
    /// (see `net::out`). Returns the outcome and the number of write calls made.
    pub fn flush(&mut self, budget: usize) -> (Flush, u64) {
        let mut written = 0;
        let mut sends = 0;
        loop {
            let more = match self.tls.as_mut() {
                // Plaintext into TLS records (rustls takes up to its buffer limit), then
                // the records out.
                Some(tls) => {
                    if !self.out.is_empty() {
                        if let Err(e) = self.out.write_to(&mut tls.writer()) {
                            return (Flush::Failed(e), sends);
                        }
                    }
                    tls.wants_write() || !self.out.is_empty()
                }
                None => !self.out.is_empty(),
            };
            if !more {
                break;
            }
            if written >= budget {
                return (Flush::OverBudget, sends);
            }
            sends += 1;
            let result = match self.tls.as_mut() {
                Some(tls) => tls.write_tls(&mut self.socket),
                None => self.out.write_to(&mut self.socket),
            };
            match result {
                Ok(0) => return (Flush::Failed(ErrorKind::WriteZero.into()), sends),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.out.detach();
                    return (Flush::WouldBlock, sends);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return (Flush::Failed(e), sends),
            }
        }
        self.discard_output();
        (Flush::Drained, sends)
    }
}

/// One plain `read`, retrying on `Interrupted`.
fn read_plain(socket: &mut TcpStream, buf: &mut [u8]) -> ReadOutcome {
    loop {
        return match socket.read(buf) {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => ReadOutcome::Data(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => ReadOutcome::Failed(e),
        };
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
