//! A real `nats-server` child process on a free port of 127.0.0.1, for `imbench --target
//! nats`. Killed (SIGKILL) and reaped on drop; every wait has a deadline.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::redis::free_port;

/// Where Debian 12's `nats-server` package puts it.
const DEBIAN_NATS: &str = "/usr/sbin/nats-server";

/// The `nats-server` to run: the one on PATH, else Debian's. A normal user's PATH lacks
/// `/usr/sbin`, so without this fallback the README's `cargo test`, run as yourself after
/// installing as root, would skip every NATS test (silently: a passing test's note is
/// captured).
pub fn program() -> &'static str {
    let on_path = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if on_path || !Path::new(DEBIAN_NATS).exists() {
        "nats-server"
    } else {
        DEBIAN_NATS
    }
}

/// A running `nats-server`.
pub struct Nats {
    pub addr: SocketAddr,
    pub child: Child,
}

impl Nats {
    /// Starts a NATS server on a free port. Another process may take the port between the
    /// probe and the server's bind (then it exits at once): retry on another.
    pub fn start() -> Nats {
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(program())
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run nats-server (is it installed?): {e}"));
            let mut nats = Nats {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
            };
            if nats.wait_listening() {
                return nats;
            }
        }
        panic!("nats-server did not start on any of 3 free ports");
    }

    /// Whether it accepts connections (false if it exited first: the port was taken).
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
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

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
