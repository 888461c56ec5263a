//! Generated-input tests of every parser a client (or Redis) can reach, with `proptest`.
//!
//! For each parser: random bytes and valid-then-mutated inputs, fed whole and cut at
//! random points the way the server feeds it, checking
//! - no panic;
//! - bounded allocation, measured by a counting allocator (per thread, so the parallel
//!   test threads do not disturb each other), and the buffering limits each streaming
//!   parser promises (`next_line`'s `max`, `MAX_HEAD_BYTES`, the WebSocket message limit);
//! - the same sequence of outcomes however the input is split;
//! - a round trip wherever an encoder exists (or the generator is one).
//!
//! 10,000 cases per property by default; `PROPTEST_CASES=N` sets another count (the long
//! run in the README: `PROPTEST_CASES=530000 cargo test --release --test props`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use base64::Engine as _;
use imserver_mio::chat::Remote;
use imserver_mio::cluster::wire::{self, parse_user_value, user_value, Wire};
use imserver_mio::codec::http::{
    self, decode_path_segment, parse_head, query_param, Head, HttpError, Method, Request,
    MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES,
};
use imserver_mio::codec::line::{check_name, next_line, parse, Command, Line, ProtocolError};
use imserver_mio::codec::ws::{
    encode_close, encode_pong, encode_text, Msg, Next, WsError, WsReader, MAX_CONTROL_PAYLOAD_BYTES,
};
use imserver_mio::codec::{hub, im};
use proptest::prelude::*;
use proptest::sample::Index;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

// ---------------------------------------------------------------------------------------
// Counting allocator: live and peak heap bytes of the current thread.

mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// The system allocator, counting what each thread holds.
    pub struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn note(delta: isize) {
        // `try_with`: the allocator may run while a thread's locals are being torn down.
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every call is forwarded unchanged to `System`; only counters are added.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                note(layout.size() as isize);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                note(layout.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            note(-(layout.size() as isize));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                note(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    /// Heap bytes this thread holds now.
    pub fn live() -> isize {
        LIVE.with(Cell::get)
    }

    /// Runs `f`; returns its result and the most heap it held at once beyond what was
    /// held before (its result included).
    pub fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let start = live();
        PEAK.with(|p| p.set(start));
        let r = f();
        let top = PEAK.with(Cell::get);
        (r, usize::try_from(top - start).unwrap_or(0))
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

// ---------------------------------------------------------------------------------------
// Shared strategies: cases, cuts, mutations.

/// 10,000 cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        // A failure prints its minimal input; nothing is written next to the tests.
        failure_persistence: None,
        // ChaCha, the default, is most of the time of a debug build; any generator will do.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

/// Where to cut an input into the chunks the socket delivers.
#[derive(Debug, Clone)]
enum Cuts {
    /// At these points (any number, in any order, possibly repeated: empty chunks too).
    At(Vec<Index>),
    /// Byte by byte (in small pieces, for long inputs).
    EveryByte,
}

fn cuts() -> impl Strategy<Value = Cuts> {
    prop_oneof![
        9 => prop::collection::vec(any::<Index>(), 0..8).prop_map(Cuts::At),
        1 => Just(Cuts::EveryByte),
    ]
}

/// `data` cut into chunks.
fn split<'a>(data: &'a [u8], cuts: &Cuts) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = match cuts {
        Cuts::At(at) => at.iter().map(|i| i.index(data.len() + 1)).collect(),
        // Byte by byte up to 256 bytes; longer inputs in 256 equal pieces (a head of 8 KiB
        // fed byte by byte would cost 8,000 parses of a growing buffer per case).
        Cuts::EveryByte => (1..data.len()).step_by((data.len() / 256).max(1)).collect(),
    };
    points.sort_unstable();
    points.push(data.len());
    let mut start = 0;
    points
        .into_iter()
        .map(|p| {
            let chunk = &data[start..p];
            start = p;
            chunk
        })
        .collect()
}

/// Bytes that matter to some parser, to mutate with more often than chance would.
const INTERESTING: &[u8] = b"\0\r\n|:%+&=?*$-0123456789 \x7f\x80\xbf\xc3\xe4\xff\"{}[],\\";

/// Any byte, one in two from [`INTERESTING`] (one draw per byte: a `prop_oneof!` per byte
/// costs more than the parsers do in a debug build).
fn byte() -> impl Strategy<Value = u8> {
    any::<u16>().prop_map(|x| {
        let [lo, hi] = x.to_le_bytes();
        if hi < 128 {
            lo
        } else {
            INTERESTING[usize::from(lo) % INTERESTING.len()]
        }
    })
}

/// One edit of a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index, u8),
    Duplicate(Index, u8),
    Truncate(Index),
    Swap(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
    ]
}

fn mutate(mut v: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for edit in edits {
        let n = v.len();
        match edit {
            Mutation::Set(i, b) if n > 0 => v[i.index(n)] = *b,
            Mutation::Insert(i, b) => v.insert(i.index(n + 1), *b),
            Mutation::Remove(i, len) if n > 0 => {
                let at = i.index(n);
                let end = (at + 1 + usize::from(*len % 16)).min(n);
                v.drain(at..end);
            }
            Mutation::Duplicate(i, len) if n > 0 => {
                let at = i.index(n);
                let end = (at + 1 + usize::from(*len % 32)).min(n);
                let piece = v[at..end].to_vec();
                v.splice(end..end, piece);
            }
            Mutation::Truncate(i) => v.truncate(i.index(n + 1)),
            Mutation::Swap(i, j) if n > 0 => v.swap(i.index(n), j.index(n)),
            _ => {}
        }
    }
    v
}

/// Random bytes (1 in 4), or a valid input with up to 4 edits.
fn fuzzed(
    valid: impl Strategy<Value = Vec<u8>>,
    max_random: usize,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(byte(), 0..max_random),
        3 => (valid, prop::collection::vec(mutation(), 0..5)).prop_map(|(v, m)| mutate(v, &m)),
    ]
}

/// Characters that matter to some protocol: separators, digits, quotes, multi-byte UTF-8.
const SPECIAL: &[char] = &[
    ' ', '|', ':', '0', '7', 'é', '你', '好', '😀', '"', '\\', '\n',
];

/// Short text: mostly ASCII letters, some [`SPECIAL`] characters, one in eight any
/// character at all (one draw per character, as for [`byte`]).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u32>(), 0..max).prop_map(|xs| {
        xs.into_iter()
            .map(|x| match (x % 8, x / 8) {
                (0..=5, r) => char::from(b'a' + (r % 26) as u8),
                (6, r) => SPECIAL[r as usize % SPECIAL.len()],
                (_, r) => char::from_u32(r % 0x11_0000).unwrap_or('\u{FFFD}'),
            })
            .collect()
    })
}

/// A name that passes `check_name` most of the time.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]{1,12}",
        1 => "[0-9]{1,4}",
        1 => text(34),
    ]
}

// ---------------------------------------------------------------------------------------
// Line protocol: framing (`next_line`), commands (`parse`), names (`check_name`).

#[derive(Debug, PartialEq, Eq)]
enum LineOut {
    Line(Vec<u8>),
    TooLong,
}

/// Feeds `chunks` the way a line connection does (`proto::line::LineSession::feed`): an
/// input buffer, complete lines taken from its front, an over-long line reported once and
/// skipped up to its newline. Returns the outcomes and the bytes still buffered.
fn drive_lines(chunks: &[&[u8]], max: usize) -> (Vec<LineOut>, usize) {
    let mut buf = Vec::new();
    let mut discarding = false;
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            if discarding {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        discarding = false;
                        pos += i + 1;
                    }
                    None => pos = buf.len(),
                }
                continue;
            }
            let (outcome, allocated) = counting::peak(|| next_line(rest, max));
            assert_eq!(allocated, 0, "next_line allocates");
            match outcome {
                Line::Complete { text, used } => {
                    assert!(
                        used >= 1 && used <= rest.len(),
                        "used {used} of {}",
                        rest.len()
                    );
                    assert_eq!(rest[used - 1], b'\n');
                    assert!(text.len() <= max, "a line of {} > max {max}", text.len());
                    assert!(!text.ends_with(b"\r") || rest[..used].ends_with(b"\r\r\n"));
                    out.push(LineOut::Line(text.to_vec()));
                    pos += used;
                }
                Line::Incomplete => {
                    assert!(rest.len() <= max, "waiting with {} > max {max}", rest.len());
                    assert!(!rest.contains(&b'\n'));
                    break;
                }
                Line::TooLong => {
                    assert!(rest.len() > max);
                    out.push(LineOut::TooLong);
                    discarding = true;
                }
            }
        }
        buf.drain(..pos);
        // Bounded buffering: a connection never holds more than one line's limit.
        assert!(buf.len() <= max || discarding);
    }
    (out, buf.len())
}

/// A line the server understands, without its newline.
fn line_command() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"who".to_vec()),
        Just(Vec::new()),
        name().prop_map(|n| format!("rename|{n}").into_bytes()),
        (name(), text(20)).prop_map(|(n, t)| format!("to|{n}|{t}").into_bytes()),
        name().prop_map(|n| format!("to|{n}").into_bytes()),
        Just(b"room".to_vec()),
        Just(b"rooms".to_vec()),
        Just(b"history".to_vec()),
        text(6).prop_map(|k| format!("history|{k}").into_bytes()),
        any::<u64>().prop_map(|k| format!("history|{k}").into_bytes()),
        name().prop_map(|n| format!("room|{n}").into_bytes()),
        text(30).prop_map(String::into_bytes),
    ]
}

fn line_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((line_command(), any::<bool>()), 0..6).prop_map(|lines| {
        let mut out = Vec::new();
        for (line, crlf) in lines {
            out.extend_from_slice(&line);
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        out
    })
}

proptest! {
    #![proptest_config(config())]

    /// `next_line`: the same lines and the same `TooLong`s however the input is split; no
    /// allocation; never more than `max` bytes waiting.
    #[test]
    fn next_line_is_split_invariant(
        input in fuzzed(line_stream(), 200),
        max in prop_oneof![0usize..40, Just(4096)],
        cuts in cuts(),
    ) {
        let whole = drive_lines(&[&input], max);
        let pieces = drive_lines(&split(&input, &cuts), max);
        prop_assert_eq!(whole, pieces);
    }

    /// Lines joined with `\n` or `\r\n` come back as they were, split or not.
    #[test]
    fn lines_round_trip(
        lines in prop::collection::vec((prop::collection::vec(byte(), 0..50), any::<bool>()), 0..8),
        cuts in cuts(),
    ) {
        let mut input = Vec::new();
        let mut want = Vec::new();
        for (mut line, crlf) in lines {
            line.retain(|&b| b != b'\n');
            while line.ends_with(b"\r") {
                line.pop();
            }
            input.extend_from_slice(&line);
            input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            want.push(LineOut::Line(line));
        }
        let got = drive_lines(&split(&input, &cuts), 60);
        prop_assert_eq!(got, (want, 0));
    }

    /// `parse` never allocates, and its answer agrees with the protocol table.
    #[test]
    fn parse_agrees_with_the_table(line in fuzzed(line_command(), 60)) {
        let line: Vec<u8> = line.into_iter().filter(|&b| b != b'\n').collect();
        let (parsed, allocated) = counting::peak(|| parse(&line));
        prop_assert_eq!(allocated, 0);
        match parsed {
            Ok(Command::Empty) => prop_assert!(line.is_empty()),
            Ok(Command::Who) => prop_assert_eq!(&line[..], b"who"),
            Ok(Command::Rename(new)) => {
                prop_assert_eq!(&line, &[b"rename|", new.as_bytes()].concat());
                prop_assert!(check_name(new.as_bytes()).is_ok());
            }
            Ok(Command::To { name, body }) => {
                prop_assert!(!name.is_empty() && !name.contains(&b'|'));
                let rebuilt = if body.is_empty() && !line.ends_with(b"|") {
                    [b"to|", name].concat()
                } else {
                    [b"to|", name, b"|", body].concat()
                };
                prop_assert_eq!(&line, &rebuilt);
            }
            Ok(Command::Room(None)) => prop_assert_eq!(&line[..], b"room"),
            Ok(Command::Room(Some(room))) => {
                prop_assert_eq!(&line, &[b"room|", room.as_bytes()].concat());
                prop_assert!(check_name(room.as_bytes()).is_ok());
            }
            Ok(Command::Rooms) => prop_assert_eq!(&line[..], b"rooms"),
            Ok(Command::History(None)) => prop_assert_eq!(&line[..], b"history"),
            Ok(Command::History(Some(k))) => {
                let digits = &line[b"history|".len()..];
                prop_assert!(line.starts_with(b"history|") && k >= 1);
                prop_assert!(digits.iter().all(u8::is_ascii_digit));
                let exact = std::str::from_utf8(digits).unwrap().parse::<usize>();
                prop_assert_eq!(exact.unwrap_or(usize::MAX), k);
            }
            Err(ProtocolError::BadCount) => {
                let digits = line.strip_prefix(b"history|");
                let bad = |d: &[u8]| {
                    d.is_empty() || !d.iter().all(u8::is_ascii_digit) || d.iter().all(|&b| b == b'0')
                };
                prop_assert!(digits.is_some_and(bad));
            }
            Ok(Command::Say(said)) => {
                prop_assert_eq!(said, &line[..]);
                prop_assert!(!line.is_empty());
                prop_assert!(!matches!(&line[..], b"who" | b"room" | b"rooms" | b"history"));
                for command in [&b"rename|"[..], b"to|", b"room|", b"history|"] {
                    prop_assert!(!line.starts_with(command));
                }
            }
            Err(ProtocolError::MissingRecipient) => {
                prop_assert!(line.starts_with(b"to|") && line.get(3).is_none_or(|&b| b == b'|'));
            }
            Err(ProtocolError::InvalidName) => {
                prop_assert!(line.starts_with(b"rename|"));
                prop_assert!(check_name(&line[7..]).is_err());
            }
            Err(ProtocolError::InvalidRoom) => {
                prop_assert!(line.starts_with(b"room|"));
                prop_assert!(check_name(&line[5..]).is_err());
            }
            Err(ProtocolError::LineTooLong) => prop_assert!(false, "parse never says TooLong"),
        }
    }

    /// Commands written the way a client writes them parse back to themselves.
    #[test]
    fn commands_round_trip(name in name(), body in text(30), said in text(30)) {
        if let Ok(valid) = check_name(name.as_bytes()) {
            let line = format!("rename|{name}");
            prop_assert_eq!(parse(line.as_bytes()), Ok(Command::Rename(valid)));
        }
        if !name.contains('|') && !name.is_empty() {
            let line = format!("to|{name}|{body}");
            prop_assert_eq!(
                parse(line.as_bytes()),
                Ok(Command::To { name: name.as_bytes(), body: body.as_bytes() })
            );
        }
        let said = format!("s{said}");
        prop_assert_eq!(parse(said.as_bytes()), Ok(Command::Say(said.as_bytes())));
    }

    /// `check_name` accepts exactly the names the rules allow, without allocating.
    #[test]
    fn check_name_follows_the_rules(
        raw in prop_oneof![
            name().prop_map(String::into_bytes),
            prop::collection::vec(byte(), 0..40),
        ]
    ) {
        let (checked, allocated) = counting::peak(|| check_name(&raw));
        prop_assert_eq!(allocated, 0);
        let rules = std::str::from_utf8(&raw).is_ok_and(|s| {
            let n = s.chars().count();
            (1..=32).contains(&n)
                && !s.chars().any(|c| {
                    c == '|'
                        || c == ':'
                        || c.is_control()
                        || c.general_category() == GeneralCategory::Format
                })
                && !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace)
        });
        prop_assert_eq!(checked.is_ok(), rules, "{:?}", String::from_utf8_lossy(&raw));
        if let Ok(s) = checked {
            prop_assert_eq!(s.as_bytes(), &raw[..]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP heads (`parse_head`, with the WebSocket handshake in `Request::websocket`), query
// strings and form bodies (`query_param`), path segments (`decode_path_segment`).

#[derive(Debug, PartialEq, Eq)]
enum HeadOut {
    Request(Request, Vec<u8>),
    Error(HttpError),
}

/// Feeds `chunks` the way a web connection does: a head from the front of the buffer, then
/// its `Content-Length` body, then the next head; an error ends the connection. Returns the
/// outcomes and the bytes left over.
fn drive_heads(chunks: &[&[u8]]) -> (Vec<HeadOut>, usize) {
    let mut buf: Vec<u8> = Vec::new();
    let mut waiting: Option<Request> = None;
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if let Some(req) = waiting.take() {
                if buf.len() < req.content_length {
                    waiting = Some(req);
                    break;
                }
                let body = buf.drain(..req.content_length).collect();
                out.push(HeadOut::Request(req, body));
                continue;
            }
            let (parsed, allocated) = counting::peak(|| parse_head(&buf));
            // The request owns its path, query and key: copies of parts of the head.
            let head = buf.len().min(MAX_HEAD_BYTES);
            assert!(
                allocated <= 2 * head + 256,
                "{allocated} bytes for a {head}-byte head"
            );
            match parsed {
                Ok(Head::Complete { request, used }) => {
                    assert!(used >= 1 && used <= buf.len() && used <= MAX_HEAD_BYTES);
                    assert!(request.content_length <= MAX_BODY_BYTES);
                    buf.drain(..used);
                    waiting = Some(request);
                }
                Ok(Head::Incomplete) => {
                    assert!(buf.len() <= MAX_HEAD_BYTES, "waiting with {}", buf.len());
                    break;
                }
                Err(e) => {
                    // Final: what else arrived does not matter.
                    out.push(HeadOut::Error(e));
                    return (out, 0);
                }
            }
        }
    }
    (out, buf.len())
}

/// A `Content-Length` as a generated request carries it.
#[derive(Debug, Clone)]
enum Length {
    None,
    /// The body's length, in one header or two agreeing ones.
    Exact {
        twice: bool,
    },
    /// A value that is not a length.
    Bad(&'static str),
    /// Two that disagree.
    Conflict(usize, usize),
    /// Over the limit.
    TooBig(usize),
}

/// A request head as a client writes it, with what the server must make of it.
#[derive(Debug, Clone)]
struct GenRequest {
    method: &'static str,
    path: String,
    query: Option<String>,
    minor: u8,
    host: bool,
    connection: Vec<&'static str>,
    upgrade: Option<&'static str>,
    version: Option<&'static str>,
    key: Option<String>,
    chunked: bool,
    length: Length,
    body: Vec<u8>,
    extra_headers: usize,
    pad: usize,
}

fn ws_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<[u8; 16]>().prop_map(|k| base64::engine::general_purpose::STANDARD.encode(k)),
        1 => prop::sample::select(vec![
            "", "short", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ===",
            "dGhlIHNhbXBsZSBub25jZR==", "c2hvcnQ=", "_-9wAAAAAAAAAAAAAAAAAw==",
        ]).prop_map(String::from),
    ]
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    let line = (
        prop::sample::select(vec!["GET", "GET", "POST", "PUT", "HEAD"]),
        "/[A-Za-z0-9._~%/+-]{0,24}",
        prop::option::of("[A-Za-z0-9._~%=&+?/-]{0,24}"),
        prop_oneof![4 => Just(1u8), 1 => Just(0u8)],
    );
    let ws = (
        prop::option::of(prop::sample::select(vec![
            "websocket",
            "WebSocket",
            "h2c",
            "foo, websocket",
        ])),
        prop::collection::vec(
            prop::sample::select(vec![
                "Upgrade",
                "keep-alive, Upgrade",
                "close",
                "Close",
                "keep-alive",
                "Keep-Alive",
                "upgrades",
            ]),
            0..3,
        ),
        prop::option::of(prop::sample::select(vec!["13", "8", "13, 8"])),
        prop::option::of(ws_key()),
        prop_oneof![5 => Just(true), 1 => Just(false)],
    );
    let body = (
        prop_oneof![
            4 => Just(Length::None),
            4 => any::<bool>().prop_map(|twice| Length::Exact { twice }),
            1 => prop::sample::select(vec!["", "-1", "+5", "1 2", "0x10", "five", "99999999999999999999999"])
                .prop_map(Length::Bad),
            1 => (0usize..100, 0usize..100).prop_filter("disagree", |(a, b)| a != b)
                .prop_map(|(a, b)| Length::Conflict(a, b)),
            1 => (MAX_BODY_BYTES + 1..MAX_BODY_BYTES * 4).prop_map(Length::TooBig),
        ],
        prop::collection::vec(any::<u8>(), 0..40),
        prop_oneof![9 => Just(false), 1 => Just(true)],
        prop_oneof![9 => Just(0usize), 1 => 0usize..MAX_HEADERS + 4],
        prop_oneof![49 => Just(0usize), 1 => MAX_HEAD_BYTES - 200..MAX_HEAD_BYTES + 200],
    );
    (line, ws, body).prop_map(
        |(
            (method, path, query, minor),
            (upgrade, connection, version, key, host),
            (length, body, chunked, extra_headers, pad),
        )| GenRequest {
            method,
            path,
            query,
            minor,
            host,
            connection,
            upgrade,
            version,
            key,
            chunked,
            length,
            body,
            extra_headers,
            pad,
        },
    )
}

impl GenRequest {
    fn headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = Vec::new();
        let mut add = |n: &str, v: &str| h.push((n.to_owned(), v.to_owned()));
        if self.host {
            add("Host", "example.com");
        }
        if let Some(u) = self.upgrade {
            add("Upgrade", u);
        }
        for c in &self.connection {
            add("Connection", c);
        }
        if let Some(v) = self.version {
            add("Sec-WebSocket-Version", v);
        }
        if let Some(k) = &self.key {
            add("Sec-WebSocket-Key", k);
        }
        if self.chunked {
            add("Transfer-Encoding", "chunked");
        }
        match &self.length {
            Length::None => {}
            Length::Exact { twice } => {
                let n = self.body.len().to_string();
                add("Content-Length", &n);
                if *twice {
                    add("content-length", &format!(" {n} "));
                }
            }
            Length::Bad(v) => add("Content-Length", v),
            Length::Conflict(a, b) => {
                add("Content-Length", &a.to_string());
                add("Content-Length", &b.to_string());
            }
            Length::TooBig(n) => add("Content-Length", &n.to_string()),
        }
        for i in 0..self.extra_headers {
            add(&format!("X-{i}"), "v");
        }
        if self.pad > 0 {
            add("X-Pad", &"a".repeat(self.pad));
        }
        h
    }

    fn head(&self) -> Vec<u8> {
        let target = match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        };
        let mut head = format!("{} {target} HTTP/1.{}\r\n", self.method, self.minor);
        for (n, v) in self.headers() {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The head and (when it has a valid length) its body.
    fn bytes(&self) -> Vec<u8> {
        let mut b = self.head();
        if matches!(self.length, Length::Exact { .. }) {
            b.extend_from_slice(&self.body);
        }
        b
    }

    /// What `parse_head` must make of it: the rules of RFC 7230 and RFC 6455 §4.2.1 as the
    /// server documents them, written from the generator's side.
    fn expected(&self) -> Result<Request, HttpError> {
        let headers = self.headers();
        if self.head().len() > MAX_HEAD_BYTES || headers.len() > MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        if self.chunked {
            return Err(HttpError::Unsupported);
        }
        let content_length = match &self.length {
            Length::None => 0,
            Length::Exact { .. } => self.body.len(),
            Length::Bad("99999999999999999999999") | Length::TooBig(_) => {
                return Err(HttpError::BodyTooLarge)
            }
            Length::Bad(_) | Length::Conflict(..) => return Err(HttpError::Malformed),
        };
        let tokens = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
                .collect()
        };
        let connection = tokens("connection");
        let keep_alive = if self.minor >= 1 {
            !connection.iter().any(|t| t == "close")
        } else {
            connection.iter().any(|t| t == "keep-alive")
        };
        let method = match self.method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            _ => Method::Other,
        };
        let websocket = tokens("upgrade").iter().any(|t| t == "websocket").then(|| {
            let bad = |why| Err(HttpError::BadUpgrade(why));
            if method != Method::Get {
                return bad("method is not GET");
            }
            if self.minor < 1 {
                return bad("HTTP version below 1.1");
            }
            if !self.host {
                return bad("no Host header");
            }
            if !connection.iter().any(|t| t == "upgrade") {
                return bad("Connection does not include upgrade");
            }
            if self.version != Some("13") {
                return Err(HttpError::UnsupportedWsVersion);
            }
            let Some(key) = &self.key else {
                return bad("no Sec-WebSocket-Key");
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(key);
            if decoded.map(|k| k.len()) != Ok(16) {
                return bad("Sec-WebSocket-Key is not base64 of 16 bytes");
            }
            Ok(key.clone())
        });
        let (path, query) = match &self.query {
            Some(q) => (self.path.clone(), q.clone()),
            None => (self.path.clone(), String::new()),
        };
        Ok(Request {
            method,
            path,
            query,
            content_length,
            keep_alive,
            websocket,
            host: self.host.then(|| "example.com".to_owned()),
            origin: None,
            authorization: None,
        })
    }
}

/// Pipelined requests on one connection.
fn request_stream() -> impl Strategy<Value = Vec<GenRequest>> {
    prop::collection::vec(gen_request(), 1..4)
}

fn request_bytes(reqs: &[GenRequest]) -> Vec<u8> {
    reqs.iter().flat_map(GenRequest::bytes).collect()
}

proptest! {
    #![proptest_config(config())]

    /// `parse_head`: the same requests, bodies and errors however the input is split; a
    /// head is never awaited past `MAX_HEAD_BYTES`; allocation is a copy of parts of the head.
    #[test]
    fn parse_head_is_split_invariant(
        input in fuzzed(request_stream().prop_map(|r| request_bytes(&r)), 300),
        cuts in cuts(),
    ) {
        let whole = drive_heads(&[&input]);
        let pieces = drive_heads(&split(&input, &cuts));
        prop_assert_eq!(whole, pieces);
    }

    /// Requests written by a client parse to what they say, pipelined and split anywhere;
    /// the WebSocket handshake is checked as RFC 6455 §4.2.1 asks.
    #[test]
    fn requests_round_trip(reqs in request_stream(), cuts in cuts()) {
        let input = request_bytes(&reqs);
        let mut want = Vec::new();
        for r in &reqs {
            match r.expected() {
                Ok(req) => {
                    let body = if matches!(r.length, Length::Exact { .. }) { r.body.clone() } else { Vec::new() };
                    want.push(HeadOut::Request(req, body));
                }
                Err(e) => {
                    want.push(HeadOut::Error(e));
                    break;
                }
            }
        }
        prop_assert_eq!(drive_heads(&split(&input, &cuts)), (want, 0));
    }

    /// Every response the server writes parses back: status, length, connection, body.
    #[test]
    fn responses_round_trip(
        status in prop::sample::select(vec![101u16, 200, 299, 400, 404, 405, 408, 413, 426, 431, 501, 503]),
        body in prop::collection::vec(any::<u8>(), 0..200),
        keep_alive in any::<bool>(),
    ) {
        let mut out = Vec::new();
        http::response(&mut out, status, "text/plain; charset=utf-8", &body, keep_alive);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(used)) = parsed.parse(&out) else {
            return Err(TestCaseError::fail("response head does not parse"));
        };
        prop_assert_eq!(parsed.code, Some(status));
        let header = |name: &str| {
            parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.to_vec())
        };
        prop_assert_eq!(header("content-length"), Some(body.len().to_string().into_bytes()));
        let connection = String::from_utf8(header("connection").unwrap()).unwrap();
        prop_assert_eq!(connection.contains("keep-alive"), keep_alive);
        prop_assert_eq!(&out[used..], &body[..]);
    }

    /// `query_param` never panics, allocates about the size of its input, and finds the
    /// first value of a name in anything `form_urlencoded` writes.
    #[test]
    fn query_param_round_trip(
        pairs in prop::collection::vec((text(8), text(16)), 0..6),
        wanted in text(8),
        noise in fuzzed(Just(b"a=1&b=%E4%BD%A0&c=x+y&d=%zz".to_vec()), 60),
    ) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (n, v) in &pairs {
            form.append_pair(n, v);
        }
        let query = form.finish();
        for name in pairs.iter().map(|(n, _)| n).chain([&wanted]) {
            let want = pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            prop_assert_eq!(query_param(&query, name), want);
        }
        let noise = String::from_utf8_lossy(&noise).into_owned();
        for name in ["a", "b", "c", "d", &wanted] {
            let (found, allocated) = counting::peak(|| query_param(&noise, name));
            // Linear: a pair's name and value are decoded one pair at a time, each through
            // up to three copies (`+` replaced, escapes decoded, U+FFFD substituted), each
            // a growing `Vec` of at most twice its length.
            prop_assert!(allocated <= 8 * noise.len() + 256, "{allocated} for {}", noise.len());
            if let Some(v) = found {
                prop_assert!(v.len() <= noise.len());
            }
        }
    }

    /// `decode_path_segment` undoes percent-encoding exactly, keeps `+`, refuses what is not
    /// UTF-8, and never panics on any input.
    #[test]
    fn path_segments_round_trip(
        segment in prop_oneof![text(20), any::<String>()],
        raw in fuzzed(Just(b"a%2Bb+%E4%BD%A0%zz%".to_vec()), 40),
    ) {
        let encoded =
            percent_encoding::utf8_percent_encode(&segment, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        prop_assert_eq!(decode_path_segment(&encoded), Some(segment.clone()));
        if !segment.contains('%') {
            prop_assert_eq!(decode_path_segment(&segment), Some(segment.clone()));
        }
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (decoded, allocated) = counting::peak(|| decode_path_segment(&raw));
        // The decoded bytes (a growing `Vec`: up to twice their length) and the result.
        prop_assert!(allocated <= 3 * raw.len() + 32, "{allocated} for {}", raw.len());
        if let Some(d) = decoded {
            prop_assert!(d.len() <= raw.len());
            prop_assert_eq!(d.matches('+').count() >= raw.matches('+').count(), true);
        }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket frames: `WsReader::next` and the server's encoders.

#[derive(Debug, Clone, PartialEq, Eq)]
enum WsOut {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, String),
    /// A fragment absorbed into a message in progress.
    Absorbed,
    Error(WsError),
}

/// The longest client frame header: 2 bytes, a 64-bit length, a mask.
const MAX_CLIENT_HEADER_BYTES: usize = 14;

/// Feeds `chunks` the way a WebSocket connection does: frames decoded from the front of
/// the input buffer (unmasked in place) until one is incomplete; an error is final.
/// Checks that the reader never holds more heap than its message limit allows and that the
/// connection never waits for a frame it would refuse.
fn drive_ws(chunks: &[&[u8]], max_message: usize) -> (Vec<WsOut>, usize) {
    let mut reader = WsReader::new(max_message);
    let mut reader_heap: isize = 0;
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let before = counting::live();
            let rest = &mut buf[pos..];
            let rest_len = rest.len();
            let step = match reader.next(rest) {
                Ok(Next::Incomplete) => None,
                Ok(Next::Frame { used, msg }) => {
                    assert!(used >= 2 && used <= rest_len, "used {used} of {rest_len}");
                    let o = match msg {
                        None => WsOut::Absorbed,
                        Some(Msg::Text(t)) => WsOut::Text(t.to_owned()),
                        Some(Msg::Binary(b)) => WsOut::Binary(b.to_vec()),
                        Some(Msg::Ping(p)) => WsOut::Ping(p.to_vec()),
                        Some(Msg::Pong) => WsOut::Pong,
                        Some(Msg::Close { code, reason }) => WsOut::Close(code, reason.to_owned()),
                    };
                    Some((used, o))
                }
                Err(e) => Some((0, WsOut::Error(e))),
            };
            // The reader's own heap: what `next` left allocated (messages were copied out
            // after the measurement, into `out`, whose growth is not counted here).
            let grown = counting::live() - before;
            let copied = match &step {
                Some((_, WsOut::Text(t))) => t.capacity() as isize,
                Some((_, WsOut::Binary(b) | WsOut::Ping(b))) => b.capacity() as isize,
                Some((_, WsOut::Close(_, r))) => r.capacity() as isize,
                _ => 0,
            };
            reader_heap += grown - copied;
            // Amortized growth may double the capacity once, never more.
            assert!(
                reader_heap <= 2 * max_message as isize + 16,
                "reader holds {reader_heap} with a limit of {max_message}"
            );
            match step {
                None => {
                    let limit =
                        MAX_CLIENT_HEADER_BYTES + max_message.max(MAX_CONTROL_PAYLOAD_BYTES);
                    assert!(
                        rest_len < limit,
                        "waiting with {rest_len} bytes (limit {limit})"
                    );
                    break;
                }
                Some((used, o)) => {
                    match &o {
                        WsOut::Text(t) => assert!(t.len() <= max_message),
                        WsOut::Binary(b) => assert!(b.len() <= max_message),
                        WsOut::Ping(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD_BYTES),
                        _ => {}
                    }
                    let done = matches!(o, WsOut::Error(_));
                    out.push(o);
                    if done {
                        return (out, 0); // final: what else arrived does not matter
                    }
                    pos += used;
                }
            }
        }
        buf.drain(..pos);
    }
    (out, buf.len())
}

/// How a client writes a frame's length: the shortest form, or a longer one (allowed).
#[derive(Debug, Clone, Copy)]
enum LenForm {
    Shortest,
    Sixteen,
    SixtyFour,
}

/// One client frame: FIN, opcode, masked payload.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], form: LenForm) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let n = payload.len();
    match form {
        LenForm::Shortest if n <= 125 => f.push(0x80 | n as u8),
        LenForm::Shortest | LenForm::Sixteen if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Masks a frame the server encoded, as a client would send the same frame.
fn mask_server_frame(frame: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let header_len = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    assert_eq!(frame[1] & 0x80, 0, "server frames are unmasked");
    let mut f = frame[..header_len].to_vec();
    f[1] |= 0x80;
    f.extend_from_slice(&mask);
    f.extend(
        frame[header_len..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4]),
    );
    f
}

/// A client message and what the reader must make of it.
#[derive(Debug, Clone)]
enum GenMessage {
    /// Text or binary, cut into fragments at these points, a ping after fragment `ping_at`.
    Data {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<Index>,
        ping_at: Option<Index>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn close_code() -> impl Strategy<Value = u16> {
    prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999]
}

fn gen_message() -> impl Strategy<Value = GenMessage> {
    let control = prop::collection::vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD_BYTES);
    prop_oneof![
        4 => (
            any::<bool>(),
            prop_oneof![text(40).prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..300)],
            prop::collection::vec(any::<Index>(), 0..4),
            prop::option::of(any::<Index>()),
        ).prop_map(|(text, payload, cuts, ping_at)| {
            // A text message must be UTF-8 as a whole (bytes are mutated separately).
            let payload = if text { String::from_utf8_lossy(&payload).into_owned().into_bytes() } else { payload };
            GenMessage::Data { text, payload, cuts, ping_at }
        }),
        1 => control.clone().prop_map(GenMessage::Ping),
        1 => control.prop_map(GenMessage::Pong),
        1 => prop::option::of((close_code(), text(30).prop_map(|mut s| {
            while s.len() > 123 { s.pop(); }
            s
        }))).prop_map(GenMessage::Close),
    ]
}

/// The client frames of `messages` and what the reader must say for each.
fn client_frames(
    messages: &[GenMessage],
    masks: &[[u8; 4]],
    form: LenForm,
) -> (Vec<u8>, Vec<WsOut>) {
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    let mut masks = masks.iter().cycle();
    let mut next_mask = || *masks.next().unwrap_or(&[0x12, 0x34, 0x56, 0x78]);
    for m in messages {
        match m {
            GenMessage::Data {
                text,
                payload,
                cuts,
                ping_at,
            } => {
                let data = split(payload, &Cuts::At(cuts.clone()));
                let ping_at = ping_at.map(|i| i.index(data.len()));
                for (i, piece) in data.iter().enumerate() {
                    let opcode = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    let fin = i + 1 == data.len();
                    bytes.extend(client_frame(fin, opcode, piece, next_mask(), form));
                    want.push(match (fin, text) {
                        (false, _) => WsOut::Absorbed,
                        (true, true) => WsOut::Text(String::from_utf8(payload.clone()).unwrap()),
                        (true, false) => WsOut::Binary(payload.clone()),
                    });
                    if ping_at == Some(i) && !fin {
                        bytes.extend(client_frame(true, 9, b"between", next_mask(), form));
                        want.push(WsOut::Ping(b"between".to_vec()));
                    }
                }
            }
            GenMessage::Ping(p) => {
                bytes.extend(client_frame(true, 9, p, next_mask(), form));
                want.push(WsOut::Ping(p.clone()));
            }
            GenMessage::Pong(p) => {
                bytes.extend(client_frame(true, 10, p, next_mask(), form));
                want.push(WsOut::Pong);
            }
            GenMessage::Close(None) => {
                bytes.extend(client_frame(true, 8, b"", next_mask(), form));
                want.push(WsOut::Close(None, String::new()));
            }
            GenMessage::Close(Some((code, reason))) => {
                let payload = [&code.to_be_bytes()[..], reason.as_bytes()].concat();
                bytes.extend(client_frame(true, 8, &payload, next_mask(), form));
                want.push(WsOut::Close(Some(*code), reason.clone()));
            }
        }
    }
    (bytes, want)
}

fn len_form() -> impl Strategy<Value = LenForm> {
    prop_oneof![
        6 => Just(LenForm::Shortest),
        1 => Just(LenForm::Sixteen),
        1 => Just(LenForm::SixtyFour),
    ]
}

fn ws_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(gen_message(), 0..4),
        prop::collection::vec(any::<[u8; 4]>(), 1..4),
        len_form(),
    )
        .prop_map(|(m, masks, form)| client_frames(&m, &masks, form).0)
}

proptest! {
    #![proptest_config(config())]

    /// `WsReader::next`: the same messages, fragments and errors however the input is
    /// split; heap within the message limit; no waiting for a frame it would refuse.
    #[test]
    fn ws_reader_is_split_invariant(
        input in fuzzed(ws_stream(), 200),
        max_message in prop_oneof![0usize..200, Just(1 << 20)],
        cuts in cuts(),
    ) {
        let whole = drive_ws(&[&input], max_message);
        let pieces = drive_ws(&split(&input, &cuts), max_message);
        prop_assert_eq!(whole, pieces);
    }

    /// Client frames (any masks, any length form, fragmented, pings between fragments)
    /// decode to the messages they carry, split anywhere.
    #[test]
    fn client_frames_round_trip(
        messages in prop::collection::vec(gen_message(), 0..5),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..4),
        form in len_form(),
        cuts in cuts(),
    ) {
        let (bytes, want) = client_frames(&messages, &masks, form);
        prop_assert_eq!(drive_ws(&split(&bytes, &cuts), 1 << 20), (want, 0));
    }

    /// What the server encodes (`encode_text`, `encode_close`, `encode_pong`) decodes when
    /// a client sends the same frames masked: the text, the code and the reason cut at a
    /// character boundary to fit 125 bytes, the pong.
    #[test]
    fn server_frames_round_trip(
        said in prop_oneof![
            16 => text(200),
            2 => (126usize..2000).prop_map(|n| "x".repeat(n)),
            1 => (65_536usize..70_000).prop_map(|n| "x".repeat(n)),
        ],
        code in close_code(),
        reason in prop_oneof![text(40), text(140), any::<String>()],
        pong in prop::collection::vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD_BYTES),
        mask in any::<[u8; 4]>(),
        cuts in cuts(),
    ) {
        let mut server = Vec::new();
        encode_text(&mut server, said.as_bytes());
        let text_end = server.len();
        encode_pong(&mut server, &pong);
        let pong_end = server.len();
        encode_close(&mut server, code, &reason);
        let mut client = mask_server_frame(&server[..text_end], mask);
        client.extend(mask_server_frame(&server[text_end..pong_end], mask));
        client.extend(mask_server_frame(&server[pong_end..], mask));
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let want = vec![
            WsOut::Text(said.clone()),
            WsOut::Pong,
            WsOut::Close(Some(code), reason[..cut].to_owned()),
        ];
        prop_assert_eq!(drive_ws(&split(&client, &cuts), 1 << 20), (want, 0));
    }
}

// ---------------------------------------------------------------------------------------
// `/im` JSON (`codec::im::parse`, `answer`, `push`) and hub JSON (`codec::hub`).

/// A JSON value shaped like the protocols' messages, with odd types in every field.
fn json_field() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        4 => name().prop_map(Value::from),
        2 => prop::sample::select(vec!["login", "msg", "ping", "heartbeat", "101", "104"]).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => (99u64..106).prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(json!([1, "a", null])),
        1 => Just(json!({"x": {"y": []}})),
    ]
}

fn json_object() -> impl Strategy<Value = Vec<u8>> {
    let keys = prop::sample::select(vec![
        "seq", "cmd", "data", "userID", "userId", "appID", "appId", "msg", "target", "type",
        "sender", "receiver", "content",
    ]);
    let inner = prop::collection::vec((keys.clone(), json_field()), 0..5);
    prop::collection::vec(
        (
            keys,
            prop_oneof![
                json_field(),
                inner.prop_map(|kv| {
                    serde_json::Value::Object(
                        kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                    )
                })
            ],
        ),
        0..6,
    )
    .prop_map(|kv| {
        let obj: serde_json::Map<String, serde_json::Value> =
            kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::to_vec(&obj).unwrap()
    })
}

/// Heap a JSON parse may use for `len` bytes of input: serde_json's `Value` tree (a nested
/// `[` is a 32-byte `Value` in a `Vec` that may have doubled) plus small strings.
fn json_alloc_bound(len: usize) -> usize {
    160 * len + 4096
}

/// A valid `/im` request and the command it must parse to.
fn im_request() -> impl Strategy<Value = (serde_json::Value, im::Command)> {
    use serde_json::json;
    let user = "[a-z0-9]{1,19}";
    prop_oneof![
        (
            user,
            prop::option::of(101u16..=104),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(u, app, spelling, app_as_text)| {
                let (uk, ak) = if spelling {
                    ("userID", "appID")
                } else {
                    ("userId", "appId")
                };
                let mut data = json!({ uk: u });
                if let Some(a) = app {
                    data[ak] = if app_as_text {
                        json!(a.to_string())
                    } else {
                        json!(a)
                    };
                }
                (
                    json!({"cmd": "login", "data": data}),
                    im::Command::Login {
                        user_id: u,
                        app_id: app,
                        token: None,
                    },
                )
            }),
        (text(30), prop::option::of(name())).prop_map(|(msg, target)| {
            let data = match &target {
                Some(t) => json!({"target": t, "msg": msg}),
                None => json!({"msg": msg}),
            };
            let target = target.filter(|t| !t.is_empty());
            (
                json!({"cmd": "msg", "data": data}),
                im::Command::Msg { target, msg },
            )
        }),
        Just((
            json!({"cmd": "heartbeat", "data": {}}),
            im::Command::Heartbeat
        )),
        Just((json!({"cmd": "ping"}), im::Command::Ping)),
        (
            prop::option::of(1u64..=u64::MAX),
            prop::option::of(any::<u64>()),
            any::<bool>()
        )
            .prop_map(|(limit, since, as_text)| {
                let number = |n: Option<u64>| match n {
                    Some(n) if as_text => json!(n.to_string()),
                    n => json!(n),
                };
                (
                    json!({"cmd": "history", "data": {"limit": number(limit), "since": number(since)}}),
                    im::Command::History {
                        limit: limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
                        since,
                    },
                )
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// `im::parse` never panics on any text, allocates in proportion to it, and what it
    /// accepts keeps the protocol's rules (a valid user id, a known room).
    #[test]
    fn im_parse_never_panics(raw in fuzzed(json_object(), 120)) {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (req, allocated) = counting::peak(|| im::parse(&text));
        prop_assert!(allocated <= json_alloc_bound(text.len()), "{allocated} for {}", text.len());
        let is_object = matches!(serde_json::from_str(&text), Ok(serde_json::Value::Object(_)));
        prop_assert_eq!(req.command == Err(im::Refusal::NotJson), !is_object);
        match req.command {
            Ok(im::Command::Login { user_id, app_id, .. }) => {
                prop_assert_eq!(req.cmd.as_str(), "login");
                prop_assert!(user_id.len() <= im::MAX_USER_ID_BYTES);
                prop_assert!(check_name(user_id.as_bytes()).is_ok());
                prop_assert!(app_id.is_none_or(|a| im::APP_IDS.contains(&a)));
            }
            Ok(im::Command::Msg { target, .. }) => {
                prop_assert_eq!(req.cmd.as_str(), "msg");
                prop_assert!(target.is_none_or(|t| !t.is_empty()));
            }
            Ok(im::Command::Heartbeat) => prop_assert_eq!(req.cmd.as_str(), "heartbeat"),
            Ok(im::Command::Ping) => prop_assert_eq!(req.cmd.as_str(), "ping"),
            Ok(im::Command::History { limit, .. }) => {
                prop_assert_eq!(req.cmd.as_str(), "history");
                prop_assert!(limit != Some(0));
            }
            Err(_) => {}
        }
    }

    /// A request a client writes parses to its command, with `seq` and `cmd` echoed; the
    /// server's answers and pushes parse back to their fields.
    #[test]
    fn im_round_trip(
        (mut request, command) in im_request(),
        seq in prop_oneof![text(10).prop_map(serde_json::Value::from), any::<u32>().prop_map(serde_json::Value::from)],
        code in any::<u32>(),
        (code_msg, target, msg, from) in (text(10), text(20), text(40), text(20)),
    ) {
        request["seq"] = seq.clone();
        let req = im::parse(&request.to_string());
        let seq_text = match &seq {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        prop_assert_eq!(&req.seq, &seq_text);
        prop_assert_eq!(req.command, Ok(command));

        let mut out = Vec::new();
        im::answer(&mut out, &seq_text, &req.cmd, code, &code_msg, serde_json::json!(msg));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(v, serde_json::json!({
            "seq": seq_text, "cmd": req.cmd,
            "response": {"code": code, "codeMsg": code_msg, "data": msg},
        }));
        let mut out = Vec::new();
        let push = im::Push { cmd: "msg", target: &target, msg: &msg, from: &from, seq: Some(7) };
        im::push(&mut out, &code_msg, push);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(&v["response"]["data"], &serde_json::json!(
            {"target": target, "type": "text", "msg": msg, "from": from, "seq": 7}
        ));
        // The pushes are `/im` requests too, as far as the parser goes: never a panic.
        let _ = im::parse(std::str::from_utf8(&out).unwrap());
    }

    /// `hub::parse` never panics, allocates in proportion to its input, and reads back
    /// exactly what `hub::encode` writes (ids that are numbers travel as JSON numbers).
    #[test]
    fn hub_round_trip(
        raw in fuzzed(json_object(), 120),
        kind in prop_oneof![0u64..5, any::<u64>()],
        sender in prop_oneof![name(), "[0-9]{1,22}", "0[0-9]{1,3}"],
        receiver in prop_oneof![name(), "[0-9]{1,22}", "0[0-9]{1,3}", Just(String::new())],
        content in prop_oneof![text(60), any::<String>()],
    ) {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (parsed, allocated) = counting::peak(|| hub::parse(&text));
        prop_assert!(allocated <= json_alloc_bound(text.len()), "{allocated} for {}", text.len());
        if let Some(m) = parsed {
            prop_assert!(m.receiver.len() <= text.len() && m.content.len() <= text.len());
        }

        let mut out = Vec::new();
        hub::encode(&mut out, kind, &sender, &receiver, &content);
        let back = hub::parse(std::str::from_utf8(&out).unwrap());
        prop_assert_eq!(back, Some(hub::Incoming { kind, receiver: receiver.clone(), content }));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let is_number = |s: &str| s.parse::<u64>().is_ok_and(|n| n.to_string() == s);
        prop_assert_eq!(v["sender"].is_number(), is_number(&sender));
        prop_assert_eq!(v["receiver"].is_number(), is_number(&receiver));
    }
}

// ---------------------------------------------------------------------------------------
// RESP replies, decoded as `cluster::link` decodes them, and the cluster wire format.

/// Feeds `chunks` the way the Redis link does (`Backplane::decode`): bytes appended to the
/// link's input buffer, frames decoded from the front until one is incomplete, the used
/// bytes drained; an error drops the link.
fn drive_resp(chunks: &[&[u8]]) -> (Vec<Result<OwnedFrame, ()>>, usize) {
    let mut inbuf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        inbuf.extend_from_slice(chunk);
        let mut used = 0;
        loop {
            let rest = &inbuf[used..];
            let (decoded, allocated) =
                counting::peak(|| redis_protocol::resp2::decode::decode(rest));
            // Bulk strings are copied; an array header reserves room for its elements, at
            // most 64 KiB of frames per array (nom's `count` caps what it reserves).
            let arrays = rest.iter().filter(|&&b| b == b'*').count();
            let bound = 64 * rest.len() + 2 * 65_536 * arrays + 4096;
            assert!(
                allocated <= bound,
                "{allocated} > {bound} for {} bytes",
                rest.len()
            );
            match decoded {
                Ok(Some((frame, n))) => {
                    assert!(n >= 1 && n <= rest.len());
                    used += n;
                    out.push(Ok(frame));
                }
                Ok(None) => break,
                Err(_) => {
                    out.push(Err(())); // the link is dropped with its buffer
                    return (out, 0);
                }
            }
        }
        inbuf.drain(..used);
    }
    (out, inbuf.len())
}

fn resp_frame() -> impl Strategy<Value = OwnedFrame> {
    let line = "[a-zA-Z0-9 :._-]{0,20}";
    let leaf = prop_oneof![
        line.prop_map(|s| OwnedFrame::SimpleString(s.into_bytes())),
        line.prop_map(OwnedFrame::Error),
        any::<i64>().prop_map(OwnedFrame::Integer),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(OwnedFrame::BulkString),
        Just(OwnedFrame::Null),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(OwnedFrame::Array)
    })
}

fn resp_bytes(frames: &[OwnedFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let start = out.len();
        out.resize(start + f.encode_len(false), 0);
        let n = redis_protocol::resp2::encode::encode(&mut out[start..], f, false).unwrap();
        out.truncate(start + n);
    }
    out
}

fn node() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,12}",
        text(16).prop_map(|s| s.replace('\0', "")),
    ]
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        // Flow labels are not part of an address's text form (and never set on the
        // connections this server accepts).
        (
            any::<u128>(),
            any::<u16>(),
            prop_oneof![Just(0u32), any::<u32>()]
        )
            .prop_map(|(ip, port, scope)| SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                scope
            ))),
    ]
}

fn remote() -> impl Strategy<Value = Remote> {
    // Rooms are names (an appID is the room named by its number).
    let room = prop_oneof![
        any::<u16>().prop_map(|n| n.to_string()),
        name().prop_map(|s| s.replace('\0', "")),
    ];
    (node(), room, socket_addr()).prop_map(|(node, room, addr)| Remote {
        node: node.into(),
        room: room.into(),
        addr,
    })
}

/// A wire event's parts: kind, names (no `\0`: the name rules forbid control characters),
/// text (any bytes).
fn wire_parts() -> impl Strategy<Value = (u8, String, String, Vec<u8>, Remote)> {
    let wire_name = prop_oneof![name(), node()].prop_map(|s| s.replace('\0', ""));
    (
        0u8..6,
        wire_name.clone(),
        wire_name,
        prop::collection::vec(byte(), 0..60),
        remote(),
    )
}

fn wire<'a>(kind: u8, a: &'a str, b: &'a str, text: &'a [u8], user: Remote) -> Wire<'a> {
    match kind {
        0 => Wire::Online {
            name: a,
            user,
            notify: true,
        },
        1 => Wire::Online {
            name: a,
            user,
            notify: false,
        },
        2 => Wire::Offline { name: a, user },
        3 => Wire::Rename {
            old: a,
            new: b,
            user,
        },
        4 => Wire::Say {
            name: a,
            user,
            text,
        },
        _ => Wire::Whisper {
            from: a,
            user,
            to: b,
            text,
        },
    }
}

proptest! {
    #![proptest_config(config())]

    /// RESP as the link decodes it: the same frames and errors however Redis's bytes are
    /// split; frames encoded by the crate come back; allocation bounded (see `drive_resp`).
    #[test]
    fn resp_is_split_invariant(
        frames in prop::collection::vec(resp_frame(), 0..5),
        noise in fuzzed(prop::collection::vec(resp_frame(), 0..4).prop_map(|f| resp_bytes(&f)), 120),
        cuts in cuts(),
    ) {
        let bytes = resp_bytes(&frames);
        let want: Vec<Result<OwnedFrame, ()>> = frames.into_iter().map(Ok).collect();
        prop_assert_eq!(drive_resp(&split(&bytes, &cuts)), (want, 0));
        prop_assert_eq!(drive_resp(&[&noise]), drive_resp(&split(&noise, &cuts)));
    }

    /// Cluster events and `im:users` values decode to what was encoded; anything else
    /// decodes to `None` or an event, never a panic.
    #[test]
    fn wire_round_trip(
        (kind, a, b, text, user) in wire_parts(),
        noise in fuzzed(wire_parts().prop_map(|(k, a, b, t, u)| {
            let mut out = Vec::new();
            wire(k, &a, &b, &t, u).encode(&mut out);
            out
        }), 80),
    ) {
        let event = wire(kind, &a, &b, &text, user.clone());
        let mut out = Vec::new();
        event.encode(&mut out);
        prop_assert_eq!(Wire::decode(&out), Some(event));
        prop_assert_eq!(parse_user_value(&user_value(&user)), Some(user));

        let (decoded, allocated) = counting::peak(|| Wire::decode(&noise));
        prop_assert!(allocated <= noise.len() + 16, "{allocated} for {}", noise.len());
        if let Some(e) = decoded {
            let mut again = Vec::new();
            e.encode(&mut again);
            prop_assert_eq!(Wire::decode(&again), Some(e));
        }
        let (value, allocated) = counting::peak(|| parse_user_value(&noise));
        prop_assert!(allocated <= noise.len() + 16, "{allocated} for {}", noise.len());
        if let Some(r) = value {
            prop_assert_eq!(parse_user_value(&user_value(&r)), Some(r));
        }
    }

    /// A turn's whispers to one server, batched into one message, come back as the same
    /// events in the same order whatever bytes their texts hold (`\0`, digits, `many`); a
    /// batch of one is the lone event's own form; cut into runs by size, they still come
    /// back whole and in order; a damaged message yields a prefix of its events, and junk
    /// after `many` is read allocating nothing.
    #[test]
    fn wire_batch_round_trip(
        texts in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(byte(), 0..60),
                Just(b"many\0".to_vec()),
                Just(b"3\0w\0".to_vec()),
            ],
            0..12,
        ),
        (from, to) in (name(), name()).prop_map(|(a, b)| (a.replace('\0', ""), b.replace('\0', ""))),
        user in remote(),
        cut in any::<Index>(),
        noise in prop::collection::vec(byte(), 0..80),
        max_bytes in 1usize..400,
    ) {
        let whispers: Vec<Wire<'_>> = texts
            .iter()
            .map(|text| Wire::Whisper { from: &from, user: user.clone(), to: &to, text })
            .collect();
        let encoded: Vec<Vec<u8>> = whispers
            .iter()
            .map(|w| {
                let mut out = Vec::new();
                w.encode(&mut out);
                out
            })
            .collect();
        let message = wire::batch(&encoded);
        if let [one] = encoded.as_slice() {
            prop_assert_eq!(&*message, one.as_slice());
        }
        let decoded: Vec<Option<Wire<'_>>> = wire::events(&message).map(Wire::decode).collect();
        let want: Vec<Option<Wire<'_>>> = whispers.iter().cloned().map(Some).collect();
        prop_assert_eq!(decoded, want);

        if encoded.len() > 1 {
            let damaged = &message[..cut.index(message.len() + 1)];
            let got: Vec<Wire<'_>> = wire::events(damaged).filter_map(Wire::decode).collect();
            prop_assert!(got.len() < encoded.len() || damaged.len() == message.len());
            prop_assert_eq!(&got[..], &whispers[..got.len()]);
        }
        // Cut into runs by size: every event once, in order; each run within the size
        // or a lone event.
        let mut again = Vec::new();
        for run in wire::runs(&encoded, max_bytes) {
            let size: usize = run.iter().map(Vec::len).sum();
            prop_assert!(!run.is_empty() && (size <= max_bytes || run.len() == 1));
            again.extend(wire::events(&wire::batch(run)).map(<[u8]>::to_vec));
        }
        prop_assert_eq!(again, encoded);
        let junk = [b"many\0".as_slice(), &noise].concat();
        let (got, allocated) = counting::peak(|| wire::events(&junk).map(<[u8]>::len).sum::<usize>());
        prop_assert_eq!(allocated, 0);
        prop_assert!(got <= noise.len());
    }
}
