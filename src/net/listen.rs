//! Listening sockets: binding them at start (with the backlog a connect storm needs), and
//! accepting without spinning when the process runs out of descriptors.

use super::per_ip::PerIp;
use super::reserved::LISTENER_TOP;
use super::storm::Storm;
use crate::config::Config;
use log::{info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Connections the kernel queues for `accept` (capped by net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The host did not resolve to any address.
    Resolve {
        /// `host:port` as given.
        addr: String,
        /// The resolver's error, if it gave one.
        source: Option<io::Error>,
    },
    /// Binding a listener failed (port in use, no permission, bad address).
    Bind {
        /// `host:port` as given.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The poll or the signal handlers could not be set up.
    Setup(io::Error),
    /// The TLS certificate or key could not be used.
    Tls(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Resolve {
                addr,
                source: Some(e),
            } => write!(f, "cannot resolve {addr}: {e}"),
            StartError::Resolve { addr, source: None } => {
                write!(f, "cannot resolve {addr}: no address")
            }
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Setup(e) => write!(f, "cannot set up the event loop: {e}"),
            StartError::Tls(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StartError {}

/// A listening socket and what its connections speak first.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Its bound address.
    pub addr: SocketAddr,
    /// HTTP (with WebSocket upgrades) rather than the line protocol.
    pub web: bool,
    /// Whether its connections speak TLS.
    pub tls: bool,
}

/// Binds the configured listeners: the line protocol's, then the WebSocket one's, then
/// the HTTP one's (the same non-zero port for both means one listener serving both), then
/// the line protocol's over TLS, then HTTP and WebSocket over TLS.
pub fn bind_all(config: &Config, poll: &Poll) -> Result<Vec<Listener>, StartError> {
    let mut ports = vec![(config.port, false, false)];
    ports.extend(config.ws_port.map(|p| (p, true, false)));
    let shared = config.http_port.is_some() && config.http_port == config.ws_port;
    if !(shared && config.http_port != Some(0)) {
        ports.extend(config.http_port.map(|p| (p, true, false)));
    }
    ports.extend(config.tls.port.map(|p| (p, false, true)));
    ports.extend(config.tls.wss_port.map(|p| (p, true, true)));
    let mut listeners = Vec::new();
    for (i, (port, web, tls)) in ports.into_iter().enumerate() {
        let mut socket = bind_listener(&config.host, port)?;
        let addr = socket.local_addr().map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut socket, Token(LISTENER_TOP - i), Interest::READABLE)
            .map_err(StartError::Setup)?;
        let what = match (web, tls) {
            (true, false) => "HTTP and WebSocket",
            (false, false) => "line protocol",
            (true, true) => "HTTPS and WebSocket over TLS",
            (false, true) => "line protocol over TLS",
        };
        info!("listening on {addr} ({what})");
        listeners.push(Listener {
            socket,
            addr,
            web,
            tls,
        });
    }
    Ok(listeners)
}

/// Binds one listener on `host:port`, with the larger backlog.
fn bind_listener(host: &str, port: u16) -> Result<TcpListener, StartError> {
    let addr_text = format!("{host}:{port}");
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| StartError::Resolve {
            addr: addr_text.clone(),
            source: Some(e),
        })?;
    let mut last_err = None;
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                // mio listens with std's backlog of 128: a burst of connects beyond it (a
                // load test, a reconnect storm) has SYNs dropped and retried a second
                // later. Linux lets a second `listen` raise it.
                socket2::SockRef::from(&listener)
                    .listen(LISTEN_BACKLOG)
                    .map_err(StartError::Setup)?;
                return Ok(listener);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(match last_err {
        Some(source) => StartError::Bind {
            addr: addr_text,
            source,
        },
        None => StartError::Resolve {
            addr: addr_text,
            source: None,
        },
    })
}

/// Accepting, and its failures.
#[derive(Debug, Default)]
pub struct Accept {
    /// Set while accepting is paused after running out of file descriptors.
    pub paused_until: Option<Instant>,
    /// Whether accept is failing (logged once per episode, not once per retry).
    failing: bool,
    /// Connections refused at `--max-conns`.
    pub refused: Storm,
    /// Connections refused by the per-address limits.
    pub refused_ip: Storm,
    /// The per-address limits' memory.
    pub per_ip: PerIp,
}

impl Accept {
    /// The next pending connection of `listener`, or `None` when there is none (or
    /// accepting is paused). On running out of descriptors, pauses accepting for a while
    /// instead of spinning: the listener's edge would not fire again for the connections
    /// still queued, so the pause timer retries them.
    pub fn next(&mut self, listener: &Listener, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        if self.paused_until.is_some() {
            return None;
        }
        loop {
            match listener.socket.accept() {
                Ok(pair) => {
                    if self.failing {
                        info!("accepting again");
                        self.failing = false;
                    }
                    return Some(pair);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    if !self.failing {
                        warn!("accept failed: {e}; retrying every {ACCEPT_PAUSE:?} until it works");
                        self.failing = true;
                    }
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    return None;
                }
            }
        }
    }
}

/// A node id for a server started without `--node-id`: unique enough among the servers of
/// one cluster (time, process id and a stack address, hashed).
pub fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("n{:08x}", h.finish() as u32)
}
