//! What servers tell each other through Redis, and where it is kept: the key and channel
//! names, and the wire form of cluster events, as pure functions.
//!
//! Events are `\0`-separated fields, the text last, so chat text crosses servers as the
//! same bytes a line user sent (JSON would force it into UTF-8). Names, node ids and
//! addresses cannot contain `\0` (the name rules forbid control characters). A room is its
//! name (`101` for appID 101; empty in a private message, which has none).
//!
//! Redis holds, per cluster (see the README's sizing notes):
//! - `im:name:{name}` = node: who holds a name; claimed with `SET NX`, so renames are
//!   atomic across servers;
//! - `im:users` hash: name → `node\0room\0addr`, read once by a server that (re)connects;
//! - `im:alive:{node}`: a heartbeat key with a TTL; a node whose key expired is dead;
//! - channel `im:room`: presence and broadcasts, one PUBLISH per event, every server reads;
//! - channel `im:node:{node}`: private messages for that node's users, a turn's worth per
//!   message: one event as itself, several as a [`batch`] (`many\0` then each event as
//!   `{len}\0{bytes}`, its length in decimal: a text may hold any byte, `\0` included);
//! - with `--auth-secret`, `im:signed:{name}` (a TTL key: the name signed in with a token
//!   within `--offline-ttl`) and `im:offline:{name}`, a list of the private messages kept
//!   for it while offline, oldest first, each `sent_ms\0addr\0from\0text`.

use crate::chat::offline::Letter;
use crate::chat::Remote;
use std::borrow::Cow;
use std::io::Write as _;

/// The channel every server subscribes to.
pub const ROOM_CHANNEL: &[u8] = b"im:room";
/// The hash of every online user in the cluster.
pub const USERS_KEY: &[u8] = b"im:users";

/// `im:name:{name}`.
pub fn name_key(name: &str) -> Vec<u8> {
    [b"im:name:".as_slice(), name.as_bytes()].concat()
}

/// `im:alive:{node}`.
pub fn alive_key(node: &str) -> Vec<u8> {
    [b"im:alive:".as_slice(), node.as_bytes()].concat()
}

/// `im:node:{node}`: the channel of one server's private messages.
pub fn node_channel(node: &str) -> Vec<u8> {
    [b"im:node:".as_slice(), node.as_bytes()].concat()
}

/// `im:signed:{name}`: the name signed in with a token within the TTL.
pub fn signed_key(name: &str) -> Vec<u8> {
    [b"im:signed:".as_slice(), name.as_bytes()].concat()
}

/// `im:offline:{name}`: the private messages kept for the name while offline.
pub fn offline_key(name: &str) -> Vec<u8> {
    [b"im:offline:".as_slice(), name.as_bytes()].concat()
}

/// One event on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire<'a> {
    /// A user came online (`notify`: tell local users; false when re-announcing after a
    /// reconnect).
    Online {
        /// The user.
        name: &'a str,
        /// Where.
        user: Remote,
        /// Whether local users get an online notice.
        notify: bool,
    },
    /// A user left.
    Offline {
        /// The user.
        name: &'a str,
        /// Where it was.
        user: Remote,
    },
    /// A user changed name.
    Rename {
        /// The old name.
        old: &'a str,
        /// The new name.
        new: &'a str,
        /// Where.
        user: Remote,
    },
    /// A broadcast to a room.
    Say {
        /// The speaker's name.
        name: &'a str,
        /// The speaker.
        user: Remote,
        /// The text, as bytes.
        text: &'a [u8],
    },
    /// A private message for a user of the receiving node.
    Whisper {
        /// The sender's name.
        from: &'a str,
        /// The sender.
        user: Remote,
        /// The recipient's name.
        to: &'a str,
        /// The text, as bytes.
        text: &'a [u8],
    },
}

impl Wire<'_> {
    /// The node the event comes from.
    pub fn node(&self) -> &str {
        match self {
            Wire::Online { user, .. }
            | Wire::Offline { user, .. }
            | Wire::Rename { user, .. }
            | Wire::Say { user, .. }
            | Wire::Whisper { user, .. } => &user.node,
        }
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, user, names, text): (&[u8], &Remote, [&str; 2], &[u8]) = match self {
            Wire::Online {
                name,
                user,
                notify: true,
            } => (b"on", user, [name, ""], b""),
            Wire::Online {
                name,
                user,
                notify: false,
            } => (b"sync", user, [name, ""], b""),
            Wire::Offline { name, user } => (b"off", user, [name, ""], b""),
            Wire::Rename { old, new, user } => (b"rn", user, [old, new], b""),
            Wire::Say { name, user, text } => (b"say", user, [name, ""], text),
            Wire::Whisper {
                from,
                user,
                to,
                text,
            } => (b"w", user, [from, to], text),
        };
        out.extend_from_slice(kind);
        for field in [
            user.node.as_bytes(),
            user.room.as_bytes(),
            user.addr.to_string().as_bytes(),
            names[0].as_bytes(),
            names[1].as_bytes(),
        ] {
            out.push(0);
            out.extend_from_slice(field);
        }
        out.push(0);
        out.extend_from_slice(text);
    }

    /// Parses the wire form; `None` for anything malformed (ignored by the caller).
    pub fn decode(bytes: &[u8]) -> Option<Wire<'_>> {
        let mut fields = bytes.splitn(7, |&b| b == 0);
        let kind = fields.next()?;
        let mut text_field = || -> Option<&str> { std::str::from_utf8(fields.next()?).ok() };
        let node = text_field()?;
        let room = text_field()?.into();
        let addr = text_field()?.parse().ok()?;
        let a = text_field()?;
        let b = text_field()?;
        let text = fields.next()?;
        let user = Remote {
            node: node.into(),
            room,
            addr,
        };
        Some(match kind {
            b"on" => Wire::Online {
                name: a,
                user,
                notify: true,
            },
            b"sync" => Wire::Online {
                name: a,
                user,
                notify: false,
            },
            b"off" => Wire::Offline { name: a, user },
            b"rn" => Wire::Rename {
                old: a,
                new: b,
                user,
            },
            b"say" => Wire::Say {
                name: a,
                user,
                text,
            },
            b"w" => Wire::Whisper {
                from: a,
                user,
                to: b,
                text,
            },
            _ => return None,
        })
    }
}

/// What opens a message carrying several events (no event's kind is `many`).
const MANY: &[u8] = b"many\0";

/// The most event bytes one batch carries. Redis hands a message to a subscriber whole,
/// and closes a subscriber whose output passes its `client-output-buffer-limit` (32 MB by
/// default): a turn's whispers to one server, however many, go in messages of this size
/// or less. Past a few hundred whispers per message, larger ones save nothing measurable.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// `events` cut, in order, into runs of at most `max_bytes` of events each (an event
/// larger than that alone), each to go as one [`batch`].
pub fn runs(events: &[Vec<u8>], max_bytes: usize) -> impl Iterator<Item = &[Vec<u8>]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        let mut size = 0;
        let fits = rest.iter().take_while(|e| {
            size += e.len();
            size <= max_bytes
        });
        let (run, tail) = rest.split_at_checked(fits.count().max(1))?;
        rest = tail;
        Some(run)
    })
}

/// One message carrying `events` (each an encoded [`Wire`] event), in order: a lone event
/// as itself, byte for byte (the form every server has always read), several as a `many`
/// batch of length-prefixed events.
pub fn batch(events: &[Vec<u8>]) -> Cow<'_, [u8]> {
    if let [one] = events {
        return Cow::Borrowed(one);
    }
    let size: usize = events.iter().map(|e| e.len() + 12).sum();
    let mut out = Vec::with_capacity(MANY.len() + size);
    out.extend_from_slice(MANY);
    for event in events {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", event.len());
        out.push(0);
        out.extend_from_slice(event);
    }
    Cow::Owned(out)
}

/// The encoded events a message carries, in order: a batch's (see [`batch`]), or the
/// message itself. A batch cut short or with a bad length yields the events before the
/// fault, and no more.
pub fn events(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (lone, mut rest) = match message.strip_prefix(MANY) {
        Some(frames) => (None, frames),
        None => (Some(message), &[][..]),
    };
    let framed = std::iter::from_fn(move || {
        let at = rest.iter().position(|&b| b == 0)?;
        let len = std::str::from_utf8(rest.get(..at)?).ok()?;
        let len: usize = len.parse().ok()?;
        let event = rest.get(at + 1..)?.get(..len)?;
        rest = rest.get(at + 1 + len..).unwrap_or_default();
        Some(event)
    });
    lone.into_iter().chain(framed)
}

/// The `im:users` value of a user: `node\0room\0addr`.
pub fn user_value(user: &Remote) -> Vec<u8> {
    format!("{}\0{}\0{}", user.node, user.room, user.addr).into_bytes()
}

/// Parses an `im:users` value.
pub fn parse_user_value(v: &[u8]) -> Option<Remote> {
    let v = std::str::from_utf8(v).ok()?;
    let mut it = v.split('\0');
    let node = it.next()?;
    let room = it.next()?.into();
    let addr = it.next()?.parse().ok()?;
    Some(Remote {
        node: node.into(),
        room,
        addr,
    })
}

/// A kept letter as Redis holds it: `sent_ms\0addr\0from\0text`, the text last and
/// byte for byte.
pub fn letter_value(letter: &Letter) -> Vec<u8> {
    let mut out = format!("{}\0{}\0{}\0", letter.sent_ms, letter.addr, letter.from).into_bytes();
    out.extend_from_slice(&letter.text);
    out
}

/// Parses a kept letter; `None` for anything malformed (skipped by the caller).
pub fn parse_letter(v: &[u8]) -> Option<Letter> {
    let mut fields = v.splitn(4, |&b| b == 0);
    let mut text_field = || std::str::from_utf8(fields.next()?).ok();
    let sent_ms = text_field()?.parse().ok()?;
    let addr = text_field()?.parse().ok()?;
    let from = text_field()?.into();
    let text = fields.next()?.into();
    Some(Letter {
        from,
        addr,
        sent_ms,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Remote {
        Remote {
            node: "n1".into(),
            room: "101".into(),
            addr: "127.0.0.1:5000".parse().unwrap(),
        }
    }

    #[test]
    fn every_event_round_trips() {
        let events = [
            Wire::Online {
                name: "alice",
                user: user(),
                notify: true,
            },
            Wire::Online {
                name: "alice",
                user: user(),
                notify: false,
            },
            Wire::Offline {
                name: "alice",
                user: user(),
            },
            Wire::Rename {
                old: "a",
                new: "b",
                user: user(),
            },
            Wire::Say {
                name: "alice",
                user: user(),
                text: b"hi\0there \xff",
            },
            Wire::Whisper {
                from: "alice",
                user: user(),
                to: "bob",
                text: "你好|x".as_bytes(),
            },
        ];
        for e in events {
            let mut out = Vec::new();
            e.encode(&mut out);
            assert_eq!(Wire::decode(&out), Some(e.clone()), "{out:?}");
            assert_eq!(e.node(), "n1");
        }
    }

    fn whisper(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Wire::Whisper {
            from: "alice",
            user: user(),
            to: "bob",
            text,
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn a_batch_of_one_is_the_event_itself() {
        let one = vec![whisper(b"hi")];
        assert_eq!(batch(&one), one[0].as_slice());
        assert_eq!(events(&one[0]).collect::<Vec<_>>(), [one[0].as_slice()]);
    }

    #[test]
    fn a_batch_keeps_its_events_in_order_whatever_their_bytes() {
        let texts: [&[u8]; 4] = [b"", b"3\0w\0", "你好".as_bytes(), b"many\0\xff"];
        let all: Vec<Vec<u8>> = texts.iter().map(|t| whisper(t)).collect();
        let message = batch(&all);
        assert!(message.starts_with(b"many\0"));
        let got: Vec<&[u8]> = events(&message).collect();
        assert_eq!(got, all.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let decoded: Vec<Wire<'_>> = got.into_iter().filter_map(Wire::decode).collect();
        assert_eq!(decoded.len(), 4);
        assert!(matches!(
            decoded[1],
            Wire::Whisper {
                text: b"3\0w\0",
                ..
            }
        ));
    }

    #[test]
    fn runs_cut_a_turn_s_events_by_size_in_order() {
        let sized =
            |lens: &[usize]| -> Vec<Vec<u8>> { lens.iter().map(|&n| vec![b'x'; n]).collect() };
        let cut = |events: &[Vec<u8>], max| -> Vec<Vec<usize>> {
            runs(events, max)
                .map(|run| run.iter().map(Vec::len).collect())
                .collect()
        };
        assert_eq!(cut(&sized(&[]), 10), Vec::<Vec<usize>>::new());
        assert_eq!(cut(&sized(&[3, 3, 4]), 10), [vec![3, 3, 4]]);
        assert_eq!(cut(&sized(&[3, 3, 5, 2]), 10), [vec![3, 3], vec![5, 2]]);
        assert_eq!(cut(&sized(&[20, 1, 30]), 10), [vec![20], vec![1], vec![30]]);
    }

    #[test]
    fn a_damaged_batch_yields_the_events_before_the_damage() {
        let all = vec![whisper(b"a"), whisper(b"b")];
        let message = batch(&all).into_owned();
        let cut = &message[..message.len() - 1];
        assert_eq!(events(cut).collect::<Vec<_>>(), [all[0].as_slice()]);
        assert_eq!(events(b"many\0").count(), 0);
        assert_eq!(events(b"many\0x\0abc").count(), 0);
        assert_eq!(events(b"many\x0099999999999999999999999\x00a").count(), 0);
        assert_eq!(events(b"many\x001\x00ab").collect::<Vec<_>>(), [b"a"]);
    }

    #[test]
    fn malformed_events_are_none() {
        assert_eq!(Wire::decode(b""), None);
        assert_eq!(Wire::decode(b"on\0n1"), None);
        assert_eq!(
            Wire::decode(b"zz\x00n1\x00101\x00127.0.0.1:1\x00a\x00\x00"),
            None
        );
        assert_eq!(
            Wire::decode(b"on\x00n1\x00room\x00nowhere\x00a\x00\x00"),
            None
        );
    }

    #[test]
    fn letters_round_trip_and_junk_is_none() {
        let letter = Letter {
            from: "张三".into(),
            addr: "127.0.0.1:5000".parse().unwrap(),
            sent_ms: 1_700_000_000_123,
            text: b"hi\0there \xff"[..].into(),
        };
        let value = letter_value(&letter);
        assert_eq!(parse_letter(&value), Some(letter));
        assert_eq!(parse_letter(b"junk"), None);
        assert_eq!(parse_letter(b"12\0nowhere\0a\0t"), None);
        assert_eq!(signed_key("a"), b"im:signed:a");
        assert_eq!(offline_key("a"), b"im:offline:a");
    }

    #[test]
    fn user_values_round_trip() {
        assert_eq!(parse_user_value(&user_value(&user())), Some(user()));
        assert_eq!(parse_user_value(b"junk"), None);
    }
}
