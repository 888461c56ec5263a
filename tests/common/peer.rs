//! A pub/sub server imbench can be pointed at with `--target`: a real `redis-server` or
//! `nats-server` child on a free port of 127.0.0.1, killed and reaped on drop. When the
//! program is not installed the test prints a note and skips (CI installs both, see
//! `.ci/run`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a peer gets to listen.
const STARTUP: Duration = Duration::from_secs(10);

/// A running peer.
pub struct Peer {
    pub addr: SocketAddr,
    pub child: Child,
}

impl Peer {
    /// `redis-server` without persistence, with `extra` flags (`--requirepass x`).
    pub fn redis(extra: &[&str]) -> Option<Peer> {
        let mut args = vec!["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        args.extend(extra);
        Peer::start("redis-server", "--port", &args)
    }

    /// `nats-server` on 127.0.0.1.
    pub fn nats() -> Option<Peer> {
        Peer::start("nats-server", "-p", &["-a", "127.0.0.1"])
    }

    /// `bin PORT_FLAG PORT args…` on a free port; `None` (with a note) when `bin` is not
    /// installed. Another process may take the port between the probe and the peer's bind,
    /// so a peer that exits at start is tried again on another port.
    fn start(bin: &str, port_flag: &str, args: &[&str]) -> Option<Peer> {
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = match Command::new(bin)
                .arg(port_flag)
                .arg(port.to_string())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("NOTE: {bin} cannot run ({e}): test skipped; install it to run it");
                    return None;
                }
            };
            let mut peer = Peer {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
            };
            if peer.wait_listening() {
                return Some(peer);
            }
        }
        panic!("{bin} did not start on any of 3 free ports");
    }

    /// Whether it accepts connections (false if it exited first: the port was taken).
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
