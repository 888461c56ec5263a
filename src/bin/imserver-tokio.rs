//! `imserver-tokio`: the chat protocol of `imserver-mio`, written the way a tokio user would
//! write it, after tokio's own `examples/chat.rs`.
//!
//! It exists only for the benchmarks: to measure the mio event loop against an honest,
//! idiomatic async server that speaks byte-identical texts and passes the same integration
//! tests. It is not tuned beyond what a careful tokio user would do, nor held back.
//!
//! - A task per connection reads into a bounded buffer and frames and parses lines with
//!   `imserver_mio::protocol`; every text comes from `imserver_mio::text`.
//! - A second task per connection drains the user's unbounded mpsc channel into a
//!   `BufWriter`, writing everything already queued before one flush.
//! - The user table is a `std::sync::Mutex<State>` shared through an `Arc`, never held
//!   across an `.await`. A broadcast is encoded once into an `Arc<[u8]>` that every
//!   recipient's channel shares.
//! - Idle users are kicked by `tokio::time::timeout` around each read; a user whose unsent
//!   output passes `--max-outbuf` is disconnected.
//! - One room, no history: it measures the seed protocol, so `room|`, `rooms`, `history`
//!   and the like are said to everyone, as the seed did with them.
//!
//! Run it with the server's flags plus `--workers`:
//!
//! ```text
//! cargo run --release --features variants --bin imserver-tokio -- --port 8888 --workers 1
//! cargo build --features variants --bin imserver-tokio
//! IMSERVER_BIN=target/debug/imserver-tokio cargo test --features variants --test chat
//! ```

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clap::Parser;
use imserver_mio::cli::ServerArgs;
use imserver_mio::codec::line::{next_line, parse, Command, Line, ProtocolError};
use imserver_mio::config::Config;
use imserver_mio::proto::line;
use imserver_mio::text::{self, Texts};
use log::{debug, error, info, warn};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

/// Spare room made in the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// How long accepting pauses after a failure such as running out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// imserver-tokio: the same chat server on the tokio runtime, for comparison.
#[derive(Parser)]
#[command(name = "imserver-tokio", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Runtime worker threads; 0 = tokio's default (one per core).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    workers: usize,
}

/// One encoded message, shared by every channel it is sent to.
type Msg = Arc<[u8]>;

/// An online user, as the table sees it.
struct Peer {
    addr: SocketAddr,
    name: String,
    tx: mpsc::UnboundedSender<Msg>,
    /// Bytes sent to the channel and not yet written to the socket.
    queued: Arc<AtomicUsize>,
    /// Tells the connection's reader that the output limit was passed.
    kill: Arc<Notify>,
}

impl Peer {
    fn send(&self, msg: &Msg, max_outbuf: usize) {
        let queued = self.queued.fetch_add(msg.len(), Ordering::Relaxed) + msg.len();
        if queued > max_outbuf {
            self.kill.notify_one();
        } else {
            let _ = self.tx.send(Arc::clone(msg)); // fails only if the writer already died
        }
    }
}

impl Peer {
    /// The user as the shared texts show it (the name starts as the address string).
    fn user(&self) -> text::User<'_> {
        text::User {
            addr: &self.addr,
            name: Some(&self.name),
        }
    }
}

/// The user table: who is online, by connection id and by name.
struct State {
    texts: &'static Texts,
    max_outbuf: usize,
    max_conns: usize,
    closing: bool,
    peers: HashMap<u64, Peer>,
    names: HashMap<String, u64>,
}

impl State {
    fn send_to(&self, id: u64, msg: Msg) {
        if let Some(peer) = self.peers.get(&id) {
            peer.send(&msg, self.max_outbuf);
        }
    }

    fn broadcast(&self, msg: Msg) {
        for peer in self.peers.values() {
            peer.send(&msg, self.max_outbuf);
        }
    }

    /// Adds a user and tells everyone, the newcomer included. When the server is full or
    /// shutting down, the newcomer gets the reason instead and is not added.
    fn join(&mut self, id: u64, peer: Peer) -> bool {
        let refusal = if self.closing {
            Some(self.texts.line.shutting_down)
        } else if self.peers.len() >= self.max_conns {
            Some(self.texts.line.server_full)
        } else {
            None
        };
        if let Some(reason) = refusal {
            warn!("{} refused: {}", peer.addr, reason.trim_end());
            peer.send(&reason.as_bytes().into(), self.max_outbuf);
            return false;
        }
        let mut line = Vec::new();
        text::user_line(&mut line, peer.user(), self.texts.line.online.as_bytes());
        self.names.insert(peer.name.clone(), id);
        self.peers.insert(id, peer);
        self.broadcast(line.into());
        true
    }

    /// Removes a user (dropping its sender, so its writer drains and closes) and tells the
    /// others. An idle user gets its kick line first.
    fn leave(&mut self, id: u64, end: End) {
        let Some(peer) = self.peers.remove(&id) else {
            return; // already gone: the server is shutting down
        };
        self.names.remove(&peer.name);
        if end == End::Idle {
            peer.send(&self.texts.line.kicked.as_bytes().into(), self.max_outbuf);
        }
        let mut line = Vec::new();
        text::user_line(&mut line, peer.user(), self.texts.line.offline.as_bytes());
        self.broadcast(line.into());
    }

    /// Says goodbye to everyone and empties the table.
    fn close(&mut self) {
        self.closing = true;
        self.broadcast(self.texts.line.shutting_down.as_bytes().into());
        self.peers.clear();
        self.names.clear();
    }

    /// Carries out one line from user `id`.
    fn handle(&mut self, id: u64, line: &[u8]) {
        let texts = self.texts;
        let Some(me) = self.peers.get(&id) else {
            return;
        };
        let mut out = Vec::new();
        match parse(line) {
            Ok(Command::Empty) => {}
            Ok(Command::Who) => {
                for p in self.peers.values() {
                    text::user_line(&mut out, p.user(), texts.line.who_entry.as_bytes());
                }
                self.send_to(id, out.into());
            }
            Ok(Command::Rename(new)) => match self.names.get(new) {
                Some(&other) if other != id => {
                    self.send_to(id, texts.line.name_taken.as_bytes().into())
                }
                _ => {
                    if let Some(me) = self.peers.get_mut(&id) {
                        let old = std::mem::replace(&mut me.name, new.to_owned());
                        self.names.remove(&old);
                        self.names.insert(new.to_owned(), id);
                    }
                    text::renamed(&mut out, texts, new);
                    self.send_to(id, out.into());
                }
            },
            Ok(Command::To { name, body }) => {
                let to = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| self.names.get(n));
                match to {
                    None => self.send_to(id, texts.line.no_such_user.as_bytes().into()),
                    Some(_) if body.is_empty() => {
                        self.send_to(id, texts.line.empty_body.as_bytes().into())
                    }
                    Some(&to) => {
                        text::whisper(&mut out, texts, me.user(), body);
                        self.send_to(to, out.into());
                    }
                }
            }
            // Rooms are not in this variant (it measures the seed protocol): those
            // lines are said to everyone, as before they were commands.
            Ok(Command::Say(_) | Command::Room(_) | Command::Rooms | Command::History(_))
            | Err(ProtocolError::InvalidRoom | ProtocolError::BadCount) => {
                text::user_line(&mut out, me.user(), line);
                self.broadcast(out.into());
            }
            Err(e) => self.send_to(id, line::error_text(texts, e).as_bytes().into()),
        }
    }
}

/// What every connection task shares.
struct Shared {
    config: Config,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a connection's read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// EOF or a read error.
    Eof,
    /// Silent longer than `--idle-timeout`.
    Idle,
    /// Unsent output passed `--max-outbuf`.
    Overflow,
    /// The server is shutting down.
    Stopped,
}

/// One connection: a writer task for its channel, and the read loop on this task.
async fn serve(
    id: u64,
    stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true); // replies are whole batches; don't wait for acks
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let kill = Arc::new(Notify::new());
    let mut writer = tokio::spawn(write_loop(wr, rx, Arc::clone(&queued)));
    let peer = Peer {
        addr,
        name: addr.to_string(),
        tx,
        queued,
        kill: Arc::clone(&kill),
    };
    if shared.lock().join(id, peer) {
        let end = read_loop(id, &mut rd, &shared, &kill, &mut stop).await;
        match end {
            End::Overflow => {
                warn!("{addr} is not reading: unsent output over the limit, disconnecting")
            }
            _ => debug!("{addr} leaves: {end:?}"),
        }
        shared.lock().leave(id, end);
        if end == End::Overflow {
            writer.abort();
            return;
        }
    }
    // The table dropped our sender: the writer delivers what is owed, then closes. Input
    // meanwhile is read and dropped, so that closing with unread input does not reset the
    // connection and destroy that output.
    let drain_input = async {
        let mut sink = [0u8; 4096];
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        std::future::pending::<()>().await
    };
    let linger = async {
        tokio::select! {
            _ = &mut writer => {}
            _ = drain_input => {}
        }
    };
    if tokio::time::timeout(shared.config.shutdown_grace, linger)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Reads lines and carries them out until the user leaves.
async fn read_loop(
    id: u64,
    rd: &mut OwnedReadHalf,
    shared: &Shared,
    kill: &Notify,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let max_line = shared.config.max_line_bytes;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut discarding = false; // inside a too-long line, skipping to its "\n"
    loop {
        // Never more than max_line bytes are kept between reads, so this stays bounded.
        buf.reserve(READ_CHUNK);
        let read = async {
            match shared.config.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, rd.read_buf(&mut buf)).await.ok(),
                None => Some(rd.read_buf(&mut buf).await),
            }
        };
        tokio::select! {
            r = read => match r {
                None => return End::Idle,
                Some(Ok(0)) | Some(Err(_)) => return End::Eof,
                Some(Ok(_)) => {}
            },
            _ = kill.notified() => return End::Overflow,
            _ = stop.changed() => return End::Stopped,
        }
        let mut done = 0;
        loop {
            if discarding {
                match buf[done..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        done += i + 1;
                        discarding = false;
                    }
                    None => {
                        done = buf.len();
                        break;
                    }
                }
            }
            match next_line(&buf[done..], max_line) {
                Line::Complete { text, used } => {
                    shared.lock().handle(id, text);
                    done += used;
                }
                Line::TooLong => {
                    let texts = shared.config.lang.texts();
                    shared
                        .lock()
                        .send_to(id, texts.line.too_long.as_bytes().into());
                    discarding = true;
                }
                Line::Incomplete => break,
            }
        }
        buf.drain(..done);
    }
}

/// Drains the user's channel into the socket: everything queued, then one flush.
async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    queued: Arc<AtomicUsize>,
) -> io::Result<()> {
    let mut out = BufWriter::new(wr);
    while let Some(msg) = rx.recv().await {
        let mut written = msg.len();
        out.write_all(&msg).await?;
        while let Ok(msg) = rx.try_recv() {
            written += msg.len();
            out.write_all(&msg).await?;
        }
        out.flush().await?;
        queued.fetch_sub(written, Ordering::Relaxed);
    }
    out.shutdown().await
}

async fn run(config: Config) -> io::Result<()> {
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", config.host, config.port),
            )
        })?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let local = listener.local_addr()?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{local}")?;
        stdout.flush()?;
    }
    info!("listening on {local}");

    let texts = config.lang.texts();
    let state = State {
        texts,
        max_outbuf: config.max_outbuf_bytes,
        max_conns: config.max_conns,
        closing: false,
        peers: HashMap::new(),
        names: HashMap::new(),
    };
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(state),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    let mut accept_failing = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        if !accept_failing {
                            warn!("accept failed: {e}; retrying every {ACCEPT_PAUSE:?}");
                            accept_failing = true;
                        }
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                };
                if std::mem::take(&mut accept_failing) {
                    info!("accepting again");
                }
                next_id += 1;
                conns.spawn(serve(next_id, stream, addr, Arc::clone(&shared), stop_rx.clone()));
            }
            Some(joined) = conns.join_next() => {
                if let Err(e) = joined {
                    error!("connection task failed: {e}");
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }

    let grace = shared.config.shutdown_grace;
    info!(
        "shutting down: telling {} connections, flushing for up to {grace:?}",
        conns.len()
    );
    drop(listener);
    shared.lock().close();
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    tokio::select! {
        r = tokio::time::timeout(grace, drain) => if r.is_err() {
            warn!("shutdown grace over: dropping {} connections", conns.len());
        },
        _ = sigint.recv() => info!("second signal: stopping now"),
        _ = sigterm.recv() => info!("second signal: stopping now"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = imserver_mio::cli::parse_args();
    // The comparison covers the line protocol of one process only; say so rather than
    // ignore the flags.
    let unsupported = [
        ("--ws-port", args.server.ws_port.is_some()),
        ("--http-port", args.server.http_port.is_some()),
        ("--redis", args.server.redis.is_some()),
        ("--reuse-port", args.server.reuse_port),
    ];
    if let Some((flag, _)) = unsupported.iter().find(|(_, given)| *given) {
        eprintln!("imserver-tokio: {flag} is not supported by the comparison variant (line protocol, one process)");
        return ExitCode::from(2);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `--workers N` keeps the multi-thread scheduler even for N = 1 (rather than
    // `current_thread`), so 1 and N workers run the same scheduler and only the thread
    // count differs. The server itself is spawned onto the workers, so with `--workers 1`
    // all of it runs on that one thread; the main thread only waits in `block_on`.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        builder.worker_threads(args.workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imserver-tokio: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { tokio::spawn(run(args.server.config())).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("imserver-tokio: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("imserver-tokio: server task failed: {e}");
            ExitCode::FAILURE
        }
    }
}
