//! The fan-out: one event, encoded once per protocol present among its recipients, the
//! bytes copied into each recipient's output buffer. The chat core decides who receives;
//! the protocol adapters decide the bytes; nothing is written until the flush phase.

use super::conns::Conns;
use crate::chat::{Chat, Event, Kind, Member, RoomId, Seat, UserId};
use crate::proto;
use crate::text::{Texts, User};
use mio::Token;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Each protocol's bytes of one fan-out, encoded for the first recipient of that kind and
/// copied to the others. Scratch: every use starts by clearing what it writes.
#[derive(Debug)]
pub struct Fanout {
    texts: &'static Texts,
    forms: [Vec<u8>; Kind::COUNT],
}

impl Fanout {
    /// Buffers for texts in `texts`.
    pub fn new(texts: &'static Texts) -> Self {
        Fanout {
            texts,
            forms: Default::default(),
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
        let mut encoded = [false; Kind::COUNT];
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
            let (Some(done), Some(buf)) = (encoded.get_mut(i), self.forms.get_mut(i)) else {
                continue;
            };
            if !*done {
                proto::render(seat.kind, self.texts, from, None, event, buf);
                *done = true;
            }
            conns.queue(token, buf);
        }
    }

    /// Sends `text` from `from` to one user.
    pub fn one(&mut self, conns: &mut Conns, to: &Member, from: User<'_>, text: &[u8]) {
        let Some(buf) = self.forms.get_mut(to.kind.index()) else {
            return;
        };
        proto::render(
            to.kind,
            self.texts,
            from,
            Some(to.shown()),
            Event::Whisper(text),
            buf,
        );
        conns.queue(Token(to.peer.0), buf);
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
