//! `--workers N`: one process per core. The loop stays one thread with one `mio::Poll`;
//! a second core is a second process, as nginx runs a worker per core and Redis a server
//! per core. N copies of this binary listen on the same ports with `SO_REUSEPORT` (the
//! kernel spreads new connections over them) and are one chat through Redis, exactly as
//! servers on several machines are. This supervisor serves nobody itself; it
//! - holds every listener's port (bound, never listening: see [`Reserved`]), so a port of 0
//!   is picked once for all workers, and nobody else can take a port while a worker restarts;
//! - starts each worker as the command line it was given plus `--workers 1 --reuse-port
//!   --node-id ID --port P ...` (a flag given later wins, see [`crate::cli::MioArgs`]); the
//!   K-th worker started is node `BASE-K`, so a restarted worker is a new node and the
//!   others announce the dead one's users offline as for any server that died;
//! - returns the listeners' addresses once every worker is listening, for `main` to print
//!   as a single server does, so scripts and tests need not know about workers;
//! - restarts a worker that exits, after a backoff that doubles with each of its restarts
//!   in the last minute, and gives up on one that died more than
//!   [`MAX_RESTARTS_PER_MINUTE`] times in a minute;
//! - forwards SIGINT and SIGTERM to every worker, and returns once they have all stopped
//!   (killing those still running `--shutdown-grace` plus [`STOP_SLACK`] later).
//!
//! Workers run in a process group of their own, so a Ctrl-C in a terminal reaches them once,
//! through the supervisor (twice would end their graceful shutdown at once); on Linux a
//! worker also gets SIGTERM when the supervisor dies.

use crate::config::Config;
use crate::net::{random_node_id, reserve_ports, Reserved, StartError};
use log::{error, info, warn};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Restarts of one worker within [`RESTART_WINDOW`]; it dying once more means something
/// is wrong that restarting will not fix, and the supervisor gives up on it.
pub const MAX_RESTARTS_PER_MINUTE: usize = 5;
/// The window in which restarts are counted.
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// The wait before a worker's first restart in a window; each further one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How much longer than `--shutdown-grace` stopping workers get before they are killed.
pub const STOP_SLACK: Duration = Duration::from_secs(5);
/// The longest node id (as `--node-id` allows).
const MAX_NODE_ID_CHARS: usize = 32;
/// What a worker's node id adds to the base: `-` and the start count, a `u32`.
const NODE_SUFFIX_CHARS: usize = 11;
/// The supervisor's only event source.
const SIGNALS: Token = Token(0);
/// How long a starting worker may take to listen. Its ports are held already and Redis is
/// reached in the background, so a worker silent this long is stuck, not slow.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the workers could not be started or kept running.
#[derive(Debug)]
pub enum SuperviseError {
    /// More than one worker without `--redis`: their users could not see each other.
    NeedsRedis(usize),
    /// A `--node-id` too long to number the workers under.
    LongNodeId(String),
    /// A port could not be held.
    Start(StartError),
    /// The supervisor itself could not run: its binary, its signals, a worker's start.
    Setup(io::Error),
    /// This worker (counted from 1) exited before it was listening; it said why.
    WorkerFailed(usize),
    /// This worker was not listening after [`START_TIMEOUT`].
    WorkerSilent(usize),
    /// Every worker died too often to be restarted.
    AllGaveUp,
}

impl fmt::Display for SuperviseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperviseError::NeedsRedis(n) => write!(
                f,
                "--workers {n} needs --redis: users on different workers meet only through Redis"
            ),
            SuperviseError::LongNodeId(id) => write!(
                f,
                "--node-id {id:?} is too long for --workers: at most {} characters, as each \
                 worker adds -N",
                MAX_NODE_ID_CHARS - NODE_SUFFIX_CHARS
            ),
            SuperviseError::Start(e) => e.fmt(f),
            SuperviseError::Setup(e) => write!(f, "cannot run the workers: {e}"),
            SuperviseError::WorkerFailed(k) => write!(
                f,
                "worker {k} stopped before it was listening; stopped the others"
            ),
            SuperviseError::WorkerSilent(k) => write!(
                f,
                "worker {k} was not listening after {} s; stopped the workers",
                START_TIMEOUT.as_secs()
            ),
            SuperviseError::AllGaveUp => {
                f.write_str("every worker died too often to be restarted; stopped")
            }
        }
    }
}

impl std::error::Error for SuperviseError {}

/// One worker's place: its process while it runs, and its restarts.
struct Slot {
    /// Counted from 1, for the log.
    number: usize,
    /// The running process, and its node id.
    child: Option<(Child, String)>,
    /// When it died within the last [`RESTART_WINDOW`].
    deaths: VecDeque<Instant>,
    /// When it is to be started again.
    restart_at: Option<Instant>,
    /// Whether it died too often to be restarted.
    given_up: bool,
}

/// The supervisor: start with [`Supervisor::start`], then [`Supervisor::run`] until a signal.
pub struct Supervisor {
    /// The ports, held for the supervisor's life.
    reserved: Vec<Reserved>,
    /// What every worker runs: this binary, resolved once (a binary rebuilt meanwhile is
    /// what a restarted worker then runs), and the arguments it adds.
    exe: PathBuf,
    args: Vec<OsString>,
    /// Node ids are `base-K`.
    base: String,
    /// Workers started so far, the `K` of the next node id.
    started: u32,
    slots: Vec<Slot>,
    addrs: Vec<SocketAddr>,
    poll: Poll,
    signals: Signals,
    /// Workers still running then are killed, once a stop signal has come.
    stop_by: Option<Instant>,
    grace: Duration,
}

impl Supervisor {
    /// Holds the ports, starts `workers` workers and waits until each one is listening.
    ///
    /// # Errors
    /// [`SuperviseError`], whose `Display` is the one line printed before exiting; workers
    /// already started are stopped first.
    pub fn start(config: &Config, workers: usize) -> Result<Supervisor, SuperviseError> {
        if config.cluster.redis.is_none() {
            return Err(SuperviseError::NeedsRedis(workers));
        }
        let base = match &config.cluster.node_id {
            Some(id) if id.len() > MAX_NODE_ID_CHARS - NODE_SUFFIX_CHARS => {
                return Err(SuperviseError::LongNodeId(id.clone()))
            }
            Some(id) => id.clone(),
            None => random_node_id(),
        };
        let reserved = reserve_ports(config).map_err(SuperviseError::Start)?;
        // Registered before any worker starts, so no SIGCHLD is missed.
        let poll = Poll::new().map_err(SuperviseError::Setup)?;
        let mut signals =
            Signals::new([SIGINT, SIGTERM, SIGCHLD]).map_err(SuperviseError::Setup)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(SuperviseError::Setup)?;
        let mut supervisor = Supervisor {
            exe: std::env::current_exe().map_err(SuperviseError::Setup)?,
            args: worker_args(&reserved),
            reserved,
            base,
            started: 0,
            slots: Vec::new(),
            addrs: Vec::new(),
            poll,
            signals,
            stop_by: None,
            grace: config.shutdown_grace,
        };
        info!(
            "supervisor: starting {workers} workers as nodes {}-N",
            supervisor.base
        );
        if let Err(e) = supervisor.start_workers(workers) {
            supervisor.kill_all();
            return Err(e);
        }
        Ok(supervisor)
    }

    /// Starts the workers one after the other, each once the one before is listening, and
    /// keeps the addresses they print.
    fn start_workers(&mut self, workers: usize) -> Result<(), SuperviseError> {
        for number in 1..=workers {
            let mut child = self.spawn(number, Stdio::piped())?;
            let addrs = listening_addrs(&mut child.0, self.reserved.len(), START_TIMEOUT);
            self.slots.push(Slot {
                number,
                child: Some(child),
                deaths: VecDeque::new(),
                restart_at: None,
                given_up: false,
            });
            self.addrs = addrs.map_err(|silent| match silent {
                Silent::Exited => SuperviseError::WorkerFailed(number),
                Silent::TimedOut => SuperviseError::WorkerSilent(number),
            })?;
        }
        Ok(())
    }

    /// Every listener's address, as a single server's [`crate::Server::local_addrs`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Keeps the workers running until SIGINT or SIGTERM, which it forwards to them; returns
    /// once they have all stopped.
    ///
    /// # Errors
    /// [`SuperviseError::AllGaveUp`] when every worker died too often, or `Setup` when
    /// polling for signals fails.
    pub fn run(&mut self) -> Result<(), SuperviseError> {
        let mut events = Events::with_capacity(8);
        loop {
            let now = Instant::now();
            let timeout = self
                .next_deadline()
                .map(|t| t.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.kill_all();
                    return Err(SuperviseError::Setup(e));
                }
            }
            let now = Instant::now();
            self.on_signals(now);
            self.reap(now);
            match self.stop_by {
                Some(_) if self.slots.iter().all(|s| s.child.is_none()) => return Ok(()),
                Some(deadline) if now >= deadline => self.kill_all(),
                Some(_) => {}
                None if self.slots.iter().all(|s| s.given_up) => {
                    return Err(SuperviseError::AllGaveUp)
                }
                None => self.restart_due(now),
            }
        }
    }

    /// The next restart, or the stop deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.restart_at)
            .chain(self.stop_by)
            .min()
    }

    /// Starts worker `number` (counted from 1) as the next node, its stdout to `stdout`.
    fn spawn(&mut self, number: usize, stdout: Stdio) -> Result<(Child, String), SuperviseError> {
        self.started += 1;
        let node = format!("{}-{}", self.base, self.started);
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .args(["--node-id", &node])
            .stdin(Stdio::null())
            .stdout(stdout)
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(SuperviseError::Setup)?;
        info!("worker {number} started: pid {}, node {node}", child.id());
        Ok((child, node))
    }

    /// The first stop signal is forwarded and starts the stop deadline; a second one is
    /// forwarded too (the workers then stop at once).
    fn on_signals(&mut self, now: Instant) {
        for signal in self.signals.pending() {
            if signal != SIGINT && signal != SIGTERM {
                continue; // SIGCHLD: `reap` looks at every worker anyway
            }
            if self.stop_by.is_none() {
                info!("supervisor: stopping the workers");
                self.stop_by = Some(now + self.grace + STOP_SLACK);
            }
            for slot in &mut self.slots {
                slot.restart_at = None;
                if let Some((child, _)) = &slot.child {
                    send_signal(child, signal);
                }
            }
        }
    }

    /// Collects the workers that exited, and plans their restarts unless stopping.
    fn reap(&mut self, now: Instant) {
        let stopping = self.stop_by.is_some();
        for slot in &mut self.slots {
            let Some((child, node)) = &mut slot.child else {
                continue;
            };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(e) => {
                    warn!(
                        "worker {} (node {node}): cannot wait for it: {e}",
                        slot.number
                    );
                    continue;
                }
            };
            let (pid, node) = (child.id(), node.clone());
            slot.child = None;
            if stopping {
                info!(
                    "worker {} (pid {pid}, node {node}) stopped: {status}",
                    slot.number
                );
            } else {
                slot.died(now, &format!("(pid {pid}, node {node}) exited: {status}"));
            }
        }
    }

    /// Starts again every worker whose backoff is over.
    fn restart_due(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            if slot.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            slot.restart_at = None;
            let number = slot.number;
            // Its address lines are known already: a restarted worker's stdout goes nowhere.
            let started = self.spawn(number, Stdio::null());
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            match started {
                Ok(child) => slot.child = Some(child),
                Err(e) => slot.died(now, &format!("could not be started again: {e}")),
            }
        }
    }

    /// SIGKILL to every worker still running, and waits for each.
    fn kill_all(&mut self) {
        for slot in &mut self.slots {
            if let Some((mut child, node)) = slot.child.take() {
                warn!("worker {} (node {node}): killing it", slot.number);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Slot {
    /// The worker died (`how`, for the log): plans its restart, or gives up on it.
    fn died(&mut self, now: Instant, how: &str) {
        while self
            .deaths
            .front()
            .is_some_and(|&t| now.duration_since(t) >= RESTART_WINDOW)
        {
            self.deaths.pop_front();
        }
        if self.deaths.len() >= MAX_RESTARTS_PER_MINUTE {
            error!(
                "worker {} {how}; it died {} times within a minute: not restarting it",
                self.number,
                self.deaths.len() + 1
            );
            self.given_up = true;
            return;
        }
        let backoff = FIRST_BACKOFF * (1 << self.deaths.len());
        warn!("worker {} {how}; restarting it in {backoff:?}", self.number);
        self.deaths.push_back(now);
        self.restart_at = Some(now + backoff);
    }
}

/// What every worker is started with besides its node id: this process's command line,
/// then `--workers 1 --reuse-port` and each held port (later flags win).
fn worker_args(reserved: &[Reserved]) -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    for flag in ["--workers", "1", "--reuse-port"] {
        args.push(flag.into());
    }
    for r in reserved {
        args.push(r.role.flag().into());
        args.push(r.port.to_string().into());
    }
    args
}

/// Why a worker's address lines did not come.
#[derive(Debug, PartialEq, Eq)]
enum Silent {
    /// It exited, or printed something else, first.
    Exited,
    /// Nothing within the time allowed.
    TimedOut,
}

/// The `listeners` address lines a worker prints once it is listening, waiting at most
/// `within` for them. Its stdout is closed afterwards: it prints nothing more there.
fn listening_addrs(
    child: &mut Child,
    listeners: usize,
    within: Duration,
) -> Result<Vec<SocketAddr>, Silent> {
    let mut stdout = child.stdout.take().ok_or(Silent::Exited)?;
    let deadline = Instant::now() + within;
    let mut text = Vec::new();
    while text.iter().filter(|&&b| b == b'\n').count() < listeners {
        if !readable_before(&stdout, deadline)? {
            return Err(Silent::TimedOut);
        }
        let mut chunk = [0u8; 512];
        match stdout.read(&mut chunk) {
            Ok(0) => return Err(Silent::Exited),
            Ok(n) => text.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Silent::Exited),
        }
    }
    text.split(|&b| b == b'\n')
        .take(listeners)
        .map(|line| {
            let line = std::str::from_utf8(line).map_err(|_| Silent::Exited)?;
            line.trim().parse().map_err(|_| Silent::Exited)
        })
        .collect()
}

/// Whether the pipe has something to read (or was closed) before `deadline`: `poll(2)` on
/// the one descriptor, so a `read` after it does not block. A signal (SIGCHLD, when a
/// worker dies) only interrupts the wait.
fn readable_before(pipe: &ChildStdout, deadline: Instant) -> Result<bool, Silent> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut fd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is one valid pollfd that lives across the call, and its count is 1.
        match unsafe { libc::poll(&mut fd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ if io::Error::last_os_error().kind() == ErrorKind::Interrupted => {}
            _ => return Err(Silent::Exited),
        }
    }
}

/// Sends `signal` to a worker.
fn send_signal(child: &Child, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill takes two integers and touches no memory of ours. The child is not
    // reaped yet (reaping clears its slot), so its pid cannot name another process.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// On Linux, has the worker get SIGTERM when the supervisor dies (killed with SIGKILL,
/// say), so that no worker outlives it holding a port and a node. The signal follows the
/// thread that started the worker: the supervisor's only thread.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure only calls prctl and getppid, which are
    // async-signal-safe, and makes its errors from OS codes, without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The supervisor died before the line above: nobody would stop this worker.
            if u32::try_from(libc::getppid()) != Ok(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere workers outlive a supervisor that was killed; stopping it with a signal stops
/// them.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Slot {
        Slot {
            number: 1,
            child: None,
            deaths: VecDeque::new(),
            restart_at: None,
            given_up: false,
        }
    }

    fn piped(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_workers_address_lines_are_read_however_they_arrive() {
        let mut child = piped("printf '127.0.0.1:5'; sleep 0.2; printf '000\\n[::1]:7\\n'");
        let addrs = listening_addrs(&mut child, 2, Duration::from_secs(10));
        assert_eq!(
            addrs,
            Ok(vec![
                "127.0.0.1:5000".parse().unwrap(),
                "[::1]:7".parse().unwrap()
            ])
        );
        child.wait().unwrap();
    }

    #[test]
    fn a_worker_that_exits_or_says_something_else_first_failed() {
        for script in ["exit 3", "echo 'cannot bind'", "printf '127.0.0.1:1'"] {
            let mut child = piped(script);
            let addrs = listening_addrs(&mut child, 1, Duration::from_secs(10));
            assert_eq!(addrs, Err(Silent::Exited), "{script}");
            child.wait().unwrap();
        }
    }

    #[test]
    fn a_silent_worker_times_out() {
        let mut child = piped("exec sleep 5");
        let t0 = Instant::now();
        let addrs = listening_addrs(&mut child, 1, Duration::from_millis(300));
        assert_eq!(addrs, Err(Silent::TimedOut));
        assert!(t0.elapsed() < Duration::from_secs(4));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn restarts_back_off_and_stop_after_too_many_deaths_in_a_minute() {
        let t0 = Instant::now();
        let mut s = slot();
        let mut now = t0;
        for k in 0..MAX_RESTARTS_PER_MINUTE {
            s.died(now, "died");
            let backoff = FIRST_BACKOFF * (1 << k);
            assert_eq!(s.restart_at, Some(now + backoff), "death {}", k + 1);
            assert!(!s.given_up);
            now += backoff;
        }
        s.died(now, "died");
        assert!(
            s.given_up,
            "{} deaths in {:?}",
            MAX_RESTARTS_PER_MINUTE + 1,
            now - t0
        );
    }

    #[test]
    fn a_random_base_leaves_room_for_the_workers_numbers() {
        let base = random_node_id();
        assert!(
            base.len() <= MAX_NODE_ID_CHARS - NODE_SUFFIX_CHARS,
            "{base}"
        );
        assert_eq!(
            format!("{base}-{}", u32::MAX).len(),
            base.len() + NODE_SUFFIX_CHARS
        );
    }

    #[test]
    fn deaths_a_minute_apart_are_restarted_forever_without_growing_backoff() {
        let mut s = slot();
        let mut now = Instant::now();
        for _ in 0..3 * MAX_RESTARTS_PER_MINUTE {
            s.died(now, "died");
            assert_eq!(s.restart_at, Some(now + FIRST_BACKOFF));
            now += RESTART_WINDOW;
        }
        assert!(!s.given_up);
    }
}
