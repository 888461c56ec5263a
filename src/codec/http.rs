//! HTTP/1.1 on the chat port: request heads parsed by pure functions, responses built into
//! the connection's own output buffer. No sockets, no clock.
//!
//! [`parse_head`] is *check, then parse* like the line protocol: while the head (request line
//! and headers up to the blank line) has not fully arrived it is [`Head::Incomplete`], nothing
//! is consumed, and the caller calls again with more bytes. A complete head becomes a small
//! owned [`Request`] and the number of bytes it used, so pipelined requests and a following
//! body stay in the caller's buffer. Heads are parsed by `httparse` (zero-copy, no allocation);
//! we keep only the few strings the server acts on.
//!
//! Invariants:
//! - A head over [`MAX_HEAD_BYTES`] fails ([`HttpError::HeadTooLarge`]) instead of being
//!   buffered further; a body over [`MAX_BODY_BYTES`] fails from its `Content-Length` before
//!   any of it is read. Only `Content-Length` bodies are supported: a request with any
//!   `Transfer-Encoding` is [`HttpError::Unsupported`] (RFC 7230 §3.3.1 allows a server to
//!   answer 501 to a transfer coding it does not implement).
//! - A WebSocket upgrade request (an `Upgrade` header naming `websocket`) is checked against
//!   RFC 6455 §4.2.1 here, and the outcome travels in [`Request::websocket`]: a refused
//!   handshake is still a well-framed HTTP request the caller answers with the error's status.
//! - Every response says `Content-Length` and `Connection`, so a client never has to guess
//!   where a body ends or whether the connection stays.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The longest request head accepted, request line and headers and the blank line (431 beyond).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The largest request body accepted, by its `Content-Length` (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most header lines a request may have (431 beyond).
pub const MAX_HEADERS: usize = 32;

/// The only WebSocket protocol version we speak (RFC 6455 §4.1).
const WS_VERSION: &str = "13";

/// The bytes a `Sec-WebSocket-Key` must decode to (RFC 6455 §4.1: a random 16-byte nonce).
const WS_KEY_BYTES: usize = 16;

/// The GUID appended to a client's key to derive `Sec-WebSocket-Accept` (RFC 6455 §1.3).
const WS_ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The request method, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// Any other method (the caller answers 405).
    Other,
}

/// A parsed request head, owning its few strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The raw path, before any `?`, not percent-decoded.
    pub path: String,
    /// The raw query, after the first `?`; empty if there is none.
    pub query: String,
    /// The body's length from `Content-Length`, 0 without one; at most [`MAX_BODY_BYTES`].
    pub content_length: usize,
    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Some` if the request asks to upgrade to WebSocket: the `Sec-WebSocket-Key` of a valid
    /// handshake (answer with [`switching_protocols`]), or why the handshake is refused
    /// (answer with [`HttpError::status`]).
    pub websocket: Option<Result<String, HttpError>>,
    /// The `Host` header, if any (the server's own origin is `http(s)://` and this).
    pub host: Option<String>,
    /// The `Origin` header, if any (browsers send it; other clients mostly do not).
    pub origin: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// What the front of an input buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A whole request head.
    Complete {
        /// The parsed request.
        request: Request,
        /// Bytes of the head, the blank line included; the body (if any) follows.
        used: usize,
    },
    /// No blank line yet, and still within [`MAX_HEAD_BYTES`]: wait for more bytes.
    Incomplete,
}

/// Why a request was refused. Each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, or a bad `Content-Length`. 400.
    Malformed,
    /// A head over [`MAX_HEAD_BYTES`] or with over [`MAX_HEADERS`] headers. 431.
    HeadTooLarge,
    /// A `Content-Length` over [`MAX_BODY_BYTES`]. 413.
    BodyTooLarge,
    /// A `Transfer-Encoding` (chunked or other): we only read `Content-Length` bodies. 501.
    Unsupported,
    /// A WebSocket handshake that breaks RFC 6455 §4.2.1; the text says how. 400.
    BadUpgrade(&'static str),
    /// A WebSocket handshake for a version other than 13. 426, with `Sec-WebSocket-Version: 13`.
    UnsupportedWsVersion,
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed | HttpError::BadUpgrade(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::Unsupported => 501,
            HttpError::UnsupportedWsVersion => 426,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed => f.write_str("malformed HTTP request"),
            HttpError::HeadTooLarge => f.write_str("HTTP request head too large"),
            HttpError::BodyTooLarge => f.write_str("HTTP request body too large"),
            HttpError::Unsupported => f.write_str("HTTP Transfer-Encoding not supported"),
            HttpError::BadUpgrade(why) => write!(f, "bad WebSocket handshake: {why}"),
            HttpError::UnsupportedWsVersion => f.write_str("unsupported WebSocket version"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Parses the request head at the front of `buf`.
///
/// # Errors
/// [`HttpError::HeadTooLarge`] once `buf` holds over [`MAX_HEAD_BYTES`] with no complete head
/// (or the head has over [`MAX_HEADERS`] headers), [`HttpError::Malformed`] for what `httparse`
/// refuses or a bad `Content-Length`, [`HttpError::BodyTooLarge`] and
/// [`HttpError::Unsupported`] as their names say. A refused WebSocket handshake is not an
/// error here: see [`Request::websocket`].
pub fn parse_head(buf: &[u8]) -> Result<Head, HttpError> {
    // Never look past the limit: a head that has not ended by then is too large anyway.
    let window = buf.get(..MAX_HEAD_BYTES).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(window) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Head::Incomplete),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    let request = to_request(&req)?;
    Ok(Head::Complete { request, used })
}

/// Turns a complete `httparse` request into ours, checking the headers we act on.
fn to_request(req: &httparse::Request<'_, '_>) -> Result<Request, HttpError> {
    // httparse fills these in for every complete request.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed);
    };
    let headers: &[httparse::Header<'_>] = req.headers;
    if headers.iter().any(|h| is(h, "transfer-encoding")) {
        return Err(HttpError::Unsupported);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let keep_alive = if minor >= 1 {
        !has_token(headers, "connection", "close")
    } else {
        has_token(headers, "connection", "keep-alive")
    };
    let websocket =
        has_token(headers, "upgrade", "websocket").then(|| check_handshake(method, minor, headers));
    Ok(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        content_length: content_length(headers)?,
        keep_alive,
        websocket,
        host: header_text(headers, "host"),
        origin: header_text(headers, "origin"),
        authorization: header_text(headers, "authorization"),
    })
}

/// The first header called `name`, trimmed. Bytes that are not UTF-8 become U+FFFD rather
/// than dropping the header: an `Origin` nobody can read still counts as a foreign one.
fn header_text(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    let value = header(headers, name)?.trim_ascii();
    Some(String::from_utf8_lossy(value).into_owned())
}

/// The body length from `Content-Length`, 0 without one. Several `Content-Length` headers
/// must agree (RFC 7230 §3.3.2); anything but digits is malformed.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, HttpError> {
    let mut length = None;
    for h in headers.iter().filter(|h| is(h, "content-length")) {
        let digits = h.value.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::Malformed);
        }
        // All digits, so the only failure left is a number too big for usize.
        let n = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
            .ok_or(HttpError::BodyTooLarge)?;
        if length.is_some_and(|seen| seen != n) {
            return Err(HttpError::Malformed);
        }
        length = Some(n);
    }
    match length.unwrap_or(0) {
        n if n > MAX_BODY_BYTES => Err(HttpError::BodyTooLarge),
        n => Ok(n),
    }
}

/// Checks a WebSocket opening handshake (RFC 6455 §4.2.1) and returns its key.
fn check_handshake(
    method: Method,
    minor: u8,
    headers: &[httparse::Header<'_>],
) -> Result<String, HttpError> {
    if method != Method::Get {
        return Err(HttpError::BadUpgrade("method is not GET"));
    }
    if minor < 1 {
        return Err(HttpError::BadUpgrade("HTTP version below 1.1"));
    }
    if header(headers, "host").is_none() {
        return Err(HttpError::BadUpgrade("no Host header"));
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(HttpError::BadUpgrade("Connection does not include upgrade"));
    }
    let version = header(headers, "sec-websocket-version").map(<[u8]>::trim_ascii);
    if version != Some(WS_VERSION.as_bytes()) {
        return Err(HttpError::UnsupportedWsVersion);
    }
    let key = header(headers, "sec-websocket-key")
        .ok_or(HttpError::BadUpgrade("no Sec-WebSocket-Key"))?
        .trim_ascii();
    if !is_valid_ws_key(key) {
        return Err(HttpError::BadUpgrade(
            "Sec-WebSocket-Key is not base64 of 16 bytes",
        ));
    }
    // Base64 is ASCII, so this is the key itself.
    Ok(String::from_utf8_lossy(key).into_owned())
}

/// Whether `key` is the canonical, padded base64 of exactly 16 bytes. The `base64` crate
/// refuses what a hand-written check could let through: characters outside the alphabet,
/// missing or extra padding, and non-zero trailing bits; a 16-byte buffer refuses longer keys.
fn is_valid_ws_key(key: &[u8]) -> bool {
    let mut nonce = [0u8; WS_KEY_BYTES];
    BASE64.decode_slice(key, &mut nonce) == Ok(WS_KEY_BYTES)
}

/// Whether header `h` is called `name` (lowercase), ignoring case as HTTP does.
fn is(h: &httparse::Header<'_>, name: &str) -> bool {
    h.name.eq_ignore_ascii_case(name)
}

/// The value of the first header called `name` (lowercase).
fn header<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|h| is(h, name)).map(|h| h.value)
}

/// Whether any header called `name` lists `token` among its comma-separated values,
/// ignoring case and surrounding whitespace (as in `Connection: keep-alive, Upgrade`).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers.iter().filter(|h| is(h, name)).any(|h| {
        h.value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The reason phrase of the statuses the server sends; empty (allowed by RFC 7230 §3.1.2)
/// for any other.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Appends a complete response to `out`: status line, `Content-Type`, `Content-Length`,
/// `Connection`, then `body`. A 426 also names the protocol and version it requires
/// (`Upgrade: websocket`, `Sec-WebSocket-Version: 13`), as RFC 7231 §6.5.15 and RFC 6455
/// §4.4 ask.
pub fn response(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], keep_alive: bool) {
    response_with(out, status, content_type, &[], body, keep_alive);
}

/// [`response`] with more headers (`name`, `value`) after `Content-Type`, such as the
/// `WWW-Authenticate` of a 401.
pub fn response_with(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    push_status_line(out, status);
    push_header(out, "Content-Type", content_type);
    for (name, value) in headers {
        push_header(out, name, value);
    }
    push_header(out, "Content-Length", &body.len().to_string());
    if status == 426 {
        push_header(out, "Upgrade", "websocket");
        push_header(out, "Sec-WebSocket-Version", WS_VERSION);
        // A sender of Upgrade lists it in Connection too (RFC 7230 §6.7).
        push_header(out, "Connection", &format!("Upgrade, {connection}"));
    } else {
        push_header(out, "Connection", connection);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Appends the 101 response accepting a WebSocket handshake with this `Sec-WebSocket-Key`.
/// After it, the connection speaks RFC 6455 frames (see `ws`).
pub fn switching_protocols(out: &mut Vec<u8>, key: &str) {
    push_status_line(out, 101);
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Accept", &accept_key(key));
    out.extend_from_slice(b"\r\n");
}

/// The `Sec-WebSocket-Accept` answering `key`: base64 of the SHA-1 of the key and the
/// RFC's GUID (RFC 6455 §4.2.2). It proves to the client that we read its handshake.
fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WS_ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The value of the first `name=value` pair called `name` in an
/// `application/x-www-form-urlencoded` string: a query string or a form body.
///
/// Decoding is `form_urlencoded`'s (the WHATWG URL standard's), for names and values alike:
/// `+` is a space, `%XX` is a byte, a `%` not followed by two hex digits stays as it is, and
/// bytes that are not UTF-8 become U+FFFD. A pair without `=` has an empty value.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// Percent-decodes one segment of a URL path, such as the `{id}` of `/ws/{id}`.
///
/// A path is not a form: `+` stays `+` (only `%20` is a space), so an id containing `+`
/// survives. A `%` not followed by two hex digits stays as it is. `%2F` decodes to `/`, so a
/// caller that splits the raw path on `/` first gets a segment that may contain one.
/// `None` if the decoded bytes are not UTF-8: unlike a form value, an identifier is refused
/// rather than silently changed to U+FFFD.
pub fn decode_path_segment(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|segment| segment.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_head(buf) {
            Ok(Head::Complete { request, used }) => (request, used),
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    const HANDSHAKE: &str = "GET /ws HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// The handshake with one header line replaced (or removed, if `with` is empty).
    fn handshake_with(line_start: &str, with: &str) -> Vec<u8> {
        let mut out = String::new();
        for line in HANDSHAKE.split_inclusive("\r\n") {
            if line.starts_with(line_start) {
                out.push_str(with);
            } else {
                out.push_str(line);
            }
        }
        out.into_bytes()
    }

    fn websocket(buf: &[u8]) -> Option<Result<String, HttpError>> {
        complete(buf).0.websocket
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let (req, used) = complete(buf);
        assert_eq!(used, buf.len());
        assert_eq!(
            req,
            Request {
                method: Method::Get,
                path: "/metrics".into(),
                query: String::new(),
                content_length: 0,
                keep_alive: true,
                websocket: None,
                host: Some("x".into()),
                origin: None,
                authorization: None,
            }
        );
    }

    #[test]
    fn access_headers_are_kept() {
        let buf = b"POST /user/sendMessage HTTP/1.1\r\nHOST: Chat.Example:80\r\n\
            origin:  https://chat.example \r\nAuthorization: Bearer s3cret\r\n\r\n";
        let (req, _) = complete(buf);
        assert_eq!(req.host.as_deref(), Some("Chat.Example:80"));
        assert_eq!(req.origin.as_deref(), Some("https://chat.example"));
        assert_eq!(req.authorization.as_deref(), Some("Bearer s3cret"));
    }

    #[test]
    fn extra_headers_follow_the_content_type() {
        let mut out = Vec::new();
        response_with(
            &mut out,
            401,
            "text/plain",
            &[("WWW-Authenticate", "Bearer")],
            b"no",
            true,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nWWW-Authenticate: Bearer\r\n\
             Content-Length: 2\r\nConnection: keep-alive\r\n\r\nno"
        );
    }

    #[test]
    fn path_and_query_are_raw() {
        let (req, _) = complete(b"GET /send?to=%E4%BD%A0&text=a+b HTTP/1.1\r\n\r\n");
        assert_eq!(req.path, "/send");
        assert_eq!(req.query, "to=%E4%BD%A0&text=a+b");
        let (req, _) = complete(b"GET /a?b?c HTTP/1.1\r\n\r\n");
        assert_eq!((req.path.as_str(), req.query.as_str()), ("/a", "b?c"));
    }

    #[test]
    fn methods() {
        assert_eq!(complete(b"POST / HTTP/1.1\r\n\r\n").0.method, Method::Post);
        assert_eq!(
            complete(b"DELETE / HTTP/1.1\r\n\r\n").0.method,
            Method::Other
        );
        assert_eq!(complete(b"HEAD / HTTP/1.1\r\n\r\n").0.method, Method::Other);
    }

    #[test]
    fn post_form_body_length() {
        let buf = b"POST /send HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: 11\r\n\r\ntext=hello!";
        let (req, used) = complete(buf);
        assert_eq!(req.content_length, 11);
        assert_eq!(&buf[used..], b"text=hello!");
    }

    #[test]
    fn incomplete_heads() {
        for buf in [
            &b""[..],
            b"GET",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r",
        ] {
            assert_eq!(
                parse_head(buf),
                Ok(Head::Incomplete),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn byte_by_byte() {
        let buf = HANDSHAKE.as_bytes();
        for end in 0..buf.len() {
            assert_eq!(
                parse_head(&buf[..end]),
                Ok(Head::Incomplete),
                "prefix {end}"
            );
        }
        assert_eq!(complete(buf).1, buf.len());
    }

    #[test]
    fn pipelined_requests_used_is_exact() {
        let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let second = b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let mut buf = first.to_vec();
        buf.extend_from_slice(second);
        let (req, used) = complete(&buf);
        assert_eq!((req.path.as_str(), used), ("/a", first.len()));
        let rest = &buf[used..];
        let (req, used) = complete(rest);
        assert_eq!((req.path.as_str(), req.content_length), ("/b", 3));
        assert_eq!(&rest[used..], b"abc");
    }

    #[test]
    fn head_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        buf.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_head(&buf), Ok(Head::Incomplete));
        buf.push(b'a');
        assert_eq!(parse_head(&buf), Err(HttpError::HeadTooLarge));
        // A head of exactly the limit is accepted.
        let mut buf = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        buf.resize(MAX_HEAD_BYTES - 4, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(complete(&buf).1, MAX_HEAD_BYTES);
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&buf), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn body_too_large() {
        let ok = format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n");
        assert_eq!(complete(ok.as_bytes()).0.content_length, MAX_BODY_BYTES);
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert_eq!(parse_head(big.as_bytes()), Err(HttpError::BodyTooLarge));
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(parse_head(huge), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn bad_content_length() {
        for value in ["", "-1", "+5", "1 2", "0x10", "five"] {
            let buf = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                parse_head(buf.as_bytes()),
                Err(HttpError::Malformed),
                "{value:?}"
            );
        }
        let conflicting = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse_head(conflicting), Err(HttpError::Malformed));
        let agreeing = b"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(complete(agreeing).0.content_length, 2);
    }

    #[test]
    fn chunked_is_refused() {
        let buf = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(buf), Err(HttpError::Unsupported));
        assert_eq!(HttpError::Unsupported.status(), 501);
    }

    #[test]
    fn malformed_heads() {
        for buf in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(buf),
                Err(HttpError::Malformed),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        let cases: [(&[u8], bool); 7] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
        ];
        for (buf, keep_alive) in cases {
            assert_eq!(
                complete(buf).0.keep_alive,
                keep_alive,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn rfc_handshake_is_accepted() {
        assert_eq!(
            websocket(HANDSHAKE.as_bytes()),
            Some(Ok("dGhlIHNhbXBsZSBub25jZQ==".into()))
        );
    }

    #[test]
    fn handshake_header_case_and_lists() {
        let buf = b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(websocket(buf), Some(Ok("dGhlIHNhbXBsZSBub25jZQ==".into())));
    }

    #[test]
    fn no_upgrade_header_is_plain_http() {
        assert_eq!(websocket(&handshake_with("Upgrade:", "")), None);
        assert_eq!(
            websocket(&handshake_with("Upgrade:", "Upgrade: h2c\r\n")),
            None
        );
    }

    #[test]
    fn handshake_failures() {
        let post = HANDSHAKE.replacen("GET", "POST", 1);
        assert_eq!(
            websocket(post.as_bytes()),
            Some(Err(HttpError::BadUpgrade("method is not GET")))
        );
        let http10 = HANDSHAKE.replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(
            websocket(http10.as_bytes()),
            Some(Err(HttpError::BadUpgrade("HTTP version below 1.1")))
        );
        assert_eq!(
            websocket(&handshake_with("Host:", "")),
            Some(Err(HttpError::BadUpgrade("no Host header")))
        );
        for connection in ["", "Connection: keep-alive\r\n", "Connection: upgrades\r\n"] {
            assert_eq!(
                websocket(&handshake_with("Connection:", connection)),
                Some(Err(HttpError::BadUpgrade(
                    "Connection does not include upgrade"
                ))),
                "{connection:?}"
            );
        }
        for version in [
            "",
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 13, 8\r\n",
        ] {
            assert_eq!(
                websocket(&handshake_with("Sec-WebSocket-Version:", version)),
                Some(Err(HttpError::UnsupportedWsVersion)),
                "{version:?}"
            );
        }
        assert_eq!(
            websocket(&handshake_with("Sec-WebSocket-Key:", "")),
            Some(Err(HttpError::BadUpgrade("no Sec-WebSocket-Key")))
        );
    }

    #[test]
    fn bad_websocket_keys() {
        let bad_key = Some(Err(HttpError::BadUpgrade(
            "Sec-WebSocket-Key is not base64 of 16 bytes",
        )));
        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",               // no padding
            "dGhlIHNhbXBsZSBub25jZQ=",              // short padding
            "dGhlIHNhbXBsZSBub25jZQ===",            // too long
            "dGhlIHNhbXBsZSBub25jZ===",             // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ==AA",           // trailing data
            "dGhlIHNhbXBsZSBub25j*Q==",             // outside the alphabet
            "dGhlIHNhbXBsZSBub25jZR==",             // non-zero trailing bits
            "c2hvcnQ=",                             // 5 bytes
            "ZGhlIHNhbXBsZSBub25jZSBhbmQgbW9yZQ==", // 26 bytes
        ] {
            let line = format!("Sec-WebSocket-Key: {key}\r\n");
            assert_eq!(
                websocket(&handshake_with("Sec-WebSocket-Key:", &line)),
                bad_key,
                "{key:?}"
            );
        }
        assert!(is_valid_ws_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(is_valid_ws_key(b"/+9wAAAAAAAAAAAAAAAAAw=="));
        // The URL-safe alphabet is not the one RFC 6455 names.
        assert!(!is_valid_ws_key(b"_-9wAAAAAAAAAAAAAAAAAw=="));
    }

    #[test]
    fn error_statuses_and_display() {
        assert_eq!(HttpError::Malformed.status(), 400);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        assert_eq!(HttpError::Unsupported.status(), 501);
        assert_eq!(HttpError::BadUpgrade("x").status(), 400);
        assert_eq!(HttpError::UnsupportedWsVersion.status(), 426);
        assert_eq!(
            HttpError::BadUpgrade("no Host header").to_string(),
            "bad WebSocket handshake: no Host header"
        );
    }

    #[test]
    fn rfc_accept_key() {
        let mut out = Vec::new();
        switching_protocols(&mut out, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn responses() {
        let mut out = b"earlier".to_vec();
        response(
            &mut out,
            200,
            "text/plain; charset=utf-8",
            "你好\n".as_bytes(),
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "earlierHTTP/1.1 200 OK\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 7\r\n\
             Connection: keep-alive\r\n\r\n你好\n"
        );
        let mut out = Vec::new();
        response(&mut out, 404, "text/plain", b"", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_426_names_the_version() {
        let mut out = Vec::new();
        response(&mut out, 426, "text/plain", b"x", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 426 Upgrade Required\r\n\
             Content-Type: text/plain\r\n\
             Content-Length: 1\r\n\
             Upgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Connection: Upgrade, close\r\n\r\nx"
        );
    }

    #[test]
    fn every_status_line_parses_back() {
        for status in [200, 400, 404, 405, 408, 413, 426, 431, 501, 503, 299] {
            let mut out = Vec::new();
            response(&mut out, status, "text/plain", b"body", true);
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut parsed = httparse::Response::new(&mut headers);
            assert_eq!(
                parsed.parse(&out),
                Ok(httparse::Status::Complete(out.len() - 4)),
                "{status}"
            );
            assert_eq!(parsed.code, Some(status));
            assert_eq!(parsed.reason.is_some_and(|r| !r.is_empty()), status != 299);
        }
    }

    #[test]
    fn query_param_decoding() {
        let q = "to=%E4%BD%A0&text=hello+world&empty=&flag&x=1&x=2";
        assert_eq!(query_param(q, "to").as_deref(), Some("你"));
        assert_eq!(query_param(q, "text").as_deref(), Some("hello world"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "x").as_deref(), Some("1"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "to"), None);
        assert_eq!(query_param("To=a", "to"), None);
    }

    #[test]
    fn query_param_odd_escapes() {
        assert_eq!(query_param("a=100%", "a").as_deref(), Some("100%"));
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(
            query_param("a=%2B%2b+%26%3D", "a").as_deref(),
            Some("++ &=")
        );
        assert_eq!(query_param("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
        assert_eq!(
            query_param("my+name=v&my%20name=w", "my name").as_deref(),
            Some("v")
        );
        assert_eq!(query_param("a=b=c", "a").as_deref(), Some("b=c"));
        assert_eq!(query_param("a=%E4%BD", "a").as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn query_param_plus_and_escapes() {
        assert_eq!(query_param("id=a+b", "id").as_deref(), Some("a b"));
        assert_eq!(query_param("id=a%2Bb", "id").as_deref(), Some("a+b"));
        assert_eq!(query_param("id=a%20b", "id").as_deref(), Some("a b"));
    }

    #[test]
    fn path_segment_plus_stays_plus() {
        assert_eq!(decode_path_segment("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_path_segment("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(decode_path_segment("a%2bb").as_deref(), Some("a+b"));
        assert_eq!(decode_path_segment("a%20b").as_deref(), Some("a b"));
        assert_eq!(decode_path_segment("%E4%BD%A0").as_deref(), Some("你"));
        assert_eq!(decode_path_segment("你").as_deref(), Some("你"));
        assert_eq!(decode_path_segment("").as_deref(), Some(""));
        assert_eq!(decode_path_segment("a%2Fb").as_deref(), Some("a/b"));
    }

    #[test]
    fn path_segment_bad_escapes_stay() {
        assert_eq!(decode_path_segment("100%").as_deref(), Some("100%"));
        assert_eq!(decode_path_segment("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(decode_path_segment("%%41").as_deref(), Some("%A"));
    }

    #[test]
    fn path_segment_not_utf8_is_none() {
        assert_eq!(decode_path_segment("%FF"), None);
        assert_eq!(decode_path_segment("a%E4%BD"), None); // a character cut short
        assert_eq!(decode_path_segment("%ED%A0%80"), None); // a UTF-16 surrogate
        assert_eq!(decode_path_segment("%C0%80"), None); // an overlong NUL
    }

    #[test]
    fn accept_key_of_the_rfc() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
