//! Counters the loop keeps, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Plain `u64`s: there is one thread, so no atomics and no locks. Gauges (connections by
//! protocol, users) are counted from the slab when a scrape asks, which is rare, rather
//! than kept up to date on every change.

use std::fmt::Write;
use std::time::Duration;

/// Upper bounds, in microseconds, of the loop-iteration histogram's buckets.
pub const LOOP_BUCKETS_US: [u64; 10] =
    [10, 50, 100, 250, 500, 1_000, 5_000, 10_000, 50_000, 100_000];

/// What the server has done since it started.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Connections accepted, line and web.
    pub accepted: u64,
    /// Connections refused at `--max-conns`.
    pub refused_full: u64,
    /// Commands received: lines, WebSocket messages, HTTP requests.
    pub messages_in: u64,
    /// Messages queued to recipients (one broadcast to N users counts N).
    pub messages_out: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Write calls to client sockets (`writev`, or TLS record writes): with
    /// `messages_out`, the sends per delivery.
    pub writes: u64,
    /// Times a connection's output was held back to be coalesced with later output.
    pub held: u64,
    /// Users kicked for idling or a missed heartbeat.
    pub idle_kicks: u64,
    /// Slow readers disconnected at `--max-outbuf`.
    pub slow_consumer_kicks: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// Loop iterations per bucket of [`LOOP_BUCKETS_US`]; the last slot is `+Inf`.
    pub loop_buckets: [u64; LOOP_BUCKETS_US.len() + 1],
    /// Sum of loop iteration times, microseconds.
    pub loop_sum_us: u64,
    /// What the limits on clients did.
    pub guard: Guard,
    /// What became of private messages to signed-in users who were offline.
    pub offline: OfflineMail,
}

/// Offline private messages (`--auth-secret`), whether kept in memory or in Redis.
#[derive(Debug, Default, Clone, Copy)]
pub struct OfflineMail {
    /// Private messages kept for an offline signed-in user.
    pub saved: u64,
    /// Private messages refused because the user's mailbox held `--offline-max`.
    pub refused_full: u64,
    /// Kept messages delivered when their user signed in again.
    pub delivered: u64,
}

/// What the limits on clients did: flood control, per-address limits, the output bound.
#[derive(Debug, Default, Clone, Copy)]
pub struct Guard {
    /// Times a connection was slowed down by flood control.
    pub throttled: u64,
    /// Connections disconnected for flooding past `--flood-kick`.
    pub flood_kicks: u64,
    /// Connections refused at `--max-conns-per-ip`.
    pub refused_per_ip: u64,
    /// Connections refused at `--conn-rate-per-ip`.
    pub refused_rate: u64,
    /// Connections cut because all unsent output passed `--max-outbuf-total`.
    pub output_cut: u64,
}

/// Point-in-time values counted at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Line-protocol connections.
    pub line: usize,
    /// WebSocket connections.
    pub ws: usize,
    /// HTTP connections (not upgraded).
    pub http: usize,
    /// Users online here, all protocols.
    pub users: usize,
    /// Messages kept in the rooms' histories.
    pub history_messages: usize,
    /// Bytes the rooms' histories keep, as counted against `--history-bytes`.
    pub history_bytes: usize,
    /// The Redis backplane's counters, with `--redis`.
    pub backplane: Option<Backplane>,
}

/// The backplane's side of the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backplane {
    /// Replies and published messages received from Redis.
    pub messages_in: u64,
    /// Commands sent to Redis (PUBLISH included).
    pub commands_out: u64,
    /// Commands waiting for their reply.
    pub pending: usize,
    /// Times the link came back after an outage.
    pub reconnects: u64,
    /// Broadcasts of other servers trimmed from a room stream before this server read
    /// them (a stall longer than the streams keep).
    pub stream_lost: u64,
    /// Users of the other servers known here.
    pub remote_users: usize,
}

impl Metrics {
    /// Records one loop iteration's busy time (from `poll` returning to the next `poll`).
    pub fn observe_loop(&mut self, busy: Duration) {
        let us = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
        let slot = LOOP_BUCKETS_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(LOOP_BUCKETS_US.len());
        if let Some(b) = self.loop_buckets.get_mut(slot) {
            *b += 1;
        }
        self.loop_sum_us = self.loop_sum_us.saturating_add(us);
    }

    /// The Prometheus text exposition of every counter and the gauges.
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| [(String::new(), v)];
        metric(
            "imserver_connections",
            "gauge",
            "Open connections by protocol.",
            &[
                ("{protocol=\"line\"}".into(), g.line as u64),
                ("{protocol=\"ws\"}".into(), g.ws as u64),
                ("{protocol=\"http\"}".into(), g.http as u64),
            ],
        );
        metric(
            "imserver_users",
            "gauge",
            "Users online.",
            &one(g.users as u64),
        );
        metric(
            "imserver_history_messages",
            "gauge",
            "Messages kept in the rooms' histories.",
            &one(g.history_messages as u64),
        );
        metric(
            "imserver_history_bytes",
            "gauge",
            "Bytes the rooms' histories keep (counted against --history-bytes).",
            &one(g.history_bytes as u64),
        );
        for (name, help, v) in [
            (
                "imserver_accepted_total",
                "Connections accepted.",
                self.accepted,
            ),
            (
                "imserver_refused_total",
                "Connections refused at --max-conns.",
                self.refused_full,
            ),
            (
                "imserver_messages_in_total",
                "Lines, WebSocket messages and HTTP requests received.",
                self.messages_in,
            ),
            (
                "imserver_messages_out_total",
                "Messages queued to recipients.",
                self.messages_out,
            ),
            (
                "imserver_bytes_in_total",
                "Bytes read from clients.",
                self.bytes_in,
            ),
            (
                "imserver_bytes_out_total",
                "Bytes written to clients.",
                self.bytes_out,
            ),
            (
                "imserver_writes_total",
                "Write calls to client sockets.",
                self.writes,
            ),
            (
                "imserver_output_held_total",
                "Times a connection's output was held back to be coalesced (--coalesce-us).",
                self.held,
            ),
            (
                "imserver_idle_kicks_total",
                "Users kicked for idling or missed heartbeats.",
                self.idle_kicks,
            ),
            (
                "imserver_slow_consumer_kicks_total",
                "Slow readers disconnected at --max-outbuf.",
                self.slow_consumer_kicks,
            ),
            (
                "imserver_http_requests_total",
                "HTTP requests answered.",
                self.http_requests,
            ),
            (
                "imserver_flood_throttled_total",
                "Times a connection was slowed down by flood control.",
                self.guard.throttled,
            ),
            (
                "imserver_flood_kicks_total",
                "Connections disconnected for flooding past --flood-kick.",
                self.guard.flood_kicks,
            ),
            (
                "imserver_refused_per_ip_total",
                "Connections refused at --max-conns-per-ip.",
                self.guard.refused_per_ip,
            ),
            (
                "imserver_refused_rate_total",
                "Connections refused at --conn-rate-per-ip.",
                self.guard.refused_rate,
            ),
            (
                "imserver_output_cut_total",
                "Connections cut because all unsent output passed --max-outbuf-total.",
                self.guard.output_cut,
            ),
            (
                "imserver_offline_saved_total",
                "Private messages kept for an offline signed-in user.",
                self.offline.saved,
            ),
            (
                "imserver_offline_refused_full_total",
                "Private messages refused because the user's mailbox held --offline-max.",
                self.offline.refused_full,
            ),
            (
                "imserver_offline_delivered_total",
                "Kept messages delivered when their user signed in again.",
                self.offline.delivered,
            ),
        ] {
            metric(name, "counter", help, &one(v));
        }
        if let Some(b) = g.backplane {
            for (name, kind, help, v) in [
                (
                    "imserver_backplane_messages_in_total",
                    "counter",
                    "Replies and messages received from Redis.",
                    b.messages_in,
                ),
                (
                    "imserver_backplane_messages_out_total",
                    "counter",
                    "Commands sent to Redis.",
                    b.commands_out,
                ),
                (
                    "imserver_backplane_pending_replies",
                    "gauge",
                    "Redis commands waiting for a reply.",
                    b.pending as u64,
                ),
                (
                    "imserver_backplane_reconnects_total",
                    "counter",
                    "Reconnections to Redis after an outage.",
                    b.reconnects,
                ),
                (
                    "imserver_backplane_stream_lost_total",
                    "counter",
                    "Broadcasts of other servers trimmed from a room stream before this server read them.",
                    b.stream_lost,
                ),
                (
                    "imserver_remote_users",
                    "gauge",
                    "Users on other servers of the cluster.",
                    b.remote_users as u64,
                ),
            ] {
                metric(name, kind, help, &one(v));
            }
        }
        let mut cumulative = 0;
        let mut buckets = Vec::new();
        for (i, count) in self.loop_buckets.iter().enumerate() {
            cumulative += count;
            let le = LOOP_BUCKETS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            buckets.push((format!("_bucket{{le=\"{le}\"}}"), cumulative));
        }
        let _ = writeln!(
            out,
            "# HELP imserver_loop_iteration_seconds Busy time of one loop iteration.\n\
             # TYPE imserver_loop_iteration_seconds histogram"
        );
        for (suffix, v) in buckets {
            let _ = writeln!(out, "imserver_loop_iteration_seconds{suffix} {v}");
        }
        let _ = writeln!(
            out,
            "imserver_loop_iteration_seconds_sum {}\nimserver_loop_iteration_seconds_count {cumulative}",
            self.loop_sum_us as f64 / 1e6
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_times_fall_into_cumulative_buckets() {
        let mut m = Metrics::default();
        m.observe_loop(Duration::from_micros(5));
        m.observe_loop(Duration::from_micros(700));
        m.observe_loop(Duration::from_secs(3));
        let text = m.render(Gauges::default());
        assert!(
            text.contains("imserver_loop_iteration_seconds_bucket{le=\"0.00001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("imserver_loop_iteration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("imserver_loop_iteration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("imserver_loop_iteration_seconds_count 3\n"));
    }

    #[test]
    fn gauges_and_counters_are_rendered_with_help_and_type() {
        let m = Metrics {
            slow_consumer_kicks: 2,
            ..Metrics::default()
        };
        let text = m.render(Gauges {
            line: 3,
            ws: 1,
            http: 0,
            users: 4,
            ..Gauges::default()
        });
        assert!(text.contains("# TYPE imserver_connections gauge\n"));
        assert!(text.contains("imserver_connections{protocol=\"line\"} 3\n"));
        assert!(text.contains("imserver_users 4\n"));
        assert!(text.contains("imserver_slow_consumer_kicks_total 2\n"));
    }
}
