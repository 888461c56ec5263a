//! `imserver-floor`: the floor to measure imserver-mio's fan-out against. It makes the
//! system calls imserver-mio makes for a broadcast and nothing else, so the server's CPU
//! per delivery can be read as a multiple of what the kernel alone costs (BENCHMARKS.md).
//!
//! The same calls, the same way: one `mio::Poll` (epoll, edge-triggered, READABLE only,
//! WRITABLE armed with `reregister` only while a socket is full), `recv` into one shared
//! 64 KiB buffer until `WouldBlock` (at most 64 KiB per connection per turn, then again in
//! the next turn), and in the flush phase one `send` per recipient per turn (or, with
//! `--write writev`, one `writev` of one segment per line: the shape of shared fan-out
//! segments). What it leaves out is everything that is not a system call: no parsing
//! beyond finding newlines, no directory, no rooms, no names, no texts, no timers, no
//! per-recipient copy (the turn's lines are built once, each as `[ADDR]ADDR:TEXT\n`, the
//! bytes imserver-mio broadcasts for an unnamed user, and the same bytes go to every
//! recipient; only a recipient whose socket was full keeps a copy of what it still owes).
//! The heap is never trimmed, nothing is logged.
//!
//! It speaks just enough of the line protocol for `imbench fanout`, unchanged: a newcomer
//! hears its own online notice `[ADDR]ADDR:online` (nobody else does: joins are not what it
//! measures), and every line anyone sends goes to everyone, sender included. Anything else
//! (`to|…`, `rename|…`) is broadcast as text too, so `imbench private` does not apply.
//!
//! ```text
//! cargo run --release --features variants --bin imserver-floor -- --port 0
//! imbench --addr 127.0.0.1:PORT --pid PID fanout --conns 1000
//! ```
//!
//! A binary of this package, like imserver-tokio (and behind the same `variants` feature),
//! rather than an example or a bench target: `benches/compare.rs` needs its path, which
//! cargo gives a bench only for binaries (`CARGO_BIN_EXE_*`) and builds before the bench.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token, far above any slab key.
const LISTENER: Token = Token(usize::MAX);
/// Events taken per `poll` (imserver-mio's `EVENTS_CAPACITY`).
const EVENTS_CAPACITY: usize = 1024;
/// The one read buffer, and what one connection may read per turn (imserver-mio's
/// `READ_CHUNK_BYTES` and `READ_BUDGET_BYTES`).
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Segments one `writev` takes at most (Linux's `UIO_MAXIOV`); a turn with more lines
/// takes several calls.
const MAX_IOVECS: usize = 1024;
/// The body of the online notice (imbench accepts it in any language).
const ONLINE: &[u8] = b"online";

/// imserver-floor: the system calls of imserver-mio's fan-out, and nothing else.
#[derive(Parser)]
#[command(name = "imserver-floor", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 = any free port. The bound address is the first stdout line.
    #[arg(long, default_value_t = 8888)]
    port: u16,
    /// How a recipient is written: one `send` of the turn's bytes, or one `writev` of one
    /// segment per line.
    #[arg(long, value_enum, default_value_t = Syscall::Send)]
    write: Syscall,
}

/// The system call that writes a recipient.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Syscall {
    /// `send` of one contiguous buffer.
    Send,
    /// `writev` of one segment per line.
    Writev,
}

/// One client.
struct Peer {
    socket: TcpStream,
    /// `[ADDR]ADDR:`, built once at accept.
    prefix: Vec<u8>,
    /// A partial line waiting for its newline.
    inbuf: Vec<u8>,
    /// What it is owed and the socket did not take yet; empty while it keeps up.
    owed: Vec<u8>,
    /// Whether WRITABLE interest is registered.
    write_armed: bool,
    /// Listed in `Floor::dirty`.
    dirty: bool,
}

/// The loop's state.
struct Floor {
    poll: Poll,
    listener: TcpListener,
    peers: Slab<Peer>,
    scratch: Vec<u8>,
    /// This turn's broadcast lines, back to back…
    turn: Vec<u8>,
    /// …and where each one ends (for `writev`).
    ends: Vec<usize>,
    /// Peers with something of their own to write (their notice, a backlog now writable).
    dirty: Vec<usize>,
    /// Peers whose read budget ran out: read again next turn.
    again: Vec<usize>,
    /// Peers to remove after the turn's dispatch.
    gone: Vec<usize>,
    /// Scratch: every peer's key, for a broadcast's flush.
    keys: Vec<usize>,
    write: Syscall,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut floor = match Floor::bind(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "imserver-floor: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    match floor.listener.local_addr() {
        Ok(addr) => {
            let mut out = io::stdout();
            let _ = writeln!(out, "{addr}");
            let _ = out.flush();
        }
        Err(e) => {
            eprintln!("imserver-floor: no local address: {e}");
            return ExitCode::FAILURE;
        }
    }
    match floor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imserver-floor: poll failed: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Floor {
    fn bind(args: &Args) -> io::Result<Floor> {
        let addr: SocketAddr = format!("{}:{}", args.host, args.port)
            .parse()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
        let mut listener = TcpListener::bind(addr)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Floor {
            poll,
            listener,
            peers: Slab::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            turn: Vec::new(),
            ends: Vec::new(),
            dirty: Vec::new(),
            again: Vec::new(),
            gone: Vec::new(),
            keys: Vec::new(),
            write: args.write,
        })
    }

    /// Poll, read everyone ready, remove who left, write everyone once; until killed.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            // Zero while a read budget ran out; otherwise wait for the kernel.
            let timeout = if self.again.is_empty() {
                None
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for key in std::mem::take(&mut self.again) {
                self.on_readable(key);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key);
                        }
                        if event.is_writable()
                            && self.peers.get(key).is_some_and(|p| !p.owed.is_empty())
                        {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            self.remove_gone();
            self.flush();
            self.remove_gone();
        }
    }

    /// Takes every waiting connection; each is told its own online notice.
    fn accept(&mut self) {
        loop {
            let (mut socket, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Out of descriptors or the like: the benchmark sees the user never join.
                Err(_) => return,
            };
            let _ = socket.set_nodelay(true); // as imserver-mio does
            let entry = self.peers.vacant_entry();
            let key = entry.key();
            if self
                .poll
                .registry()
                .register(&mut socket, Token(key), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            let prefix = format!("[{peer}]{peer}:").into_bytes();
            let mut owed = prefix.clone();
            owed.extend_from_slice(ONLINE);
            owed.push(b'\n');
            entry.insert(Peer {
                socket,
                prefix,
                inbuf: Vec::new(),
                owed,
                write_armed: false,
                dirty: false,
            });
            self.mark_dirty(key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(p) = self.peers.get_mut(key) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Reads until `WouldBlock` or the budget; every whole line joins the turn's broadcast.
    fn on_readable(&mut self, key: usize) {
        let mut budget = READ_CHUNK_BYTES;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        loop {
            match peer.socket.read(&mut self.scratch) {
                Ok(n) if n > 0 => {
                    let data = self.scratch.get(..n).unwrap_or_default();
                    take_lines(peer, data, &mut self.turn, &mut self.ends);
                    if n >= budget {
                        self.again.push(key);
                        return;
                    }
                    budget -= n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EOF or a failure: no offline notice, it is simply gone.
                _ => {
                    self.gone.push(key);
                    return;
                }
            }
        }
    }

    fn remove_gone(&mut self) {
        for key in self.gone.drain(..) {
            if let Some(mut p) = self.peers.try_remove(key) {
                let _ = self.poll.registry().deregister(&mut p.socket);
            }
        }
    }

    /// The flush phase: with a broadcast this turn, every peer is written once; otherwise
    /// only those with something of their own.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            if let Some(p) = self.peers.get_mut(key) {
                p.dirty = false;
            }
        }
        if self.turn.is_empty() {
            for &key in &dirty {
                self.flush_one(key, false);
            }
        } else {
            let mut keys = std::mem::take(&mut self.keys);
            keys.extend(self.peers.iter().map(|(k, _)| k));
            for &key in &keys {
                self.flush_one(key, true);
            }
            keys.clear();
            self.keys = keys;
            self.turn.clear();
            self.ends.clear();
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// One write to `key`: what it owes, then (`with_turn`) the turn's lines.
    fn flush_one(&mut self, key: usize, with_turn: bool) {
        let Some(p) = self
            .peers
            .get_mut(key)
            .filter(|p| with_turn || !p.owed.is_empty())
        else {
            return; // gone, or nothing to write
        };
        let outcome = if !p.owed.is_empty() || !with_turn {
            // Behind already (or nothing broadcast): its own buffer, in order.
            if with_turn {
                p.owed.extend_from_slice(&self.turn);
            }
            send(&mut p.socket, &p.owed).map(|n| {
                p.owed.drain(..n);
            })
        } else {
            let written = match self.write {
                Syscall::Send => send(&mut p.socket, &self.turn),
                Syscall::Writev => write_lines(&mut p.socket, &self.turn, &self.ends),
            };
            written.map(|n| {
                if let Some(rest) = self.turn.get(n..) {
                    p.owed.extend_from_slice(rest);
                }
            })
        };
        if outcome.is_err() {
            self.gone.push(key);
            return;
        }
        let want_write = !p.owed.is_empty();
        if p.write_armed != want_write {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut p.socket, Token(key), interest)
                .is_err()
            {
                self.gone.push(key);
                return;
            }
            p.write_armed = want_write;
        }
        if p.owed.is_empty() {
            p.owed = Vec::new(); // an idle peer holds no buffer
        }
    }
}

/// Appends each whole line of `data` (after `peer`'s partial one) to the turn as
/// `[ADDR]ADDR:TEXT\n`; keeps a trailing partial line.
fn take_lines(peer: &mut Peer, data: &[u8], turn: &mut Vec<u8>, ends: &mut Vec<usize>) {
    let mut start = 0;
    while let Some(i) = data
        .get(start..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        let line = data.get(start..start + i).unwrap_or_default();
        turn.extend_from_slice(&peer.prefix);
        if peer.inbuf.is_empty() {
            turn.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        } else {
            peer.inbuf.extend_from_slice(line);
            let whole = std::mem::take(&mut peer.inbuf);
            turn.extend_from_slice(whole.strip_suffix(b"\r").unwrap_or(&whole));
        }
        turn.push(b'\n');
        ends.push(turn.len());
        start += i + 1;
    }
    peer.inbuf
        .extend_from_slice(data.get(start..).unwrap_or_default());
}

/// One `send` of `bytes` (again only after `Interrupted`); the bytes written, 0 when the
/// socket is full.
fn send(socket: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        return match socket.write(bytes) {
            Ok(0) => Err(ErrorKind::WriteZero.into()),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// One `writev` of the turn's lines, one segment each (several calls past
/// [`MAX_IOVECS`] lines, stopping at a short write); the bytes written.
fn write_lines(socket: &mut TcpStream, turn: &[u8], ends: &[usize]) -> io::Result<usize> {
    let mut written = 0;
    let mut begin = 0;
    for chunk in ends.chunks(MAX_IOVECS) {
        let mut slices = Vec::with_capacity(chunk.len());
        let mut want = 0;
        for &end in chunk {
            slices.push(IoSlice::new(turn.get(begin..end).unwrap_or_default()));
            want += end - begin;
            begin = end;
        }
        let n = loop {
            match socket.write_vectored(&slices) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        written += n;
        if n < want {
            break;
        }
    }
    Ok(written)
}
