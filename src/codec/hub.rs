//! The gorilla-style hub protocol of seed 004 (`/ws/{id}`): `{"type","sender","receiver",
//! "content"}`, parsed and encoded by pure functions.
//!
//! The seed used numeric ids; ours are names in the shared user space, so an id is written
//! as a JSON number when it is all digits (what seed clients expect) and as a string
//! otherwise, and read from either.

use serde_json::{json, Value};

/// `type` of a presence notice: a user came online.
pub const CONNECT: u64 = 0;
/// `type` of a message to one user.
pub const SEND: u64 = 1;
/// `type` of the server's own replies (`success send`, `not online`).
pub const SYSTEM: u64 = 2;
/// `type` of a message to everyone.
pub const BROADCAST: u64 = 3;
/// `type` of a presence notice: a user left.
pub const CLOSE: u64 = 4;
/// The sender id of the server's own messages.
pub const SERVER_ID: &str = "0";

/// One message from a hub client. The claimed `sender` is ignored: the connection's own id
/// is used, so nobody can speak for someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The message type.
    pub kind: u64,
    /// The recipient's id, for [`SEND`].
    pub receiver: String,
    /// The text.
    pub content: String,
}

/// Parses one text frame; `None` when it is not a hub message.
pub fn parse(text: &str) -> Option<Incoming> {
    let Value::Object(obj) = serde_json::from_str::<Value>(text).ok()? else {
        return None;
    };
    let kind = obj.get("type")?.as_u64()?;
    let receiver = match obj.get("receiver") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return None,
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return None,
    };
    Some(Incoming {
        kind,
        receiver,
        content,
    })
}

/// An id as the seed's clients expect it: a number when it is one.
fn id(name: &str) -> Value {
    match name.parse::<u64>() {
        Ok(n) if n.to_string() == name => json!(n),
        _ => json!(name),
    }
}

/// Appends one hub message.
pub fn encode(out: &mut Vec<u8>, kind: u64, sender: &str, receiver: &str, content: &str) {
    // Keys in sorted order, as this server has always sent them (and load generators
    // match on): `content`, `receiver`, `sender`, `type`.
    let v =
        json!({"content": content, "receiver": id(receiver), "sender": id(sender), "type": kind});
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_string_receivers_are_read() {
        let m = parse(r#"{"type":1,"sender":1,"receiver":2,"content":"hi"}"#).unwrap();
        assert_eq!(
            (m.kind, m.receiver.as_str(), m.content.as_str()),
            (1, "2", "hi")
        );
        let m = parse(r#"{"type":3,"receiver":"bob","content":"x"}"#).unwrap();
        assert_eq!(m.receiver, "bob");
    }

    #[test]
    fn malformed_messages_are_none() {
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(r#"{"content":"no type"}"#), None);
        assert_eq!(parse(r#"{"type":"one"}"#), None);
        assert_eq!(parse(r#"{"type":1,"receiver":[1]}"#), None);
    }

    #[test]
    fn ids_are_numbers_when_numeric() {
        let mut out = Vec::new();
        encode(&mut out, SYSTEM, SERVER_ID, "2", "success send");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"content":"success send","receiver":2,"sender":0,"type":2}"#
        );
        let mut out = Vec::new();
        encode(&mut out, BROADCAST, "alice", "007", "hi");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["sender"], "alice");
        assert_eq!(v["receiver"], "007");
    }
}
