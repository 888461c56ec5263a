//! The fan-out: one event, encoded once per protocol present among its recipients into
//! that protocol's open segment of the turn, which every recipient's queue then refers to
//! (see `net::out`). The chat core decides who receives; the protocol adapters decide the
//! bytes; nothing is written until the flush phase, which seals the segments first.

use super::conns::Conns;
use super::out::{Segment, Shared};
use crate::chat::{Chat, Event, Kind, Member, RoomId, Seat, UserId};
use crate::proto;
use crate::text::{Texts, User};
use mio::Token;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A segment past this size is sealed and a new one begun, so that one reference kept a
/// little longer (a connection over its write budget) pins little memory.
const SEGMENT_MAX_BYTES: usize = 64 * 1024;
/// A new segment's first allocation: a turn's broadcasts usually fit.
const SEGMENT_FIRST_BYTES: usize = 4 * 1024;

/// The segment a protocol's broadcasts of this turn are being written into.
#[derive(Debug, Default)]
struct Open {
    seg: Rc<Segment>,
    bytes: Vec<u8>,
}

impl Open {
    /// Appends `bytes`; returns where they are.
    fn append(&mut self, bytes: &[u8]) -> (u32, u32) {
        if !self.bytes.is_empty() && self.bytes.len() + bytes.len() > SEGMENT_MAX_BYTES {
            self.seal();
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(SEGMENT_FIRST_BYTES.max(bytes.len()));
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        (at(start), at(self.bytes.len()))
    }

    /// Bytes `start..end` as the recipients take them.
    fn shared(&self, (start, end): (u32, u32)) -> Shared<'_> {
        Shared {
            seg: &self.seg,
            start,
            bytes: self
                .bytes
                .get(start as usize..end as usize)
                .unwrap_or_default(),
        }
    }

    /// Hands the bytes to the segment for reading and begins a new one; a segment nobody
    /// refers to (every recipient took a copy) keeps its buffer for the next turn.
    fn seal(&mut self) {
        if Rc::strong_count(&self.seg) == 1 {
            self.bytes.clear();
            return;
        }
        let bytes = std::mem::take(&mut self.bytes);
        std::mem::take(&mut self.seg).seal(bytes);
    }
}

/// The turn's fan-out bytes: each protocol's open segment, and a buffer to encode into.
#[derive(Debug)]
pub struct Fanout {
    texts: &'static Texts,
    /// One open segment per protocol kind.
    open: [Open; Kind::COUNT],
    /// Scratch for encoding one event: cleared by each use.
    scratch: Vec<u8>,
}

impl Fanout {
    /// Buffers for texts in `texts`.
    pub fn new(texts: &'static Texts) -> Self {
        Fanout {
            texts,
            open: Default::default(),
            scratch: Vec::new(),
        }
    }

    /// Makes this turn's segments readable (the flush phase, before it writes).
    pub fn seal(&mut self) {
        for open in &mut self.open {
            open.seal();
        }
    }

    /// The server's texts.
    pub fn texts(&self) -> &'static Texts {
        self.texts
    }

    /// Tells every user in `room` about `event` from `from`, each in its protocol's form;
    /// `except` is a user not told (an `/im` user whose own arrival its login answers, a
    /// user moving in, who is answered by its move).
    /// Presence notices skip connections whose peer has hung up (a half-closed client
    /// still gets what is said: it may be reading the answers to its last lines).
    pub fn room(
        &mut self,
        chat: &Chat,
        conns: &mut Conns,
        room: RoomId,
        from: User<'_>,
        event: Event<'_>,
        except: Option<UserId>,
    ) {
        self.room_where(chat, conns, room, from, event, |seat| {
            except != Some(seat.id)
        });
    }

    /// Like [`Fanout::room`], for the users `pick` picks (in a cluster, a broadcast said
    /// here reaches the users who see its number only once Redis has numbered it).
    pub fn room_where(
        &mut self,
        chat: &Chat,
        conns: &mut Conns,
        room: RoomId,
        from: User<'_>,
        event: Event<'_>,
        pick: impl Fn(&Seat) -> bool,
    ) {
        let mut encoded: [Option<(u32, u32)>; Kind::COUNT] = [None; Kind::COUNT];
        let notice = matches!(event, Event::Online | Event::Offline);
        for seat in chat.seats(room) {
            if !pick(seat) {
                continue;
            }
            let token = Token(seat.peer.0);
            if notice && conns.get(token).is_some_and(|c| c.hung_up) {
                continue;
            }
            let i = seat.kind.index();
            let (Some(span), Some(open)) = (encoded.get_mut(i), self.open.get_mut(i)) else {
                continue;
            };
            let span = *span.get_or_insert_with(|| {
                proto::render(seat.kind, self.texts, from, None, event, &mut self.scratch);
                open.append(&self.scratch)
            });
            conns.queue_shared(token, open.shared(span));
        }
    }

    /// Sends `text` from `from` to one user.
    pub fn one(&mut self, conns: &mut Conns, to: &Member, from: User<'_>, text: &[u8]) {
        proto::render(
            to.kind,
            self.texts,
            from,
            Some(to.shown()),
            Event::Whisper(text),
            &mut self.scratch,
        );
        conns.queue(Token(to.peer.0), &self.scratch);
    }
}

/// Offline notices wait until this long has passed without a hang-up...
const DEPARTURE_QUIET: Duration = Duration::from_millis(10);
/// ...but never longer than this.
const DEPARTURE_MAX_WAIT: Duration = Duration::from_secs(1);

/// A user who left, to be announced to its room.
#[derive(Debug)]
pub struct Departure {
    /// The name of the room it left (its id may name another room by the time the notice
    /// goes out).
    pub room: Box<str>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its chosen name, if any.
    pub name: Option<Box<str>>,
}

/// Offline notices held back while hang-ups keep arriving. When thousands of clients
/// leave at once, their hang-ups reach the loop over several polls; a notice fanned out at
/// once would be queued to every leaver not yet seen leaving (quadratic bytes, all for
/// peers that are gone). Held until the hang-ups stop (a quiet 10 ms, 1 s at most), the
/// notices skip every leaver: each one has left the chat or been marked as hung up.
#[derive(Debug, Default)]
pub struct Departures {
    list: Vec<Departure>,
    /// When the oldest waiting departure was recorded.
    since: Option<Instant>,
    /// When a hang-up was last seen.
    last_hang_up: Option<Instant>,
}

impl Departures {
    /// Records a departure.
    pub fn push(&mut self, room: Box<str>, addr: SocketAddr, name: Option<&str>, now: Instant) {
        self.since.get_or_insert(now);
        self.list.push(Departure {
            room,
            addr,
            name: name.map(Box::from),
        });
    }

    /// Notes that a poll brought hang-ups.
    pub fn hang_ups_seen(&mut self, now: Instant) {
        self.last_hang_up = Some(now);
    }

    /// When the waiting notices are due, if any wait.
    pub fn next_deadline(&self) -> Option<Instant> {
        let since = self.since?;
        let quiet = self.last_hang_up.map_or(since, |t| t + DEPARTURE_QUIET);
        Some(quiet.min(since + DEPARTURE_MAX_WAIT))
    }

    /// Whether the waiting notices are due.
    pub fn due(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|t| now >= t)
    }

    /// The waiting departures, oldest first.
    pub fn take(&mut self) -> Vec<Departure> {
        self.since = None;
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_sealed_for_its_readers_and_reused_when_nobody_refers_to_it() {
        let mut open = Open::default();
        let span = open.append(b"hello");
        let kept = Rc::clone(open.shared(span).seg);
        open.seal();
        assert!(
            !Rc::ptr_eq(&kept, &open.seg),
            "a referenced segment is handed over"
        );
        assert!(open.bytes.is_empty());
        let span = open.append(b"again");
        assert_eq!(span, (0, 5));
        let capacity = open.bytes.capacity();
        let before = Rc::as_ptr(&open.seg);
        open.seal();
        assert_eq!(Rc::as_ptr(&open.seg), before, "nobody refers to it: kept");
        assert_eq!(open.bytes.capacity(), capacity);
    }

    #[test]
    fn a_full_segment_is_sealed_and_a_new_one_begun() {
        let mut open = Open::default();
        let big = vec![b'x'; SEGMENT_MAX_BYTES - 10];
        let first = open.append(&big);
        let kept = Rc::clone(open.shared(first).seg);
        let second = open.append(b"0123456789ab");
        assert_eq!(second, (0, 12));
        assert!(!Rc::ptr_eq(&kept, &open.seg));
    }
}
