//! RFC 6455 as a client speaks it, on byte slices only: the upgrade request and a check of
//! its answer, masked frames out, and an incremental decoder of the server's unmasked
//! frames in. No sockets and no clock, so every rule is a unit test.
//!
//! The decoder is *check, then parse*, like the line splitter: [`next`] looks at the front
//! of a buffer and returns [`Next::Incomplete`] (nothing consumed: the caller keeps the
//! bytes and calls again with more) or one whole frame and its length. A frame bigger than
//! the caller's limit fails as soon as its header has arrived, so the bytes a user carries
//! between reads stay bounded.
//!
//! The server never fragments a message and sends no frames imbench must act on besides
//! text, ping (answered with a pong by the caller) and close (the end of the connection),
//! so a fragment is an error here rather than something to reassemble.

use std::fmt;

/// Opcodes (RFC 6455 §5.2).
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

const FIN_BIT: u8 = 0x80;
const RSV_BITS: u8 = 0x70;
const MASK_BIT: u8 = 0x80;
/// Payload lengths up to this fit the 7-bit length field.
const MAX_7BIT_LEN: usize = 125;
/// The 7-bit length values announcing a 16-bit and a 64-bit length.
const LEN_16_BIT: u8 = 126;
const LEN_64_BIT: u8 = 127;
/// The largest payload of a control frame (close, ping, pong).
const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;

/// The masking key of every frame imbench sends. RFC 6455 asks for an unpredictable key to
/// keep proxies' caches from being poisoned; on loopback there is no proxy, and a fixed key
/// that is not zero still makes the server unmask every byte, as it must for real clients.
pub const MASK: [u8; 4] = [0x5a, 0xc3, 0x0f, 0x96];

/// The `Sec-WebSocket-Key` of every upgrade (RFC 6455's own example; any base64 of 16 bytes
/// will do for a benchmark).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`KEY`]: base64(SHA-1(KEY + the RFC's GUID)), from §1.3.
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// What a successful answer starts with.
const SWITCHING: &[u8] = b"HTTP/1.1 101";
/// Longest piece of a refused answer quoted in an error.
const QUOTED_BYTES: usize = 120;

/// Appends the HTTP/1.1 upgrade request for `path` on server `host` (`ip:port`).
pub fn upgrade_request(out: &mut Vec<u8>, host: &str, path: &str) {
    out.extend_from_slice(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// What the front of the server's first bytes says about the upgrade.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Not the whole head yet, and nothing wrong so far.
    Incomplete,
    /// `101 Switching Protocols` with the right accept key; frames start at `used`.
    Accepted { used: usize },
    /// Anything else, as a sentence for the error message.
    Refused(String),
}

/// Checks the server's answer to [`upgrade_request`]; `max` bounds the head's length. A
/// server that does not speak HTTP (a line-protocol port greets with its own text) is
/// refused as soon as its first bytes differ from `HTTP/1.1 101`, without waiting for more.
pub fn handshake(buf: &[u8], max: usize) -> Handshake {
    let seen = buf.len().min(SWITCHING.len());
    let head_end = find(buf, b"\r\n\r\n");
    if buf[..seen] != SWITCHING[..seen] {
        let first_line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
        let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
        let quoted = &first_line[..first_line.len().min(QUOTED_BYTES)];
        return Handshake::Refused(format!(
            "it answered {:?} instead of HTTP/1.1 101",
            String::from_utf8_lossy(quoted)
        ));
    }
    let Some(end) = head_end else {
        return if buf.len() >= max {
            Handshake::Refused(format!("its 101 response is longer than {max} bytes"))
        } else {
            Handshake::Incomplete
        };
    };
    let head = &buf[..end];
    let accepted = head.split(|&b| b == b'\n').skip(1).any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                line[..colon].eq_ignore_ascii_case(b"sec-websocket-accept")
                    && line[colon + 1..].trim_ascii() == ACCEPT
            }
            None => false,
        }
    });
    if !accepted {
        return Handshake::Refused("its 101 response has no valid Sec-WebSocket-Accept".into());
    }
    Handshake::Accepted { used: end + 4 }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends a final, masked text frame carrying `payload` (which the caller keeps UTF-8).
pub fn encode_text(out: &mut Vec<u8>, payload: &[u8]) {
    encode(out, OP_TEXT, payload);
}

/// Appends a masked pong answering a ping with this payload (at most 125 bytes).
pub fn encode_pong(out: &mut Vec<u8>, payload: &[u8]) {
    encode(out, OP_PONG, payload);
}

fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.push(FIN_BIT | opcode);
    if len <= MAX_7BIT_LEN {
        out.push(MASK_BIT | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(MASK_BIT | LEN_16_BIT);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(MASK_BIT | LEN_64_BIT);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= MASK[i & 3];
    }
}

/// One frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole text message.
    Text(&'a [u8]),
    /// A binary message (the server sends none; ignored).
    Binary,
    /// A ping: answer with [`encode_pong`] and this payload.
    Ping(&'a [u8]),
    /// A pong (ignored).
    Pong,
    /// The server is closing: its code (if any) and reason.
    Close { code: Option<u16>, reason: &'a [u8] },
}

/// What [`next`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// Not a whole frame yet; nothing consumed.
    Incomplete,
    /// One frame, `used` bytes with its header.
    Frame { frame: Frame<'a>, used: usize },
}

/// A frame no server may send to a client (RFC 6455 §5), or one too big for imbench.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Server frames are never masked (§5.1).
    Masked,
    /// An RSV bit without a negotiated extension.
    Reserved,
    /// An opcode RFC 6455 does not define.
    Opcode(u8),
    /// A fragment (not final, or a continuation): the server never fragments.
    Fragmented,
    /// A control frame over 125 bytes, or a close frame with a 1-byte payload.
    BadControl,
    /// The whole frame would be more than `max` bytes.
    TooBig { len: u64, max: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Masked => f.write_str("a masked frame"),
            FrameError::Reserved => f.write_str("a frame with reserved bits set"),
            FrameError::Opcode(op) => write!(f, "a frame with reserved opcode {op:#x}"),
            FrameError::Fragmented => f.write_str("a fragmented message"),
            FrameError::BadControl => f.write_str("a malformed control frame"),
            FrameError::TooBig { len, max } => {
                write!(f, "a frame of {len} payload bytes (at most {max} expected)")
            }
        }
    }
}

/// Decodes the frame at the front of `buf`, if it is all there; `max` bounds a whole
/// frame (header and payload).
///
/// # Errors
/// A frame a server must not send, or one over `max` bytes (as soon as its header is in).
pub fn next(buf: &[u8], max: usize) -> Result<Next<'_>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(Next::Incomplete);
    };
    if b1 & MASK_BIT != 0 {
        return Err(FrameError::Masked);
    }
    if b0 & RSV_BITS != 0 {
        return Err(FrameError::Reserved);
    }
    let (fin, opcode) = (b0 & FIN_BIT != 0, b0 & 0x0F);
    let (header, len) = match b1 & 0x7F {
        LEN_16_BIT => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(Next::Incomplete),
        },
        LEN_64_BIT => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0; 8];
                be.copy_from_slice(b);
                (10, u64::from_be_bytes(be))
            }
            None => return Ok(Next::Incomplete),
        },
        short => (2, u64::from(short)),
    };
    let control = opcode & 0x8 != 0;
    match opcode {
        OP_TEXT | OP_BINARY if !fin => return Err(FrameError::Fragmented),
        OP_CONTINUATION => return Err(FrameError::Fragmented),
        OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || len > MAX_CONTROL_PAYLOAD_BYTES as u64 || (opcode == OP_CLOSE && len == 1) {
                return Err(FrameError::BadControl);
            }
        }
        op => return Err(FrameError::Opcode(op)),
    }
    if !control && (header as u64).saturating_add(len) > max as u64 {
        return Err(FrameError::TooBig { len, max });
    }
    // Bounded by `max` (or 125) above, so it fits a usize.
    let used = header + len as usize;
    let Some(payload) = buf.get(header..used) else {
        return Ok(Next::Incomplete);
    };
    let frame = match opcode {
        OP_TEXT => Frame::Text(payload),
        OP_BINARY => Frame::Binary,
        OP_PING => Frame::Ping(payload),
        OP_PONG => Frame::Pong,
        _ => match payload {
            [hi, lo, reason @ ..] => Frame::Close {
                code: Some(u16::from_be_bytes([*hi, *lo])),
                reason,
            },
            _ => Frame::Close {
                code: None,
                reason: &[],
            },
        },
    };
    Ok(Next::Frame { frame, used })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
    use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader};

    /// A server's (unmasked) frame, as tungstenite writes it.
    fn server_frame(opcode: OpCode, payload: &[u8], fin: bool) -> Vec<u8> {
        let mut out = Vec::new();
        TFrame::message(payload.to_vec(), opcode, fin)
            .format(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn client_frames_are_masked_and_read_back_by_tungstenite() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = Vec::new();
            encode_text(&mut out, &payload);
            let mut cursor = Cursor::new(&out);
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(header.mask, Some(MASK));
            assert_eq!(length, len as u64);
            let start = cursor.position() as usize;
            assert_eq!(out.len(), start + len, "len {len}");
            // Minimal length encoding, as RFC 6455 requires.
            let expect_header = match len {
                0..=125 => 6,
                126..=65_535 => 8,
                _ => 14,
            };
            assert_eq!(start, expect_header, "len {len}");
            let mut body = out[start..].to_vec();
            for (i, b) in body.iter_mut().enumerate() {
                *b ^= MASK[i % 4];
            }
            assert_eq!(body, payload, "len {len}");
        }
        let mut pong = Vec::new();
        encode_pong(&mut pong, b"hi");
        let (header, _) = FrameHeader::parse(&mut Cursor::new(&pong))
            .unwrap()
            .unwrap();
        assert_eq!(header.opcode, OpCode::Control(Control::Pong));
    }

    #[test]
    fn text_frames_of_every_length_form_decode_and_need_all_their_bytes() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'0' + (i % 10) as u8).collect();
            let mut buf = server_frame(OpCode::Data(Data::Text), &payload, true);
            let whole = buf.len();
            for cut in [0, 1, 2, 3, 9, whole - 1] {
                if cut < whole {
                    assert_eq!(
                        next(&buf[..cut], 1 << 20),
                        Ok(Next::Incomplete),
                        "{len}/{cut}"
                    );
                }
            }
            buf.extend_from_slice(b"\x81\x02hi");
            let Ok(Next::Frame { frame, used }) = next(&buf, 1 << 20) else {
                panic!("len {len}: no frame");
            };
            assert_eq!((frame, used), (Frame::Text(&payload[..]), whole));
            assert_eq!(
                next(&buf[used..], 1 << 20),
                Ok(Next::Frame {
                    frame: Frame::Text(b"hi"),
                    used: 4
                })
            );
        }
    }

    #[test]
    fn control_frames_decode() {
        let mut ping = Vec::new();
        TFrame::ping(b"abc".to_vec()).format(&mut ping).unwrap();
        assert_eq!(
            next(&ping, 100),
            Ok(Next::Frame {
                frame: Frame::Ping(b"abc"),
                used: 5
            })
        );
        let mut pong = Vec::new();
        TFrame::pong(Vec::new()).format(&mut pong).unwrap();
        assert!(matches!(
            next(&pong, 100),
            Ok(Next::Frame {
                frame: Frame::Pong,
                ..
            })
        ));
        let mut close = Vec::new();
        TFrame::close(Some(tungstenite::protocol::CloseFrame {
            code: 1008.into(),
            reason: "bye".into(),
        }))
        .format(&mut close)
        .unwrap();
        assert_eq!(
            next(&close, 100),
            Ok(Next::Frame {
                frame: Frame::Close {
                    code: Some(1008),
                    reason: b"bye"
                },
                used: 7
            })
        );
        assert_eq!(
            next(b"\x88\x00", 100),
            Ok(Next::Frame {
                frame: Frame::Close {
                    code: None,
                    reason: b""
                },
                used: 2
            })
        );
        // Control frames are allowed whatever the data-frame limit.
        assert!(matches!(next(&ping, 3), Ok(Next::Frame { .. })));
    }

    #[test]
    fn frames_a_server_must_not_send_are_errors() {
        assert_eq!(next(b"\x81\x82abcd", 100), Err(FrameError::Masked));
        assert_eq!(next(b"\xc1\x00", 100), Err(FrameError::Reserved));
        assert_eq!(next(b"\x83\x00", 100), Err(FrameError::Opcode(3)));
        assert_eq!(next(b"\x8b\x00", 100), Err(FrameError::Opcode(0xb)));
        assert_eq!(next(b"\x01\x01a", 100), Err(FrameError::Fragmented));
        assert_eq!(next(b"\x80\x01a", 100), Err(FrameError::Fragmented));
        assert_eq!(next(b"\x09\x00", 100), Err(FrameError::BadControl));
        assert_eq!(next(b"\x89\x7e\x00\x7e", 100), Err(FrameError::BadControl));
        assert_eq!(next(b"\x88\x01x", 100), Err(FrameError::BadControl));
    }

    #[test]
    fn a_frame_over_the_limit_fails_once_its_header_is_in() {
        assert_eq!(
            next(b"\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 4096),
            Err(FrameError::TooBig {
                len: 1 << 32,
                max: 4096
            })
        );
        assert_eq!(
            next(b"\x81\x7f\xff\xff\xff\xff\xff\xff\xff\xff", 4096),
            Err(FrameError::TooBig {
                len: u64::MAX,
                max: 4096
            })
        );
        assert_eq!(
            next(b"\x81\x05abcde", 7),
            Ok(Next::Frame {
                frame: Frame::Text(b"abcde"),
                used: 7
            })
        );
        assert_eq!(
            next(b"\x81\x06", 7),
            Err(FrameError::TooBig { len: 6, max: 7 })
        );
    }

    #[test]
    fn the_request_is_a_valid_upgrade() {
        let mut out = Vec::new();
        upgrade_request(&mut out, "127.0.0.1:9", "/ws/b12340");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /ws/b12340 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        // ACCEPT is the key's accept value (RFC 6455 §1.3's worked example).
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        assert_eq!(
            tungstenite::handshake::derive_accept_key(key.as_bytes()).as_bytes(),
            ACCEPT
        );
    }

    #[test]
    fn a_101_with_the_right_accept_key_is_accepted() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nsec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let head = ok.len() - 2;
        assert_eq!(handshake(ok, 4096), Handshake::Accepted { used: head });
        for cut in [0, 1, 5, 12, 40, head - 1] {
            assert_eq!(handshake(&ok[..cut], 4096), Handshake::Incomplete, "{cut}");
        }
        assert!(matches!(
            handshake(&ok[..head - 1], 40),
            Handshake::Refused(_)
        ));
        let wrong_key = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(
            matches!(handshake(wrong_key, 4096), Handshake::Refused(m) if m.contains("Accept"))
        );
    }

    #[test]
    fn anything_but_101_is_refused_from_its_first_bytes() {
        let Handshake::Refused(m) = handshake(b"HTTP/1.1 404 Not Found\r\n", 4096) else {
            panic!("404 accepted");
        };
        assert!(m.contains("\"HTTP/1.1 404 Not Found\""), "{m}");
        // A line-protocol server greets with its own line: refused without waiting.
        let Handshake::Refused(m) = handshake(b"[127.0.0.1:5]127.0.0.1:5:online\n", 4096) else {
            panic!("line greeting accepted");
        };
        assert!(m.contains("[127.0.0.1:5]") && m.contains("101"), "{m}");
        assert!(matches!(handshake(b"[", 4096), Handshake::Refused(_)));
        assert!(matches!(
            handshake(b"HTTP/1.0 ", 4096),
            Handshake::Refused(_)
        ));
    }
}
