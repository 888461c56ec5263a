//! Room streams: the transport of broadcasts between servers, and the history of each room.
//!
//! Every broadcast is one entry of its room's stream `im:stream:{room}`, appended by
//! [`SAY_LUA`] in one atomic step: the entry's ID is `{seq}-0`, where `seq` is one more
//! than the stream's newest entry, so the per-room sequence number *is* the stream ID and
//! is the same on every server (Redis is the one counter); the entry holds the wire event
//! (`e`) and Redis's clock in milliseconds (`t`). `MAXLEN ~` keeps the stream at least as
//! long as the history and [`MIN_STREAM_LEN`], so a server that stalls for a while still
//! finds what it missed.
//!
//! Each server reads the streams of the rooms its users are in with `XREAD BLOCK` on its
//! own link, from the last sequence number it delivered ([`Streams`] keeps one position
//! per followed room): a stall or a reconnect resumes where it left off, and an entry is
//! never delivered twice. A room is followed from the newest entry at the time its first
//! user here entered it, and forgotten when its last user here leaves.
//!
//! A Redis that lost its data (restarted without persistence) starts every stream again at
//! sequence 1. The key `im:epoch` tells: on every connect each server sets it `NX` to a
//! new random value and reads it back; a changed value means the data is new, and every
//! position goes back to 0 (everything in the new streams was written after the loss, so
//! none of it was delivered yet).

use super::wire::Wire;
use crate::chat::history::Query;
use log::warn;
use redis_protocol::resp2::types::OwnedFrame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Entries a room stream keeps at least, whatever `--history` says: room for a server
/// to catch up after a stall (the transport works with history off).
pub const MIN_STREAM_LEN: usize = 1000;
/// Entries taken per stream per `XREAD`.
pub const READ_COUNT: &[u8] = b"512";
/// How long one `XREAD` may wait in Redis for a new entry.
pub const READ_BLOCK: Duration = Duration::from_millis(2000);
/// Changes only when Redis loses its data (see the module doc).
pub const EPOCH_KEY: &[u8] = b"im:epoch";

/// Appends broadcasts to a room stream, numbered on from its newest entry, and returns the
/// first one's number. KEYS: `im:stream:{room}`; ARGV: MAXLEN, the wire events.
pub const SAY_LUA: &[u8] = b"local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) \
    local seq = 0 \
    if top[1] then seq = tonumber(string.match(top[1][1], '^%d+')) end \
    local t = redis.call('TIME') \
    local ms = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000)) \
    for i = 2, #ARGV do \
      seq = seq + 1 \
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%.0f-0', seq), \
        'e', ARGV[i], 't', ms) \
    end \
    return seq - #ARGV + 2";

/// Reads a page of a room's history, which is the last ARGV[3] entries of its stream (the
/// stream may keep more, for the transport): `{first, last, entries}`, the oldest number
/// in the history and the newest of the room (0 when none), and up to ARGV[1] entries:
/// the newest ones (newest first) when ARGV[2] is empty, else the oldest of the history
/// from number ARGV[2] on. KEYS: `im:stream:{room}`.
pub const HISTORY_LUA: &[u8] = b"local function seq(e) \
      if e then return tonumber(string.match(e[1], '^%d+')) end return 0 end \
    local last = seq(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]) \
    local first = seq(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]) \
    first = math.max(first, last - tonumber(ARGV[3]) + 1) \
    local entries \
    if ARGV[2] == '' then \
      entries = redis.call('XREVRANGE', KEYS[1], '+', string.format('%.0f', first), \
        'COUNT', ARGV[1]) \
    else \
      local from = math.max(tonumber(ARGV[2]), first) \
      entries = redis.call('XRANGE', KEYS[1], string.format('%.0f', from), '+', \
        'COUNT', ARGV[1]) \
    end \
    return {first, last, entries}";

/// The room streams' scripts, by their `EVALSHA` hashes, and the streams' length.
#[derive(Debug)]
pub struct Scripts {
    say: Vec<u8>,
    history: Vec<u8>,
    /// The `MAXLEN ~` of every room stream: the history, and at least
    /// [`MIN_STREAM_LEN`].
    maxlen: Vec<u8>,
}

impl Scripts {
    /// Every script, for `SCRIPT LOAD` on every (re)connect.
    pub const ALL: [&'static [u8]; 2] = [SAY_LUA, HISTORY_LUA];

    /// The scripts of rooms keeping `history` broadcasts.
    pub fn new(history: usize) -> Self {
        Scripts {
            say: sha(SAY_LUA),
            history: sha(HISTORY_LUA),
            maxlen: history.max(MIN_STREAM_LEN).to_string().into_bytes(),
        }
    }

    /// Hands `send` the command that appends `events` (each a [`Wire::Say`]) to `room`'s
    /// stream; its reply is the first one's number.
    pub fn say<R>(&self, room: &str, events: &[Vec<u8>], send: impl FnOnce(&[&[u8]]) -> R) -> R {
        let key = key(room);
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", &self.say, b"1", &key, &self.maxlen];
        args.extend(events.iter().map(Vec::as_slice));
        send(&args)
    }

    /// Hands `send` the command that reads `query` from `room`'s history, its last `keep`
    /// entries; its reply is read by [`parse_page`].
    pub fn history<R>(
        &self,
        room: &str,
        query: Query,
        keep: usize,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let (limit, start) = match query {
            Query::Last(k) => (k, String::new()),
            Query::Since { seq, limit } => (limit, seq.saturating_add(1).to_string()),
        };
        let (key, limit, keep) = (key(room), limit.max(1).to_string(), keep.to_string());
        let (limit, start, keep) = (limit.as_bytes(), start.as_bytes(), keep.as_bytes());
        send(&[b"EVALSHA", &self.history, b"1", &key, limit, start, keep])
    }
}

/// Events of this turn by destination (a room's stream, a server's channel), in order, each
/// with what its reply is for (`T`): sent as one command per destination at the end of the
/// turn. Broadcasts go as one `EVALSHA` per room: Redis serves a blocked `XREAD` after each
/// command, so one command per broadcast would wake every reader once per broadcast, with
/// one entry; one per turn and room hands readers the whole burst at once (and costs Redis
/// one script call instead of many). Whispers go as one `PUBLISH` per server, for the same
/// reason: one command for Redis and one message for the server reading it.
#[derive(Debug)]
pub struct Outbox<T> {
    batches: HashMap<Box<str>, Batch<T>>,
    /// When the oldest waiting event was queued.
    since: Option<Instant>,
}

/// One destination's events of a turn: the wire events, and what each reply is for.
#[derive(Debug)]
pub struct Batch<T> {
    /// The events, in order.
    pub events: Vec<Vec<u8>>,
    /// One tag per event.
    pub tags: Vec<T>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            events: Vec::new(),
            tags: Vec::new(),
        }
    }
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Outbox {
            batches: HashMap::new(),
            since: None,
        }
    }
}

impl<T> Outbox<T> {
    /// Keeps `event` for `to`'s next command.
    pub fn push(&mut self, to: &str, event: Vec<u8>, tag: T, now: Instant) {
        // Looked up before inserting: a burst to one destination allocates its key once.
        let batch = match self.batches.get_mut(to) {
            Some(batch) => batch,
            None => self.batches.entry(to.into()).or_default(),
        };
        batch.events.push(event);
        batch.tags.push(tag);
        self.since.get_or_insert(now);
    }

    /// When the outbox must be sent: at once, if anything waits.
    pub fn due(&self) -> Option<Instant> {
        self.since
    }

    /// Everything waiting, by destination.
    pub fn take(&mut self) -> Vec<(Box<str>, Batch<T>)> {
        self.since = None;
        self.batches.drain().collect()
    }
}

/// `im:stream:{room}`.
pub fn key(room: &str) -> Vec<u8> {
    [b"im:stream:".as_slice(), room.as_bytes()].concat()
}

/// The room of a stream key.
fn room_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(b"im:stream:")?).ok()
}

/// The SHA1 of a script, in hex, for `EVALSHA`.
fn sha(script: &[u8]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(script);
    let mut hex = Vec::with_capacity(40);
    for b in digest {
        hex.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    hex
}

/// One entry of a room stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The room's sequence number.
    pub seq: u64,
    /// When Redis appended it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The wire event (a [`Wire::Say`]).
    pub event: Vec<u8>,
}

impl Entry {
    /// The event, if it is a broadcast.
    pub fn say(&self) -> Option<Wire<'_>> {
        Wire::decode(&self.event).filter(|w| matches!(w, Wire::Say { .. }))
    }
}

/// The sequence number of an ID `{seq}-0`.
fn seq_of(id: &[u8]) -> Option<u64> {
    let ms = id.split(|&b| b == b'-').next()?;
    std::str::from_utf8(ms).ok()?.parse().ok()
}

/// One stream entry `[id, [field, value, ...]]`.
fn parse_entry(frame: &OwnedFrame) -> Option<Entry> {
    let OwnedFrame::Array(parts) = frame else {
        return None;
    };
    let [OwnedFrame::BulkString(id), OwnedFrame::Array(fields)] = parts.as_slice() else {
        return None;
    };
    let mut entry = Entry {
        seq: seq_of(id)?,
        time_ms: 0,
        event: Vec::new(),
    };
    for pair in fields.chunks(2) {
        let [OwnedFrame::BulkString(name), OwnedFrame::BulkString(value)] = pair else {
            continue;
        };
        match name.as_slice() {
            b"e" => entry.event.clone_from(value),
            b"t" => entry.time_ms = seq_of(value).unwrap_or(0),
            _ => {}
        }
    }
    Some(entry)
}

/// The entries of an `XRANGE`-style list, skipping malformed ones.
fn parse_entries(frame: &OwnedFrame) -> Vec<Entry> {
    match frame {
        OwnedFrame::Array(items) => items.iter().filter_map(parse_entry).collect(),
        _ => Vec::new(),
    }
}

/// The newest sequence number of an `XREVRANGE key + - COUNT 1` reply (0: empty stream).
pub fn parse_top(frame: &OwnedFrame) -> u64 {
    parse_entries(frame).first().map_or(0, |e| e.seq)
}

/// An `XREAD` reply: `[[key, [entry, ...]], ...]`, or nil when it timed out or was
/// unblocked.
fn parse_xread(frame: OwnedFrame) -> Vec<(Box<str>, Vec<Entry>)> {
    let OwnedFrame::Array(streams) = frame else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stream in &streams {
        let OwnedFrame::Array(parts) = stream else {
            continue;
        };
        let [OwnedFrame::BulkString(key), entries] = parts.as_slice() else {
            continue;
        };
        if let Some(room) = room_of(key) {
            out.push((room.into(), parse_entries(entries)));
        }
    }
    out
}

/// A [`HISTORY_LUA`] reply: the room's newest number, and the entries, oldest first.
pub fn parse_page(frame: &OwnedFrame) -> Option<(u64, Vec<Entry>)> {
    let OwnedFrame::Array(parts) = frame else {
        return None;
    };
    let [OwnedFrame::Integer(_), OwnedFrame::Integer(last), entries] = parts.as_slice() else {
        return None;
    };
    let mut entries = parse_entries(entries);
    entries.sort_unstable_by_key(|e| e.seq);
    Some((u64::try_from(*last).ok()?, entries))
}

/// Where this server is in one followed room's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// Not known yet: the stream's newest entry is to be asked for.
    Unknown,
    /// Asked for; the answer will set it.
    Asking,
    /// The last sequence number delivered (0: none yet).
    At(u64),
}

/// One followed room.
#[derive(Debug)]
struct Follow {
    /// Users of this server in the room.
    users: u32,
    pos: Pos,
}

/// What the reader link should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing: a read is outstanding, or nothing to read yet.
    Wait,
    /// Send this `XREAD` (its arguments).
    Read(Vec<Vec<u8>>),
}

/// The rooms this server reads, with its position in each.
#[derive(Debug, Default)]
pub struct Streams {
    rooms: HashMap<Box<str>, Follow>,
    /// An `XREAD` is on its way or blocked in Redis.
    reading: bool,
    /// A room became readable while a read was outstanding: that read must be cut short
    /// (`CLIENT UNBLOCK`) so the next one includes it.
    widened: bool,
    /// The reader link's client id (`CLIENT ID`), on the current connection.
    reader: Option<i64>,
    /// The epoch this server's positions belong to.
    epoch: Option<Vec<u8>>,
    /// The epoch was read on the current connection: reads may start.
    checked: bool,
    /// Entries found trimmed away before this server read them, in all.
    lost: u64,
}

impl Streams {
    /// A user of this server entered `room`: the room is followed from now on.
    pub fn enter(&mut self, room: &str) {
        match self.rooms.get_mut(room) {
            Some(f) => f.users += 1,
            None => {
                let f = Follow {
                    users: 1,
                    pos: Pos::Unknown,
                };
                self.rooms.insert(room.into(), f);
            }
        }
    }

    /// A user of this server left `room`: the last one out stops the reading.
    pub fn leave(&mut self, room: &str) {
        if let Some(f) = self.rooms.get_mut(room) {
            f.users = f.users.saturating_sub(1);
            if f.users == 0 {
                self.rooms.remove(room);
            }
        }
    }

    /// The link went down: reads and questions in flight are void; positions stay.
    pub fn down(&mut self) {
        self.reading = false;
        self.widened = false;
        self.reader = None;
        self.checked = false;
        for f in self.rooms.values_mut() {
            if f.pos == Pos::Asking {
                f.pos = Pos::Unknown;
            }
        }
    }

    /// The reader link's client id.
    pub fn set_reader(&mut self, id: i64) {
        self.reader = Some(id);
    }

    /// `GET im:epoch` answered on this connection: if it changed, Redis lost its data and
    /// every stream starts again, so every known position goes back to 0.
    pub fn epoch(&mut self, epoch: Vec<u8>) {
        if self.epoch.as_ref().is_some_and(|old| *old != epoch) {
            warn!(
                "Redis lost its data (im:epoch changed): reading {} room streams from \
                 their start; what was not delivered before is gone",
                self.rooms.len()
            );
            for f in self.rooms.values_mut() {
                if let Pos::At(_) = f.pos {
                    f.pos = Pos::At(0);
                }
            }
        }
        self.epoch = Some(epoch);
        self.checked = true;
    }

    /// Rooms whose position must be asked for (`XREVRANGE key + - COUNT 1`), now marked
    /// as asked.
    pub fn to_ask(&mut self) -> Vec<Box<str>> {
        if !self.checked {
            return Vec::new();
        }
        let mut ask = Vec::new();
        for (room, f) in self.rooms.iter_mut() {
            if f.pos == Pos::Unknown {
                f.pos = Pos::Asking;
                ask.push(room.clone());
            }
        }
        ask
    }

    /// The newest entry of `room` was `top` when asked: reading starts after it.
    pub fn start_at(&mut self, room: &str, top: u64) {
        if let Some(f) = self.rooms.get_mut(room) {
            if f.pos == Pos::Asking {
                f.pos = Pos::At(top);
                self.widened |= self.reading;
            }
        }
    }

    /// A position question failed (the link went down): asked again on reconnect.
    pub fn ask_failed(&mut self, room: &str) {
        if let Some(f) = self.rooms.get_mut(room) {
            if f.pos == Pos::Asking {
                f.pos = Pos::Unknown;
            }
        }
    }

    /// The reader's client id, if the outstanding read must be cut short (once).
    pub fn unblock(&mut self) -> Option<i64> {
        if !self.widened || !self.reading {
            return None;
        }
        self.widened = false;
        self.reader
    }

    /// The next `XREAD`, if one is due: every followed room with a known position.
    pub fn next_read(&mut self) -> Next {
        if self.reading || !self.checked || self.reader.is_none() {
            return Next::Wait;
        }
        let at: Vec<(&str, u64)> = self
            .rooms
            .iter()
            .filter_map(|(room, f)| match f.pos {
                Pos::At(seq) => Some((&**room, seq)),
                _ => None,
            })
            .collect();
        if at.is_empty() {
            return Next::Wait;
        }
        let block = READ_BLOCK.as_millis().to_string();
        let mut args: Vec<Vec<u8>> = vec![
            b"XREAD".to_vec(),
            b"COUNT".to_vec(),
            READ_COUNT.to_vec(),
            b"BLOCK".to_vec(),
            block.into_bytes(),
            b"STREAMS".to_vec(),
        ];
        args.extend(at.iter().map(|(room, _)| key(room)));
        args.extend(at.iter().map(|(_, seq)| format!("{seq}-0").into_bytes()));
        self.reading = true;
        self.widened = false;
        Next::Read(args)
    }

    /// An `XREAD` answered (or failed, `None`): the entries each followed room had not
    /// delivered yet, in order, with positions moved past them. Entries trimmed away
    /// before they were read are counted and logged (a gap shows once, in the first read
    /// after the stall that caused it).
    pub fn read(&mut self, reply: Option<OwnedFrame>) -> Vec<(Box<str>, Entry)> {
        self.reading = false;
        let Some(reply) = reply else {
            return Vec::new();
        };
        let mut fresh = Vec::new();
        let mut lost = 0;
        for (room, entries) in parse_xread(reply) {
            let Some(f) = self.rooms.get_mut(&room) else {
                continue; // nobody here is in it any more
            };
            let Pos::At(mut at) = f.pos else {
                continue; // followed anew since that read was sent
            };
            for entry in entries {
                if entry.seq <= at {
                    continue;
                }
                lost += entry.seq - at - 1;
                at = entry.seq;
                fresh.push((room.clone(), entry));
            }
            f.pos = Pos::At(at);
        }
        if lost > 0 {
            warn!(
                "room streams were trimmed past this server's position: {lost} broadcasts \
                 not delivered here (a stall longer than the streams' MAXLEN covers)"
            );
            self.lost += lost;
        }
        fresh
    }

    /// Broadcasts trimmed away before this server read them, since it started.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    fn entry(seq: u64, text: &str) -> OwnedFrame {
        OwnedFrame::Array(vec![
            bulk(&format!("{seq}-0")),
            OwnedFrame::Array(vec![
                bulk("e"),
                bulk(text),
                bulk("t"),
                bulk("1700000000123"),
            ]),
        ])
    }

    fn xread(room: &str, entries: Vec<OwnedFrame>) -> OwnedFrame {
        OwnedFrame::Array(vec![OwnedFrame::Array(vec![
            bulk(&format!("im:stream:{room}")),
            OwnedFrame::Array(entries),
        ])])
    }

    fn ready() -> Streams {
        let mut s = Streams::default();
        s.set_reader(7);
        s.epoch(b"e1".to_vec());
        s
    }

    #[test]
    fn a_room_is_read_from_its_newest_entry_at_entry_time() {
        let mut s = ready();
        s.enter("101");
        assert_eq!(s.next_read(), Next::Wait, "position not known yet");
        assert_eq!(s.to_ask(), vec![Box::from("101")]);
        assert!(s.to_ask().is_empty(), "asked once");
        s.start_at("101", 41);
        let Next::Read(args) = s.next_read() else {
            panic!("a read is due")
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "XREAD",
                "COUNT",
                "512",
                "BLOCK",
                "2000",
                "STREAMS",
                "im:stream:101",
                "41-0"
            ]
        );
        assert_eq!(s.next_read(), Next::Wait, "one read at a time");
    }

    #[test]
    fn entries_are_delivered_once_in_order_and_gaps_counted() {
        let mut s = ready();
        s.enter("101");
        s.to_ask();
        s.start_at("101", 5);
        assert!(matches!(s.next_read(), Next::Read(_)));
        let got = s.read(Some(xread(
            "101",
            vec![entry(5, "old"), entry(6, "a"), entry(9, "b")],
        )));
        let seqs: Vec<u64> = got.iter().map(|(_, e)| e.seq).collect();
        assert_eq!(seqs, [6, 9]);
        assert_eq!(got[0].1.event, b"a");
        assert_eq!(got[0].1.time_ms, 1_700_000_000_123);
        assert_eq!(s.lost, 2);
        // A repeat of what was delivered is not delivered again.
        assert!(matches!(s.next_read(), Next::Read(_)));
        assert!(s.read(Some(xread("101", vec![entry(9, "b")]))).is_empty());
        // A timeout (nil) changes nothing.
        assert!(matches!(s.next_read(), Next::Read(_)));
        assert!(s.read(Some(OwnedFrame::Null)).is_empty());
    }

    #[test]
    fn a_new_room_cuts_the_outstanding_read_short_and_leaving_stops_reading() {
        let mut s = ready();
        s.enter("a");
        s.to_ask();
        s.start_at("a", 0);
        assert_eq!(s.unblock(), None);
        assert!(matches!(s.next_read(), Next::Read(_)));
        s.enter("b");
        s.enter("b");
        s.to_ask();
        s.start_at("b", 3);
        assert_eq!(s.unblock(), Some(7));
        assert_eq!(s.unblock(), None, "once");
        // The cut read comes back empty; the next one reads both.
        assert!(s.read(Some(OwnedFrame::Null)).is_empty());
        let Next::Read(args) = s.next_read() else {
            panic!("a read is due")
        };
        assert_eq!(args.len(), 10);
        s.leave("a");
        // Entries of a room nobody here is in are dropped.
        assert!(s.read(Some(xread("a", vec![entry(1, "x")]))).is_empty());
        s.leave("b");
        assert!(
            matches!(s.next_read(), Next::Read(_)),
            "b has one user left"
        );
        s.read(None);
        s.leave("b");
        assert_eq!(s.next_read(), Next::Wait, "nothing followed");
    }

    #[test]
    fn a_changed_epoch_rewinds_every_position_and_a_reconnect_keeps_them() {
        let mut s = ready();
        s.enter("r");
        s.to_ask();
        s.start_at("r", 50);
        s.down();
        assert_eq!(s.next_read(), Next::Wait, "not before the epoch is checked");
        s.set_reader(8);
        s.epoch(b"e1".to_vec());
        let Next::Read(args) = s.next_read() else {
            panic!("a read is due")
        };
        assert_eq!(args.last().map(Vec::as_slice), Some(b"50-0".as_slice()));
        s.read(None);
        s.down();
        s.set_reader(9);
        s.epoch(b"e2".to_vec());
        let Next::Read(args) = s.next_read() else {
            panic!("a read is due")
        };
        assert_eq!(args.last().map(Vec::as_slice), Some(b"0-0".as_slice()));
    }

    #[test]
    fn history_pages_come_oldest_first() {
        let page = OwnedFrame::Array(vec![
            OwnedFrame::Integer(8),
            OwnedFrame::Integer(12),
            OwnedFrame::Array(vec![entry(12, "l"), entry(11, "k")]),
        ]);
        let (last, entries) = parse_page(&page).unwrap();
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!((last, seqs), (12, vec![11, 12]));
        assert_eq!(parse_page(&OwnedFrame::Null), None);
    }

    #[test]
    fn keys_and_script_hashes() {
        assert_eq!(key("101"), b"im:stream:101");
        assert_eq!(room_of(b"im:stream:lobby"), Some("lobby"));
        assert_eq!(room_of(b"im:other"), None);
        // The SHA1 of "abc".
        assert_eq!(sha(b"abc"), b"a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(parse_top(&OwnedFrame::Array(vec![entry(77, "x")])), 77);
        assert_eq!(parse_top(&OwnedFrame::Array(vec![])), 0);
    }
}
