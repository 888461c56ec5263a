//! Micro-benchmark of the pure line protocol: framing and parsing a buffer of mixed
//! commands, as the loop does after each read. A plain timed loop (`harness = false`);
//! prints ns per line, the median of several rounds.

use imserver_mio::codec::line::{next_line, parse, Line};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 7;
const REPEAT: usize = 200;

fn main() {
    let mut buf = Vec::new();
    for i in 0..1000 {
        match i % 4 {
            0 => buf.extend_from_slice(
                b"hello everyone, this is a chat line of about sixty-four bytes\n",
            ),
            1 => buf.extend_from_slice("to|bob|你好 a private line\r\n".as_bytes()),
            2 => buf.extend_from_slice(b"rename|alice\n"),
            _ => buf.extend_from_slice(b"who\n"),
        }
    }
    let lines_per_pass = 1000;
    let mut per_line_ns = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut commands = 0usize;
        for _ in 0..REPEAT {
            let mut rest = &buf[..];
            while let Line::Complete { text, used } = next_line(rest, 4096) {
                if parse(black_box(text)).is_ok() {
                    commands += 1;
                }
                rest = &rest[used..];
            }
        }
        assert_eq!(commands, REPEAT * lines_per_pass);
        per_line_ns.push(start.elapsed().as_nanos() as f64 / commands as f64);
    }
    per_line_ns.sort_by(f64::total_cmp);
    println!(
        "parse: {:.1} ns per line (median of {ROUNDS} rounds of {} lines; {} bytes per pass)",
        per_line_ns[ROUNDS / 2],
        REPEAT * lines_per_pass,
        buf.len()
    );
}
