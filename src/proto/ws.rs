//! The WebSocket session both JSON protocols share: frames in (decoded by the codec on
//! the connection's own buffer), pings answered, closes echoed, binary refused, and each
//! text message handed to its application, `/im` or the hub.

use super::{hub, im, Host, Pace};
use crate::codec::ws::{self, close, Msg, Next, WsReader};
use log::debug;

/// Which JSON protocol a WebSocket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// `/im` and `/acc`.
    Im,
    /// `/ws/{id}`.
    Hub,
}

/// A WebSocket connection's protocol state.
#[derive(Debug)]
pub struct WsSession {
    /// Frame decoder state (no heap unless a fragmented message is in progress).
    reader: WsReader,
    app: App,
}

impl WsSession {
    /// A session after the handshake, with the message size limit.
    pub fn new(app: App, max_message_bytes: usize) -> Self {
        WsSession {
            reader: WsReader::new(max_message_bytes),
            app,
        }
    }

    /// Decodes the complete frames at the front of `data`; returns the bytes consumed.
    pub fn feed<H: Host>(&mut self, data: &mut [u8], host: &mut H) -> usize {
        let mut pos = 0;
        loop {
            if !host.is_open() {
                return data.len();
            }
            let Some(rest) = data.get_mut(pos..).filter(|r| !r.is_empty()) else {
                return pos.min(data.len());
            };
            match host.pace() {
                Pace::Go => {}
                Pace::Wait => return pos,
                Pace::Kick => {
                    debug!("{} flooded: closed", host.addr());
                    let reason = host.texts().limits.flooding.trim_end();
                    close_with(host, close::POLICY, reason);
                    return data.len();
                }
            }
            match self.reader.next(rest) {
                Ok(Next::Incomplete) => {
                    host.unpace();
                    return pos;
                }
                Ok(Next::Frame { used, msg }) => {
                    pos += used;
                    if let Some(msg) = msg {
                        on_message(self.app, msg, host);
                    }
                }
                Err(e) => {
                    debug!("{}: {e}", host.addr());
                    close_with(host, e.close_code(), "");
                    return data.len();
                }
            }
        }
    }
}

/// Acts on one complete message or control frame.
fn on_message<H: Host>(app: App, msg: Msg<'_>, host: &mut H) {
    match msg {
        Msg::Text(text) => {
            host.metrics().messages_in += 1;
            match app {
                App::Im => im::on_text(text, host),
                App::Hub => hub::on_text(text, host),
            }
        }
        Msg::Binary(_) => close_with(host, close::UNSUPPORTED, ""),
        Msg::Ping(payload) => {
            let mut out = Vec::new();
            ws::encode_pong(&mut out, payload);
            host.send(&out);
        }
        Msg::Pong => {}
        Msg::Close { code, .. } => close_with(host, code.unwrap_or(close::NORMAL), ""),
    }
}

/// Appends a close frame.
pub fn render_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    ws::encode_close(out, code, reason);
}

/// Sends a close frame and ends the connection once it is written.
pub fn close_with<H: Host>(host: &mut H, code: u16, reason: &str) {
    let mut out = Vec::new();
    ws::encode_close(&mut out, code, reason);
    host.send(&out);
    host.finish();
}

/// Queues `json` in a text frame.
pub fn send_json<H: Host>(host: &mut H, json: &[u8]) {
    let mut out = Vec::with_capacity(json.len() + 10);
    ws::encode_text(&mut out, json);
    host.send(&out);
}

/// A WebSocket silent past the heartbeat timeout.
pub fn heartbeat_missed<H: Host>(host: &mut H) {
    debug!("{} missed its heartbeat: closed", host.addr());
    host.metrics().idle_kicks += 1;
    close_with(host, close::POLICY, host.texts().web.heartbeat_timeout);
}

/// The server is stopping.
pub fn going_away<H: Host>(host: &mut H) {
    let reason = host.texts().line.shutting_down.trim_end();
    close_with(host, close::GOING_AWAY, reason);
}
