//! What a user's bytes mean on each transport: its name, what it sends first, how a
//! payload is wrapped, and how to tell its own online notice, a payload and a server
//! message apart in what it receives. The engine splits the byte stream (lines, or
//! WebSocket frames via `ws`) and asks this module about each message.
//!
//! - [`Transport::Line`]: the line protocol. A user is known by its local `ip:port` (the
//!   `[addr]` of every line about it); its online notice is `[ADDR]NAME:…`, the first line
//!   its server sends it, where NAME is the name the server gave it: the address again on
//!   one server, `ADDR@NODE` in a cluster (`--redis`). NAME runs to the line's last `:` (the
//!   notice text has none). A broadcast is `PAYLOAD\n`, a whisper `to|NAME|PAYLOAD\n`.
//! - [`Transport::Ws`]: seed 004's hub protocol on `/ws/{id}`. A user's name is its id,
//!   `b` + the run id + its number (never all digits, so the server writes it as a JSON
//!   string), on one server or several; its online notice is the type 0 message it is the
//!   sender of; a broadcast is
//!   `{"type":3,"content":"PAYLOAD"}`, a whisper `{"type":1,"receiver":"NAME",…}`, each one
//!   masked text frame. The server's JSON has sorted keys (`content` first, `type` last),
//!   and a payload needs no escaping, so it is found by its mark, not by parsing JSON.
//! - [`Transport::Redis`], [`Transport::Nats`]: a pub/sub peer (`--target`), measured on the
//!   same workload. A user is one connection subscribed to one channel, which is also its
//!   name: the run's room `imbench.RRRR.room` in a fanout run, its own `imbench.RRRR.ID` in a
//!   private run; it is online once the server confirms the subscription. A broadcast is a
//!   publish to the room, a whisper a publish to the partner's channel. Redis is spoken in
//!   RESP3 (`HELLO 3`), where a subscribed connection may still `PUBLISH`, so a sender is
//!   one connection that also hears its own messages, as on imserver; NATS echoes a
//!   publisher's own messages by default. A payload holds no CR or LF, so each protocol
//!   delivers it as a line of its own (a RESP bulk string's body, a NATS `MSG`'s payload):
//!   the engine's line splitter serves all three, and the payload's length check catches
//!   one cut short.

use std::net::SocketAddr;

use crate::track::{self, MARK};
use crate::ws;

/// Start of a hub broadcast around a payload.
const HUB_BROADCAST: &[u8] = br#"{"type":3,"content":""#;
/// End of every hub message around a payload.
const HUB_END: &[u8] = br#""}"#;
/// What the server answers a hub whisper with (type 2, in every language): not traffic.
const HUB_SENT_ACK: &[u8] = br#"{"content":"success send","#;
/// The end of the server's own hub messages (type 2, `sender` 0).
const HUB_FROM_SERVER: &[u8] = br#""sender":0,"type":2}"#;

/// The protocol imbench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The line protocol.
    Line,
    /// WebSocket, the hub protocol of `/ws/{id}`.
    Ws,
    /// Redis pub/sub over RESP3.
    Redis,
    /// NATS's text protocol.
    Nats,
}

/// Which channel a pub/sub user subscribes to (and publishes a broadcast to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// The run's room, shared by every user: fanout.
    Room,
    /// A channel of its own, which its partner publishes to: private.
    Own,
}

impl Transport {
    /// The transport's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Line => "line",
            Transport::Ws => "ws",
            Transport::Redis => "redis",
            Transport::Nats => "nats",
        }
    }

    /// What identifies user `id` before its online notice tells its name: its local
    /// address (line), its hub id, which is also its name (WebSocket), or the channel it
    /// subscribes to (a pub/sub peer), which is its name too.
    pub fn ident(self, local: SocketAddr, run: u16, id: usize, listen: Listen) -> String {
        match (self, listen) {
            (Transport::Line, _) => local.to_string(),
            (Transport::Ws, _) => format!("b{run:04x}{id}"),
            (Transport::Redis | Transport::Nats, Listen::Room) => format!("imbench.{run:04x}.room"),
            (Transport::Redis | Transport::Nats, Listen::Own) => format!("imbench.{run:04x}.{id}"),
        }
    }

    /// Appends what a user sends as soon as it is connected: nothing (line), the WebSocket
    /// upgrade, or the subscription to its channel `ident` (a pub/sub peer), followed by a
    /// question whose answer says it is in place.
    pub fn greet(self, out: &mut Vec<u8>, server: SocketAddr, ident: &str) {
        match self {
            Transport::Line => {}
            Transport::Ws => {
                ws::upgrade_request(out, &server.to_string(), &format!("/ws/{ident}"));
            }
            // The subscription's confirmation names the channel: that is the online notice.
            Transport::Redis => {
                resp_command(out, &[b"HELLO", b"3"]);
                resp_command(out, &[b"SUBSCRIBE", ident.as_bytes()]);
            }
            // The server answers PING after the SUB before it: that PONG is the notice.
            Transport::Nats => {
                out.extend_from_slice(NATS_CONNECT);
                out.extend_from_slice(format!("SUB {ident} 1\r\nPING\r\n").as_bytes());
            }
        }
    }

    /// Whether the user must hear the WebSocket upgrade's answer before anything else.
    pub fn upgrades(self) -> bool {
        self == Transport::Ws
    }

    /// What goes before each payload a user whispers to `partner`.
    pub fn whisper_prefix(self, partner: &str) -> Vec<u8> {
        match self {
            Transport::Line => format!("to|{partner}|").into_bytes(),
            Transport::Ws => {
                format!(r#"{{"type":1,"receiver":"{partner}","content":""#).into_bytes()
            }
            Transport::Redis => {
                let mut out = Vec::new();
                push_resp_header(&mut out, 3);
                push_bulk(&mut out, b"PUBLISH");
                push_bulk(&mut out, partner.as_bytes());
                out
            }
            Transport::Nats => format!("PUB {partner} ").into_bytes(),
        }
    }

    /// What goes before each payload a user broadcasts, for a user known by `ident`: nothing
    /// for imserver (a line without a command is said to the room), a publish to the channel
    /// the user listens on for a pub/sub peer (in a fanout run, the room).
    pub fn broadcast_prefix(self, ident: &str) -> Vec<u8> {
        match self {
            Transport::Line | Transport::Ws => Vec::new(),
            Transport::Redis | Transport::Nats => self.whisper_prefix(ident),
        }
    }

    /// Appends one message carrying `payload` to `out`: a broadcast when `prefix` is empty,
    /// else a message with that [`Transport::whisper_prefix`] or
    /// [`Transport::broadcast_prefix`]. `body` is scratch space.
    pub fn push_message(
        self,
        out: &mut Vec<u8>,
        body: &mut Vec<u8>,
        prefix: &[u8],
        payload: impl FnOnce(&mut Vec<u8>),
    ) {
        match self {
            Transport::Line => {
                out.extend_from_slice(prefix);
                payload(out);
                out.push(b'\n');
            }
            Transport::Ws => {
                body.clear();
                body.extend_from_slice(if prefix.is_empty() {
                    HUB_BROADCAST
                } else {
                    prefix
                });
                payload(body);
                body.extend_from_slice(HUB_END);
                ws::encode_text(out, body);
            }
            // Both protocols put the payload's length before it.
            Transport::Redis => {
                body.clear();
                payload(body);
                out.extend_from_slice(prefix);
                push_bulk(out, body);
            }
            Transport::Nats => {
                body.clear();
                payload(body);
                out.extend_from_slice(prefix);
                out.extend_from_slice(format!("{}\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// What the user answers `msg` with at once, if anything: a NATS server's keep-alive
    /// `PING` wants a `PONG`, or it closes the connection.
    pub fn answer(self, msg: &[u8]) -> Option<&'static [u8]> {
        (self == Transport::Nats && msg == b"PING").then_some(b"PONG\r\n")
    }

    /// If `msg` (a line without its newline, or a text frame) is the online notice of the
    /// user `ident` (in any language), the name its server gave it. On the line protocol a
    /// notice about another user with the same address (on another server: ports may repeat
    /// across destinations) also matches, but never comes first: a server sends a newcomer
    /// its own notice before anything else, and this is asked only until it has come. A
    /// pub/sub peer's notice is the confirmation of the subscription (Redis: the line that
    /// names the channel; NATS: the `PONG` after the `SUB`), and the name is the channel.
    pub fn own_name<'m>(self, ident: &'m str, msg: &'m [u8]) -> Option<&'m [u8]> {
        match self {
            Transport::Redis => (msg == ident.as_bytes()).then_some(msg),
            Transport::Nats => (msg == b"PONG").then_some(ident.as_bytes()),
            Transport::Line => {
                let rest = msg
                    .strip_prefix(b"[")?
                    .strip_prefix(ident.as_bytes())?
                    .strip_prefix(b"]")?;
                let colon = rest.iter().rposition(|&b| b == b':')?;
                (colon > 0).then(|| &rest[..colon])
            }
            Transport::Ws => {
                // … "sender":"IDENT","type":0}
                let rest = msg.strip_suffix(br#"","type":0}"#)?;
                let before = rest.strip_suffix(ident.as_bytes())?;
                before
                    .ends_with(br#""sender":""#)
                    .then(|| &rest[before.len()..])
            }
        }
    }

    /// The payload in `msg`, from its mark to its end, if it has one (a pub/sub peer's: all
    /// of `msg`, if it starts with the mark).
    pub fn payload(self, msg: &[u8]) -> Option<&[u8]> {
        match self {
            Transport::Line => Some(&msg[track::find_byte(MARK, msg)?..]),
            // The JSON string ends at the next quote (a payload has none); without one the
            // whole rest is handed on, and the length check calls it garbled.
            Transport::Ws => {
                let rest = &msg[track::find_byte(MARK, msg)?..];
                Some(match track::find_byte(b'"', rest) {
                    Some(end) => &rest[..end],
                    None => rest,
                })
            }
            // A payload is a line of its own there.
            Transport::Redis | Transport::Nats => (msg.first() == Some(&MARK)).then_some(msg),
        }
    }

    /// Whether `msg` (not a payload) is the server speaking for itself (a kick, "server
    /// full", "not online", a pub/sub peer's error), worth keeping for an error message,
    /// rather than a user's notice or chat or a routine reply.
    pub fn is_server_message(self, msg: &[u8]) -> bool {
        match self {
            Transport::Line => !msg.starts_with(b"["),
            Transport::Ws => msg.ends_with(HUB_FROM_SERVER) && !msg.starts_with(HUB_SENT_ACK),
            Transport::Redis | Transport::Nats => msg.starts_with(b"-"),
        }
    }

    /// Whether this is a pub/sub peer (`--target redis|nats`) rather than imserver.
    pub fn is_peer(self) -> bool {
        matches!(self, Transport::Redis | Transport::Nats)
    }
}

/// What a NATS client says first: no `+OK` after every command, and its own messages back
/// (a fanout sender hears its broadcasts, as on imserver).
const NATS_CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":true,\"name\":\"imbench\"}\r\n";

/// Appends `*N\r\n`, the head of a RESP array of `n` items.
fn push_resp_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}

/// Appends `$LEN\r\nBYTES\r\n`, one RESP bulk string.
fn push_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends one RESP command.
fn resp_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_resp_header(out, args.len());
    for a in args {
        push_bulk(out, a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[test]
    fn idents_are_the_address_or_a_short_hub_id() {
        assert_eq!(
            Transport::Line.ident(addr(), 0xbe7a, 3, Listen::Room),
            "127.0.0.1:40000"
        );
        assert_eq!(
            Transport::Ws.ident(addr(), 0x00fa, 3, Listen::Own),
            "b00fa3"
        );
        let longest = Transport::Ws.ident(addr(), u16::MAX, 1_000_000, Listen::Own);
        assert!(longest.len() <= 19, "{longest}");
        assert!(!longest.contains(':') && !longest.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn own_notices_give_the_name_on_one_server_and_in_a_cluster() {
        let line = Transport::Line;
        let me = "1.2.3.4:5";
        let name = |msg: &str| line.own_name(me, msg.as_bytes()).map(<[u8]>::to_vec);
        assert_eq!(
            name("[1.2.3.4:5]1.2.3.4:5:online"),
            Some(b"1.2.3.4:5".to_vec())
        );
        assert_eq!(
            name("[1.2.3.4:5]1.2.3.4:5:已上线"),
            Some(b"1.2.3.4:5".to_vec())
        );
        assert_eq!(
            name("[1.2.3.4:5]1.2.3.4:5@node-a:已上线"),
            Some(b"1.2.3.4:5@node-a".to_vec())
        );
        assert_eq!(name("[1.2.3.4:6]1.2.3.4:6:online"), None);
        assert_eq!(name("[1.2.3.4:55]1.2.3.4:55:online"), None);
        assert_eq!(name("[1.2.3.4:5]:online"), None, "an empty name");
        assert_eq!(name("[1.2.3.4:5]online"), None, "no name at all");
        assert_eq!(name("1.2.3.4:5对您说hi"), None);
        assert_eq!(name("[1.2.3.4:5"), None);

        let ws = Transport::Ws;
        let notice = r#"{"content":"已上线","receiver":0,"sender":"b12340","type":0}"#;
        assert_eq!(
            ws.own_name("b12340", notice.as_bytes()),
            Some(&b"b12340"[..])
        );
        assert_eq!(ws.own_name("b1234", notice.as_bytes()), None);
        assert_eq!(ws.own_name("12340", notice.as_bytes()), None);
        assert_eq!(ws.own_name("b123401", notice.as_bytes()), None);
        let chat = r#"{"content":"x","receiver":0,"sender":"b12340","type":3}"#;
        assert_eq!(ws.own_name("b12340", chat.as_bytes()), None);
        let english = r#"{"content":"online","receiver":0,"sender":"b12340","type":0}"#;
        assert!(ws.own_name("b12340", english.as_bytes()).is_some());
    }

    #[test]
    fn messages_wrap_payloads_and_payloads_are_found_again() {
        let fill = |out: &mut Vec<u8>| out.extend_from_slice(b"~abcdb1.2.3.xx");
        let mut body = Vec::new();
        let mut out = Vec::new();
        Transport::Line.push_message(&mut out, &mut body, b"", fill);
        assert_eq!(out, b"~abcdb1.2.3.xx\n");
        out.clear();
        let to = Transport::Line.whisper_prefix("1.2.3.4:5");
        Transport::Line.push_message(&mut out, &mut body, &to, fill);
        assert_eq!(out, b"to|1.2.3.4:5|~abcdb1.2.3.xx\n");
        assert_eq!(
            Transport::Line.payload(b"[a]a:~abcdb1.2.3.xx"),
            Some(&b"~abcdb1.2.3.xx"[..])
        );

        let ws = Transport::Ws;
        out.clear();
        ws.push_message(&mut out, &mut body, b"", fill);
        assert_eq!(body, br#"{"type":3,"content":"~abcdb1.2.3.xx"}"#);
        // One masked text frame: 2 header bytes, the mask key, the body.
        assert_eq!(out.len(), 2 + 4 + body.len());
        assert_eq!(out[..2], [0x81, 0x80 | body.len() as u8]);
        out.clear();
        let to = ws.whisper_prefix("b12341");
        ws.push_message(&mut out, &mut body, &to, fill);
        assert_eq!(
            body,
            br#"{"type":1,"receiver":"b12341","content":"~abcdb1.2.3.xx"}"#
        );
        let got = br#"{"content":"~abcdb1.2.3.xx","receiver":0,"sender":"b12340","type":3}"#;
        assert_eq!(ws.payload(got), Some(&b"~abcdb1.2.3.xx"[..]));
        assert_eq!(ws.payload(br#"{"content":"~ab"#), Some(&b"~ab"[..]));
        assert_eq!(ws.payload(br#"{"content":"hi","type":3}"#), None);
    }

    #[test]
    fn a_peer_user_subscribes_to_the_room_or_its_own_channel() {
        for t in [Transport::Redis, Transport::Nats] {
            assert_eq!(
                t.ident(addr(), 0x00fa, 3, Listen::Room),
                "imbench.00fa.room"
            );
            assert_eq!(t.ident(addr(), 0x00fa, 3, Listen::Own), "imbench.00fa.3");
            assert!(t.is_peer() && !t.upgrades());
        }
        assert_eq!(
            Transport::Line.ident(addr(), 1, 3, Listen::Own),
            "127.0.0.1:40000"
        );
        let mut out = Vec::new();
        Transport::Redis.greet(&mut out, addr(), "imbench.00fa.room");
        assert_eq!(
            out,
            b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$17\r\nimbench.00fa.room\r\n"
        );
        out.clear();
        Transport::Nats.greet(&mut out, addr(), "imbench.00fa.3");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("CONNECT {"), "{text}");
        assert!(text.contains(r#""verbose":false"#) && text.contains(r#""echo":true"#));
        assert!(
            text.ends_with("}\r\nSUB imbench.00fa.3 1\r\nPING\r\n"),
            "{text}"
        );
        out.clear();
        Transport::Line.greet(&mut out, addr(), "127.0.0.1:40000");
        assert!(out.is_empty());
    }

    #[test]
    fn peers_publish_to_the_room_or_the_partner_with_the_payload_length() {
        let fill = |out: &mut Vec<u8>| out.extend_from_slice(b"~abcdb1.2.3.xx");
        let mut body = Vec::new();
        let mut out = Vec::new();
        let redis = Transport::Redis;
        let to_room = redis.broadcast_prefix("imbench.00fa.room");
        redis.push_message(&mut out, &mut body, &to_room, fill);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$17\r\nimbench.00fa.room\r\n$14\r\n~abcdb1.2.3.xx\r\n"
        );
        out.clear();
        let nats = Transport::Nats;
        let to_partner = nats.whisper_prefix("imbench.00fa.4");
        nats.push_message(&mut out, &mut body, &to_partner, fill);
        assert_eq!(out, b"PUB imbench.00fa.4 14\r\n~abcdb1.2.3.xx\r\n");
        assert!(Transport::Line
            .broadcast_prefix("127.0.0.1:40000")
            .is_empty());
        assert!(Transport::Ws.broadcast_prefix("b00fa3").is_empty());
    }

    #[test]
    fn peers_join_on_the_subscriptions_confirmation_and_find_payload_lines() {
        let redis = Transport::Redis;
        let me = "imbench.00fa.room";
        // RESP3's confirmation: >3, $9, subscribe, $17, the channel, :1.
        for line in [
            &b">3"[..],
            b"$9",
            b"subscribe",
            b"$17",
            b":1",
            b"imbench.00fa.roomy",
        ] {
            assert_eq!(redis.own_name(me, line), None, "{line:?}");
        }
        assert_eq!(redis.own_name(me, me.as_bytes()), Some(me.as_bytes()));
        let nats = Transport::Nats;
        assert_eq!(nats.own_name(me, b"PONG"), Some(me.as_bytes()));
        assert_eq!(nats.own_name(me, b"INFO {\"server_id\":\"x\"}"), None);
        assert_eq!(nats.answer(b"PING"), Some(&b"PONG\r\n"[..]));
        assert_eq!(redis.answer(b"PING"), None);
        assert_eq!(Transport::Line.answer(b"PING"), None);
        for t in [redis, nats] {
            assert_eq!(t.payload(b"~abcdb1.2.3.xx"), Some(&b"~abcdb1.2.3.xx"[..]));
            assert_eq!(t.payload(b"MSG imbench.00fa.room 1 14"), None);
            assert_eq!(t.payload(b"$14"), None);
            assert_eq!(t.payload(b"x~abcd"), None);
            assert!(t.is_server_message(b"-ERR 'Unknown Protocol Operation'"));
            assert!(t.is_server_message(b"-NOAUTH Authentication required."));
            assert!(!t.is_server_message(b":30"));
            assert!(!t.is_server_message(b"+OK"));
        }
    }

    #[test]
    fn only_the_servers_own_words_are_kept() {
        assert!(Transport::Line.is_server_message(b"server full"));
        assert!(!Transport::Line.is_server_message(b"[a]a:hi"));
        let ws = Transport::Ws;
        assert!(!ws.is_server_message(
            br#"{"content":"success send","receiver":"b1","sender":0,"type":2}"#
        ));
        assert!(ws
            .is_server_message(br#"{"content":"not online","receiver":"b1","sender":0,"type":2}"#));
        assert!(
            !ws.is_server_message(br#"{"content":"online","receiver":0,"sender":"b1","type":0}"#)
        );
    }
}
