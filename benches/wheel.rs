//! Micro-benchmark of the timer wheel: scheduling 100,000 idle deadlines spread over five
//! minutes, then polling through them tick by tick, as the loop does. A plain timed loop
//! (`harness = false`); prints ns per schedule and per fired entry, medians of several rounds.

use imserver_mio::timer::{Wheel, TICK};
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;
const TIMERS: u64 = 100_000;

fn main() {
    let (mut sched, mut fire) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let start = Instant::now();
        for i in 0..TIMERS {
            wheel.schedule(t0 + Duration::from_millis(i * 7919 % 300_000), i);
        }
        sched.push(start.elapsed().as_nanos() as f64 / TIMERS as f64);

        let mut fired = Vec::new();
        let mut now = t0;
        let start = Instant::now();
        let mut total = 0;
        while !wheel.is_empty() {
            now += TICK;
            wheel.poll(now, &mut fired);
            total += fired.len();
            fired.clear();
        }
        assert_eq!(total as u64, TIMERS);
        fire.push(start.elapsed().as_nanos() as f64 / TIMERS as f64);
    }
    sched.sort_by(f64::total_cmp);
    fire.sort_by(f64::total_cmp);
    println!(
        "wheel: schedule {:.1} ns, poll {:.1} ns per timer (median of {ROUNDS} rounds of {TIMERS} timers over 300 s)",
        sched[ROUNDS / 2],
        fire[ROUNDS / 2]
    );
}
