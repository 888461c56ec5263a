//! The line protocol, parsed by pure functions: bytes in, an enum out, no sockets, no clock.
//!
//! Framing is *check, then parse* (as in mini-redis): [`next_line`] says whether the front
//! of a buffer holds a whole line, and [`parse`] turns one line into a [`Command`] that
//! borrows from it. "Not enough bytes yet" is [`Line::Incomplete`], an expected outcome.
//!
//! The commands are the seeds' (shared/seeds/000–002) with their bugs fixed: `to|a` with
//! no text does not crash, a rename to an empty or `ip:port`-looking name is refused, and
//! chat text is passed through as bytes, never re-encoded.

use std::fmt;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// What the front of an input buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line without its `"\n"` (and without a trailing `"\r"`); `used` counts the
    /// bytes to consume, the `"\n"` included.
    Complete {
        /// The line's content.
        text: &'a [u8],
        /// Bytes consumed from the buffer.
        used: usize,
    },
    /// No `"\n"` yet, and still within the limit: wait for more bytes.
    Incomplete,
    /// More than `max` bytes and no `"\n"`: the caller discards up to the next `"\n"`.
    TooLong,
}

/// Finds the first line in `buf`, allowing at most `max` content bytes before the `"\n"`.
pub fn next_line(buf: &[u8], max: usize) -> Line<'_> {
    let window = buf.get(..max.saturating_add(1)).unwrap_or(buf);
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Line::Complete {
            text: trim_cr(&buf[..i]),
            used: i + 1,
        },
        None if buf.len() > max => Line::TooLong,
        None => Line::Incomplete,
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One command of the line protocol, borrowing from the line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line: ignored, but it counts as activity.
    Empty,
    /// `who`: list the users online.
    Who,
    /// `rename|NEW`, with NEW already checked against the name rules.
    Rename(&'a str),
    /// `to|NAME|TEXT`. `body` is everything after the second `|` and may be empty; an empty
    /// body is refused only after the recipient is known to be online (the seed's order).
    To {
        /// The recipient's name, not empty.
        name: &'a [u8],
        /// The message, `|` included.
        body: &'a [u8],
    },
    /// `room|NAME` (NAME already checked against the name rules): move to room NAME;
    /// `room` alone (`None`): which room am I in?
    Room(Option<&'a str>),
    /// `rooms`: list the rooms with users.
    Rooms,
    /// `history` (`None`: as many as are kept) or `history|K` (K from 1; a K too large
    /// for a number reads as the largest): the last messages of the user's room.
    History(Option<usize>),
    /// Anything else: broadcast as it is.
    Say(&'a [u8]),
}

/// A line that is a command but a malformed one. Each variant is one line in `text.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `to|` with an empty recipient name.
    MissingRecipient,
    /// `rename|NEW` where NEW breaks [`check_name`]'s rules.
    InvalidName,
    /// A line longer than the configured maximum (reported by the framing, not `parse`).
    LineTooLong,
    /// `room|NAME` where NAME breaks the name rules.
    InvalidRoom,
    /// `history|K` where K is not a whole number from 1.
    BadCount,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolError::MissingRecipient => "private message without a recipient",
            ProtocolError::InvalidName => "invalid user name",
            ProtocolError::LineTooLong => "line too long",
            ProtocolError::InvalidRoom => "invalid room name",
            ProtocolError::BadCount => "invalid history count",
        })
    }
}

impl std::error::Error for ProtocolError {}

/// The most characters (not bytes) a chosen name may have.
pub const MAX_NAME_CHARS: usize = 32;

/// Parses one line (without its newline) into a command.
///
/// # Errors
/// [`ProtocolError::MissingRecipient`] for `to|` with no name,
/// [`ProtocolError::InvalidName`] for a rename to a name [`check_name`] refuses, and
/// [`ProtocolError::InvalidRoom`] for a move to a room name it refuses, and
/// [`ProtocolError::BadCount`] for `history|K` with K not a whole number from 1.
pub fn parse(line: &[u8]) -> Result<Command<'_>, ProtocolError> {
    if line.is_empty() {
        return Ok(Command::Empty);
    }
    match line {
        b"who" => return Ok(Command::Who),
        b"room" => return Ok(Command::Room(None)),
        b"rooms" => return Ok(Command::Rooms),
        b"history" => return Ok(Command::History(None)),
        _ => {}
    }
    if let Some(count) = line.strip_prefix(b"history|") {
        return parse_count(count).map(|k| Command::History(Some(k)));
    }
    if let Some(room) = line.strip_prefix(b"room|") {
        return check_room(room).map(|room| Command::Room(Some(room)));
    }
    if let Some(new) = line.strip_prefix(b"rename|") {
        return check_name(new).map(Command::Rename);
    }
    if let Some(rest) = line.strip_prefix(b"to|") {
        let (name, body) = match rest.iter().position(|&b| b == b'|') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if name.is_empty() {
            return Err(ProtocolError::MissingRecipient);
        }
        return Ok(Command::To { name, body });
    }
    Ok(Command::Say(line))
}

/// Checks a name a user chose: 1–32 characters of UTF-8, no `|` (it would break `to|`), no
/// `:` (so it can never collide with a default `ip:port` name), no control characters, no
/// format characters (general category Cf: zero-width spaces and joiners, bidi controls,
/// the BOM: invisible, they would make two names that look alike, or reorder what a
/// reader sees) and no surrounding white space. Every protocol checks names here.
///
/// # Errors
/// [`ProtocolError::InvalidName`] when any rule is broken.
pub fn check_name(name: &[u8]) -> Result<&str, ProtocolError> {
    let name = std::str::from_utf8(name).map_err(|_| ProtocolError::InvalidName)?;
    let chars = name.chars().count();
    let bad_char = name.chars().any(|c| {
        c == '|' || c == ':' || c.is_control() || c.general_category() == GeneralCategory::Format
    });
    let padded = name.trim() != name;
    if chars == 0 || chars > MAX_NAME_CHARS || bad_char || padded {
        return Err(ProtocolError::InvalidName);
    }
    Ok(name)
}

/// A count of at least 1, in decimal digits only; one too large for a `usize` is
/// `usize::MAX` (whoever reads it caps it anyway).
fn parse_count(digits: &[u8]) -> Result<usize, ProtocolError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError::BadCount);
    }
    if digits.iter().all(|&b| b == b'0') {
        return Err(ProtocolError::BadCount);
    }
    let count = digits.iter().try_fold(0usize, |n, &b| {
        n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    });
    Ok(count.unwrap_or(usize::MAX))
}

/// Checks a room name: the rules of [`check_name`] (so `/im` appIDs, `101`, are names).
///
/// # Errors
/// [`ProtocolError::InvalidRoom`] when any rule is broken.
pub fn check_room(name: &[u8]) -> Result<&str, ProtocolError> {
    check_name(name).map_err(|_| ProtocolError::InvalidRoom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(mut buf: &[u8], max: usize) -> (Vec<&[u8]>, Line<'_>) {
        let mut out = Vec::new();
        loop {
            match next_line(buf, max) {
                Line::Complete { text, used } => {
                    out.push(text);
                    buf = &buf[used..];
                }
                rest => return (out, rest),
            }
        }
    }

    #[test]
    fn a_line_needs_its_newline() {
        assert_eq!(next_line(b"who", 10), Line::Incomplete);
        assert_eq!(next_line(b"", 10), Line::Incomplete);
        assert_eq!(
            next_line(b"who\nx", 10),
            Line::Complete {
                text: b"who",
                used: 4
            }
        );
    }

    #[test]
    fn crlf_is_trimmed_but_a_lone_cr_inside_stays() {
        assert_eq!(
            next_line(b"who\r\n", 10),
            Line::Complete {
                text: b"who",
                used: 5
            }
        );
        assert_eq!(
            next_line(b"a\rb\n", 10),
            Line::Complete {
                text: b"a\rb",
                used: 4
            }
        );
    }

    #[test]
    fn merged_packets_split_into_lines() {
        let (got, rest) = lines(b"who\nrename|bob\nto|bob|hi\npartial", 100);
        assert_eq!(got, vec![&b"who"[..], b"rename|bob", b"to|bob|hi"]);
        assert_eq!(rest, Line::Incomplete);
    }

    #[test]
    fn a_line_split_byte_by_byte_completes_only_at_the_newline() {
        let full = b"to|bob|hello\n";
        for end in 0..full.len() {
            assert_eq!(next_line(&full[..end], 100), Line::Incomplete, "{end}");
        }
        assert!(matches!(
            next_line(full, 100),
            Line::Complete { used: 13, .. }
        ));
    }

    #[test]
    fn the_limit_counts_content_bytes() {
        assert!(matches!(next_line(b"abcd\n", 4), Line::Complete { .. }));
        assert_eq!(next_line(b"abcde\n", 4), Line::TooLong);
        assert_eq!(next_line(b"abcd", 4), Line::Incomplete);
        assert_eq!(next_line(b"abcde", 4), Line::TooLong);
    }

    #[test]
    fn empty_lines_are_commands_too() {
        assert_eq!(parse(b""), Ok(Command::Empty));
        assert!(matches!(
            next_line(b"\r\n", 4),
            Line::Complete { text: b"", used: 2 }
        ));
    }

    #[test]
    fn who_is_exact() {
        assert_eq!(parse(b"who"), Ok(Command::Who));
        assert_eq!(parse(b"who "), Ok(Command::Say(b"who ")));
        assert_eq!(parse(b"WHO"), Ok(Command::Say(b"WHO")));
    }

    #[test]
    fn rename_checks_the_name() {
        assert_eq!(parse(b"rename|bob"), Ok(Command::Rename("bob")));
        assert_eq!(parse("rename|张三".as_bytes()), Ok(Command::Rename("张三")));
        assert_eq!(parse(b"rename|"), Err(ProtocolError::InvalidName));
        assert_eq!(parse(b"rename|a|b"), Err(ProtocolError::InvalidName));
    }

    #[test]
    fn name_rules() {
        assert!(check_name(b"bob").is_ok());
        assert!(check_name("名".repeat(32).as_bytes()).is_ok());
        assert!(check_name("名".repeat(33).as_bytes()).is_err());
        assert!(check_name(b"").is_err());
        assert!(check_name(b"127.0.0.1:80").is_err());
        assert!(check_name(b" bob").is_err());
        assert!(check_name(b"bob ").is_err());
        assert!(check_name(b"b\tob").is_err());
        assert!(check_name(b"b\x7fob").is_err());
        assert!(check_name(b"\xff\xfe").is_err());
        assert!(check_name(b"bob smith").is_ok());
    }

    #[test]
    fn format_characters_are_refused() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{202E}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{AD}',
            '\u{E0074}',
        ] {
            let name = format!("al{c}ice");
            assert!(check_name(name.as_bytes()).is_err(), "{c:?}");
        }
        assert!(check_name("аlice".as_bytes()).is_ok()); // Cyrillic а: visible, kept
        assert!(check_name("张三".as_bytes()).is_ok());
    }

    #[test]
    fn room_commands_check_the_room_name() {
        assert_eq!(parse(b"room"), Ok(Command::Room(None)));
        assert_eq!(parse(b"rooms"), Ok(Command::Rooms));
        assert_eq!(parse(b"room|101"), Ok(Command::Room(Some("101"))));
        assert_eq!(
            parse("room|茶室".as_bytes()),
            Ok(Command::Room(Some("茶室")))
        );
        for bad in [&b"room|"[..], b"room| x", b"room|a:b", b"room|a|b"] {
            assert_eq!(parse(bad), Err(ProtocolError::InvalidRoom), "{bad:?}");
        }
        let long = format!("room|{}", "房".repeat(33));
        assert_eq!(parse(long.as_bytes()), Err(ProtocolError::InvalidRoom));
        assert_eq!(parse(b"room "), Ok(Command::Say(b"room ")));
        assert_eq!(parse(b"roomy"), Ok(Command::Say(b"roomy")));
    }

    #[test]
    fn history_takes_a_count_from_one() {
        assert_eq!(parse(b"history"), Ok(Command::History(None)));
        assert_eq!(parse(b"history|1"), Ok(Command::History(Some(1))));
        assert_eq!(parse(b"history|007"), Ok(Command::History(Some(7))));
        assert_eq!(
            parse(b"history|99999999999999999999999999"),
            Ok(Command::History(Some(usize::MAX)))
        );
        for bad in [
            &b"history|"[..],
            b"history|0",
            b"history|00",
            b"history|-1",
            b"history|+1",
            b"history|abc",
            b"history|1.5",
            b"history| 1",
            b"history|1 ",
            "history|１".as_bytes(),
        ] {
            assert_eq!(parse(bad), Err(ProtocolError::BadCount), "{bad:?}");
        }
        assert_eq!(parse(b"history "), Ok(Command::Say(b"history ")));
        assert_eq!(parse(b"historys"), Ok(Command::Say(b"historys")));
    }

    #[test]
    fn to_splits_at_the_first_two_bars() {
        assert_eq!(
            parse(b"to|bob|hi|there"),
            Ok(Command::To {
                name: b"bob",
                body: b"hi|there"
            })
        );
        assert_eq!(
            parse(b"to|bob|"),
            Ok(Command::To {
                name: b"bob",
                body: b""
            })
        );
        assert_eq!(
            parse(b"to|bob"),
            Ok(Command::To {
                name: b"bob",
                body: b""
            })
        );
    }

    #[test]
    fn to_without_a_name_is_malformed() {
        assert_eq!(parse(b"to|"), Err(ProtocolError::MissingRecipient));
        assert_eq!(parse(b"to||hi"), Err(ProtocolError::MissingRecipient));
    }

    #[test]
    fn anything_else_is_said_as_bytes() {
        assert_eq!(parse(b"hello world"), Ok(Command::Say(b"hello world")));
        assert_eq!(parse(b"\xff\xfe"), Ok(Command::Say(b"\xff\xfe")));
        assert_eq!(parse(b"to"), Ok(Command::Say(b"to")));
        assert_eq!(parse(b"rename"), Ok(Command::Say(b"rename")));
    }
}
