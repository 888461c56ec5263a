//! The `/im` (`/acc`) JSON protocol of the gowebsocket tutorial: requests
//! `{"seq","cmd","data"}` answered `{"seq","cmd","response":{"code","codeMsg","data"}}`,
//! and pushes (`enter`, `exit`, `msg`, `kick`) in the same shape.

use super::ws::send_json;
use super::{access, Claim, Host, Reply, Routed, Voice};
use crate::chat::{Event, Kind};
use crate::codec::im::{self, Code, Command, Refusal, DEFAULT_APP_ID};
use crate::codec::ws;
use crate::text::{Texts, User};
use serde_json::{json, Value};
use std::time::Instant;

/// The `codeMsg` of a code.
pub fn code_message(code: Code, texts: &Texts) -> &'static str {
    match code {
        Code::Success => texts.codes.code_success,
        Code::NotLoggedIn => texts.codes.code_not_logged_in,
        Code::BadParams => texts.codes.code_bad_params,
        Code::BadUserId => texts.codes.code_bad_user_id,
        Code::Unauthorized => texts.codes.code_unauthorized,
        Code::Failed => texts.codes.code_failed,
        Code::NoRoute => texts.codes.code_no_route,
    }
}

/// Queues an answer to one request.
fn answer<H: Host>(host: &mut H, seq: &str, cmd: &str, code: Code, data: Value) {
    let mut json = Vec::new();
    im::answer(
        &mut json,
        seq,
        cmd,
        code.number(),
        code_message(code, host.texts()),
        data,
    );
    send_json(host, &json);
}

/// One `/im` request; a signed login's token expiry goes to `expires`.
pub fn on_text<H: Host>(text: &str, expires: &mut Option<Instant>, host: &mut H) {
    let req = im::parse(text);
    let logged_in = host.me().is_some();
    let (code, data) = match req.command {
        Err(Refusal::NotJson) => {
            let mut json = Vec::new();
            let bad_data = host.texts().codes.bad_data;
            im::answer(
                &mut json,
                "",
                "",
                Code::BadParams.number(),
                bad_data,
                Value::Null,
            );
            return send_json(host, &json);
        }
        Err(Refusal::Code(code)) => (code, Value::Null),
        Ok(Command::Ping) => (Code::Success, json!("pong")),
        Ok(Command::Login { .. }) if logged_in => {
            // One login per socket: a second one changes nothing (gowebsocket's "already
            // logged in"); another socket may still take the name over.
            (Code::Failed, Value::Null)
        }
        Ok(_) if !logged_in && !matches!(req.command, Ok(Command::Login { .. })) => {
            (Code::NotLoggedIn, Value::Null)
        }
        Ok(Command::Heartbeat) => (Code::Success, Value::Null),
        Ok(Command::Login {
            ref user_id,
            app_id,
            ref token,
        }) => {
            // With --auth-secret, the login must carry a token signed for this user id.
            let now = host.now();
            let signed = host.config().access.auth_secret.as_deref().map(|secret| {
                let token = token.as_deref();
                token.and_then(|t| access::verify_login(secret, t, user_id, now))
            });
            match signed {
                None => {}
                Some(Some(until)) => *expires = Some(until),
                Some(None) => {
                    return answer(host, &req.seq, &req.cmd, Code::Unauthorized, Value::Null)
                }
            }
            // An appID is the room named by its number.
            let room = app_id.unwrap_or(DEFAULT_APP_ID).to_string();
            let seq = &req.seq;
            let reply = || Reply::Im {
                seq: seq.as_str().into(),
                cmd: "login",
            };
            // `Some` is a valid token here: an invalid one was refused above.
            let outcome = host.login(user_id, Kind::Im, &room, signed.is_some(), reply);
            return answer_login(&req.seq, "login", outcome, host);
        }
        Ok(Command::History { limit, since }) => return history(&req.seq, limit, since, host),
        Ok(Command::Msg {
            target: None,
            ref msg,
        }) => {
            host.say(Voice::Me, None, msg.as_bytes());
            (Code::Success, Value::Null)
        }
        Ok(Command::Msg {
            target: Some(ref name),
            ref msg,
        }) => {
            let seq = &req.seq;
            let reply = || Reply::Im {
                seq: seq.as_str().into(),
                cmd: "msg",
            };
            let outcome = host.whisper(Voice::Me, name.as_bytes(), msg.as_bytes(), false, reply);
            return answer_routed(&req.seq, "msg", outcome, host);
        }
    };
    answer(host, &req.seq, &req.cmd, code, data);
}

/// Answers `history`: `{"room","messages":[{"seq","time","sender","content"}],"gap"}`,
/// the room being the user's; `gap` says the message right after `since` is lost (the
/// client missed messages it cannot have). With history off: 1009 and why.
fn history<H: Host>(seq: &str, limit: Option<usize>, since: Option<u64>, host: &mut H) {
    let store = host.history();
    if !store.is_on() {
        let off = json!(host.texts().line.history_off.trim_end());
        return answer(host, seq, "history", Code::Failed, off);
    }
    let Some(me) = host.me() else {
        return;
    };
    let room = host.chat().room_name(me.room);
    let limit = limit.unwrap_or(usize::MAX).min(store.keep());
    let recall = match since {
        Some(since) => store.since(room, since, limit),
        None => store.last(room, limit),
    };
    let gap = recall.gap;
    let messages: Vec<Value> = recall
        .entries
        .map(|e| {
            json!({
                "seq": e.seq,
                "time": e.time_ms,
                "sender": e.sender().name_string(),
                "content": String::from_utf8_lossy(e.text()),
            })
        })
        .collect();
    let data = json!({"room": room, "messages": messages, "gap": gap});
    answer(host, seq, "history", Code::Success, data);
}

/// Answers a `login`.
pub fn answer_login<H: Host>(seq: &str, cmd: &str, outcome: Claim, host: &mut H) {
    let unavailable = json!(host.texts().line.cluster_unavailable.trim_end());
    let (code, data) = match outcome {
        Claim::Pending => return,
        Claim::Granted => (Code::Success, Value::Null),
        Claim::Taken => (Code::Failed, Value::Null),
        Claim::Unavailable => (Code::Failed, unavailable),
    };
    answer(host, seq, cmd, code, data);
}

/// Answers a `msg` to one user.
pub fn answer_routed<H: Host>(seq: &str, cmd: &str, outcome: Routed, host: &mut H) {
    let texts = host.texts();
    let (code, data) = match outcome {
        Routed::Pending => return,
        Routed::Sent | Routed::Empty => (Code::Success, Value::Null),
        Routed::Saved => (Code::Success, json!(texts.offline.saved.trim_end())),
        Routed::Full => (Code::Failed, json!(texts.offline.full.trim_end())),
        Routed::Nowhere => (Code::Failed, json!(texts.line.no_such_user.trim_end())),
        Routed::Unknown => (
            Code::Failed,
            json!(texts.line.cluster_unavailable.trim_end()),
        ),
    };
    answer(host, seq, cmd, code, data);
}

/// A push in a text frame: `enter`/`exit` notices, and `msg` to the room or to `to`.
pub fn render(
    texts: &Texts,
    from: User<'_>,
    to: Option<User<'_>>,
    event: Event<'_>,
    out: &mut Vec<u8>,
) {
    // Only a private message has a recipient (`to`), and names it as its target.
    let target = to.map(|u| u.name_string()).unwrap_or_default();
    let (cmd, msg, seq) = match event {
        Event::Online => ("enter", texts.web.enter.into(), None),
        Event::Offline => ("exit", texts.web.exit.into(), None),
        Event::Say { text, seq } => ("msg", String::from_utf8_lossy(text), seq),
        Event::Whisper(text) => ("msg", String::from_utf8_lossy(text), None),
    };
    let mut json = Vec::new();
    let from = from.name_string();
    let push = im::Push {
        cmd,
        target: &target,
        msg: &msg,
        from: &from,
        seq,
    };
    im::push(&mut json, texts.codes.code_success, push);
    ws::encode_text(out, &json);
}

/// The notice before the messages kept for `to` while offline: a `msg` push to `to` from
/// the system sender (the HTTP API's, a reserved name), so every client shows it.
pub fn render_offline_notice(texts: &Texts, to: User<'_>, notice: &str, out: &mut Vec<u8>) {
    let mut json = Vec::new();
    let target = to.name_string();
    let push = im::Push {
        cmd: "msg",
        target: &target,
        msg: notice,
        from: texts.web.system_sender,
        seq: None,
    };
    im::push(&mut json, texts.codes.code_success, push);
    ws::encode_text(out, &json);
}

/// The `kick` push and the close frame for a socket whose user logged in elsewhere.
pub fn render_replaced(texts: &Texts, out: &mut Vec<u8>) {
    let mut json = Vec::new();
    let code = Code::Failed;
    let reason = json!(texts.web.replaced);
    im::answer(
        &mut json,
        "",
        "kick",
        code.number(),
        code_message(code, texts),
        reason,
    );
    ws::encode_text(out, &json);
    ws::encode_close(out, ws::close::POLICY, texts.web.replaced);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_app_id_names_the_line_users_room() {
        assert_eq!(DEFAULT_APP_ID.to_string(), crate::chat::DEFAULT_ROOM);
    }
}
