//! Offline private messages in Redis (with `--auth-secret`): the two Lua scripts, the
//! commands that run them, and what the replies mean. Pure: `Cluster` sends the commands
//! on its command link and hands the answers on.
//!
//! Each step that must not race is one script, so it is atomic in Redis:
//! - a private message to a name online nowhere ([`ROUTE_OR_KEEP_LUA`]): where is the
//!   name online, else did it sign in with a token within the TTL, else is its mailbox
//!   full, else keep the letter (`RPUSH`, `PEXPIRE`). A login elsewhere either comes
//!   first (and the message goes there) or finds the letter kept;
//! - a signed login ([`SIGN_IN_LUA`]): record it for the TTL and take what was kept
//!   (`LRANGE`, `DEL`).
//!
//! A full mailbox refuses the newest letter (its sender is told), so no kept letter is
//! ever dropped unseen; that is why there is no `LTRIM`.

use super::wire;
use crate::chat::offline::{Keep, Letter};
use crate::config::OfflineSettings;
use log::debug;
use redis_protocol::resp2::types::OwnedFrame;

/// Routes a private message, keeping it for a signed-in user who is offline.
/// KEYS: `im:name:{to}`, `im:signed:{to}`, `im:offline:{to}`; ARGV: letters kept at most,
/// the TTL in milliseconds, the letter (empty: only ask whether `to` signed in).
/// Returns the node holding the name; else 0 (never signed in: nobody), -2 (signed in;
/// nothing to keep), -1 (full: not kept), or how many letters are kept now.
pub const ROUTE_OR_KEEP_LUA: &[u8] = b"local node = redis.call('GET', KEYS[1]) \
    if node then return node end \
    if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end \
    if ARGV[3] == '' then return -2 end \
    local n = redis.call('LLEN', KEYS[3]) \
    if n >= tonumber(ARGV[1]) then return -1 end \
    redis.call('RPUSH', KEYS[3], ARGV[3]) \
    redis.call('PEXPIRE', KEYS[3], ARGV[2]) \
    return n + 1";

/// A signed login: records it for the TTL and takes what was kept for the name, oldest
/// first (a letter kept meanwhile is either taken now or waits for the next login).
/// KEYS: `im:signed:{name}`, `im:offline:{name}`; ARGV: the TTL in milliseconds.
pub const SIGN_IN_LUA: &[u8] = b"redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) \
    local kept = redis.call('LRANGE', KEYS[2], 0, -1) \
    redis.call('DEL', KEYS[2]) \
    return kept";

/// One Redis command: its arguments, owned.
pub type Command = Vec<Vec<u8>>;

/// Where a look-up found a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Online on this server (another one).
    At(Box<str>),
    /// Online nowhere; what became of the message.
    Offline(Keep),
}

/// [`ROUTE_OR_KEEP_LUA`] for a private message to `name`, keeping `letter` (`None`: only
/// ask whether `name` signed in).
pub fn route_or_keep(mail: OfflineSettings, name: &str, letter: Option<&Letter>) -> Command {
    vec![
        b"EVAL".to_vec(),
        ROUTE_OR_KEEP_LUA.to_vec(),
        b"3".to_vec(),
        wire::name_key(name),
        wire::signed_key(name),
        wire::offline_key(name),
        mail.max_per_user.to_string().into_bytes(),
        ttl_millis(mail),
        letter.map(wire::letter_value).unwrap_or_default(),
    ]
}

/// [`SIGN_IN_LUA`] for a signed login of `name`.
pub fn sign_in(mail: OfflineSettings, name: &str) -> Command {
    vec![
        b"EVAL".to_vec(),
        SIGN_IN_LUA.to_vec(),
        b"2".to_vec(),
        wire::signed_key(name),
        wire::offline_key(name),
        ttl_millis(mail),
    ]
}

/// A signed-in user left: its signed login is remembered for the TTL from now.
pub fn signed_out(mail: OfflineSettings, name: &str) -> Command {
    vec![
        b"SET".to_vec(),
        wire::signed_key(name),
        b"1".to_vec(),
        b"PX".to_vec(),
        ttl_millis(mail),
    ]
}

/// Keeps `letters` for `name` again, ahead of any kept since (`LPUSH` of them newest
/// first), with the TTL renewed as a new letter would.
pub fn put_back(mail: OfflineSettings, name: &str, letters: &[Letter]) -> [Command; 2] {
    let key = wire::offline_key(name);
    let mut push = vec![b"LPUSH".to_vec(), key.clone()];
    push.extend(letters.iter().rev().map(wire::letter_value));
    [push, vec![b"PEXPIRE".to_vec(), key, ttl_millis(mail)]]
}

/// What the reply to a look-up says, `GET` or [`ROUTE_OR_KEEP_LUA`]: a node (`own_node`
/// holding the name means nobody else does), nil or 0 (nobody), a letter's fate; `None`
/// for an error (Redis refused the question).
pub fn found(frame: OwnedFrame, own_node: &str) -> Option<Found> {
    let nobody = Found::Offline(Keep::NotSigned);
    Some(match frame {
        OwnedFrame::BulkString(node) => match String::from_utf8(node) {
            Ok(node) if node != own_node => Found::At(node.into()),
            _ => nobody,
        },
        OwnedFrame::Integer(n) if n > 0 => Found::Offline(Keep::Saved),
        OwnedFrame::Integer(-1) => Found::Offline(Keep::Full),
        OwnedFrame::Integer(-2) => Found::Offline(Keep::Signed),
        OwnedFrame::Null | OwnedFrame::Integer(_) => nobody,
        other => {
            debug!("cluster: a look-up was answered {other:?}");
            return None;
        }
    })
}

/// The letters in [`SIGN_IN_LUA`]'s reply, oldest first; malformed ones are skipped.
pub fn letters(frame: OwnedFrame) -> Vec<Letter> {
    let OwnedFrame::Array(items) = frame else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            OwnedFrame::BulkString(v) => wire::parse_letter(v),
            _ => None,
        })
        .collect()
}

/// The TTL in milliseconds, as Redis takes it (at least 1).
fn ttl_millis(mail: OfflineSettings) -> Vec<u8> {
    mail.ttl.as_millis().max(1).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mail() -> OfflineSettings {
        OfflineSettings {
            max_per_user: 3,
            ttl: Duration::from_secs(2),
        }
    }

    fn letter(text: &str) -> Letter {
        Letter {
            from: "bob".into(),
            addr: "127.0.0.1:5".parse().unwrap(),
            sent_ms: 7,
            text: text.as_bytes().into(),
        }
    }

    #[test]
    fn replies_say_where_a_name_is_or_what_became_of_the_letter() {
        let bulk = |s: &str| OwnedFrame::BulkString(s.as_bytes().to_vec());
        let offline = |k| Some(Found::Offline(k));
        assert_eq!(found(bulk("B"), "A"), Some(Found::At("B".into())));
        assert_eq!(found(bulk("A"), "A"), offline(Keep::NotSigned));
        assert_eq!(found(OwnedFrame::Null, "A"), offline(Keep::NotSigned));
        assert_eq!(found(OwnedFrame::Integer(0), "A"), offline(Keep::NotSigned));
        assert_eq!(found(OwnedFrame::Integer(3), "A"), offline(Keep::Saved));
        assert_eq!(found(OwnedFrame::Integer(-1), "A"), offline(Keep::Full));
        assert_eq!(found(OwnedFrame::Integer(-2), "A"), offline(Keep::Signed));
        assert_eq!(found(OwnedFrame::Error("NOSCRIPT".into()), "A"), None);
    }

    #[test]
    fn commands_carry_the_keys_the_limit_and_the_ttl() {
        let args = route_or_keep(mail(), "alice", Some(&letter("hi")));
        assert_eq!(
            args[3..8],
            [
                b"im:name:alice".to_vec(),
                b"im:signed:alice".to_vec(),
                b"im:offline:alice".to_vec(),
                b"3".to_vec(),
                b"2000".to_vec(),
            ]
        );
        assert_eq!(wire::parse_letter(&args[8]), Some(letter("hi")));
        assert_eq!(route_or_keep(mail(), "alice", None)[8], b"");
        assert_eq!(sign_in(mail(), "alice")[5], b"2000");
        let [push, expire] = put_back(mail(), "alice", &[letter("1"), letter("2")]);
        let pushed: Vec<Letter> = push[2..]
            .iter()
            .filter_map(|v| wire::parse_letter(v))
            .collect();
        assert_eq!(pushed, [letter("2"), letter("1")]); // LPUSH: the oldest ends up first
        assert_eq!(expire[2], b"2000");
    }

    #[test]
    fn a_sign_in_reply_holds_the_letters_oldest_first() {
        let value = |t| OwnedFrame::BulkString(wire::letter_value(&letter(t)));
        let reply = OwnedFrame::Array(vec![value("1"), OwnedFrame::Null, value("2")]);
        assert_eq!(letters(reply), [letter("1"), letter("2")]);
        assert!(letters(OwnedFrame::Null).is_empty());
    }
}
