//! The knobs issues 12 and 13 added, as `--help` shows them: each with its trade-off in
//! one sentence. imserver-mio only: the async variant's `--workers` means threads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
mod common;

use common::server_cmd;

#[test]
fn help_states_the_trade_off_of_each_new_knob() {
    let out = server_cmd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (flag, trade_off) in [
        (
            "--reuse-port",
            "any process of the same user with this flag can then join",
        ),
        (
            "--workers",
            "at the price of a Redis hop for every broadcast",
        ),
        (
            "--history",
            "at up to N x (--max-line + 216) bytes per room",
        ),
        ("--history-bytes", "at the cost of shorter histories there"),
        ("--offline-max", "costs memory (or Redis) per absent user"),
        ("--offline-ttl", "at the cost of holding more"),
        (
            "--coalesce-us",
            "at up to that much more latency under load",
        ),
        (
            "--coalesce-bytes",
            "less waiting for a user who receives a lot",
        ),
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .or_else(|| help.find(&format!("{flag} ")));
        let text = &help[at.unwrap_or_else(|| panic!("{flag} not in {help}"))..];
        // Each flag's text ends with its variable.
        let end = text.find("[env:").unwrap_or(text.len());
        assert!(text[..end].contains(trade_off), "{flag}: {}", &text[..end]);
    }
}
