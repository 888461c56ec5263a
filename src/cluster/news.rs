//! What the cluster and the loop pass each other: what a command to Redis was sent for
//! ([`Ask`], routed back with its reply), and what the cluster hands the loop to act on
//! ([`News`]), with the messages they carry. Plain data: no I/O.

use super::mailbox::Found;
use super::relay::StreamAsk;
use super::stream;
use super::wire::Wire;
use crate::chat::history;
use crate::chat::offline::Delivery;
use crate::chat::{Peer, Remote};
use crate::text::User;
use std::net::SocketAddr;

/// What a Redis command was sent for: its reply is routed back by this.
#[derive(Debug)]
pub(super) enum Ask<C> {
    /// `SET im:name:{name} node NX`.
    Claim { name: Box<str>, ctx: C },
    /// `HGETALL im:users` after (re)connecting.
    Users,
    /// `EXISTS im:alive:{node}`.
    Alive { node: Box<str> },
    /// `GET im:name:{name}` (with offline messages: [`super::mailbox::ROUTE_OR_KEEP_LUA`]) for a
    /// private message to a name the replica does not know (yet: a rename or login elsewhere
    /// may not have reached us).
    Route {
        name: Box<str>,
        text: Vec<u8>,
        ctx: C,
    },
    /// [`super::mailbox::SIGN_IN_LUA`] for the signed login of `name` on connection `peer`.
    SignIn { name: Box<str>, peer: Peer },
    /// `PUBLISH im:node:{node}` of a turn's whispers to that server, in order, one
    /// context each: all confirmed when Redis counts a receiver.
    Deliver { ctxs: Vec<C> },
    /// A room-stream command.
    Stream(StreamAsk<C>),
}

/// What the cluster hands the loop to act on.
#[derive(Debug)]
pub enum News<C> {
    /// A name claim was answered: `Some(won)`, or `None` when Redis went away first.
    Claimed {
        /// What the claim was for.
        ctx: C,
        /// The name.
        name: Box<str>,
        /// Redis's answer.
        won: Option<bool>,
    },
    /// A look-up was answered: where the name is, or `None` when Redis went away (or
    /// refused the question).
    Routed {
        /// Who asked, and how to answer.
        ctx: C,
        /// The recipient's name.
        name: Box<str>,
        /// The text to deliver if found.
        text: Vec<u8>,
        /// Where it is.
        found: Option<Found>,
    },
    /// The letters kept for a user who signed in here, to deliver.
    Mail(Delivery),
    /// A user of another server came online (local users get a notice).
    Arrived {
        /// The name.
        name: Box<str>,
        /// Where.
        user: Remote,
    },
    /// A user of another server left.
    Left {
        /// The name.
        name: Box<str>,
        /// Where it was.
        user: Remote,
    },
    /// A user of another server said this to a room.
    Said {
        /// The speaker.
        name: Box<str>,
        /// Where (the room is the recipients').
        user: Remote,
        /// The text, byte for byte.
        text: Vec<u8>,
        /// Its number in the room's stream.
        seq: u64,
    },
    /// A broadcast said here, numbered by Redis (`None`: Redis did not take it): now the
    /// users here who see numbers (`/im`) hear it.
    Numbered {
        /// What was said.
        echo: Echo,
        /// Its number.
        seq: Option<u64>,
    },
    /// A broadcast by the user at `by` did not reach Redis (down, or no answer in time):
    /// it reached this server's users only. (Redis may still apply a command it had
    /// received before it stalled; the other servers then deliver it late, once.)
    LocalOnly {
        /// The speaker's connection.
        by: Peer,
    },
    /// A whisper handed to another server: `ok` when Redis counted a receiver (that
    /// server's subscriber link was there to take it), false when nobody listened or
    /// Redis went away first.
    Delivered {
        /// Who asked, and how to answer.
        ctx: C,
        /// Confirmed.
        ok: bool,
    },
    /// A page of a room's history; `None` when Redis went away first.
    History {
        /// Who asked, and how to answer.
        ctx: C,
        /// The room.
        room: Box<str>,
        /// The page.
        page: Option<history::Page>,
    },
    /// A user of another server said this to a user of ours.
    Whispered {
        /// The speaker.
        from: Box<str>,
        /// The speaker's address.
        addr: SocketAddr,
        /// Our user.
        to: Box<str>,
        /// The text.
        text: Vec<u8>,
    },
}

/// A broadcast, as a server says it to its room's stream.
#[derive(Debug, Clone, Copy)]
pub struct Speech<'a> {
    /// The speaker's name.
    pub name: &'a str,
    /// The speaker's address.
    pub addr: SocketAddr,
    /// The room.
    pub room: &'a str,
    /// The text.
    pub text: &'a [u8],
}

/// One broadcast waiting for Redis: said by the user at `by` (`None`: the HTTP API, which
/// has nobody to tell if it fails), and what the users here who see its number still wait
/// for.
#[derive(Debug)]
pub(super) struct Sayer {
    pub(super) by: Option<Peer>,
    pub(super) echo: Option<Echo>,
}

/// A broadcast said here, kept until Redis numbers it.
#[derive(Debug)]
pub struct Echo {
    /// The speaker's name.
    pub name: Box<str>,
    /// The speaker's address.
    pub addr: SocketAddr,
    /// The room.
    pub room: Box<str>,
    /// The text.
    pub text: Vec<u8>,
}

/// A private message for a user of another server.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The sender's name.
    pub from: &'a str,
    /// The sender's address.
    pub addr: SocketAddr,
    /// The recipient's name.
    pub to: &'a str,
    /// The text.
    pub text: &'a [u8],
}

impl<C> News<C> {
    /// A broadcast read from `room`'s stream, unless it is `node`'s own (delivered here
    /// when it was said).
    pub(super) fn heard(room: Box<str>, entry: &stream::Entry, node: &str) -> Option<Self> {
        let Some(Wire::Say { name, user, text }) = entry.say() else {
            return None;
        };
        (*user.node != *node).then(|| News::Said {
            name: name.into(),
            user: Remote { room, ..user },
            text: text.to_vec(),
            seq: entry.seq,
        })
    }
}

/// A room stream's entries as a history page: the same answer the in-memory store gives
/// (`gap` when the message right after `since` is gone, though newer ones exist).
pub(super) fn history_page(
    room: Box<str>,
    since: Option<u64>,
    last: u64,
    entries: &[stream::Entry],
) -> history::Page {
    let gap = since.is_some_and(|seq| {
        seq < last
            && entries
                .first()
                .is_none_or(|e| e.seq != seq.saturating_add(1))
    });
    let entries = entries
        .iter()
        .filter_map(|e| match e.say()? {
            Wire::Say { name, user, text } => {
                let from = User {
                    addr: &user.addr,
                    name: Some(name),
                };
                Some(history::Entry::new(e.seq, e.time_ms, from, text))
            }
            _ => None,
        })
        .collect();
    history::Page { room, entries, gap }
}
