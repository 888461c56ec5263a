//! The four runs (idle, fanout, private, churn) as phases of turns of the [`Engine`], and
//! the report each one makes, whether it finished or stopped early.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::engine::{Engine, Fail, Settings, Sources};
use crate::report::{Report, Value};
use crate::sys::{self, ProcSample};
use crate::track::{self, Histogram, Pattern, Tracker};
use crate::transport::{Listen, Transport};

/// Failed connects a churn run tolerates before it gives up.
const MAX_CHURN_CONNECT_ERRORS: u64 = 100;
/// How long a private run's sender whose probe was refused waits before probing again.
const PROBE_RETRY: Duration = Duration::from_millis(10);

/// Options every mode takes.
pub struct Common {
    /// The servers (loopback only, at least one; checked by the argument parser). User `i`
    /// connects to `addrs[i % len]`.
    pub addrs: Vec<SocketAddr>,
    /// The protocol spoken to them.
    pub transport: Transport,
    /// Whole-run limit.
    pub timeout: Duration,
    /// Processes (the servers, and anything else worth watching, e.g. Redis) whose memory
    /// and CPU time are sampled.
    pub pids: Vec<u32>,
    /// Most connects in flight.
    pub connect_burst: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.N; 1 lets the kernel choose.
    pub src_addrs: u8,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// How a run ended: its report (none if the server could not be reached at all) and, if
/// it failed, the one line that says why.
pub struct Outcome {
    /// What was measured.
    pub report: Option<Report>,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
}

/// The loop of one run; `listen`: the channel a pub/sub peer's users subscribe to.
fn engine(c: &Common, size: usize, listen: Listen) -> Result<Engine, Outcome> {
    Engine::new(Settings {
        servers: c.addrs.clone(),
        transport: c.transport,
        sources: Sources::new(c.src_addrs),
        size,
        timeout: c.timeout,
        progress: c.progress,
        connect_errors_fatal: true,
        pids: c.pids.clone(),
        listen,
    })
    .map_err(|e| Outcome {
        report: None,
        failure: Some(format!("cannot create the poll: {e}")),
    })
}

/// The watched processes' (every `--pid`) and imbench's own resource use, sampled at the
/// start of a run.
struct Usage {
    pids: Vec<u32>,
    /// Each pid at the start; `None` without pids or if one could not be read.
    before: Option<Vec<ProcSample>>,
    /// Each pid when the measured phase (traffic, churn) started, after everyone joined.
    at_phase: Option<Vec<ProcSample>>,
    own_before: Option<ProcSample>,
}

/// Samples every pid, or says which one could not be read.
fn sample_all(pids: &[u32]) -> Result<Vec<ProcSample>, String> {
    pids.iter()
        .map(|&p| sys::sample(&p.to_string()).map_err(|e| format!("cannot read /proc/{p}: {e}")))
        .collect()
}

/// `after - before` of each process's CPU time, µs.
fn cpu_between(before: &[ProcSample], after: &[ProcSample]) -> Vec<u64> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| a.cpu_us.saturating_sub(b.cpu_us))
        .collect()
}

/// µs to the nearest ms.
fn ms(us: u64) -> u64 {
    us.saturating_add(500) / 1000
}

impl Usage {
    fn start(pids: &[u32]) -> Usage {
        Usage {
            pids: pids.to_vec(),
            before: (!pids.is_empty()).then(|| sample_all(pids).ok()).flatten(),
            at_phase: None,
            own_before: sys::sample("self").ok(),
        }
    }

    /// Samples the processes as the measured phase starts, so CPU time per delivery or per
    /// churn join leaves out the first joins (whose online notices cost O(N²) lines).
    fn mark_phase_start(&mut self) {
        if self.before.is_some() {
            self.at_phase = sample_all(&self.pids).ok();
        }
    }

    /// Adds the resource keys; `conns` for memory per connection, `work` for CPU per unit,
    /// `peak_kb` each pid's highest memory seen during the run (from [`Engine::rss_peak_kb`]).
    /// With several pids, memory and CPU keys are sums over them, and `…_each` keys list each
    /// one's CPU time in `pids` order.
    fn finish(&self, r: &mut Report, conns: usize, work: Work, peak_kb: &[u64]) {
        if let Some(before) = &self.before {
            match sample_all(&self.pids) {
                Ok(after) => {
                    // The run's peak, not the process's lifetime one (VmHWM): the highest
                    // of the loop's samples and those at the start and end of the run.
                    let peak = before
                        .iter()
                        .zip(&after)
                        .zip(peak_kb.iter().chain(std::iter::repeat(&0)))
                        .map(|((b, a), &p)| b.rss_kb.max(a.rss_kb).max(p))
                        .sum();
                    self.server_keys(r, before, &after, peak, conns, work);
                }
                Err(e) => r.set("server_sample_error", Value::Text(e)),
            }
        }
        if let (Some(before), Ok(after)) = (self.own_before, sys::sample("self")) {
            r.uint(
                "imbench_cpu_ms",
                ms(after.cpu_us.saturating_sub(before.cpu_us)),
            );
        }
    }

    fn server_keys(
        &self,
        r: &mut Report,
        before: &[ProcSample],
        after: &[ProcSample],
        peak_kb: u64,
        conns: usize,
        work: Work,
    ) {
        let several = self.pids.len() > 1;
        let sum = |samples: &[ProcSample], kb: fn(&ProcSample) -> u64| -> u64 {
            samples.iter().map(kb).sum()
        };
        if several {
            r.set(
                "pids",
                Value::List(self.pids.iter().map(|&p| u64::from(p)).collect()),
            );
        }
        let (rss_before, rss_after) = (sum(before, |s| s.rss_kb), sum(after, |s| s.rss_kb));
        r.uint("rss_before_kb", rss_before);
        r.uint("rss_after_kb", rss_after);
        r.uint("rss_peak_kb", peak_kb);
        let grown = rss_after as i64 - rss_before as i64;
        r.set(
            "rss_per_conn_bytes",
            Value::Int(grown * 1024 / conns.max(1) as i64),
        );
        let cpu = cpu_between(before, after);
        r.uint("server_cpu_ms", ms(cpu.iter().sum()));
        if several {
            r.set(
                "server_cpu_ms_each",
                Value::List(cpu.into_iter().map(ms).collect()),
            );
        }
        let Some(mark) = &self.at_phase else {
            return;
        };
        let phase = cpu_between(mark, after);
        let us: u64 = phase.iter().sum();
        let (key, each) = match work {
            Work::Nothing => return,
            Work::Deliveries(_) => ("server_traffic_cpu_ms", "server_traffic_cpu_ms_each"),
            Work::Joins(_) => ("server_churn_cpu_ms", "server_churn_cpu_ms_each"),
        };
        r.uint(key, ms(us));
        if several {
            r.set(each, Value::List(phase.into_iter().map(ms).collect()));
        }
        match work {
            Work::Deliveries(d) if d > 0 => {
                r.float(
                    "server_cpu_ms_per_m_deliveries",
                    us as f64 * 1e3 / d as f64,
                    1,
                );
                // The same, upside down: the headline next to deliveries/s, which a
                // generator sharing the cores with the server bends more.
                if us > 0 {
                    r.float("deliveries_per_server_cpu_s", d as f64 * 1e6 / us as f64, 0);
                }
            }
            Work::Joins(j) if j > 0 => {
                r.float("server_cpu_us_per_join", us as f64 / j as f64, 1);
            }
            _ => {}
        }
    }
}

/// What the measured phase did, to divide the server's CPU time by.
#[derive(Clone, Copy)]
enum Work {
    /// Joining only (idle).
    Nothing,
    /// Messages delivered (fanout, private).
    Deliveries(u64),
    /// Leave-and-join pairs done (churn).
    Joins(u64),
}

fn us(ns: u64) -> u64 {
    ns.saturating_add(500) / 1000
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn per_s(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn latency_keys(
    r: &mut Report,
    h: &Histogram,
    p50: &'static str,
    p99: &'static str,
    max: &'static str,
) {
    r.uint(p50, us(h.quantile(0.5)));
    r.uint(p99, us(h.quantile(0.99)));
    r.uint(max, us(h.max()));
}

/// Turns until `target` users have joined, with at most `burst` connects in flight.
fn join(eng: &mut Engine, target: usize, burst: usize) -> Result<(), Fail> {
    let mut started = 0;
    while eng.joined() < target {
        while started < target && eng.connecting() < burst.max(1) {
            eng.start_connect(false)?;
            started += 1;
        }
        let now = eng.turn(None)?;
        let joined = eng.joined();
        eng.progress(now, || format!("joined {joined}/{target}"));
    }
    Ok(())
}

/// The common end of every mode: the error or incompleteness becomes the failure line.
fn conclude(
    mut r: Report,
    result: Result<(), Fail>,
    timeout: Duration,
    complete: bool,
    incomplete: impl FnOnce() -> String,
) -> Outcome {
    let failure = match result {
        Err(Fail::NoServer(msg)) => {
            return Outcome {
                report: None,
                failure: Some(msg),
            }
        }
        Err(Fail::Timeout) => Some(format!("timeout after {} s", timeout.as_secs_f64())),
        Err(Fail::Error(msg)) => Some(msg),
        Ok(()) if !complete => Some(incomplete()),
        Ok(()) => None,
    };
    r.set("complete", Value::Bool(failure.is_none()));
    if let Some(f) = &failure {
        r.set("error", Value::Text(f.clone()));
    }
    Outcome {
        report: Some(r),
        failure,
    }
}

fn header(mode: &str, c: &Common) -> Report {
    let mut r = Report::new();
    r.set("mode", Value::Text(mode.to_owned()));
    let addrs: Vec<String> = c.addrs.iter().map(SocketAddr::to_string).collect();
    r.set("addr", Value::Text(addrs.join(",")));
    r.uint("servers", c.addrs.len() as u64);
    r.set("transport", Value::Text(c.transport.name().to_owned()));
    r
}

/// `imbench idle`: `conns` users join, then stay `hold` longer.
pub fn idle(c: &Common, conns: usize, hold: Duration) -> Outcome {
    let usage = Usage::start(&c.pids);
    let mut eng = match engine(c, 1, Listen::Room) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let mut result = join(&mut eng, conns, c.connect_burst);
    let join_time = eng.base().elapsed();
    if result.is_ok() && !hold.is_zero() {
        result = hold_for(&mut eng, hold);
    }
    let mut r = header("idle", c);
    r.uint("conns", conns as u64);
    r.uint("joined", eng.joined() as u64);
    r.float("join_s", secs(join_time), 3);
    r.float("joins_per_s", per_s(eng.joined() as u64, join_time), 1);
    let lat = eng.take_join_latency();
    latency_keys(&mut r, &lat, "join_p50_us", "join_p99_us", "join_max_us");
    r.float("hold_s", secs(hold), 3);
    usage.finish(&mut r, conns, Work::Nothing, eng.rss_peak_kb());
    let complete = eng.joined() == conns;
    conclude(r, result, c.timeout, complete, || {
        format!("only {} of {conns} users joined", eng.joined())
    })
}

fn hold_for(eng: &mut Engine, hold: Duration) -> Result<(), Fail> {
    let until = Instant::now() + hold;
    loop {
        let now = eng.turn(Some(until))?;
        if now >= until {
            return Ok(());
        }
        let online = eng.joined();
        eng.progress(now, || format!("holding {online} users"));
    }
}

/// The numbers of a fanout or private run.
pub struct Traffic {
    /// Messages per sender.
    pub msgs: u64,
    /// Payload size, bytes.
    pub size: usize,
    /// Messages a sender keeps unresolved at most.
    pub window: u64,
}

/// `imbench fanout`: users `0..senders` of `conns` broadcast.
pub fn fanout(c: &Common, conns: usize, senders: usize, t: &Traffic) -> Outcome {
    let mut r = header("fanout", c);
    r.uint("conns", conns as u64);
    r.uint("senders", senders as u64);
    let tracker = Tracker::new(Pattern::Fanout { senders }, conns, t.msgs, t.window);
    traffic(c, r, conns, tracker, track::KIND_BROADCAST, t)
}

/// `imbench private`: `pairs` pairs whisper both ways.
pub fn private(c: &Common, pairs: usize, t: &Traffic) -> Outcome {
    let mut r = header("private", c);
    r.uint("pairs", pairs as u64);
    r.uint("conns", 2 * pairs as u64);
    let tracker = Tracker::new(Pattern::Pairs, 2 * pairs, t.msgs, t.window);
    traffic(c, r, 2 * pairs, tracker, track::KIND_PRIVATE, t)
}

fn traffic(
    c: &Common,
    mut r: Report,
    conns: usize,
    tracker: Tracker,
    kind: u8,
    t: &Traffic,
) -> Outcome {
    let mut usage = Usage::start(&c.pids);
    let private = kind == track::KIND_PRIVATE;
    let listen = if private { Listen::Own } else { Listen::Room };
    let mut eng = match engine(c, t.size, listen) {
        Ok(e) => e,
        Err(o) => return o,
    };
    eng.set_tracker(tracker, kind);
    let mut result = join(&mut eng, conns, c.connect_burst);
    let join_time = eng.base().elapsed();
    if result.is_ok() && private {
        eng.pair_up();
        result = probe(&mut eng, c.timeout);
    }
    let mut start = Instant::now();
    let mut end = start;
    if result.is_ok() {
        usage.mark_phase_start();
        start = Instant::now();
        result = run_traffic(&mut eng, start, &mut end);
    }
    if result.is_err() {
        end = Instant::now();
    }
    let elapsed = end.saturating_duration_since(start);
    r.uint("msgs", t.msgs);
    r.uint("size", t.size as u64);
    r.uint("window", t.window);
    r.uint("joined", eng.joined() as u64);
    r.float("join_s", secs(join_time), 3);
    if private {
        r.uint("probe_retries", eng.probe_retries());
    }
    let Some(tr) = eng.tracker() else {
        return conclude(r, result, c.timeout, false, String::new);
    };
    let counts = tr.counts.clone();
    let (expected, missing, complete) = (tr.expected_total(), tr.missing(), tr.complete());
    r.uint("expected_deliveries", expected);
    r.uint("deliveries", counts.delivered);
    r.float("elapsed_s", secs(elapsed), 3);
    r.float("deliveries_per_s", per_s(counts.delivered, elapsed), 0);
    latency_keys(&mut r, &tr.latency, "p50_us", "p99_us", "max_us");
    r.uint("missing", missing);
    r.uint("duplicates", counts.duplicates);
    r.uint("out_of_order", counts.out_of_order);
    r.uint("misdelivered", counts.misdelivered);
    r.uint("garbled", counts.garbled);
    usage.finish(
        &mut r,
        conns,
        Work::Deliveries(counts.delivered),
        eng.rss_peak_kb(),
    );
    conclude(r, result, c.timeout, complete, || {
        format!(
            "incomplete: {missing} of {expected} deliveries missing, {} duplicate, {} out of order, {} misdelivered, {} garbled",
            counts.duplicates, counts.out_of_order, counts.misdelivered, counts.garbled
        )
    })
}

/// Private mode: turns until every sender's probe has reached its partner, sending the
/// refused ones again every [`PROBE_RETRY`]. On one server the first round arrives; in a
/// cluster a server may not know a user of another server yet, a moment after that user
/// heard its own online notice, and a whisper sent then would be answered "no such user".
fn probe(eng: &mut Engine, timeout: Duration) -> Result<(), Fail> {
    eng.start_probes();
    let mut retry_at = Instant::now() + PROBE_RETRY;
    while eng.probes_pending() > 0 {
        let now = match eng.turn(Some(retry_at)) {
            Ok(now) => now,
            Err(Fail::Timeout) => {
                return Err(Fail::Error(format!(
                    "timeout after {} s: the whispers of {} users never reached their partners \
                     ({} refused ones sent again)",
                    timeout.as_secs_f64(),
                    eng.probes_pending(),
                    eng.probe_retries()
                )))
            }
            Err(e) => return Err(e),
        };
        if now >= retry_at {
            eng.retry_probes();
            retry_at = now + PROBE_RETRY;
        }
        let pending = eng.probes_pending();
        eng.progress(now, || format!("probing pairs: {pending} not yet through"));
    }
    Ok(())
}

/// Turns until every message is resolved; `end` is when the last one was.
fn run_traffic(eng: &mut Engine, start: Instant, end: &mut Instant) -> Result<(), Fail> {
    eng.start_traffic();
    loop {
        let Some(tr) = eng.tracker() else {
            return Ok(());
        };
        if tr.finished() {
            return Ok(());
        }
        let now = eng.turn(None)?;
        *end = now;
        if let Some(tr) = eng.tracker() {
            let (done, all) = (tr.counts.delivered, tr.expected_total());
            let rate = per_s(done, now.saturating_duration_since(start));
            eng.progress(now, || format!("deliveries {done}/{all} ({rate:.0}/s)"));
        }
    }
}

/// The numbers of a churn run.
pub struct Churn {
    /// Users kept online.
    pub conns: usize,
    /// Leave-and-join pairs per second.
    pub rate: f64,
    /// How long to churn.
    pub duration: Duration,
    /// Size of each newcomer's line, bytes.
    pub size: usize,
}

/// `imbench churn`: `conns` users join; then, `rate` times a second for `duration`, the
/// longest-online user leaves and a newcomer joins and says one line.
pub fn churn(c: &Common, ch: &Churn) -> Outcome {
    let mut usage = Usage::start(&c.pids);
    let mut eng = match engine(c, ch.size, Listen::Room) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let total = (ch.rate * ch.duration.as_secs_f64()).round().max(1.0) as u64;
    let mut result = join(&mut eng, ch.conns, c.connect_burst);
    let join_time = eng.base().elapsed();
    let initial_joined = eng.joined();
    let initial_latency = eng.take_join_latency();
    usage.mark_phase_start();
    let start = Instant::now();
    let mut counts = ChurnProgress::default();
    if result.is_ok() {
        eng.set_connect_errors_fatal(false);
        result = run_churn(&mut eng, ch, c.connect_burst, total, start, &mut counts);
    }
    let elapsed = start.elapsed();
    let joins = (eng.joined() - initial_joined) as u64;
    let mut r = header("churn", c);
    r.uint("conns", ch.conns as u64);
    r.float("rate", ch.rate, 1);
    r.float("duration_s", secs(ch.duration), 3);
    r.uint("size", ch.size as u64);
    r.uint("joined", initial_joined as u64);
    r.float("join_s", secs(join_time), 3);
    r.uint("initial_join_p50_us", us(initial_latency.quantile(0.5)));
    r.uint("planned_joins", total);
    r.uint("joins", joins);
    r.uint("leaves", counts.leaves);
    r.float("elapsed_s", secs(elapsed), 3);
    r.float("joins_per_s", per_s(joins, elapsed), 1);
    let lat = eng.take_join_latency();
    latency_keys(&mut r, &lat, "join_p50_us", "join_p99_us", "join_max_us");
    let cc = eng.churn_counts();
    latency_keys(
        &mut r,
        &cc.echo_latency,
        "chat_p50_us",
        "chat_p99_us",
        "chat_max_us",
    );
    r.uint("chat_lines", cc.chat_lines);
    r.uint("garbled", cc.garbled);
    let errors = eng.connect_errors();
    r.uint("errors", errors.count);
    let first_error = errors.first.clone();
    let garbled = cc.garbled;
    usage.finish(&mut r, ch.conns, Work::Joins(joins), eng.rss_peak_kb());
    let complete = errors.count == 0 && garbled == 0 && joins == total;
    conclude(r, result, c.timeout, complete, || match first_error {
        Some(first) => format!(
            "{} failed connects; first: {first}",
            eng.connect_errors().count
        ),
        None => format!("{joins} of {total} joins, {garbled} garbled lines"),
    })
}

#[derive(Default)]
struct ChurnProgress {
    leaves: u64,
}

fn run_churn(
    eng: &mut Engine,
    ch: &Churn,
    burst: usize,
    total: u64,
    start: Instant,
    counts: &mut ChurnProgress,
) -> Result<(), Fail> {
    eng.collect_joined();
    let mut issued = 0u64;
    loop {
        let now = Instant::now();
        let due =
            ((now.saturating_duration_since(start).as_secs_f64() * ch.rate) as u64).min(total);
        while issued < due && eng.connecting() < burst.max(1) {
            if eng.leave_oldest() {
                counts.leaves += 1;
            }
            eng.start_connect(true)?;
            issued += 1;
        }
        let errors = eng.connect_errors();
        if errors.count >= MAX_CHURN_CONNECT_ERRORS {
            return Err(Fail::Error(format!(
                "{} failed connects; first: {}",
                errors.count,
                errors.first.as_deref().unwrap_or("?")
            )));
        }
        if issued == total && eng.connecting() == 0 && eng.churn_counts().echo_pending == 0 {
            return Ok(());
        }
        // Wait for the next tick, unless ticks are due but held back by the burst limit:
        // then a finished join is what frees a slot.
        let wake = (issued < total && issued >= due)
            .then(|| start + Duration::from_secs_f64((issued + 1) as f64 / ch.rate));
        let now = eng.turn(wake)?;
        eng.collect_joined();
        let (joined, online, errors) = (eng.joined(), eng.online(), eng.connect_errors().count);
        eng.progress(now, || {
            format!("joins {joined} ({issued}/{total} churned), online {online}, errors {errors}")
        });
    }
}
