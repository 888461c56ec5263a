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
    loop {
        match ws.read().expect("a WebSocket message") {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}
