//! What imbench needs from the OS beyond std and mio: the server's memory and CPU time from
//! /proc (CPU time to the microsecond from each thread's `schedstat`, since `stat`'s 10 ms
//! ticks are a large part of a short run's server time) (and the peak of its memory during a run, [`PeakRss`]), its own open-file limit (read, not changed: the caller raises it, e.g. with
//! `ulimit -n`), and sockets bound to a chosen source address before they connect (so more
//! than one ephemeral port range is available), made with `socket2`. No `unsafe`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Kernel clock ticks per second in /proc/PID/stat (USER_HZ: 100 on every Linux ABI we run on).
const CLOCK_TICKS_PER_S: u64 = 100;

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// Resident memory, kB (VmRSS).
    pub rss_kb: u64,
    /// CPU time, µs: the sum over the process's threads of `/proc/PID/task/TID/schedstat`'s
    /// run time (threads that exited are not counted: the servers measured keep theirs), or
    /// user plus system time from `/proc/PID/stat` in 10 ms ticks where that is unreadable.
    pub cpu_us: u64,
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
        cpu_us: match threads_run_ns(pid) {
            Some(ns) => ns / 1000,
            None => {
                stat_cpu_ticks(&stat).ok_or_else(|| bad("utime/stime"))? * 1_000_000
                    / CLOCK_TICKS_PER_S
            }
        },
    })
}

/// Resident memory of `/proc/PID`, kB (VmRSS), without the CPU time: what [`PeakRss`] reads.
///
/// # Errors
/// When the process is gone or its status cannot be read or parsed.
pub fn rss_kb(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_kb(&status, "VmRSS:").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS in /proc/{pid}"),
        )
    })
}

/// How often a run samples the watched processes' resident memory for its peak.
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The highest resident memory (VmRSS) of each watched process seen during this run.
///
/// The kernel's own peak, VmHWM, is the peak of the process's whole life, earlier runs
/// against the same server included; so the run's loop samples VmRSS every
/// [`RSS_SAMPLE_EVERY`] instead (one small read of /proc per process, between two polls)
/// and keeps the maximum. A peak shorter than the period can be missed.
pub struct PeakRss {
    pids: Vec<u32>,
    /// Per pid, in `pids` order; 0 until a sample succeeds.
    peak_kb: Vec<u64>,
    next_at: Instant,
}

impl PeakRss {
    /// Watches `pids` (none: never due); the first sample is due at `now`.
    pub fn new(pids: &[u32], now: Instant) -> PeakRss {
        PeakRss {
            pids: pids.to_vec(),
            peak_kb: vec![0; pids.len()],
            next_at: now,
        }
    }

    /// When the next sample is due; `None` when nothing is watched.
    pub fn next_at(&self) -> Option<Instant> {
        (!self.pids.is_empty()).then_some(self.next_at)
    }

    /// Samples every pid if a sample is due at `now`. A process that cannot be read keeps
    /// its peak so far: the run's last sample reports that error.
    pub fn sample_if_due(&mut self, now: Instant) {
        if self.pids.is_empty() || now < self.next_at {
            return;
        }
        for (peak, &pid) in self.peak_kb.iter_mut().zip(&self.pids) {
            if let Ok(kb) = rss_kb(pid) {
                *peak = (*peak).max(kb);
            }
        }
        self.next_at = now + RSS_SAMPLE_EVERY;
    }

    /// Each pid's peak so far, kB, in the order given to [`PeakRss::new`].
    pub fn peak_kb(&self) -> &[u64] {
        &self.peak_kb
    }
}

/// The number of kB on the `key` line of /proc/PID/status (`VmRSS:\t  1234 kB`).
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from its last `)`.
/// The run time of every thread of `/proc/PID`, ns.
fn threads_run_ns(pid: &str) -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing is simply not counted.
        if let Ok(text) = std::fs::read_to_string(path) {
            sum += schedstat_run_ns(&text)?;
        }
    }
    Some(sum)
}

/// The first field of a `schedstat` line: time spent on the CPU, ns.
fn schedstat_run_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

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

/// `EINPROGRESS`: a non-blocking connect has started. (`io::ErrorKind::InProgress` is not
/// stable yet, and the crate takes no `libc` dependency for one constant.)
const EINPROGRESS: i32 = if cfg!(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)) {
    36
} else if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
    150
} else {
    115 // Linux (asm-generic) and most others
};

/// Starts a non-blocking connect to `dst` from `src` (port chosen by the kernel).
///
/// # Errors
/// Socket creation, `bind` (e.g. out of ports on `src`) or an immediate `connect` failure.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "source addresses are IPv4; connect to 127.0.0.1",
        ));
    };
    // socket2 opens it close-on-exec; non-blocking before connect so connect returns at once.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
    match socket.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // The socket is non-blocking and connecting, which is what mio's own connect returns.
    Ok(mio::net::TcpStream::from_std(socket.into()))
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
        assert_eq!(schedstat_run_ns("1508640 223 1\n"), Some(1_508_640));
        assert_eq!(schedstat_run_ns(""), None);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample("self").expect("/proc/self");
        assert!(s.rss_kb > 0);
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        let later = sample("self").expect("/proc/self");
        assert!(later.cpu_us >= s.cpu_us + 10_000, "{s:?} -> {later:?}");
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn the_peak_is_the_highest_sample_seen() {
        let me = std::process::id();
        let t0 = Instant::now();
        let mut peak = PeakRss::new(&[me], t0);
        assert_eq!(peak.next_at(), Some(t0));
        peak.sample_if_due(t0);
        let first = peak.peak_kb()[0];
        assert!(first > 0);
        assert_eq!(peak.next_at(), Some(t0 + RSS_SAMPLE_EVERY));
        let grown = vec![1u8; 64 << 20]; // 64 MiB touched, then freed before the next sample
        assert!(grown.iter().all(|&b| b == 1));
        peak.sample_if_due(t0 + RSS_SAMPLE_EVERY);
        drop(grown);
        assert!(
            peak.peak_kb()[0] >= first + (32 << 10),
            "{first} -> {:?}",
            peak.peak_kb()
        );
        let high = peak.peak_kb()[0];
        peak.sample_if_due(t0 + 2 * RSS_SAMPLE_EVERY);
        assert!(peak.peak_kb()[0] >= high, "a lower sample leaves the peak");
        let none = PeakRss::new(&[], t0);
        assert_eq!((none.next_at(), none.peak_kb().len()), (None, 0));
    }

    #[test]
    fn a_socket_bound_to_a_second_loopback_address_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = listener.local_addr().unwrap();
        let stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), dst).unwrap();
        let (_peer, from) = listener.accept().unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.2");
        assert_eq!(stream.local_addr().unwrap(), from);
    }
}
