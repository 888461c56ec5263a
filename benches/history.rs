//! Micro-benchmark of a room's history: what keeping one broadcast costs once the room's
//! ring is full (the steady state: every push also drops the oldest), and what a full
//! `history` read walks. A plain timed loop (`harness = false`); prints ns per push and per
//! entry read, medians of several rounds.

use imserver_mio::chat::history::History;
use imserver_mio::text::User;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

const ROUNDS: usize = 7;
const PUSHES: usize = 1_000_000;
/// `--history`'s default.
const KEEP: usize = 100;
/// `--max-line`'s default.
const MAX_LINE_BYTES: usize = 4096;
/// imbench's default message size.
const TEXT_BYTES: usize = 64;

fn main() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
    let text = vec![b'x'; TEXT_BYTES];
    let (mut push, mut read) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut h = History::new(KEEP, MAX_LINE_BYTES, 64 << 20);
        // Default names (the address) and chosen ones, as rooms hold both.
        let named = User {
            addr: &addr,
            name: Some("alice"),
        };
        let anonymous = User {
            addr: &addr,
            name: None,
        };
        let start = Instant::now();
        for i in 0..PUSHES {
            let from = if i % 2 == 0 { named } else { anonymous };
            black_box(h.push("101", from, i as u64, black_box(&text)));
        }
        push.push(start.elapsed().as_nanos() as f64 / PUSHES as f64);

        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..PUSHES / KEEP {
            for e in h.last(black_box("101"), KEEP).entries {
                bytes += e.text().len();
            }
        }
        read.push(start.elapsed().as_nanos() as f64 / PUSHES as f64);
        assert_eq!(bytes, PUSHES * TEXT_BYTES, "round {round}");
    }
    push.sort_by(f64::total_cmp);
    read.sort_by(f64::total_cmp);
    println!(
        "history: push {:.1} ns per broadcast into a full ring of {KEEP} ({TEXT_BYTES}-byte texts), \
         read {:.1} ns per entry (median of {ROUNDS} rounds of {PUSHES})",
        push[ROUNDS / 2],
        read[ROUNDS / 2]
    );
}
