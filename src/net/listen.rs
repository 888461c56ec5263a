//! Listening sockets: binding them at start (with the backlog a connect storm needs, and
//! with `SO_REUSEPORT` under `--reuse-port`, so several processes share a port and the
//! kernel spreads new connections over them), holding ports for `--workers`, and accepting
//! without spinning when the process runs out of descriptors.

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

/// Which flag asked for a listener, and so what its connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--port`: the line protocol.
    Line,
    /// `--ws-port`: HTTP with WebSocket upgrades.
    Ws,
    /// `--http-port`: HTTP with WebSocket upgrades (the API's listener).
    Http,
    /// `--tls-port`: the line protocol over TLS.
    Tls,
    /// `--wss-port`: HTTP and WebSocket over TLS.
    Wss,
}

impl Role {
    /// The flag that sets this listener's port.
    pub fn flag(self) -> &'static str {
        match self {
            Role::Line => "--port",
            Role::Ws => "--ws-port",
            Role::Http => "--http-port",
            Role::Tls => "--tls-port",
            Role::Wss => "--wss-port",
        }
    }

    fn web(self) -> bool {
        matches!(self, Role::Ws | Role::Http | Role::Wss)
    }

    fn tls(self) -> bool {
        matches!(self, Role::Tls | Role::Wss)
    }
}

/// The listeners `config` asks for, in the order they are bound and printed: the line
/// protocol's, then the WebSocket one's, then the HTTP one's (the same non-zero port for
/// both means one listener serving both), then the line protocol's over TLS, then HTTP
/// and WebSocket over TLS.
pub fn planned(config: &Config) -> Vec<(Role, u16)> {
    let mut ports = vec![(Role::Line, config.port)];
    ports.extend(config.ws_port.map(|p| (Role::Ws, p)));
    let shared = config.http_port.is_some() && config.http_port == config.ws_port;
    if !(shared && config.http_port != Some(0)) {
        ports.extend(config.http_port.map(|p| (Role::Http, p)));
    }
    ports.extend(config.tls.port.map(|p| (Role::Tls, p)));
    ports.extend(config.tls.wss_port.map(|p| (Role::Wss, p)));
    ports
}

/// Binds the configured listeners (see [`planned`]), sharing their ports with other
/// processes when `--reuse-port` asks for it.
pub fn bind_all(config: &Config, poll: &Poll) -> Result<Vec<Listener>, StartError> {
    let mut listeners = Vec::new();
    for (i, (role, port)) in planned(config).into_iter().enumerate() {
        let bound = bind_socket(&config.host, port, config.reuse_port, true)?;
        let mut socket = TcpListener::from_std(bound.into());
        let addr = socket.local_addr().map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut socket, Token(LISTENER_TOP - i), Interest::READABLE)
            .map_err(StartError::Setup)?;
        let what = match role {
            Role::Ws | Role::Http => "HTTP and WebSocket",
            Role::Line => "line protocol",
            Role::Wss => "HTTPS and WebSocket over TLS",
            Role::Tls => "line protocol over TLS",
        };
        let shared = if config.reuse_port {
            ", port shared"
        } else {
            ""
        };
        info!("listening on {addr} ({what}{shared})");
        listeners.push(Listener {
            socket,
            addr,
            web: role.web(),
            tls: role.tls(),
        });
    }
    Ok(listeners)
}

/// A port held for worker processes: bound with `SO_REUSEPORT` but never listening, so the
/// kernel hands it no connection, while nobody without `SO_REUSEPORT` can take the port
/// between two workers' lives.
pub struct Reserved {
    /// The listener it stands for.
    pub role: Role,
    /// The port (the real one when 0 was asked for).
    pub port: u16,
    /// Held, not used: closing it would free the port.
    _socket: socket2::Socket,
}

/// Holds every configured listener's port for worker processes that will bind them with
/// `--reuse-port`; a port of 0 becomes a free one, the same for every worker.
///
/// # Errors
/// [`StartError`] when an address does not resolve or a port is taken (without
/// `SO_REUSEPORT`, or by another user).
pub fn reserve_all(config: &Config) -> Result<Vec<Reserved>, StartError> {
    planned(config)
        .into_iter()
        .map(|(role, port)| {
            let socket = bind_socket(&config.host, port, true, false)?;
            let port = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.port())
                .ok_or_else(|| StartError::Setup(ErrorKind::AddrNotAvailable.into()))?;
            Ok(Reserved {
                role,
                port,
                _socket: socket,
            })
        })
        .collect()
}

/// Binds a non-blocking socket on `host:port` (the first of its addresses that binds),
/// with `SO_REUSEPORT` if `reuse_port`, and makes it listen with the larger backlog if
/// `listen`.
fn bind_socket(
    host: &str,
    port: u16,
    reuse_port: bool,
    listen: bool,
) -> Result<socket2::Socket, StartError> {
    let addr_text = format!("{host}:{port}");
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| StartError::Resolve {
            addr: addr_text.clone(),
            source: Some(e),
        })?;
    let mut last_err = None;
    for addr in addrs {
        match try_bind(addr, reuse_port, listen) {
            Ok(socket) => return Ok(socket),
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

/// One attempt of [`bind_socket`]: the socket options std's and mio's `bind` set
/// (`SO_REUSEADDR`, so a restart does not wait out `TIME_WAIT`), and `SO_REUSEPORT` if
/// asked. The backlog is ours rather than std's 128: a burst of connects beyond it (a
/// load test, a reconnect storm) would have SYNs dropped and retried a second later.
fn try_bind(addr: SocketAddr, reuse_port: bool, listen: bool) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if listen {
        socket.listen(LISTEN_BACKLOG)?;
    }
    Ok(socket)
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

/// A node id for a server started without `--node-id`: a hash of the time, the process id
/// and a per-process random key, then the process id itself, so that processes of one
/// machine started with the same flags (`--reuse-port`, `--workers`) never share an id,
/// and those of different machines almost never (`n1f2e3d4c-4711`).
pub fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let pid = std::process::id();
    h.write_u32(pid);
    format!("n{:08x}-{pid}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_node_id_is_a_valid_id_ending_in_the_pid() {
        let id = random_node_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(
            id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{id}"
        );
        assert_ne!(random_node_id(), id);
    }

    #[test]
    fn the_listeners_follow_the_flags() {
        let config = Config {
            ws_port: Some(0),
            http_port: Some(0),
            ..Config::default()
        };
        let roles = |c: &Config| planned(c).into_iter().map(|(r, _)| r).collect::<Vec<_>>();
        assert_eq!(roles(&config), [Role::Line, Role::Ws, Role::Http]);
        let shared = Config {
            ws_port: Some(8080),
            http_port: Some(8080),
            ..Config::default()
        };
        assert_eq!(roles(&shared), [Role::Line, Role::Ws]);
    }
}
