//! A WebSocket test client (tungstenite over a plain `TcpStream` with a read timeout) and
//! JSON send/receive helpers for the `/im` and `/ws/{id}` protocols.

use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use tungstenite::{Message, WebSocket};

/// A client WebSocket.
pub type Ws = WebSocket<TcpStream>;

/// Opens `ws://ADDR/PATH`; every read times out after [`super::READ_TIMEOUT`].
pub fn connect(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(super::READ_TIMEOUT)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
    ws
}

/// Sends `v` as one text message.
pub fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The next text message as JSON; pings are answered by tungstenite itself.
pub fn recv(ws: &mut Ws) -> Value {
    let text = recv_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

/// The next text message exactly as the server wrote it (for assertions on the bytes:
/// key order, spacing).
pub fn recv_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a WebSocket message") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until the close frame: its code (1005 when it carries none) and reason.
pub fn close_frame(ws: &mut Ws) -> (u16, String) {
    for _ in 0..100 {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    panic!("no close frame in 100 messages");
}

/// Reads until the close frame and returns its code.
pub fn close_code(ws: &mut Ws) -> u16 {
    close_frame(ws).0
}
