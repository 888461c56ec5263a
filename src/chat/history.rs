//! Each room's recent messages, in memory: what line `history`, `/im` `history` and the
//! page's recovery after a reconnect read (Centrifugo's history and recovery, Ergo's
//! per-channel ring, in one process).
//!
//! # Interface
//! The store is keyed by room *name*, not [`RoomId`](super::RoomId): a room's history
//! outlives its members (a page reloaded by the room's only user finds it again), and a
//! name is what another server or Redis calls the room too. Three calls make the whole
//! interface, so another backing store can take this one's place:
//! - [`History::push`]`(room, sender, time, text) -> Option<seq>`: one room broadcast,
//!   numbered: each room's sequence starts at 1 and grows by one per message;
//! - [`History::last`]`(room, k)`: the last `k` messages, oldest first;
//! - [`History::since`]`(room, seq, limit)`: the first `limit` messages after `seq`,
//!   oldest first, and whether the one right after `seq` is lost (`gap`).
//!
//! With `--redis` this store is not used: the room's Redis Stream stands behind the same
//! three questions (`cluster::stream`), numbered by Redis so every server agrees, and its
//! answers arrive in a later turn, carried back with the asker's context as a claim's are.
//! Here every call answers at once, so a history is rendered into its reader's output
//! within one turn: a user who moves to another room after asking has its whole answer
//! already, and nothing of the old room after it.
//!
//! # Bounds
//! Only room broadcasts are kept (never private messages or notices), each with its
//! sender's address and name, its time (milliseconds since the Unix epoch) and its number.
//! A room keeps at most `keep` (`--history`) messages and at most `keep` times
//! `--max-line` plus [`ENTRY_OVERHEAD_BYTES`] plus [`MAX_NAME_BYTES`] bytes, counted as
//! text, name and a fixed cost per entry, oldest dropped first; a message larger than that alone is not
//! kept (its number is used, so [`History::since`] reports it as a gap). All rooms
//! together keep at most `cap` (`--history-bytes`) bytes, each room's own cost counted
//! too: past it, the largest histories lose their oldest messages until the total is a
//! sixteenth under the cap (one sort per sixteenth of the cap written, not one per
//! message), so a flood in one room costs that room its history, not the quiet ones. A
//! room whose messages all went keeps its numbering; only when rooms alone (without
//! messages) exceed the cap are they forgotten, and a forgotten room's numbering starts
//! again at 1.

use crate::text::User;
use std::collections::vec_deque::Iter;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// The longest name in bytes: 32 characters of at most 4 bytes (the name rules).
pub const MAX_NAME_BYTES: usize = 128;
/// What an entry costs besides its text and name: the entry itself and its allocation.
pub const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() + 16;
/// What a room's history costs besides its entries and its name (the map slot, the ring).
const ROOM_OVERHEAD_BYTES: usize = std::mem::size_of::<Log>() + 64;

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its number in its room, from 1.
    pub seq: u64,
    /// When it was said, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The sender's address.
    addr: SocketAddr,
    /// How many bytes at the front of `bytes` are the sender's chosen name (`None`: it
    /// went by its address; names are at most [`MAX_NAME_BYTES`]).
    name_len: Option<u16>,
    /// The name, then what was said: one allocation per message, not two (a push is paid
    /// once per broadcast).
    bytes: Box<[u8]>,
}

impl Entry {
    /// Message number `seq` of its room, said by `from` at `time_ms` (milliseconds since
    /// the Unix epoch): how another store (a Redis stream) hands its entries over.
    pub fn new(seq: u64, time_ms: u64, from: User<'_>, text: &[u8]) -> Entry {
        // A name too long to count in a u16 (none is: the name rules) would go unshown.
        let name_len = from.name.and_then(|n| u16::try_from(n.len()).ok());
        let name = from.name.filter(|_| name_len.is_some()).unwrap_or_default();
        Entry {
            seq,
            time_ms,
            addr: *from.addr,
            name_len,
            bytes: [name.as_bytes(), text].concat().into(),
        }
    }

    /// The sender, as texts show it.
    pub fn sender(&self) -> User<'_> {
        let name = self
            .name_len
            .and_then(|n| self.bytes.get(..usize::from(n)))
            .and_then(|name| std::str::from_utf8(name).ok());
        User {
            addr: &self.addr,
            name,
        }
    }

    /// What was said.
    pub fn text(&self) -> &[u8] {
        let from = self.name_len.map_or(0, usize::from);
        self.bytes.get(from..).unwrap_or_default()
    }

    /// What this entry counts for against the bounds.
    fn cost(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// What an entry with this sender name and text counts for.
fn cost(name: Option<&str>, text: &[u8]) -> usize {
    text.len() + name.map_or(0, str::len) + ENTRY_OVERHEAD_BYTES
}

/// The messages a read found, oldest first.
#[derive(Debug)]
pub struct Recall<'a> {
    /// The messages.
    pub entries: Iter<'a, Entry>,
    /// Whether the message right after the asked-for `since` is lost: dropped under the
    /// bounds (always `false` for [`History::last`]).
    pub gap: bool,
}

/// What a history read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The last `k` messages ([`History::last`]).
    Last(usize),
    /// The first `limit` messages after number `seq` ([`History::since`]).
    Since {
        /// The last number the reader has.
        seq: u64,
        /// How many at most.
        limit: usize,
    },
}

impl Query {
    /// The same read, for at most `keep` messages (what a room keeps).
    pub fn within(self, keep: usize) -> Query {
        match self {
            Query::Last(k) => Query::Last(k.min(keep)),
            Query::Since { seq, limit } => Query::Since {
                seq,
                limit: limit.min(keep),
            },
        }
    }
}

/// A history read's answer, owned: what the in-memory store answers at once, and a Redis
/// stream a turn later, in the same form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The room read.
    pub room: Box<str>,
    /// The messages, oldest first.
    pub entries: Vec<Entry>,
    /// Whether the message right after the asked-for `since` is lost (see [`Recall`]).
    pub gap: bool,
}

/// What an unknown room reads as.
static NO_ENTRIES: VecDeque<Entry> = VecDeque::new();

impl Recall<'_> {
    fn none() -> Self {
        Recall {
            entries: NO_ENTRIES.iter(),
            gap: false,
        }
    }
}

/// One room's ring.
#[derive(Debug)]
struct Log {
    /// The number the next message gets.
    next_seq: u64,
    entries: VecDeque<Entry>,
    /// What the entries count for.
    bytes: usize,
}

impl Log {
    /// Drops the oldest entry; returns what it counted for.
    fn drop_oldest(&mut self) -> usize {
        let freed = self.entries.pop_front().map_or(0, |e| e.cost());
        self.bytes -= freed;
        freed
    }
}

/// Every room's recent messages (see the module doc).
#[derive(Debug)]
pub struct History {
    /// Messages kept per room; 0: history is off.
    keep: usize,
    /// Bytes kept per room.
    room_bytes: usize,
    /// Bytes kept in all.
    cap: usize,
    /// Bytes kept now: entries, names of rooms, rooms.
    total: usize,
    /// Messages kept now.
    messages: usize,
    logs: HashMap<Box<str>, Log>,
}

impl History {
    /// A store keeping `keep` messages per room (0: none) of lines up to `max_line`
    /// bytes, and `cap` bytes in all.
    pub fn new(keep: usize, max_line: usize, cap: usize) -> Self {
        let per_entry = max_line
            .saturating_add(MAX_NAME_BYTES)
            .saturating_add(ENTRY_OVERHEAD_BYTES);
        History {
            keep,
            room_bytes: keep.saturating_mul(per_entry),
            cap,
            total: 0,
            messages: 0,
            logs: HashMap::new(),
        }
    }

    /// Whether messages are kept at all (`--history` above 0).
    pub fn is_on(&self) -> bool {
        self.keep > 0
    }

    /// How many messages a room keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Bytes kept now, as counted against the cap.
    pub fn bytes(&self) -> usize {
        self.total
    }

    /// Messages kept now, in all rooms.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Keeps `text`, said to `room` by `from` at `time_ms`; returns its number, or `None`
    /// when history is off.
    pub fn push(&mut self, room: &str, from: User<'_>, time_ms: u64, text: &[u8]) -> Option<u64> {
        if !self.is_on() {
            return None;
        }
        let log = match self.logs.get_mut(room) {
            Some(log) => log,
            None => {
                self.total += ROOM_OVERHEAD_BYTES + room.len();
                self.logs.entry(room.into()).or_insert(Log {
                    next_seq: 1,
                    entries: VecDeque::new(),
                    bytes: 0,
                })
            }
        };
        let seq = log.next_seq;
        log.next_seq += 1;
        let need = cost(from.name, text);
        if need > self.room_bytes {
            return Some(seq); // larger than the room's whole budget: numbered, not kept
        }
        while !log.entries.is_empty()
            && (log.entries.len() >= self.keep || log.bytes + need > self.room_bytes)
        {
            let freed = log.drop_oldest();
            self.total -= freed;
            self.messages -= 1;
        }
        log.entries.push_back(Entry::new(seq, time_ms, from, text));
        log.bytes += need;
        self.total += need;
        self.messages += 1;
        if self.total > self.cap {
            self.trim();
        }
        Some(seq)
    }

    /// The last `k` messages of `room`, oldest first.
    pub fn last(&self, room: &str, k: usize) -> Recall<'_> {
        let Some(log) = self.logs.get(room) else {
            return Recall::none();
        };
        let len = log.entries.len();
        Recall {
            entries: log.entries.range(len.saturating_sub(k)..),
            gap: false,
        }
    }

    /// `query` on `room`, as an owned [`Page`].
    pub fn page(&self, room: &str, query: Query) -> Page {
        let recall = match query {
            Query::Last(k) => self.last(room, k),
            Query::Since { seq, limit } => self.since(room, seq, limit),
        };
        Page {
            room: room.into(),
            gap: recall.gap,
            entries: recall.entries.cloned().collect(),
        }
    }

    /// The first `limit` messages of `room` after number `seq`, oldest first. A `seq` at
    /// or past the newest message reads as nothing, without a gap.
    pub fn since(&self, room: &str, seq: u64, limit: usize) -> Recall<'_> {
        let Some(log) = self.logs.get(room) else {
            return Recall::none();
        };
        if seq.saturating_add(1) >= log.next_seq {
            return Recall::none();
        }
        let from = log.entries.partition_point(|e| e.seq <= seq);
        let to = from.saturating_add(limit).min(log.entries.len());
        let gap = log.entries.get(from).is_none_or(|e| e.seq != seq + 1);
        Recall {
            entries: log.entries.range(from..to),
            gap,
        }
    }

    /// Brings the total a sixteenth under the cap: the largest histories are cut to one
    /// level (water-filling), oldest first; then, if rooms alone are still too many,
    /// rooms without messages are forgotten.
    fn trim(&mut self) {
        let goal = self.cap - self.cap / 16;
        let excess = self.total.saturating_sub(goal);
        let mut sizes: Vec<usize> = self.logs.values().map(|l| l.bytes).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let level = level_for(&sizes, excess);
        for log in self.logs.values_mut() {
            while log.bytes > level && !log.entries.is_empty() {
                self.total -= log.drop_oldest();
                self.messages -= 1;
            }
        }
        if self.total > goal {
            let total = &mut self.total;
            self.logs.retain(|name, log| {
                let keep = *total <= goal || !log.entries.is_empty();
                if !keep {
                    *total -= ROOM_OVERHEAD_BYTES + name.len();
                }
                keep
            });
        }
    }
}

/// The level to cut the largest of `sizes` (sorted, largest first) down to so that at
/// least `excess` is freed: the highest level whose cuts add up to `excess`.
fn level_for(sizes: &[usize], excess: usize) -> usize {
    let mut above = 0; // the sum of the sizes before `k`
    for (k, &size) in sizes.iter().enumerate() {
        // Cutting the `k` largest down to `size` frees `above - k * size`.
        if k > 0 && above - k * size >= excess {
            return (above - excess) / k;
        }
        above += size;
    }
    match sizes.len() {
        0 => 0,
        n => above.saturating_sub(excess) / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5))
    }

    fn push(h: &mut History, room: &str, text: &str) -> Option<u64> {
        let a = alice();
        let from = User {
            addr: &a,
            name: Some("alice"),
        };
        h.push(room, from, 1_000, text.as_bytes())
    }

    fn texts(r: Recall<'_>) -> (Vec<String>, bool) {
        let gap = r.gap;
        let t = r
            .entries
            .map(|e| format!("{}:{}", e.seq, String::from_utf8_lossy(e.text())))
            .collect();
        (t, gap)
    }

    #[test]
    fn each_room_numbers_its_messages_and_keeps_the_last_n() {
        let mut h = History::new(3, 100, 1 << 20);
        for i in 1..=5 {
            assert_eq!(push(&mut h, "a", &format!("m{i}")), Some(i));
        }
        assert_eq!(push(&mut h, "b", "other"), Some(1));
        assert_eq!(texts(h.last("a", 10)).0, ["3:m3", "4:m4", "5:m5"]);
        assert_eq!(texts(h.last("a", 2)).0, ["4:m4", "5:m5"]);
        assert_eq!(texts(h.last("b", 2)).0, ["1:other"]);
        assert!(texts(h.last("nowhere", 2)).0.is_empty());
        assert_eq!(h.messages(), 4);
        let e = h
            .last("a", 1)
            .entries
            .next()
            .map(|e| e.sender().name_string());
        assert_eq!(e.as_deref(), Some("alice"));
    }

    #[test]
    fn since_reads_on_from_a_number_and_says_what_is_lost() {
        let mut h = History::new(3, 100, 1 << 20);
        for i in 1..=5 {
            push(&mut h, "a", &format!("m{i}"));
        }
        assert_eq!(
            texts(h.since("a", 3, 10)),
            (vec!["4:m4".into(), "5:m5".into()], false)
        );
        assert_eq!(texts(h.since("a", 2, 1)), (vec!["3:m3".into()], false));
        // 2 is gone: asking from 1 (or 0) reads what is kept, with a gap.
        assert!(texts(h.since("a", 1, 10)).1);
        assert_eq!(texts(h.since("a", 0, 10)).0.len(), 3);
        // Up to date, or ahead of the room: nothing, and no gap.
        assert_eq!(texts(h.since("a", 5, 10)), (vec![], false));
        assert_eq!(texts(h.since("a", 500, 10)), (vec![], false));
        assert_eq!(texts(h.since("a", u64::MAX, 10)), (vec![], false));
        assert_eq!(texts(h.since("nowhere", 0, 10)), (vec![], false));
    }

    #[test]
    fn off_keeps_nothing_and_numbers_nothing() {
        let mut h = History::new(0, 100, 1 << 20);
        assert!(!h.is_on());
        assert_eq!(push(&mut h, "a", "x"), None);
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn a_room_keeps_its_byte_budget_and_a_huge_message_is_numbered_not_kept() {
        let mut h = History::new(2, 10, 1 << 20);
        let budget = 2 * (10 + MAX_NAME_BYTES + ENTRY_OVERHEAD_BYTES);
        push(&mut h, "a", "small");
        let huge = "x".repeat(budget);
        assert_eq!(push(&mut h, "a", &huge), Some(2));
        assert_eq!(push(&mut h, "a", "after"), Some(3));
        assert_eq!(texts(h.last("a", 5)).0, ["1:small", "3:after"]);
        assert!(texts(h.since("a", 1, 5)).1, "the huge one is a gap");
        // Texts over --max-line (from WebSocket users) are kept while the room's bytes
        // allow: a long one pushes older ones out.
        let long = "y".repeat(budget - cost(Some("alice"), b"") - 10);
        push(&mut h, "a", &long);
        assert_eq!(texts(h.last("a", 5)).0.len(), 1);
    }

    #[test]
    fn the_total_cap_cuts_the_largest_histories_first() {
        let one = cost(Some("alice"), b"0123456789");
        // Room overheads plus 20 messages' worth.
        let cap = 3 * (ROOM_OVERHEAD_BYTES + 5) + 20 * one;
        let mut h = History::new(100, 100, cap);
        for _ in 0..3 {
            push(&mut h, "quiet", "0123456789");
        }
        for _ in 0..3 {
            push(&mut h, "calm1", "0123456789");
        }
        for _ in 0..100 {
            push(&mut h, "flood", "0123456789");
            assert!(h.bytes() <= cap);
        }
        assert_eq!(
            h.last("quiet", 10).entries.len(),
            3,
            "quiet rooms keep theirs"
        );
        assert_eq!(h.last("calm1", 10).entries.len(), 3);
        let flood = h.last("flood", 100).entries.len();
        assert!((5..20).contains(&flood), "{flood}");
        assert_eq!(h.messages(), 6 + flood);
        // The flood's numbering goes on.
        assert_eq!(push(&mut h, "flood", "x"), Some(101));
    }

    #[test]
    fn rooms_alone_over_the_cap_are_forgotten() {
        let mut h = History::new(1, 10, 10 * ROOM_OVERHEAD_BYTES);
        for i in 0..100 {
            push(&mut h, &format!("r{i}"), "");
            assert!(h.bytes() <= 10 * ROOM_OVERHEAD_BYTES + 200);
        }
        assert!(h.logs.len() < 20);
    }

    /// The README states the per-entry cost: 88 bytes besides text and name.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_costs_what_the_readme_says() {
        assert_eq!(ENTRY_OVERHEAD_BYTES, 88);
        assert_eq!(MAX_NAME_BYTES + ENTRY_OVERHEAD_BYTES, 216);
    }

    #[test]
    fn levels_free_at_least_the_excess() {
        assert_eq!(level_for(&[], 10), 0);
        assert_eq!(level_for(&[100], 10), 90);
        assert_eq!(level_for(&[100, 10, 10], 50), 50);
        assert_eq!(level_for(&[100, 90, 10], 50), 70);
        assert_eq!(level_for(&[10, 10], 100), 0);
        for (sizes, excess) in [(vec![50, 40, 30, 20], 70), (vec![9, 9, 9], 5)] {
            let level = level_for(&sizes, excess);
            let freed: usize = sizes.iter().map(|&s| s.saturating_sub(level)).sum();
            assert!(freed >= excess, "{sizes:?} {excess} -> {level}");
        }
    }
}
