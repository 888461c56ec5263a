//! RFC 6455 server-side framing, done on the connection's own buffers: bytes in, an enum out.
//!
//! [`WsReader::next`] decodes at most one client frame from the front of the caller's input
//! buffer. Like the line protocol it is *check, then parse*: a frame that has not fully arrived
//! is [`Next::Incomplete`], nothing is consumed, and the caller calls again with more bytes.
//! A complete frame is unmasked in place and handed back as a [`Msg`] that borrows either the
//! caller's buffer (a single-frame message or a control frame, the common case: no copy) or the
//! reader's reassembly buffer (the last fragment of a fragmented message). The `encode_*`
//! functions append unmasked server frames to a caller's output buffer.
//!
//! Invariants:
//! - A [`WsReader`] holds no heap unless a fragmented message is in progress, or was just
//!   returned (its buffer is freed at the start of the next call, which for a caller that loops
//!   until `Incomplete` is the same turn). Idle WebSocket connections cost no heap here.
//! - A frame that could never be accepted fails as soon as its header has arrived: a header
//!   declaring 1 GB is [`WsError::TooBig`] at once, never `Incomplete` while we wait for it.
//! - Every error is final: the caller sends [`encode_close`] with [`WsError::close_code`] and
//!   stops reading. The reader is not meant to be used after an error.
//!
//! The rules enforced are those of RFC 6455 §5 and §7.4 as the Autobahn test suite checks them:
//! client frames are masked, no RSV bits (no extension is ever negotiated), no reserved opcodes,
//! control frames are final and at most 125 bytes, fragments continue exactly one message,
//! text is UTF-8 (checked per fragment, so bad bytes fail before the message ends), close codes
//! are from the valid ranges. The frame header is parsed here too (`parse_header`, a pure
//! function over a byte slice and a fuzz target): it is 2 to 14 bytes, and owning it keeps the
//! reader free of a general-purpose WebSocket crate's buffers and error types.

use std::fmt;

/// The largest payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;

/// The longest close reason we send: a control payload less its 2-byte code.
const MAX_CLOSE_REASON_BYTES: usize = MAX_CONTROL_PAYLOAD_BYTES - 2;

/// Payload lengths up to this fit the 7-bit length field.
const MAX_7BIT_LEN: usize = 125;
/// The 7-bit length value announcing a 16-bit length.
const LEN_16_BIT: u8 = 126;
/// The 7-bit length value announcing a 64-bit length.
const LEN_64_BIT: u8 = 127;
/// The bit a 64-bit length must leave clear (RFC 6455 §5.2: "the most significant bit MUST
/// be 0"), so no length is ambiguous with a negative 64-bit number.
const LEN_64_TOP_BIT: u64 = 1 << 63;
/// The longest header of an unmasked frame: 2 bytes and a 64-bit length.
const MAX_SERVER_HEADER_BYTES: usize = 10;
/// The bytes of a masking key, which follows the length in every client frame.
const MASK_KEY_BYTES: usize = 4;

/// The FIN bit of a frame's first byte: this frame ends its message.
const FIN_BIT: u8 = 0x80;
/// The RSV1-3 bits of a frame's first byte, reserved for extensions.
const RSV_BITS: u8 = 0x70;
/// The opcode bits of a frame's first byte.
const OPCODE_BITS: u8 = 0x0F;
/// The MASK bit of a frame's second byte: a masking key follows the length.
const MASK_BIT: u8 = 0x80;
/// The 7-bit length bits of a frame's second byte.
const LEN_BITS: u8 = 0x7F;

/// A frame's opcode (RFC 6455 §5.2); the reserved values have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    /// The opcode in the low 4 bits of `bits`, or `None` for a reserved one (0x3-0x7, 0xB-0xF).
    fn from_bits(bits: u8) -> Option<Self> {
        match bits & OPCODE_BITS {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control frame (close, ping, pong): never fragmented, at most 125 bytes.
    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Close codes we send (RFC 6455 §7.4.1).
pub mod close {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down (or the client is navigating away).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the framing rules.
    pub const PROTOCOL: u16 = 1002;
    /// The peer sent a kind of data we do not accept (binary, for a text chat).
    pub const UNSUPPORTED: u16 = 1003;
    /// A text message or close reason was not UTF-8.
    pub const BAD_DATA: u16 = 1007;
    /// The peer broke a rule of ours that has no better code.
    pub const POLICY: u16 = 1008;
    /// A message exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
}

/// Why a client's frames were refused. Each maps to the close code we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// A framing rule was broken; the text says which. Close code 1002.
    Protocol(&'static str),
    /// A text message or close reason was not UTF-8. Close code 1007.
    BadUtf8,
    /// A message (or the frame announcing it) exceeded the limit. Close code 1009.
    TooBig,
}

impl WsError {
    /// The close code to send before closing the connection.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close::PROTOCOL,
            WsError::BadUtf8 => close::BAD_DATA,
            WsError::TooBig => close::TOO_BIG,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Protocol(why) => write!(f, "WebSocket protocol error: {why}"),
            WsError::BadUtf8 => f.write_str("WebSocket text is not valid UTF-8"),
            WsError::TooBig => f.write_str("WebSocket message too big"),
        }
    }
}

impl std::error::Error for WsError {}

/// What the front of the input buffer held.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// Not a whole frame yet (and nothing wrong so far): keep the bytes, read more, call again.
    Incomplete,
    /// One frame was decoded; the caller consumes `used` bytes.
    Frame {
        /// Bytes of this frame, header and payload.
        used: usize,
        /// The message it completed, or `None` for a fragment absorbed into a message in progress.
        msg: Option<Msg<'a>>,
    },
}

/// A complete message or control frame from the client, its payload already unmasked.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A text message, checked to be UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping; answer with [`encode_pong`] of the same payload.
    Ping(&'a [u8]),
    /// A pong (unsolicited or not): nothing to do but note the activity.
    Pong,
    /// A close frame. `code` is `None` for an empty payload; a present code is a valid one.
    Close {
        /// The close code, if the client sent one.
        code: Option<u16>,
        /// The reason text, possibly empty.
        reason: &'a str,
    },
}

/// The kind of data message being reassembled from fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Per-connection decoder state: empty (no heap) unless a fragmented message is in progress.
#[derive(Debug)]
pub struct WsReader {
    /// The limit on one message's total payload.
    max_message: usize,
    /// The kind of the fragmented message in progress, if any.
    partial: Option<Kind>,
    /// The fragments received so far, unmasked; empty with no capacity when idle.
    message: Vec<u8>,
    /// For text, how many leading bytes of `message` are known to be valid UTF-8.
    utf8_checked: usize,
    /// `message` was handed out by the last call and is freed at the start of the next one.
    delivered: bool,
}

/// The fields of a parsed client frame header that decoding needs.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    /// The frame ends its message.
    fin: bool,
    opcode: Opcode,
    /// The masking key of the payload.
    mask: [u8; MASK_KEY_BYTES],
    /// Bytes of the header, where the payload starts: 6, 8 or 14.
    header_len: usize,
    /// The declared payload length, its top bit clear; not yet checked against any limit.
    payload_len: u64,
}

impl WsReader {
    /// A reader with no message in progress, accepting messages up to `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        WsReader {
            max_message,
            partial: None,
            message: Vec::new(),
            utf8_checked: 0,
            delivered: false,
        }
    }

    /// Decodes at most one frame from the front of `buf`, unmasking its payload in place.
    ///
    /// Control frames are returned as soon as they arrive, also between the fragments of a
    /// message. A fragment that does not end its message is absorbed (`msg: None`).
    ///
    /// # Errors
    /// Any broken framing rule, a message over the limit (as soon as a header announces it),
    /// or text that is not UTF-8 (as soon as a fragment proves it). Errors are final.
    pub fn next<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Next<'a>, WsError> {
        if self.delivered {
            self.reset();
        }
        let Some(header) = parse_header(buf)? else {
            return Ok(Next::Incomplete);
        };
        let payload_len = self.check_header(&header)?;
        let used = header.header_len.saturating_add(payload_len);
        let Some(payload) = buf.get_mut(header.header_len..used) else {
            return Ok(Next::Incomplete);
        };
        unmask(payload, header.mask);
        let payload: &'a [u8] = payload;
        let msg = match header.opcode {
            Opcode::Ping => Some(Msg::Ping(payload)),
            Opcode::Pong => Some(Msg::Pong),
            Opcode::Close => Some(parse_close(payload)?),
            Opcode::Text if header.fin => Some(Msg::Text(to_str(payload)?)),
            Opcode::Binary if header.fin => Some(Msg::Binary(payload)),
            Opcode::Text => {
                self.begin(Kind::Text, payload)?;
                None
            }
            Opcode::Binary => {
                self.begin(Kind::Binary, payload)?;
                None
            }
            Opcode::Continuation => self.continue_message(payload, header.fin)?,
        };
        Ok(Next::Frame { used, msg })
    }

    /// Checks a header against the framing rules and the size limit before any of its
    /// payload is needed, so a frame we would refuse is refused now. Returns the payload length.
    fn check_header(&self, header: &Header) -> Result<usize, WsError> {
        match header.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                if !header.fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                if header.payload_len > MAX_CONTROL_PAYLOAD_BYTES as u64 {
                    return Err(WsError::Protocol("control frame payload over 125 bytes"));
                }
            }
            Opcode::Continuation => {
                if self.partial.is_none() {
                    return Err(WsError::Protocol(
                        "continuation with no message in progress",
                    ));
                }
            }
            Opcode::Text | Opcode::Binary => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol("new message before the last one ended"));
                }
            }
        }
        let room = if header.opcode.is_control() {
            MAX_CONTROL_PAYLOAD_BYTES
        } else {
            self.max_message.saturating_sub(self.message.len())
        };
        match usize::try_from(header.payload_len) {
            Ok(len) if len <= room => Ok(len),
            _ => Err(WsError::TooBig),
        }
    }

    /// Starts a fragmented message with its first, non-final fragment.
    fn begin(&mut self, kind: Kind, payload: &[u8]) -> Result<(), WsError> {
        self.partial = Some(kind);
        self.message.extend_from_slice(payload);
        self.check_utf8_so_far()
    }

    /// Appends a continuation fragment; on the final one, returns the whole message.
    fn continue_message(&mut self, payload: &[u8], fin: bool) -> Result<Option<Msg<'_>>, WsError> {
        self.message.extend_from_slice(payload);
        if !fin {
            self.check_utf8_so_far()?;
            return Ok(None);
        }
        self.delivered = true;
        match self.partial {
            Some(Kind::Text) => Ok(Some(Msg::Text(to_str(&self.message)?))),
            _ => Ok(Some(Msg::Binary(&self.message))),
        }
    }

    /// For a text message in progress, checks the bytes received since the last check.
    /// A multi-byte character cut at the end of a fragment is not an error: it is left
    /// unchecked until the next fragment completes it.
    fn check_utf8_so_far(&mut self) -> Result<(), WsError> {
        if self.partial != Some(Kind::Text) {
            return Ok(());
        }
        let unchecked = self.message.get(self.utf8_checked..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.utf8_checked = self.message.len(),
            Err(e) if e.error_len().is_none() => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(WsError::BadUtf8),
        }
        Ok(())
    }

    /// Forgets the message in progress and gives its memory back.
    fn reset(&mut self) {
        self.partial = None;
        self.message = Vec::new();
        self.utf8_checked = 0;
        self.delivered = false;
    }
}

/// Parses the client frame header at the front of `buf` (RFC 6455 §5.2), or `None` while it
/// has not fully arrived. Only the header is read: the payload may be absent.
///
/// Rejects what no client frame may carry whatever its opcode, as soon as the byte showing it
/// has arrived: a reserved opcode, RSV bits (no extension is ever negotiated), no mask, and a
/// 64-bit length with its top bit set. Lengths need not use the shortest form, as in
/// tungstenite and browsers. Limits that depend on the opcode or the reader's state are
/// [`WsReader::check_header`]'s.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsError> {
    let [first, second, rest @ ..] = buf else {
        return Ok(None);
    };
    let opcode = Opcode::from_bits(*first).ok_or(WsError::Protocol("reserved opcode"))?;
    if first & RSV_BITS != 0 {
        return Err(WsError::Protocol(
            "RSV bit set with no extension negotiated",
        ));
    }
    if second & MASK_BIT == 0 {
        return Err(WsError::Protocol("unmasked client frame"));
    }
    let (payload_len, rest) = match second & LEN_BITS {
        LEN_16_BIT => {
            let Some((len, rest)) = rest.split_first_chunk() else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes(*len)), rest)
        }
        LEN_64_BIT => {
            let Some((len, rest)) = rest.split_first_chunk() else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(*len);
            if len & LEN_64_TOP_BIT != 0 {
                return Err(WsError::Protocol("64-bit length with the top bit set"));
            }
            (len, rest)
        }
        len => (u64::from(len), rest),
    };
    let Some((mask, payload)) = rest.split_first_chunk() else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: first & FIN_BIT != 0,
        opcode,
        mask: *mask,
        // `payload` is a suffix of `buf`, so this is the header's length.
        header_len: buf.len() - payload.len(),
        payload_len,
    }))
}

/// Parses a close frame's payload: empty, or a valid 2-byte code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Msg<'_>, WsError> {
    match payload {
        [] => Ok(Msg::Close {
            code: None,
            reason: "",
        }),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            Ok(Msg::Close {
                code: Some(code),
                reason: to_str(reason)?,
            })
        }
        [_] => Err(WsError::Protocol("close payload of 1 byte")),
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4, as Autobahn checks it):
/// the defined codes that may appear on the wire, and the registered and private ranges.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Checks UTF-8, mapping the failure to the close code the RFC asks for.
fn to_str(bytes: &[u8]) -> Result<&str, WsError> {
    std::str::from_utf8(bytes).map_err(|_| WsError::BadUtf8)
}

/// XORs a payload with its 4-byte masking key (RFC 6455 §5.3).
fn unmask(payload: &mut [u8], mask: [u8; MASK_KEY_BYTES]) {
    for (byte, key) in payload.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// Appends a final, unmasked text frame carrying `payload`, which the caller keeps UTF-8.
pub fn encode_text(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(
        std::str::from_utf8(payload).is_ok(),
        "text frame must be UTF-8"
    );
    push_header(out, Opcode::Text, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a pong answering a ping with this payload (at most 125 bytes, as any ping's).
pub fn encode_pong(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD_BYTES);
    push_header(out, Opcode::Pong, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason`, the reason cut at a character boundary
/// to fit a control frame's 125 bytes.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(MAX_CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.get(..cut).unwrap_or_default();
    push_header(out, Opcode::Close, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// Appends the 2-, 4- or 10-byte header of a final, unmasked frame, reserving room for
/// its payload.
fn push_header(out: &mut Vec<u8>, opcode: Opcode, payload_len: usize) {
    out.reserve(MAX_SERVER_HEADER_BYTES + payload_len);
    out.push(FIN_BIT | opcode as u8);
    if payload_len <= MAX_7BIT_LEN {
        out.push(payload_len as u8);
    } else if let Ok(len16) = u16::try_from(payload_len) {
        out.push(LEN_16_BIT);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(LEN_64_BIT);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// The message limit of most tests (the server's is its config's).
    const TEST_MAX_MESSAGE_BYTES: usize = 64 * 1024;

    /// A masked client frame with the given first byte (FIN, RSV, opcode) and payload.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let len = payload.len();
        if len <= 125 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        let mut body = payload.to_vec();
        unmask(&mut body, MASK);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one frame and returns `used` and an owned copy of the message for easy asserts.
    fn decode(
        reader: &mut WsReader,
        buf: &mut [u8],
    ) -> Result<Option<(usize, Option<Owned>)>, WsError> {
        match reader.next(buf)? {
            Next::Incomplete => Ok(None),
            Next::Frame { used, msg } => Ok(Some((used, msg.map(Owned::from)))),
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>, String),
    }

    impl From<Msg<'_>> for Owned {
        fn from(msg: Msg<'_>) -> Self {
            match msg {
                Msg::Text(t) => Owned::Text(t.to_owned()),
                Msg::Binary(b) => Owned::Binary(b.to_vec()),
                Msg::Ping(p) => Owned::Ping(p.to_vec()),
                Msg::Pong => Owned::Pong,
                Msg::Close { code, reason } => Owned::Close(code, reason.to_owned()),
            }
        }
    }

    /// Feeds all frames in `bytes` in order and collects every decoded message.
    fn decode_all(reader: &mut WsReader, bytes: &[u8]) -> Result<Vec<Owned>, WsError> {
        let mut buf = bytes.to_vec();
        let mut out = Vec::new();
        while !buf.is_empty() {
            match decode(reader, &mut buf)? {
                None => panic!("incomplete with {} bytes left", buf.len()),
                Some((used, msg)) => {
                    out.extend(msg);
                    buf.drain(..used);
                }
            }
        }
        Ok(out)
    }

    /// Decodes an unmasked server frame: (first byte, payload).
    fn server_frame(bytes: &[u8]) -> (u8, &[u8]) {
        let (len, start) = match bytes[1] {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => {
                assert!(n < 126, "server frames are unmasked");
                (n as usize, 2)
            }
        };
        assert_eq!(bytes.len(), start + len, "exactly one frame");
        (bytes[0], &bytes[start..])
    }

    fn reader() -> WsReader {
        WsReader::new(TEST_MAX_MESSAGE_BYTES)
    }

    #[test]
    fn rfc_single_masked_text_frame() {
        let mut buf = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut r = reader();
        assert_eq!(
            r.next(&mut buf),
            Ok(Next::Frame {
                used: 11,
                msg: Some(Msg::Text("Hello"))
            })
        );
    }

    #[test]
    fn rfc_fragmented_hello() {
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x80, b"lo"));
        let mut r = reader();
        let mut buf = bytes.clone();
        assert_eq!(decode(&mut r, &mut buf), Ok(Some((9, None))));
        assert!(r.partial.is_some());
        buf.drain(..9);
        assert_eq!(
            decode(&mut r, &mut buf),
            Ok(Some((8, Some(Owned::Text("Hello".into())))))
        );
        // The message's memory is given back on the next call.
        assert_eq!(r.next(&mut []), Ok(Next::Incomplete));
        assert_eq!(r.message.capacity(), 0);
        assert!(r.partial.is_none());
    }

    #[test]
    fn rfc_ping_and_pong() {
        let mut r = reader();
        assert_eq!(
            decode_all(&mut r, &client_frame(0x89, b"Hello")),
            Ok(vec![Owned::Ping(b"Hello".to_vec())])
        );
        assert_eq!(
            decode_all(&mut r, &client_frame(0x8A, b"Hello")),
            Ok(vec![Owned::Pong])
        );
    }

    #[test]
    fn sixteen_bit_length_256_bytes() {
        let payload = vec![0xAB; 256];
        let bytes = client_frame(0x82, &payload);
        assert_eq!(&bytes[..4], &[0x82, 0xFE, 0x01, 0x00]);
        let mut buf = bytes.clone();
        assert_eq!(
            decode(&mut reader(), &mut buf),
            Ok(Some((4 + 4 + 256, Some(Owned::Binary(payload)))))
        );
    }

    #[test]
    fn sixty_four_bit_length_64_kib() {
        let payload = vec![0x5A; 65536];
        let bytes = client_frame(0x82, &payload);
        assert_eq!(&bytes[..10], &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut buf = bytes.clone();
        assert_eq!(
            decode(&mut reader(), &mut buf),
            Ok(Some((10 + 4 + 65536, Some(Owned::Binary(payload)))))
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_untouched() {
        let bytes = client_frame(0x81, "héllo, 世界".as_bytes());
        let mut r = reader();
        for end in 0..bytes.len() {
            let mut prefix = bytes[..end].to_vec();
            assert_eq!(r.next(&mut prefix), Ok(Next::Incomplete), "prefix {end}");
            assert_eq!(prefix, bytes[..end], "prefix {end} was modified");
        }
        let mut buf = bytes.clone();
        assert_eq!(
            decode(&mut r, &mut buf),
            Ok(Some((bytes.len(), Some(Owned::Text("héllo, 世界".into())))))
        );
    }

    #[test]
    fn only_one_frame_per_call() {
        let mut bytes = client_frame(0x81, b"one");
        bytes.extend(client_frame(0x81, b"two"));
        let mut r = reader();
        let mut buf = bytes.clone();
        assert_eq!(
            decode(&mut r, &mut buf),
            Ok(Some((9, Some(Owned::Text("one".into())))))
        );
        assert_eq!(
            decode_all(&mut r, &bytes),
            Ok(vec![Owned::Text("one".into()), Owned::Text("two".into())])
        );
    }

    #[test]
    fn empty_text_frame() {
        assert_eq!(
            decode_all(&mut reader(), &client_frame(0x81, b"")),
            Ok(vec![Owned::Text(String::new())])
        );
    }

    #[test]
    fn unmasked_frame_is_refused() {
        let mut buf = [0x81, 0x02, b'h', b'i'];
        assert_eq!(
            reader().next(&mut buf),
            Err(WsError::Protocol("unmasked client frame"))
        );
    }

    #[test]
    fn rsv_bits_are_refused() {
        for rsv in [0x40, 0x20, 0x10] {
            let mut buf = client_frame(0x81 | rsv, b"hi");
            assert!(
                matches!(reader().next(&mut buf), Err(WsError::Protocol(_))),
                "rsv {rsv:#x}"
            );
        }
    }

    #[test]
    fn reserved_opcodes_are_refused() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            let mut buf = client_frame(0x80 | op, b"");
            assert_eq!(
                reader().next(&mut buf),
                Err(WsError::Protocol("reserved opcode")),
                "opcode {op:#x}"
            );
        }
    }

    #[test]
    fn fragmented_control_frames_are_refused() {
        for op in [0x8, 0x9, 0xA] {
            let mut buf = client_frame(op, b"");
            assert_eq!(
                reader().next(&mut buf),
                Err(WsError::Protocol("fragmented control frame")),
                "opcode {op:#x}"
            );
        }
    }

    #[test]
    fn oversized_control_frames_are_refused_from_the_header() {
        let mut ok = client_frame(0x89, &[7; 125]);
        assert!(matches!(
            reader().next(&mut ok),
            Ok(Next::Frame { used: 131, .. })
        ));
        let bytes = client_frame(0x89, &[7; 126]);
        // The 4-byte header and mask suffice; the payload has not arrived.
        let mut header_only = bytes[..8].to_vec();
        assert_eq!(
            reader().next(&mut header_only),
            Err(WsError::Protocol("control frame payload over 125 bytes"))
        );
    }

    #[test]
    fn continuation_without_start_is_refused() {
        for first in [0x00, 0x80] {
            let mut buf = client_frame(first, b"x");
            assert_eq!(
                reader().next(&mut buf),
                Err(WsError::Protocol(
                    "continuation with no message in progress"
                ))
            );
        }
    }

    #[test]
    fn new_message_inside_fragmented_one_is_refused() {
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x81, b"b"));
        assert_eq!(
            decode_all(&mut reader(), &bytes),
            Err(WsError::Protocol("new message before the last one ended"))
        );
        let mut bytes = client_frame(0x02, b"a");
        bytes.extend(client_frame(0x02, b"b"));
        assert!(matches!(
            decode_all(&mut reader(), &bytes),
            Err(WsError::Protocol(_))
        ));
    }

    #[test]
    fn control_frames_between_fragments_are_returned_at_once() {
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x89, b"are you there"));
        bytes.extend(client_frame(0x8A, b""));
        bytes.extend(client_frame(0x00, b"l"));
        bytes.extend(client_frame(0x80, b"o"));
        assert_eq!(
            decode_all(&mut reader(), &bytes),
            Ok(vec![
                Owned::Ping(b"are you there".to_vec()),
                Owned::Pong,
                Owned::Text("Hello".into())
            ])
        );
    }

    #[test]
    fn fragmented_binary_message() {
        let mut bytes = client_frame(0x02, &[1, 2]);
        bytes.extend(client_frame(0x00, &[]));
        bytes.extend(client_frame(0x80, &[3]));
        assert_eq!(
            decode_all(&mut reader(), &bytes),
            Ok(vec![Owned::Binary(vec![1, 2, 3])])
        );
    }

    #[test]
    fn reader_is_reusable_after_a_fragmented_message() {
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x80, b"b"));
        bytes.extend(client_frame(0x01, b"c"));
        bytes.extend(client_frame(0x80, b"d"));
        bytes.extend(client_frame(0x81, b"e"));
        assert_eq!(
            decode_all(&mut reader(), &bytes),
            Ok(vec![
                Owned::Text("ab".into()),
                Owned::Text("cd".into()),
                Owned::Text("e".into())
            ])
        );
    }

    #[test]
    fn single_frame_over_the_limit_is_too_big() {
        let mut r = WsReader::new(10);
        let mut ok = client_frame(0x82, &[0; 10]);
        assert!(matches!(r.next(&mut ok), Ok(Next::Frame { used: 16, .. })));
        let bytes = client_frame(0x82, &[0; 11]);
        let mut header_only = bytes[..6].to_vec();
        assert_eq!(r.next(&mut header_only), Err(WsError::TooBig));
    }

    #[test]
    fn fragments_over_the_limit_are_too_big() {
        let mut r = WsReader::new(10);
        let mut first = client_frame(0x01, b"123456");
        assert_eq!(decode(&mut r, &mut first), Ok(Some((12, None))));
        let bytes = client_frame(0x80, b"12345");
        let mut header_only = bytes[..6].to_vec();
        assert_eq!(r.next(&mut header_only), Err(WsError::TooBig));
        // Exactly at the limit is fine.
        let mut r = WsReader::new(10);
        let mut bytes = client_frame(0x01, b"123456");
        bytes.extend(client_frame(0x80, b"7890"));
        assert_eq!(
            decode_all(&mut r, &bytes),
            Ok(vec![Owned::Text("1234567890".into())])
        );
    }

    #[test]
    fn huge_declared_length_fails_at_once() {
        // 1 GB, then the largest legal length, announced in a 64-bit length; only the header
        // is present.
        for len in [1u64 << 30, u64::MAX >> 1] {
            let mut buf = vec![0x82, 0xFF];
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&MASK);
            assert_eq!(reader().next(&mut buf), Err(WsError::TooBig), "len {len}");
        }
    }

    /// A header of a masked client frame: first byte, the length field's bytes, [`MASK`].
    fn header_bytes(first: u8, len_field: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        out.extend_from_slice(len_field);
        out.extend_from_slice(&MASK);
        out
    }

    #[test]
    fn header_with_7_bit_length() {
        let bytes = header_bytes(0x81, &[0x80 | 5]);
        assert_eq!(
            parse_header(&bytes),
            Ok(Some(Header {
                fin: true,
                opcode: Opcode::Text,
                mask: MASK,
                header_len: 6,
                payload_len: 5,
            }))
        );
        // 125 is the longest 7-bit length; the payload need not be present.
        let bytes = header_bytes(0x02, &[0x80 | 125]);
        let header = parse_header(&bytes).unwrap().unwrap();
        assert_eq!((header.fin, header.opcode), (false, Opcode::Binary));
        assert_eq!((header.header_len, header.payload_len), (6, 125));
    }

    #[test]
    fn header_with_16_bit_length() {
        let bytes = header_bytes(0x82, &[0x80 | 126, 0x01, 0x00]);
        assert_eq!(
            parse_header(&bytes),
            Ok(Some(Header {
                fin: true,
                opcode: Opcode::Binary,
                mask: MASK,
                header_len: 8,
                payload_len: 256,
            }))
        );
        let bytes = header_bytes(0x82, &[0x80 | 126, 0xFF, 0xFF]);
        assert_eq!(parse_header(&bytes).unwrap().unwrap().payload_len, 65535);
    }

    #[test]
    fn header_with_64_bit_length() {
        let bytes = header_bytes(0x00, &[0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            parse_header(&bytes),
            Ok(Some(Header {
                fin: false,
                opcode: Opcode::Continuation,
                mask: MASK,
                header_len: 14,
                payload_len: 65536,
            }))
        );
        let mut len_field = vec![0x80 | 127];
        len_field.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        let bytes = header_bytes(0x82, &len_field);
        assert_eq!(
            parse_header(&bytes).unwrap().unwrap().payload_len,
            u64::MAX >> 1
        );
    }

    #[test]
    fn header_lengths_need_not_be_minimal() {
        let bytes = header_bytes(0x81, &[0x80 | 126, 0, 5]);
        assert_eq!(parse_header(&bytes).unwrap().unwrap().payload_len, 5);
        let bytes = header_bytes(0x81, &[0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(parse_header(&bytes).unwrap().unwrap().payload_len, 5);
    }

    #[test]
    fn header_split_anywhere_is_incomplete() {
        for len_field in [
            &[0x80 | 5][..],
            &[0x80 | 126, 0x01, 0x00],
            &[0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0],
        ] {
            let bytes = header_bytes(0x81, len_field);
            for end in 0..bytes.len() {
                assert_eq!(parse_header(&bytes[..end]), Ok(None), "{len_field:?} {end}");
            }
            assert_eq!(
                parse_header(&bytes).unwrap().unwrap().header_len,
                bytes.len()
            );
        }
    }

    #[test]
    fn header_64_bit_length_with_top_bit_is_refused() {
        for len in [1u64 << 63, u64::MAX] {
            let mut len_field = vec![0x80 | 127];
            len_field.extend_from_slice(&len.to_be_bytes());
            let bytes = header_bytes(0x82, &len_field);
            let refused = WsError::Protocol("64-bit length with the top bit set");
            assert_eq!(parse_header(&bytes), Err(refused), "len {len}");
            // As soon as the length has arrived, before the mask.
            assert_eq!(parse_header(&bytes[..10]), Err(refused), "len {len}");
            let mut buf = bytes.clone();
            assert_eq!(reader().next(&mut buf), Err(refused), "len {len}");
        }
    }

    #[test]
    fn header_opcodes() {
        for bits in 0..=0x0F {
            let opcode = Opcode::from_bits(bits);
            let parsed =
                parse_header(&header_bytes(0x80 | bits, &[0x80])).map(|h| h.map(|h| h.opcode));
            match opcode {
                Some(op) => {
                    assert_eq!(op as u8, bits);
                    assert_eq!(op.is_control(), bits >= 0x8, "{bits:#x}");
                    assert_eq!(parsed, Ok(Some(op)), "{bits:#x}");
                }
                None => {
                    assert!(matches!(bits, 0x3..=0x7 | 0xB..=0xF), "{bits:#x}");
                    assert_eq!(
                        parsed,
                        Err(WsError::Protocol("reserved opcode")),
                        "{bits:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn header_refusals_need_only_the_first_two_bytes() {
        assert_eq!(
            parse_header(&[0x83, 0x80]),
            Err(WsError::Protocol("reserved opcode"))
        );
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            assert_eq!(
                parse_header(&[0x81 | rsv, 0x80]),
                Err(WsError::Protocol(
                    "RSV bit set with no extension negotiated"
                )),
                "rsv {rsv:#x}"
            );
        }
        for len in [0x00, 0x05, 126, 127] {
            assert_eq!(
                parse_header(&[0x81, len]),
                Err(WsError::Protocol("unmasked client frame")),
                "len {len}"
            );
        }
        assert_eq!(parse_header(&[0x83]), Ok(None));
    }

    #[test]
    fn oversized_control_frames_in_longer_length_forms_are_refused() {
        let over = Err(WsError::Protocol("control frame payload over 125 bytes"));
        for op in [0x88, 0x89, 0x8A] {
            let mut buf = header_bytes(op, &[0x80 | 126, 0, 126]);
            assert_eq!(reader().next(&mut buf), over, "opcode {op:#x}");
            let mut buf = header_bytes(op, &[0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0]);
            assert_eq!(reader().next(&mut buf), over, "opcode {op:#x}");
        }
        // A short ping in a needlessly long form is still fine.
        let mut buf = header_bytes(0x89, &[0x80 | 126, 0, 0]);
        assert_eq!(
            reader().next(&mut buf),
            Ok(Next::Frame {
                used: 8,
                msg: Some(Msg::Ping(b""))
            })
        );
    }

    #[test]
    fn invalid_utf8_single_frame() {
        let mut buf = client_frame(0x81, &[b'a', 0xFF, b'b']);
        assert_eq!(reader().next(&mut buf), Err(WsError::BadUtf8));
        assert_eq!(WsError::BadUtf8.close_code(), 1007);
    }

    #[test]
    fn invalid_utf8_fails_on_the_first_bad_fragment() {
        let mut r = reader();
        let mut bad = client_frame(0x01, &[b'o', b'k', 0xC0, 0x80]);
        assert_eq!(r.next(&mut bad), Err(WsError::BadUtf8));
        // Bad bytes in a middle fragment fail there, before the message ends.
        let mut r = reader();
        let mut first = client_frame(0x01, b"fine");
        assert_eq!(decode(&mut r, &mut first), Ok(Some((10, None))));
        let mut middle = client_frame(0x00, &[0xED, 0xA0, 0x80]); // a UTF-16 surrogate
        assert_eq!(r.next(&mut middle), Err(WsError::BadUtf8));
    }

    #[test]
    fn multibyte_char_split_across_fragments_is_fine() {
        let ni = "你".as_bytes(); // E4 BD A0
        let mut bytes = client_frame(0x01, &ni[..1]);
        bytes.extend(client_frame(0x00, &ni[1..2]));
        bytes.extend(client_frame(0x80, &[ni[2], b'!']));
        assert_eq!(
            decode_all(&mut reader(), &bytes),
            Ok(vec![Owned::Text("你!".into())])
        );
    }

    #[test]
    fn truncated_char_at_the_end_of_the_message_is_bad() {
        let ni = "你".as_bytes();
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x80, &ni[..2]));
        assert_eq!(decode_all(&mut reader(), &bytes), Err(WsError::BadUtf8));
    }

    #[test]
    fn binary_fragments_are_not_utf8_checked() {
        let mut bytes = client_frame(0x02, &[0xFF]);
        bytes.extend(client_frame(0x80, &[0xFE]));
        assert_eq!(
            decode_all(&mut reader(), &bytes),
            Ok(vec![Owned::Binary(vec![0xFF, 0xFE])])
        );
    }

    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        p
    }

    #[test]
    fn close_frames() {
        let mut r = reader();
        assert_eq!(
            decode_all(&mut r, &client_frame(0x88, b"")),
            Ok(vec![Owned::Close(None, String::new())])
        );
        assert_eq!(
            decode_all(&mut r, &client_frame(0x88, &close_payload(1000, b"bye"))),
            Ok(vec![Owned::Close(Some(1000), "bye".into())])
        );
        assert_eq!(
            decode_all(
                &mut r,
                &client_frame(0x88, &close_payload(4999, "再见".as_bytes()))
            ),
            Ok(vec![Owned::Close(Some(4999), "再见".into())])
        );
    }

    #[test]
    fn close_codes_valid_and_invalid() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ];
        for code in valid {
            let mut buf = client_frame(0x88, &close_payload(code, b""));
            assert!(
                matches!(reader().next(&mut buf), Ok(Next::Frame { .. })),
                "code {code}"
            );
        }
        let invalid = [
            0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in invalid {
            let mut buf = client_frame(0x88, &close_payload(code, b""));
            assert_eq!(
                reader().next(&mut buf),
                Err(WsError::Protocol("invalid close code")),
                "code {code}"
            );
        }
    }

    #[test]
    fn close_with_one_byte_payload_is_refused() {
        let mut buf = client_frame(0x88, &[0x03]);
        assert_eq!(
            reader().next(&mut buf),
            Err(WsError::Protocol("close payload of 1 byte"))
        );
    }

    #[test]
    fn close_with_bad_utf8_reason_is_refused() {
        let mut buf = client_frame(0x88, &close_payload(1000, &[0xCE, 0xBA, 0xE1, 0xBD]));
        assert_eq!(reader().next(&mut buf), Err(WsError::BadUtf8));
    }

    #[test]
    fn close_codes_of_errors() {
        assert_eq!(WsError::Protocol("x").close_code(), close::PROTOCOL);
        assert_eq!(WsError::BadUtf8.close_code(), close::BAD_DATA);
        assert_eq!(WsError::TooBig.close_code(), close::TOO_BIG);
        assert_eq!(WsError::TooBig.to_string(), "WebSocket message too big");
        assert_eq!(
            WsError::Protocol("unmasked client frame").to_string(),
            "WebSocket protocol error: unmasked client frame"
        );
    }

    #[test]
    fn encode_text_small() {
        let mut out = Vec::new();
        encode_text(&mut out, b"Hello");
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    }

    #[test]
    fn encode_text_lengths_and_forms() {
        for (len, header_len) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (256, 4),
            (65535, 4),
            (65536, 10),
            (70000, 10),
        ] {
            let payload = vec![b'x'; len];
            let mut out = Vec::new();
            encode_text(&mut out, &payload);
            assert_eq!(out.len(), header_len + len, "len {len}");
            let (first, body) = server_frame(&out);
            assert_eq!(first, 0x81);
            assert_eq!(body, &payload[..]);
        }
    }

    #[test]
    fn encode_70000_bytes_uses_the_64_bit_length() {
        let mut out = Vec::new();
        encode_text(&mut out, &[b'a'; 70000]);
        assert_eq!(&out[..10], &[0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn encode_appends() {
        let mut out = b"previous".to_vec();
        encode_text(&mut out, b"hi");
        assert_eq!(out, b"previous\x81\x02hi");
    }

    #[test]
    fn encode_pong_echoes_the_ping() {
        let mut buf = client_frame(0x89, b"stay");
        let mut out = Vec::new();
        if let Ok(Next::Frame {
            msg: Some(Msg::Ping(p)),
            ..
        }) = reader().next(&mut buf)
        {
            encode_pong(&mut out, p);
        }
        assert_eq!(server_frame(&out), (0x8A, &b"stay"[..]));
    }

    #[test]
    fn encode_close_round_trips() {
        let mut out = Vec::new();
        encode_close(&mut out, close::TOO_BIG, "too big");
        let (first, body) = server_frame(&out);
        assert_eq!(first, 0x88);
        assert_eq!(
            parse_close(body),
            Ok(Msg::Close {
                code: Some(1009),
                reason: "too big"
            })
        );
    }

    #[test]
    fn encode_close_cuts_a_long_reason_at_a_char_boundary() {
        let reason = "你".repeat(50); // 150 bytes
        let mut out = Vec::new();
        encode_close(&mut out, close::NORMAL, &reason);
        let (first, body) = server_frame(&out);
        assert_eq!(first, 0x88);
        assert!(body.len() <= MAX_CONTROL_PAYLOAD_BYTES);
        assert_eq!(
            parse_close(body),
            Ok(Msg::Close {
                code: Some(1000),
                reason: &"你".repeat(41)
            })
        );
    }

    #[test]
    fn server_and_client_encoders_agree() {
        // Our encoder and the test's client encoder agree on the payload framing.
        let mut out = Vec::new();
        encode_text(&mut out, "Grüße".as_bytes());
        let (_, body) = server_frame(&out);
        assert_eq!(
            decode_all(&mut reader(), &client_frame(0x81, body)),
            Ok(vec![Owned::Text("Grüße".into())])
        );
    }
}
