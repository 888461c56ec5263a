//! The hub protocol of the gorilla-style tutorial (`/ws/{id}`): the id in the path is the
//! user's name; `{"type":1,"receiver":..}` goes to one user (answered by the server's own
//! type 2 message), any other type to the room.

use super::ws::{close_with, send_json};
use super::{Claim, Host, Reply, Routed, Voice};
use crate::chat::{Event, Kind, DEFAULT_ROOM};
use crate::codec::hub;
use crate::codec::ws::{self, close};
use crate::text::{Texts, User};

/// Takes the id of a new `/ws/{id}` connection in the room called `room` (`?room=`;
/// `None`: the line users' room), replacing an older hub connection with the same id; a
/// user of another protocol keeps it, and this one is closed; `signed`: it came with a
/// valid token.
pub fn join<H: Host>(id: &str, room: Option<&str>, signed: bool, host: &mut H) {
    let reply = || Reply::Hub {
        receiver: Box::from(""),
    };
    let room = room.unwrap_or(DEFAULT_ROOM);
    let outcome = host.login(id, Kind::Hub, room, signed, reply);
    answer_join(outcome, host);
}

/// Closes a connection whose id could not be had.
pub fn answer_join<H: Host>(outcome: Claim, host: &mut H) {
    let texts = host.texts();
    match outcome {
        Claim::Granted | Claim::Pending => {}
        Claim::Taken => close_with(host, close::POLICY, texts.web.name_in_use),
        Claim::Unavailable => {
            close_with(
                host,
                close::POLICY,
                texts.line.cluster_unavailable.trim_end(),
            );
        }
    }
}

/// One hub message: type 1 to its receiver (with the server's reply), any other type to
/// the room.
pub fn on_text<H: Host>(text: &str, host: &mut H) {
    let mut me = String::new();
    let online = match host.me() {
        Some(member) => {
            member.name_into(&mut me);
            true
        }
        None => false,
    };
    let Some(m) = hub::parse(text).filter(|_| online) else {
        // Malformed, or sent before the id was granted (in a cluster that waits for Redis).
        return system(host, &me, host.texts().web.hub_invalid);
    };
    if m.kind != hub::SEND {
        return host.say(Voice::Me, None, m.content.as_bytes());
    }
    let receiver = &m.receiver;
    let reply = || Reply::Hub {
        receiver: receiver.as_str().into(),
    };
    let outcome = host.whisper(
        Voice::Me,
        m.receiver.as_bytes(),
        m.content.as_bytes(),
        false,
        reply,
    );
    answer_routed(&m.receiver, outcome, host);
}

/// The server's reply to a type 1 message.
pub fn answer_routed<H: Host>(receiver: &str, outcome: Routed, host: &mut H) {
    let texts = host.texts();
    let content = match outcome {
        Routed::Pending => return,
        Routed::Sent | Routed::Empty => texts.web.hub_sent,
        Routed::Nowhere | Routed::Unknown => texts.web.hub_not_online,
        Routed::Saved => texts.offline.saved.trim_end(),
        Routed::Full => texts.offline.full.trim_end(),
    };
    system(host, receiver, content);
}

/// The server's own hub message (`type` 2, `sender` 0) to this connection.
fn system<H: Host>(host: &mut H, receiver: &str, content: &str) {
    let mut json = Vec::new();
    hub::encode(&mut json, hub::SYSTEM, hub::SERVER_ID, receiver, content);
    send_json(host, &json);
}

/// A notice from the server to `to` (messages kept while it was offline, a broadcast
/// that stayed on this server): its own message (`type` 2, `sender` 0), as its answers are.
pub fn render_notice(to: User<'_>, notice: &str, out: &mut Vec<u8>) {
    let mut json = Vec::new();
    hub::encode(
        &mut json,
        hub::SYSTEM,
        hub::SERVER_ID,
        &to.name_string(),
        notice,
    );
    ws::encode_text(out, &json);
}

/// A hub message in a text frame: presence (types 0 and 4), the room (3), one user (1).
pub fn render(
    texts: &Texts,
    from: User<'_>,
    to: Option<User<'_>>,
    event: Event<'_>,
    out: &mut Vec<u8>,
) {
    let (kind, content) = match event {
        Event::Online => (hub::CONNECT, texts.line.online.into()),
        Event::Offline => (hub::CLOSE, texts.line.offline.into()),
        Event::Say { text, .. } => (hub::BROADCAST, String::from_utf8_lossy(text)),
        Event::Whisper(text) => (hub::SEND, String::from_utf8_lossy(text)),
    };
    // Only a private message has a recipient (`to`); everything else is from the server's
    // side of the hub.
    let receiver = to.map(|u| u.name_string());
    let mut json = Vec::new();
    let receiver = receiver.as_deref().unwrap_or(hub::SERVER_ID);
    hub::encode(&mut json, kind, &from.name_string(), receiver, &content);
    ws::encode_text(out, &json);
}
