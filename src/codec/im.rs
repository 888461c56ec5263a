//! The gowebsocket JSON protocol of seed 003 (`/im` and `/acc`), parsed and encoded by pure
//! functions.
//!
//! Requests are `{"seq","cmd","data"}`; answers are `{"seq","cmd","response":{"code",
//! "codeMsg","data"}}`, and pushes (chat, enter, exit) use the answer shape with a `data`
//! of `{"target","type":"text","msg","from"}`. JSON goes through serde_json's `Value`: a
//! request is small and parsed once, and a push is encoded once per fan-out, not per
//! recipient.

use crate::codec::line::check_name;
use serde_json::{json, Value};

/// The most bytes a user id may have (seed 003's limit).
pub const MAX_USER_ID_BYTES: usize = 19;
/// The application (room) ids a client may log in to; line users share the first. An
/// appID is the room named by its number.
pub const APP_IDS: std::ops::RangeInclusive<u16> = 101..=104;
/// The appID of the line users' room, where a login or an API call that names none goes.
pub const DEFAULT_APP_ID: u16 = 101;

/// Response codes, with the seed's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 200.
    Success,
    /// 1000: the command needs a login.
    NotLoggedIn,
    /// 1001: missing or malformed parameters, or a frame that is not JSON.
    BadParams,
    /// 1002: the user id breaks the name rules.
    BadUserId,
    /// 1003: the appID is not one of [`APP_IDS`].
    Unauthorized,
    /// 1009: the operation failed (name taken, recipient offline).
    Failed,
    /// 1010: no such command.
    NoRoute,
}

impl Code {
    /// The number on the wire.
    pub fn number(self) -> u32 {
        match self {
            Code::Success => 200,
            Code::NotLoggedIn => 1000,
            Code::BadParams => 1001,
            Code::BadUserId => 1002,
            Code::Unauthorized => 1003,
            Code::Failed => 1009,
            Code::NoRoute => 1010,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `login` with a valid user id and appID.
    Login {
        /// The user id, checked against the name rules.
        user_id: String,
        /// The room, when given (one of [`APP_IDS`]).
        app_id: Option<u16>,
        /// `data.token`, a signed login (with `--auth-secret`), when it is a string.
        token: Option<String>,
    },
    /// `heartbeat`.
    Heartbeat,
    /// `ping`, answered with `"pong"`.
    Ping,
    /// `history`: the sender's room's last `limit` messages, or (with `since`) the first
    /// `limit` after number `since`; `limit` at most what a room keeps.
    History {
        /// `data.limit`: how many, from 1.
        limit: Option<usize>,
        /// `data.since`: the last number the client has.
        since: Option<u64>,
    },
    /// `msg`: to everyone in the sender's room, or to `target`.
    Msg {
        /// One recipient's name, or `None` for the room.
        target: Option<String>,
        /// The text.
        msg: String,
    },
}

/// One parsed request: its `seq` and `cmd` (echoed in the answer) and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `seq` as sent (numbers are echoed as their text), or empty.
    pub seq: String,
    /// `cmd` as sent, or empty.
    pub cmd: String,
    /// The command, or the code that refuses it.
    pub command: Result<Command, Refusal>,
}

/// Why a request is refused before it reaches the server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The frame is not a JSON object: answered with `数据不合法`.
    NotJson,
    /// A known command with bad parameters, or an unknown one.
    Code(Code),
}

/// Parses one text frame.
pub fn parse(text: &str) -> Request {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return Request {
            seq: String::new(),
            cmd: String::new(),
            command: Err(Refusal::NotJson),
        };
    };
    let seq = scalar_text(obj.get("seq")).unwrap_or_default();
    let cmd = scalar_text(obj.get("cmd")).unwrap_or_default();
    let data = obj.get("data").unwrap_or(&Value::Null);
    let command = match cmd.as_str() {
        "login" => parse_login(data),
        "heartbeat" => Ok(Command::Heartbeat),
        "ping" => Ok(Command::Ping),
        "msg" => parse_msg(data),
        "history" => parse_history(data),
        _ => Err(Refusal::Code(Code::NoRoute)),
    };
    Request { seq, cmd, command }
}

/// A string, or a number as its text (clients send `"appID":101` and `"appID":"101"`).
fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `keys` present in `data`.
fn field<'a>(data: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| data.get(*k))
}

fn parse_login(data: &Value) -> Result<Command, Refusal> {
    let refuse = |c| Err(Refusal::Code(c));
    let Some(user_id) = field(data, &["userID", "userId"]) else {
        return refuse(Code::BadParams);
    };
    let Some(user_id) = scalar_text(Some(user_id)) else {
        return refuse(Code::BadParams);
    };
    if user_id.len() > MAX_USER_ID_BYTES || check_name(user_id.as_bytes()).is_err() {
        return refuse(Code::BadUserId);
    }
    let app_id = match field(data, &["appID", "appId"]) {
        None | Some(Value::Null) => None,
        Some(v) => match scalar_text(Some(v)).and_then(|t| t.parse::<i64>().ok()) {
            None => return refuse(Code::BadParams),
            Some(n) => match u16::try_from(n) {
                Ok(id) if APP_IDS.contains(&id) => Some(id),
                _ => return refuse(Code::Unauthorized),
            },
        },
    };
    let token = data.get("token").and_then(Value::as_str).map(str::to_owned);
    Ok(Command::Login {
        user_id,
        app_id,
        token,
    })
}

/// `{"limit":K,"since":SEQ}`, both optional, as JSON numbers or their text: K from 1,
/// SEQ from 0; anything else (negative, fractional, not a number) is 1001. A whole number
/// too large for a `u64` counts as `u64::MAX`, as `history|K` caps a huge K: a huge limit
/// is capped, a huge `since` is past the newest message.
fn parse_history(data: &Value) -> Result<Command, Refusal> {
    let number = |key: &str| -> Result<Option<u64>, Refusal> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => whole_number(v)
                .map(Some)
                .ok_or(Refusal::Code(Code::BadParams)),
        }
    };
    let limit = match number("limit")? {
        Some(0) => return Err(Refusal::Code(Code::BadParams)),
        limit => limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
    };
    let since = number("since")?;
    Ok(Command::History { limit, since })
}

/// A whole number from 0, as a JSON number or its decimal digits; one beyond `u64` (serde
/// reads an integer literal that large as a float) saturates to `u64::MAX`.
fn whole_number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            let f = n.as_f64()?;
            // A float below 2^64 (1.0, 1.5, -1) stays refused, as before.
            (f >= u64::MAX as f64 && f.fract() == 0.0).then_some(u64::MAX)
        }),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => None,
    }
}

fn parse_msg(data: &Value) -> Result<Command, Refusal> {
    let Some(Value::String(msg)) = data.get("msg") else {
        return Err(Refusal::Code(Code::BadParams));
    };
    let target = match field(data, &["target", "userID", "userId"]) {
        None | Some(Value::Null) => None,
        Some(v) => match scalar_text(Some(v)) {
            Some(t) if t.is_empty() => None,
            Some(t) => Some(t),
            None => return Err(Refusal::Code(Code::BadParams)),
        },
    };
    Ok(Command::Msg {
        target,
        msg: msg.clone(),
    })
}

/// Appends an answer: `{"seq","cmd","response":{"code","codeMsg","data"}}`, keys in
/// that order (the seed's).
pub fn answer(out: &mut Vec<u8>, seq: &str, cmd: &str, code: u32, code_msg: &str, data: Value) {
    let v = json!({
        "seq": seq,
        "cmd": cmd,
        "response": {"code": code, "codeMsg": code_msg, "data": data},
    });
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// What a push says: `cmd` (`msg`, `enter` or `exit`), its `target` (the recipient of a
/// private message, else empty), the text and its sender, and a room message's number in
/// its room's history (`seq`, for a client to ask `history` `since` it after a reconnect).
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// `cmd`.
    pub cmd: &'a str,
    /// `data.target`.
    pub target: &'a str,
    /// `data.msg`.
    pub msg: &'a str,
    /// `data.from`.
    pub from: &'a str,
    /// `data.seq`, left out when `None`.
    pub seq: Option<u64>,
}

/// Appends a push, in the answer shape with code 200 and its `codeMsg`.
pub fn push(out: &mut Vec<u8>, code_msg: &str, p: Push<'_>) {
    let mut data = json!({"target": p.target, "type": "text", "msg": p.msg, "from": p.from});
    if let (Some(seq), Value::Object(fields)) = (p.seq, &mut data) {
        fields.insert("seq".into(), json!(seq));
    }
    answer(out, "", p.cmd, Code::Success.number(), code_msg, data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Result<Command, Refusal> {
        parse(text).command
    }

    #[test]
    fn login_accepts_both_key_spellings_and_numeric_strings() {
        let want = Ok(Command::Login {
            user_id: "alice".into(),
            app_id: Some(102),
            token: None,
        });
        assert_eq!(
            cmd(r#"{"seq":"1","cmd":"login","data":{"userID":"alice","appID":102}}"#),
            want
        );
        assert_eq!(
            cmd(r#"{"seq":"1","cmd":"login","data":{"userId":"alice","appId":"102"}}"#),
            want
        );
    }

    #[test]
    fn login_may_leave_the_app_out() {
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":"bob"}}"#),
            Ok(Command::Login {
                user_id: "bob".into(),
                app_id: None,
                token: None,
            })
        );
    }

    #[test]
    fn login_carries_its_token() {
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":"bob","token":"a.b.c"}}"#),
            Ok(Command::Login {
                user_id: "bob".into(),
                app_id: None,
                token: Some("a.b.c".into()),
            })
        );
    }

    #[test]
    fn login_refusals() {
        let code = |c| Err(Refusal::Code(c));
        assert_eq!(cmd(r#"{"cmd":"login","data":{}}"#), code(Code::BadParams));
        assert_eq!(cmd(r#"{"cmd":"login"}"#), code(Code::BadParams));
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":"12345678901234567890"}}"#),
            code(Code::BadUserId)
        );
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":""}}"#),
            code(Code::BadUserId)
        );
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":"a:b"}}"#),
            code(Code::BadUserId)
        );
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":"a","appID":999}}"#),
            code(Code::Unauthorized)
        );
        assert_eq!(
            cmd(r#"{"cmd":"login","data":{"userID":"a","appID":"x"}}"#),
            code(Code::BadParams)
        );
    }

    #[test]
    fn seq_and_cmd_are_echoed_even_when_numbers() {
        let r = parse(r#"{"seq":17,"cmd":"heartbeat","data":{}}"#);
        assert_eq!((r.seq.as_str(), r.cmd.as_str()), ("17", "heartbeat"));
        assert_eq!(r.command, Ok(Command::Heartbeat));
    }

    #[test]
    fn not_json_and_unknown_commands() {
        assert_eq!(cmd("hello"), Err(Refusal::NotJson));
        assert_eq!(cmd("[1,2]"), Err(Refusal::NotJson));
        assert_eq!(cmd(r#"{"cmd":"dance"}"#), Err(Refusal::Code(Code::NoRoute)));
        assert_eq!(cmd(r#"{"cmd":"ping"}"#), Ok(Command::Ping));
    }

    #[test]
    fn msg_to_the_room_or_one_user() {
        assert_eq!(
            cmd(r#"{"cmd":"msg","data":{"msg":"hi"}}"#),
            Ok(Command::Msg {
                target: None,
                msg: "hi".into()
            })
        );
        assert_eq!(
            cmd(r#"{"cmd":"msg","data":{"target":"bob","msg":"hi"}}"#),
            Ok(Command::Msg {
                target: Some("bob".into()),
                msg: "hi".into()
            })
        );
        assert_eq!(
            cmd(r#"{"cmd":"msg","data":{"target":"bob"}}"#),
            Err(Refusal::Code(Code::BadParams))
        );
    }

    #[test]
    fn answers_and_pushes_have_the_seed_shape() {
        let mut out = Vec::new();
        answer(&mut out, "3", "ping", 200, "Success", json!("pong"));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"seq":"3","cmd":"ping","response":{"code":200,"codeMsg":"Success","data":"pong"}})
        );
        out.clear();
        let enter = Push {
            cmd: "enter",
            target: "",
            msg: "哈喽~",
            from: "alice",
            seq: None,
        };
        push(&mut out, "Success", enter);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["response"]["data"]["msg"], "哈喽~");
        assert_eq!(v["response"]["data"]["from"], "alice");
        assert_eq!(v["cmd"], "enter");
        out.clear();
        let said = Push {
            cmd: "msg",
            msg: "hi",
            seq: Some(7),
            ..enter
        };
        push(&mut out, "Success", said);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"seq":"","cmd":"msg","response":{"code":200,"codeMsg":"Success","data":{"target":"","type":"text","msg":"hi","from":"alice","seq":7}}}"#
        );
    }

    #[test]
    fn history_takes_an_optional_limit_and_since() {
        let h = |data: &str| cmd(&format!(r#"{{"cmd":"history","data":{data}}}"#));
        let ok = |limit, since| Ok(Command::History { limit, since });
        assert_eq!(cmd(r#"{"cmd":"history"}"#), ok(None, None));
        assert_eq!(h("{}"), ok(None, None));
        assert_eq!(h(r#"{"limit":5}"#), ok(Some(5), None));
        assert_eq!(h(r#"{"limit":"5","since":"0"}"#), ok(Some(5), Some(0)));
        assert_eq!(h(r#"{"since":42,"limit":null}"#), ok(None, Some(42)));
        let bad = Err(Refusal::Code(Code::BadParams));
        for data in [
            r#"{"limit":0}"#,
            r#"{"limit":-1}"#,
            r#"{"limit":1.5}"#,
            r#"{"limit":"x"}"#,
            r#"{"limit":[1]}"#,
            r#"{"since":-1}"#,
            r#"{"since":-1e30}"#,
            r#"{"since":1.0}"#,
            r#"{"since":"1.5"}"#,
            r#"{"since":""}"#,
            r#"{"since":true}"#,
        ] {
            assert_eq!(h(data), bad, "{data}");
        }
        // Beyond u64: capped like `history|K`, not refused.
        assert_eq!(h(r#"{"since":1e30}"#), ok(None, Some(u64::MAX)));
        assert_eq!(
            h(r#"{"limit":99999999999999999999,"since":"99999999999999999999"}"#),
            ok(Some(usize::MAX), Some(u64::MAX))
        );
    }
}
