//! Pure bookkeeping of a traffic run: the payload format, each sender's window, each
//! receiver's expected sequence numbers, and the latency histogram.
//!
//! Nothing here touches a socket or reads the clock: times come in as nanoseconds since the
//! run's start, so every rule (in order, no gaps, none twice, the window) is a unit test.
//!
//! # Payload
//! `~RRRRkSENDER.SEQ.TS.xxxx…` with every number in lower-case hex: `RRRR` is the run's id
//! (so two runs against one server ignore each other), `k` the kind (`b` broadcast, `p`
//! private, `c` churn, `q` a private run's probe before traffic), `SENDER` the sending user's number, `SEQ` its sequence number, `TS`
//! the send time in ns since the run's start. `x` pads the payload to the requested size;
//! a size below the header's length gives the bare header. `~` never occurs in what the
//! server puts before a payload (an `ip:port` or `ip:port@NODE` name, `[addr]`, `对您说`,
//! `says to you:`), so the first `~` of a line starts the payload.
//!
//! # Completeness
//! Each message is due at a known set of receivers (everyone for a broadcast, the partner
//! for a whisper). A receiver must see each sender's sequence numbers as 0, 1, 2, … A jump
//! ahead counts the skipped ones as lost (so the sender's window does not stall on them), a
//! lost one arriving later counts as out of order, and anything else seen again as a
//! duplicate. A message is *resolved* once each of its receivers got it or lost it; the
//! sender's window is the span from its oldest unresolved message to its next one.

use std::collections::HashSet;

/// First byte of every payload.
pub const MARK: u8 = b'~';
/// Kind byte of a fanout broadcast.
pub const KIND_BROADCAST: u8 = b'b';
/// Kind byte of a private message.
pub const KIND_PRIVATE: u8 = b'p';
/// Kind byte of a churn user's one line.
pub const KIND_CHURN: u8 = b'c';
/// Kind byte of a private run's probe: one whisper per sender before traffic, not counted.
pub const KIND_PROBE: u8 = b'q';
/// Hex digits of the run id.
const RUN_ID_DIGITS: usize = 4;
/// Padding byte after the header.
const PAD: u8 = b'x';

/// What one payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// [`KIND_BROADCAST`], [`KIND_PRIVATE`], [`KIND_CHURN`] or [`KIND_PROBE`].
    pub kind: u8,
    /// The sending user's number.
    pub sender: u64,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// Send time, ns since the run's start.
    pub ts_ns: u64,
}

/// Appends `p` (no newline) padded with `x` to at least `size` bytes.
pub fn encode(out: &mut Vec<u8>, run: u16, p: &Payload, size: usize) {
    let start = out.len();
    out.push(MARK);
    for shift in (0..RUN_ID_DIGITS).rev() {
        out.push(hex_digit((run >> (4 * shift)) as u8 & 0xf));
    }
    out.push(p.kind);
    push_hex(out, p.sender);
    out.push(b'.');
    push_hex(out, p.seq);
    out.push(b'.');
    push_hex(out, p.ts_ns);
    out.push(b'.');
    if out.len() - start < size {
        out.resize(start + size, PAD);
    }
}

fn hex_digit(v: u8) -> u8 {
    b"0123456789abcdef"[usize::from(v & 0xf)]
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(hex_digit((v >> (4 * shift)) as u8));
    }
}

/// What a slice starting at a [`MARK`] turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A payload of this run.
    Ours(Payload),
    /// This run's id but a broken header, a wrong length or bad padding: the server mangled it.
    Garbled,
    /// Not this run's payload (another run's, or a stray `~`): ignored.
    Foreign,
}

/// Reads the payload at the front of `s` (which runs to the end of its line); `size` is the
/// size every payload of this run was padded to.
pub fn decode(s: &[u8], run: u16, size: usize) -> Decoded {
    let Some(rest) = s.strip_prefix(&[MARK]) else {
        return Decoded::Foreign;
    };
    let Some((id, rest)) = rest.split_at_checked(RUN_ID_DIGITS) else {
        return Decoded::Foreign;
    };
    if parse_hex(id) != Some(u64::from(run)) {
        return Decoded::Foreign;
    }
    let Some((&kind, rest)) = rest.split_first() else {
        return Decoded::Garbled;
    };
    let Some((sender, rest)) = hex_field(rest) else {
        return Decoded::Garbled;
    };
    let Some((seq, rest)) = hex_field(rest) else {
        return Decoded::Garbled;
    };
    let Some((ts_ns, pad)) = hex_field(rest) else {
        return Decoded::Garbled;
    };
    let header = s.len() - pad.len();
    if s.len() != header.max(size) || pad.iter().any(|&b| b != PAD) {
        return Decoded::Garbled;
    }
    Decoded::Ours(Payload {
        kind,
        sender,
        seq,
        ts_ns,
    })
}

/// `HEX.` at the front of `s`: the number and what follows the dot.
fn hex_field(s: &[u8]) -> Option<(u64, &[u8])> {
    let dot = s.iter().position(|&b| b == b'.')?;
    Some((parse_hex(&s[..dot])?, &s[dot + 1..]))
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

/// The index of the first `needle` in `hay`: memchr's word-at-a-time idea without the
/// crate. Eight bytes at once: XOR turns matching bytes to zero, and `(w - 0x01…) & !w &
/// 0x80…` flags zero bytes, exactly for the lowest one (which is the first, read as
/// little-endian); the tail is scanned bytewise.
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word) ^ pattern;
        let zeros = w.wrapping_sub(ONES) & !w & HIGHS;
        if zeros != 0 {
            return Some(i * 8 + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    let start = hay.len() - tail.len();
    tail.iter().position(|&b| b == needle).map(|i| start + i)
}

/// Who sends to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Users `0..senders` broadcast; every user (senders included) receives everything.
    Fanout {
        /// How many users send.
        senders: usize,
    },
    /// Users `2k` and `2k+1` whisper to each other; everyone sends.
    Pairs,
}

/// Counters of a traffic run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Distinct deliveries seen (in order or late).
    pub delivered: u64,
    /// A sequence number seen twice by one receiver.
    pub duplicates: u64,
    /// A message that arrived after a later one from the same sender.
    pub out_of_order: u64,
    /// Payloads of this run that arrived where they were not due (wrong receiver, a sender
    /// that does not send, a sequence number never sent).
    pub misdelivered: u64,
    /// Payloads of this run with a broken header, length or padding.
    pub garbled: u64,
}

struct Sender {
    /// Next sequence number to send; all below it were sent.
    next: u64,
    /// Oldest unresolved sequence number.
    low: u64,
    /// Receivers still owed each message of the window, at `seq % window`.
    owed: Vec<u32>,
    /// On the ready list.
    queued: bool,
}

/// The state of a fanout or private run.
pub struct Tracker {
    pattern: Pattern,
    users: usize,
    msgs: u64,
    window: u64,
    receivers_per_msg: u32,
    senders: Vec<Sender>,
    /// Next sequence number each receiver expects from each sender it hears.
    expected: Vec<u64>,
    /// (receiver, sender, seq) skipped by a jump ahead and not seen since.
    lost: HashSet<(usize, usize, u64)>,
    ready: Vec<usize>,
    unfinished: usize,
    /// What has been seen so far.
    pub counts: Counts,
    /// Send-to-delivery latency of each delivery, ns.
    pub latency: Histogram,
}

impl Tracker {
    /// A run of `users` users where each sender sends `msgs` messages and keeps at most
    /// `window` of them unresolved. `users` must be even for [`Pattern::Pairs`].
    pub fn new(pattern: Pattern, users: usize, msgs: u64, window: u64) -> Tracker {
        let window = window.max(1);
        let (senders, receivers_per_msg, slots) = match pattern {
            Pattern::Fanout { senders } => (senders, users, users * senders),
            Pattern::Pairs => (users, 1, users),
        };
        let slot_len = usize::try_from(window.min(msgs.max(1))).unwrap_or(usize::MAX);
        Tracker {
            pattern,
            users,
            msgs,
            window,
            receivers_per_msg: u32::try_from(receivers_per_msg).unwrap_or(u32::MAX),
            senders: (0..senders)
                .map(|_| Sender {
                    next: 0,
                    low: 0,
                    owed: vec![0; slot_len],
                    queued: false,
                })
                .collect(),
            expected: vec![0; slots],
            lost: HashSet::new(),
            ready: Vec::new(),
            unfinished: if msgs == 0 { 0 } else { senders },
            counts: Counts::default(),
            latency: Histogram::new(),
        }
    }

    /// Deliveries a complete run makes.
    pub fn expected_total(&self) -> u64 {
        self.senders.len() as u64 * self.msgs * u64::from(self.receivers_per_msg)
    }

    /// Deliveries not seen (yet).
    pub fn missing(&self) -> u64 {
        self.expected_total().saturating_sub(self.counts.delivered)
    }

    /// Every delivery arrived, each sender's in order, none twice, nothing stray.
    pub fn complete(&self) -> bool {
        let c = &self.counts;
        self.missing() == 0
            && c.duplicates == 0
            && c.out_of_order == 0
            && c.misdelivered == 0
            && c.garbled == 0
    }

    /// Every message of every sender is resolved: nothing more will be sent.
    pub fn finished(&self) -> bool {
        self.unfinished == 0
    }

    /// Puts every sender on the ready list: call once when traffic starts.
    pub fn start(&mut self) {
        for (i, s) in self.senders.iter_mut().enumerate() {
            if !s.queued && self.msgs > 0 {
                s.queued = true;
                self.ready.push(i);
            }
        }
    }

    /// A sender whose window has room, if any; then call [`Tracker::next_send`] until `None`.
    pub fn pop_ready(&mut self) -> Option<usize> {
        self.ready.pop()
    }

    /// Whether any sender is waiting to send.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next sequence number `sender` may send now, recorded as sent; `None` once its
    /// window is full or it has sent everything.
    pub fn next_send(&mut self, sender: usize) -> Option<u64> {
        let (msgs, window, owed) = (self.msgs, self.window, self.receivers_per_msg);
        let s = self.senders.get_mut(sender)?;
        if s.next >= msgs || s.next - s.low >= window {
            s.queued = false;
            return None;
        }
        let seq = s.next;
        let slot = (seq % window) as usize;
        *s.owed.get_mut(slot)? = owed;
        s.next += 1;
        Some(seq)
    }

    /// The receiver-sender cell, if `receiver` is due messages from `sender`.
    fn cell(&self, receiver: usize, sender: usize) -> Option<usize> {
        match self.pattern {
            Pattern::Fanout { senders } => {
                (receiver < self.users && sender < senders).then(|| receiver * senders + sender)
            }
            Pattern::Pairs => (receiver < self.users && sender == receiver ^ 1).then_some(receiver),
        }
    }

    /// User `receiver` got message `seq` from user `sender`, `latency_ns` after it was sent.
    pub fn deliver(&mut self, receiver: usize, sender: usize, seq: u64, latency_ns: u64) {
        let Some(cell) = self.cell(receiver, sender) else {
            self.counts.misdelivered += 1;
            return;
        };
        if seq >= self.senders[sender].next {
            self.counts.misdelivered += 1;
            return;
        }
        let expected = self.expected[cell];
        if seq < expected {
            if self.lost.remove(&(receiver, sender, seq)) {
                self.counts.out_of_order += 1;
                self.counts.delivered += 1;
                self.latency.record(latency_ns);
            } else {
                self.counts.duplicates += 1;
            }
            return;
        }
        for skipped in expected..seq {
            self.lost.insert((receiver, sender, skipped));
            self.resolve(sender, skipped);
        }
        self.expected[cell] = seq + 1;
        self.counts.delivered += 1;
        self.latency.record(latency_ns);
        self.resolve(sender, seq);
    }

    /// One receiver is done with `seq` of `sender` (got it or lost it).
    fn resolve(&mut self, sender: usize, seq: u64) {
        let (msgs, window) = (self.msgs, self.window);
        let s = &mut self.senders[sender];
        // A receiver resolves each message once, before which the window cannot pass it.
        debug_assert!(seq >= s.low && seq < s.next);
        if seq < s.low {
            return;
        }
        if let Some(owed) = s.owed.get_mut((seq % window) as usize) {
            *owed = owed.saturating_sub(1);
        }
        if seq != s.low || s.owed.get((seq % window) as usize) != Some(&0) {
            return; // the oldest message is still owed: the window stays as it is
        }
        while s.low < s.next && s.owed.get((s.low % window) as usize) == Some(&0) {
            s.low += 1;
        }
        if s.low == msgs {
            self.unfinished -= 1;
        } else if !s.queued && s.next < msgs {
            s.queued = true;
            self.ready.push(sender);
        }
    }
}

/// Significant decimal digits the percentiles keep: within 0.1 %.
const SIGNIFICANT_FIGURES: u8 = 3;
/// The largest value told apart, in the unit recorded (ns: one hour, past any `--timeout`
/// anyone runs); larger values count as this one in the percentiles, while
/// [`Histogram::max`] stays exact. Bounds the histogram to about 270 KiB.
const HIGHEST_TRACKED: u64 = 3_600_000_000_000;

/// Percentiles of u64 values from an HdrHistogram (the `hdrhistogram` crate): constant
/// memory however many values, percentiles within 0.1 %, and the maximum kept exactly
/// beside it, since the report states it to the nanosecond.
#[derive(Clone)]
pub struct Histogram {
    hdr: hdrhistogram::Histogram<u64>,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        // `new_with_max` refuses only a high below 2 or more than 5 significant figures;
        // both are constants here, and `an_empty_histogram_reports_zero` builds one.
        let hdr = match hdrhistogram::Histogram::new_with_max(HIGHEST_TRACKED, SIGNIFICANT_FIGURES)
        {
            Ok(hdr) => hdr,
            Err(e) => unreachable!("constant histogram bounds refused: {e}"),
        };
        Histogram { hdr, max: 0 }
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        self.hdr.saturating_record(v);
        self.max = self.max.max(v);
    }

    /// Values counted.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.hdr.len()
    }

    /// The largest value counted, exactly; 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.5 = median), 0 when empty; never above [`Histogram::max`].
    pub fn quantile(&self, q: f64) -> u64 {
        if self.hdr.is_empty() {
            return 0;
        }
        if q >= 1.0 {
            return self.max; // the top value is known exactly
        }
        self.hdr.value_at_quantile(q).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: u16 = 0xbe7a;

    fn payload(sender: u64, seq: u64) -> Payload {
        Payload {
            kind: KIND_BROADCAST,
            sender,
            seq,
            ts_ns: 0x1234_5678_9abc,
        }
    }

    fn encoded(p: &Payload, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, RUN, p, size);
        out
    }

    #[test]
    fn find_byte_agrees_with_position_everywhere() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 7 % 13) as u8 + b'a').collect();
        for needle in [b'a', b'c', b'm', b'z', b'\n'] {
            for start in 0..20 {
                for end in start..hay.len().min(start + 40) {
                    let h = &hay[start..end];
                    assert_eq!(
                        find_byte(needle, h),
                        h.iter().position(|&b| b == needle),
                        "{needle} in {h:?}"
                    );
                }
            }
        }
        assert_eq!(find_byte(b'\n', b""), None);
        assert_eq!(find_byte(0x80, &[0x7f, 0x01, 0x80]), Some(2));
        assert_eq!(find_byte(0, &[1, 0, 0, 1, 1, 1, 1, 1, 0]), Some(1));
    }

    #[test]
    fn payload_round_trips_and_is_padded_to_size() {
        let p = payload(17, 300);
        let bytes = encoded(&p, 64);
        assert_eq!(bytes.len(), 64);
        assert!(bytes.starts_with(b"~be7ab11.12c.123456789abc.xxx"));
        assert_eq!(decode(&bytes, RUN, 64), Decoded::Ours(p));
    }

    #[test]
    fn a_size_below_the_header_gives_the_bare_header() {
        let p = payload(0, 0);
        let bytes = encoded(&p, 1);
        assert_eq!(bytes, b"~be7ab0.0.123456789abc.");
        assert_eq!(decode(&bytes, RUN, 1), Decoded::Ours(p));
    }

    #[test]
    fn another_run_or_a_stray_tilde_is_foreign() {
        let bytes = encoded(&payload(1, 2), 40);
        assert_eq!(decode(&bytes, RUN ^ 1, 40), Decoded::Foreign);
        assert_eq!(decode(b"~hello", RUN, 40), Decoded::Foreign);
        assert_eq!(decode(b"~", RUN, 40), Decoded::Foreign);
    }

    #[test]
    fn truncated_or_mangled_payloads_are_garbled() {
        let bytes = encoded(&payload(1, 2), 40);
        assert_eq!(decode(&bytes[..39], RUN, 40), Decoded::Garbled);
        let mut bad_pad = bytes.clone();
        bad_pad[39] = b'y';
        assert_eq!(decode(&bad_pad, RUN, 40), Decoded::Garbled);
        assert_eq!(decode(b"~be7ab1.zz.3.xxxx", RUN, 17), Decoded::Garbled);
        assert_eq!(decode(b"~be7ab", RUN, 40), Decoded::Garbled);
    }

    /// Sends everything `sender` may send now.
    fn send_all(t: &mut Tracker, sender: usize) -> Vec<u64> {
        std::iter::from_fn(|| t.next_send(sender)).collect()
    }

    #[test]
    fn fanout_window_opens_only_when_all_receivers_got_the_oldest() {
        let mut t = Tracker::new(Pattern::Fanout { senders: 1 }, 3, 5, 2);
        t.start();
        assert_eq!(t.pop_ready(), Some(0));
        assert_eq!(send_all(&mut t, 0), vec![0, 1]);
        t.deliver(0, 0, 0, 10);
        t.deliver(1, 0, 0, 10);
        assert!(!t.has_ready(), "one receiver still owed message 0");
        t.deliver(2, 0, 0, 10);
        assert_eq!(t.pop_ready(), Some(0));
        assert_eq!(send_all(&mut t, 0), vec![2]);
        for seq in 1..=2 {
            for r in 0..3 {
                t.deliver(r, 0, seq, 10);
            }
        }
        assert_eq!(t.pop_ready(), Some(0));
        assert_eq!(send_all(&mut t, 0), vec![3, 4]);
        for seq in 3..=4 {
            for r in 0..3 {
                t.deliver(r, 0, seq, 10);
            }
        }
        assert!(t.finished());
        assert!(t.complete());
        assert_eq!(t.counts.delivered, 15);
        assert_eq!(t.expected_total(), 15);
    }

    #[test]
    fn a_duplicate_is_counted_and_makes_the_run_incomplete() {
        let mut t = Tracker::new(Pattern::Fanout { senders: 1 }, 1, 2, 2);
        t.start();
        send_all(&mut t, 0);
        t.deliver(0, 0, 0, 1);
        t.deliver(0, 0, 0, 1);
        t.deliver(0, 0, 1, 1);
        assert!(t.finished());
        assert_eq!(t.counts.duplicates, 1);
        assert_eq!(t.counts.delivered, 2);
        assert!(!t.complete());
    }

    #[test]
    fn a_gap_resolves_the_lost_message_so_the_run_ends_incomplete() {
        let mut t = Tracker::new(Pattern::Fanout { senders: 1 }, 1, 3, 3);
        t.start();
        send_all(&mut t, 0);
        t.deliver(0, 0, 0, 1);
        t.deliver(0, 0, 2, 1); // 1 lost
        assert!(t.finished(), "the lost message must not stall the window");
        assert_eq!(t.missing(), 1);
        assert!(!t.complete());
    }

    #[test]
    fn a_lost_message_arriving_late_is_out_of_order_not_duplicate() {
        let mut t = Tracker::new(Pattern::Fanout { senders: 1 }, 1, 3, 3);
        t.start();
        send_all(&mut t, 0);
        t.deliver(0, 0, 1, 1);
        t.deliver(0, 0, 0, 1);
        t.deliver(0, 0, 2, 1);
        assert_eq!(t.counts.out_of_order, 1);
        assert_eq!(t.counts.duplicates, 0);
        assert_eq!(t.missing(), 0);
        assert!(!t.complete());
    }

    #[test]
    fn unsent_or_misaddressed_messages_are_misdelivered() {
        let mut t = Tracker::new(Pattern::Pairs, 4, 2, 1);
        t.start();
        while let Some(s) = t.pop_ready() {
            send_all(&mut t, s);
        }
        t.deliver(2, 0, 0, 1); // user 0 whispers to 1, not 2
        t.deliver(1, 0, 1, 1); // 1 not sent yet: window 1
        t.deliver(9, 8, 0, 1); // no such users
        assert_eq!(t.counts.misdelivered, 3);
        t.deliver(1, 0, 0, 1);
        assert_eq!(t.pop_ready(), Some(0));
        assert_eq!(t.counts.delivered, 1);
    }

    #[test]
    fn pairs_finish_when_both_directions_are_delivered() {
        let mut t = Tracker::new(Pattern::Pairs, 2, 3, 8);
        assert_eq!(t.expected_total(), 6);
        t.start();
        while let Some(s) = t.pop_ready() {
            for seq in send_all(&mut t, s) {
                t.deliver(s ^ 1, s, seq, 5);
            }
        }
        assert!(t.finished());
        assert!(t.complete());
    }

    #[test]
    fn histogram_quantiles_are_within_the_precision() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.002, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.002, "{p99}");
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn an_empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(
            (h.quantile(0.5), h.quantile(1.0), h.max(), h.count()),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn histogram_is_exact_for_small_values_and_handles_extremes() {
        let mut h = Histogram::new();
        h.record(3);
        h.record(u64::MAX);
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(1.0), u64::MAX);
        assert_eq!(h.max(), u64::MAX);
        assert_eq!(h.count(), 2);
        for v in [127, 128, 129, 2047, 2049, 1 << 40] {
            let mut one = Histogram::new();
            one.record(v);
            let back = one.quantile(0.5);
            assert!(back.abs_diff(v) <= v / 1000, "{v} -> {back}");
        }
    }
}
