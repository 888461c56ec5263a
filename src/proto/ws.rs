//! The WebSocket session both JSON protocols share: frames in (decoded by the codec on
//! the connection's own buffer), pings answered, closes echoed, binary refused, and each
//! text message handed to its application, `/im` or the hub.

use super::{hub, im, Host, Pace};
use crate::codec::ws::{self, close, Msg, Next, WsReader};
use crate::config::Config;
use log::debug;
use std::time::{Duration, Instant};

/// How long a signed-in user stays after its login token expires: a client that renews
/// its token just in time is not cut off mid-message, and one that does not is closed.
pub const TOKEN_EXPIRY_GRACE: Duration = Duration::from_secs(5);

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
    /// When the upgrade happened: the user must be logged in by `--login-timeout` after.
    opened: Instant,
    /// When the signed login's token expires (with `--auth-secret`).
    expires: Option<Instant>,
}

impl WsSession {
    /// A session after the handshake at `opened`, with the message size limit.
    pub fn new(app: App, max_message_bytes: usize, opened: Instant) -> Self {
        WsSession {
            reader: WsReader::new(max_message_bytes),
            app,
            opened,
            expires: None,
        }
    }

    /// Records when the signed login's token expires.
    pub fn set_expiry(&mut self, expires: Instant) {
        self.expires = Some(expires);
    }

    /// The earliest of: the heartbeat deadline; until logged in, the login deadline;
    /// once logged in with a token, its expiry and the grace.
    pub fn deadline(
        &self,
        last_active: Instant,
        logged_in: bool,
        config: &Config,
    ) -> Option<Instant> {
        let t = config.heartbeat_timeout;
        let heartbeat = (!t.is_zero()).then(|| last_active + t);
        let other = match logged_in {
            false => Some(self.opened + config.login_timeout),
            true => self.expires.and_then(|e| e.checked_add(TOKEN_EXPIRY_GRACE)),
        };
        match (heartbeat, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A deadline passed: closes the socket with 1008, saying which one.
    pub fn timed_out<H: Host>(&self, host: &mut H) {
        let now = host.now();
        let texts = host.texts();
        if host.me().is_none() && now >= self.opened + host.config().login_timeout {
            debug!("{} did not log in in time: closed", host.addr());
            close_with(host, close::POLICY, texts.web.login_timeout);
        } else if self
            .expires
            .and_then(|e| e.checked_add(TOKEN_EXPIRY_GRACE))
            .is_some_and(|at| now >= at)
        {
            debug!("{}: login token expired: closed", host.addr());
            close_with(host, close::POLICY, texts.web.token_expired);
        } else {
            heartbeat_missed(host);
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
                        on_message(self.app, &mut self.expires, msg, host);
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

/// Acts on one complete message or control frame; an `/im` signed login sets `expires`.
fn on_message<H: Host>(app: App, expires: &mut Option<Instant>, msg: Msg<'_>, host: &mut H) {
    match msg {
        Msg::Text(text) => {
            host.metrics().messages_in += 1;
            match app {
                App::Im => im::on_text(text, expires, host),
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
