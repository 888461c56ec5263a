//! What imbench needs from the OS beyond std and mio: the server's memory and CPU time from
//! /proc, its own open-file limit, and sockets bound to a chosen source address before they
//! connect (so more than one ephemeral port range is available).
//!
//! The crate adds no `libc` dependency, so the two system calls std and mio do not offer
//! (`setrlimit`, and `bind` before `connect`) are declared here against the C library that
//! std links anyway. They exist only on Linux x86_64 and aarch64, where the constants and
//! struct layouts below are the kernel's ABI; elsewhere the limit is left as it is and
//! `--src-addrs` above 1 is refused.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

/// Kernel clock ticks per second in /proc/PID/stat (USER_HZ: 100 on every Linux ABI we run on).
const CLOCK_TICKS_PER_S: u64 = 100;

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// Resident memory, kB (VmRSS).
    pub rss_kb: u64,
    /// Peak resident memory so far, kB (VmHWM).
    pub hwm_kb: u64,
    /// User plus system CPU time, ms.
    pub cpu_ms: u64,
}

/// Samples `/proc/PID` (`"self"` for imbench itself).
///
/// # Errors
/// When the process is gone or /proc cannot be read or parsed.
pub fn sample(pid: &str) -> io::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no {what} in /proc/{pid}"),
        )
    };
    Ok(ProcSample {
        rss_kb: status_kb(&status, "VmRSS:").ok_or_else(|| bad("VmRSS"))?,
        hwm_kb: status_kb(&status, "VmHWM:").ok_or_else(|| bad("VmHWM"))?,
        cpu_ms: stat_cpu_ticks(&stat).ok_or_else(|| bad("utime/stime"))? * 1000 / CLOCK_TICKS_PER_S,
    })
}

/// The number of kB on the `key` line of /proc/PID/status (`VmRSS:\t  1234 kB`).
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from its last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The soft limit on open files from /proc/self/limits; `None` if unlimited or unreadable.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises the soft open-file limit to the hard one where the platform allows; best effort.
pub fn raise_open_file_limit() {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let mut lim = ffi::Rlimit { cur: 0, max: 0 };
        // SAFETY: `lim` is a valid, writable rlimit struct of the kernel's layout.
        if unsafe { ffi::getrlimit(ffi::RLIMIT_NOFILE, &mut lim) } == 0 && lim.cur < lim.max {
            lim.cur = lim.max;
            // SAFETY: `lim` is a valid rlimit struct; a failure leaves the limit unchanged.
            let _ = unsafe { ffi::setrlimit(ffi::RLIMIT_NOFILE, &lim) };
        }
    }
}

/// Whether [`connect_from`] works on this platform.
pub const CAN_BIND_SOURCE: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// Starts a non-blocking connect to `dst` from `src` (port chosen by the kernel).
///
/// # Errors
/// Socket creation, `bind` (e.g. out of ports on `src`) or an immediate `connect` failure.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<mio::net::TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "source addresses are IPv4; connect to 127.0.0.1",
        ));
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| ffi::SockaddrIn {
        sin_family: ffi::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: u32::from_ne_bytes(ip.octets()),
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<ffi::SockaddrIn>() as u32;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        ffi::socket(
            ffi::AF_INET,
            ffi::SOCK_STREAM | ffi::SOCK_NONBLOCK | ffi::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns; OwnedFd closes it on error.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let from = sockaddr(src, 0);
    // SAFETY: `from` is a valid sockaddr_in of `len` bytes; `fd` is open.
    if unsafe { ffi::bind(fd, &from, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let to = sockaddr(*dst.ip(), dst.port());
    // SAFETY: `to` is a valid sockaddr_in of `len` bytes; `fd` is open.
    if unsafe { ffi::connect(fd, &to, len) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(ffi::EINPROGRESS) {
            return Err(err);
        }
    }
    // The socket is non-blocking and connecting, which is what mio's own connect returns.
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(
        owned,
    )))
}

/// Starts a non-blocking connect to `dst` from `src`: not available on this platform.
///
/// # Errors
/// Always.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub fn connect_from(_src: Ipv4Addr, _dst: SocketAddr) -> io::Result<mio::net::TcpStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "binding a source address needs Linux on x86_64 or aarch64",
    ))
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod ffi {
    use std::os::raw::c_int;

    pub const AF_INET: c_int = 2;
    pub const SOCK_STREAM: c_int = 1;
    pub const SOCK_NONBLOCK: c_int = 0o4000;
    pub const SOCK_CLOEXEC: c_int = 0o2_000_000;
    pub const EINPROGRESS: i32 = 115;
    pub const RLIMIT_NOFILE: c_int = 7;

    /// `struct sockaddr_in`.
    #[repr(C)]
    pub struct SockaddrIn {
        pub sin_family: u16,
        pub sin_port: u16,
        pub sin_addr: u32,
        pub sin_zero: [u8; 8],
    }

    /// `struct rlimit` (rlim_t is 64 bits on these targets).
    #[repr(C)]
    pub struct Rlimit {
        pub cur: u64,
        pub max: u64,
    }

    extern "C" {
        pub fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
        pub fn bind(fd: c_int, addr: *const SockaddrIn, len: u32) -> c_int;
        pub fn connect(fd: c_int, addr: *const SockaddrIn, len: u32) -> c_int;
        pub fn getrlimit(resource: c_int, rlim: *mut Rlimit) -> c_int;
        pub fn setrlimit(resource: c_int, rlim: *const Rlimit) -> c_int;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kb() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kb(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kb(status, "VmSwap:"), None);
    }

    #[test]
    fn cpu_fields_are_counted_after_the_name() {
        let stat = "42 (im server) (x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample("self").expect("/proc/self");
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn a_socket_bound_to_a_second_loopback_address_connects() {
        if !CAN_BIND_SOURCE {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = listener.local_addr().unwrap();
        let stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), dst).unwrap();
        let (_peer, from) = listener.accept().unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.2");
        assert_eq!(stream.local_addr().unwrap(), from);
    }
}
