//! HTTP and WebSocket on the loop (seeds 003 and 004): the request router, the HTTP API,
//! the upgrade, and the two JSON protocols over WebSocket frames.
//!
//! A web connection starts as [`Proto::Http`]. A request head is parsed by `http`, its body
//! waits in the connection's input buffer (both bounded), and the answer is queued like any
//! chat message. An upgrade swaps the connection's framing to [`Proto::Ws`] in place; the
//! bytes after the handshake are fed straight to the frame decoder. WebSocket users live in
//! the same directory and rooms as line users, so every fan-out reaches them in their form.

use super::cluster::{ClaimFor, Place, Then};
use super::{lookup, Server};
use crate::codec::http::{self, Head, Method, Request};
use crate::codec::hub;
use crate::codec::im::{self, Code, Command, Refusal, APP_IDS, DEFAULT_APP_ID, MAX_USER_ID_BYTES};
use crate::codec::line::check_name;
use crate::codec::ws::{self, Msg, Next, WsReader};
use crate::conn::{ConnState, Proto, WsApp};
use log::debug;
use mio::Token;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::time::Instant;

/// The chat page, served at `GET /` with `__WS_PORT__` replaced by the WebSocket port.
const PAGE_HTML: &str = include_str!("../proto/page.html");
/// The longest `msgID` the HTTP API accepts.
const MAX_MSG_ID_BYTES: usize = 64;
/// How many recent `msgID`s the HTTP API remembers to refuse repeats.
const MAX_REMEMBERED_MSG_IDS: usize = 10_000;

/// What the web side keeps between requests.
pub(super) struct WebState {
    /// The page with its WebSocket port filled in, rendered once at start.
    page: Vec<u8>,
    /// Recent `msgID`s, as a set and in arrival order (to forget the oldest).
    msg_ids: HashSet<Box<str>>,
    msg_id_order: VecDeque<Box<str>>,
}

impl WebState {
    /// The state for a server whose first web listener is on `port`.
    pub(super) fn new(port: Option<u16>) -> Self {
        let port = port.map(|p| p.to_string()).unwrap_or_default();
        WebState {
            page: PAGE_HTML.replace("__WS_PORT__", &port).into_bytes(),
            msg_ids: HashSet::new(),
            msg_id_order: VecDeque::new(),
        }
    }

    /// Forgets `id` again (a message that could not be sent may be retried).
    fn forget(&mut self, id: &str) {
        if self.msg_ids.remove(id) {
            self.msg_id_order.retain(|old| &**old != id);
        }
    }

    /// Records `id`; true if it was seen before (an empty id is never a repeat).
    fn repeated(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        if self.msg_ids.contains(id) {
            return true;
        }
        if self.msg_id_order.len() >= MAX_REMEMBERED_MSG_IDS {
            if let Some(old) = self.msg_id_order.pop_front() {
                self.msg_ids.remove(&old);
            }
        }
        self.msg_ids.insert(id.into());
        self.msg_id_order.push_back(id.into());
        false
    }
}

/// The parameters of an API call: the form body of a POST, else the query string.
struct Params<'a>(std::borrow::Cow<'a, str>);

impl Params<'_> {
    fn get(&self, name: &str) -> Option<String> {
        http::query_param(&self.0, name)
    }

    /// `appID` (or `appId`): absent means the line users' room; `None` when invalid.
    fn app_id(&self) -> Option<u16> {
        match self.get("appID").or_else(|| self.get("appId")) {
            None => Some(DEFAULT_APP_ID),
            Some(v) => v.parse().ok().filter(|id| APP_IDS.contains(id)),
        }
    }

    fn user_id(&self) -> Option<String> {
        self.get("userID")
            .or_else(|| self.get("userId"))
            .filter(|u| !u.is_empty())
    }
}

/// An API answer: the HTTP status and the JSON envelope's code and data.
struct Answer {
    code: u32,
    msg: &'static str,
    data: Value,
}

impl Server {
    /// Serves the complete requests at the front of `data`; returns the bytes consumed.
    pub(super) fn run_http(&mut self, token: Token, data: &mut [u8], now: Instant) -> usize {
        let mut pos = 0;
        loop {
            let Some(rest) = data.get(pos..) else {
                return data.len();
            };
            let (request, used) = match http::parse_head(rest) {
                Ok(Head::Incomplete) => return pos,
                Ok(Head::Complete { request, used }) => (request, used),
                Err(e) => {
                    debug!("{token:?}: {e}");
                    self.http_fail(token, e.status(), now);
                    return data.len();
                }
            };
            let end = used + request.content_length;
            let Some(body) = rest.get(used..end) else {
                return pos; // the body is still arriving (bounded by MAX_BODY_BYTES)
            };
            self.metrics.messages_in += 1;
            self.metrics.http_requests += 1;
            match &request.websocket {
                Some(Ok(key)) => {
                    pos += end;
                    if !self.upgrade(token, &request, key, now) {
                        return data.len();
                    }
                    let rest = data.get_mut(pos..).unwrap_or_default();
                    return pos + self.run_frames(token, rest, now);
                }
                Some(Err(e)) => {
                    debug!("{token:?}: {e}");
                    self.http_fail(token, e.status(), now);
                    return data.len();
                }
                None => self.serve(token, &request, body, now),
            }
            pos += end;
            let open = lookup(&mut self.conns, token).is_some_and(|c| c.state == ConnState::Open);
            if !open {
                return data.len();
            }
        }
    }

    /// Answers with `status` and a JSON error, then closes.
    pub(super) fn http_fail(&mut self, token: Token, status: u16, now: Instant) {
        let body = json!({"code": status, "msg": http::reason_phrase(status), "data": null});
        self.msg.clear();
        http::response(
            &mut self.msg,
            status,
            JSON_TYPE,
            body.to_string().as_bytes(),
            false,
        );
        self.queue_msg(token);
        self.finish(token, now);
    }

    /// Routes one plain HTTP request and queues its response.
    fn serve(&mut self, token: Token, req: &Request, body: &[u8], now: Instant) {
        let params = Params(if body.is_empty() {
            req.query.as_str().into()
        } else {
            String::from_utf8_lossy(body)
        });
        let (status, content_type, payload): (u16, &str, Vec<u8>) = match (
            req.method,
            req.path.as_str(),
        ) {
            (Method::Get, "/" | "/index.html") => (200, HTML_TYPE, self.web.page.clone()),
            (Method::Get, "/metrics") => (
                200,
                METRICS_TYPE,
                self.metrics().render(self.gauges()).into_bytes(),
            ),
            (Method::Get, "/user/list") => self.api(|s| s.api_user_list(&params)),
            (Method::Get, "/user/online") => self.api(|s| s.api_user_online(&params)),
            (Method::Get, "/system/state") => self.api(|s| s.api_state()),
            (Method::Post, "/user/sendMessage") => {
                self.api(|s| s.api_send(token, &params, false, now))
            }
            (Method::Post, "/user/sendMessageAll") => {
                self.api(|s| s.api_send(token, &params, true, now))
            }
            (
                _,
                "/"
                | "/metrics"
                | "/user/list"
                | "/user/online"
                | "/system/state"
                | "/user/sendMessage"
                | "/user/sendMessageAll",
            ) => error_page(405),
            _ => {
                let v = json!({"code": Code::NoRoute.number(), "msg": Code::NoRoute.message(self.texts), "data": null});
                (404, JSON_TYPE, v.to_string().into_bytes())
            }
        };
        self.msg.clear();
        http::response(
            &mut self.msg,
            status,
            content_type,
            &payload,
            req.keep_alive,
        );
        self.queue_msg(token);
        if !req.keep_alive {
            self.finish(token, now);
        } else if let Some(conn) = lookup(&mut self.conns, token) {
            conn.proto = Proto::Http { since: now };
        }
    }

    /// Runs an API handler and wraps its answer in the seed's envelope.
    fn api(&mut self, handler: impl FnOnce(&mut Server) -> Answer) -> (u16, &'static str, Vec<u8>) {
        let a = handler(self);
        let v = json!({"code": a.code, "msg": a.msg, "data": a.data});
        (200, JSON_TYPE, v.to_string().into_bytes())
    }

    fn ok(&self, data: Value) -> Answer {
        Answer {
            code: Code::Success.number(),
            msg: self.texts.code_success,
            data,
        }
    }

    fn refuse(&self, code: Code) -> Answer {
        Answer {
            code: code.number(),
            msg: code.message(self.texts),
            data: Value::Null,
        }
    }

    /// `GET /user/list?appID=`: the names online in that room.
    fn api_user_list(&mut self, params: &Params<'_>) -> Answer {
        let Some(app_id) = params.app_id() else {
            return self.refuse(Code::BadParams);
        };
        let mut names = Vec::new();
        for (_, c) in self.conns.iter() {
            if c.online && c.room() == app_id {
                let mut name = String::new();
                c.user().push_name_str(&mut name);
                names.push(name);
            }
        }
        if let Some(cluster) = &self.cluster {
            let remote = cluster.remote_users().filter(|(_, r)| r.room == app_id);
            names.extend(remote.map(|(n, _)| n.to_owned()));
        }
        self.ok(json!({"appID": app_id, "userCount": names.len(), "userList": names}))
    }

    /// `GET /user/online?appID=&userID=`.
    fn api_user_online(&mut self, params: &Params<'_>) -> Answer {
        let (Some(app_id), Some(user_id)) = (params.app_id(), params.user_id()) else {
            return self.refuse(Code::BadParams);
        };
        let online = match self.locate(user_id.as_bytes()) {
            Place::Local(t) => lookup(&mut self.conns, t).is_some_and(|c| c.room() == app_id),
            Place::Remote(_) => self
                .cluster
                .as_ref()
                .and_then(|c| c.remote_users().find(|(n, _)| *n == user_id))
                .is_some_and(|(_, r)| r.room == app_id),
            Place::Nowhere | Place::Unknown => false,
        };
        self.ok(json!({"userID": user_id, "online": online}))
    }

    /// `GET /system/state`: connection and user counts.
    fn api_state(&mut self) -> Answer {
        let g = self.gauges();
        self.ok(json!({
            "connections": self.conns.len(),
            "users": g.users,
            "line": g.line,
            "ws": g.ws,
            "http": g.http,
        }))
    }

    /// `POST /user/sendMessage` (to `userID`, from the system) and `/user/sendMessageAll`
    /// (to the room, from `userID`). A repeated `msgID` is acknowledged, not sent again.
    fn api_send(
        &mut self,
        token: Token,
        params: &Params<'_>,
        to_all: bool,
        now: Instant,
    ) -> Answer {
        let (Some(app_id), Some(user_id), Some(message)) =
            (params.app_id(), params.user_id(), params.get("message"))
        else {
            return self.refuse(Code::BadParams);
        };
        let msg_id = params
            .get("msgID")
            .or_else(|| params.get("msgId"))
            .unwrap_or_default();
        // Remembered ids are global state: bound them. A user id is a name like any other.
        if msg_id.len() > MAX_MSG_ID_BYTES || check_name(user_id.as_bytes()).is_err() {
            return self.refuse(Code::BadParams);
        }
        if self.web.repeated(&msg_id) {
            return self.ok(json!({"sendResults": true, "duplicate": true}));
        }
        match self.dir.lookup(user_id.as_bytes()) {
            Some(user) if to_all => {
                self.speak_as(user);
            }
            _ => {
                // The message has no local chat user behind it: it speaks from the HTTP
                // client's address, as the named user to a room, as the system to a user.
                let Some(addr) = lookup(&mut self.conns, token).map(|c| c.addr) else {
                    return self.refuse(Code::Failed);
                };
                let name = if to_all {
                    user_id.as_str()
                } else {
                    self.texts.system_sender
                };
                self.speak_for(addr, name);
            }
        }
        if to_all {
            self.say(app_id, message.as_bytes(), now);
            return self.ok(json!({"sendResults": true}));
        }
        match self.send_to(&user_id, message.as_bytes(), now) {
            Place::Local(_) | Place::Remote(_) => self.ok(json!({"sendResults": true})),
            Place::Nowhere | Place::Unknown => {
                self.web.forget(&msg_id);
                Answer {
                    data: json!({"sendResults": false}),
                    ..self.refuse(Code::Failed)
                }
            }
        }
    }

    /// Completes a valid WebSocket handshake for `/im`, `/acc` or `/ws/{id}`; false (and
    /// the connection answered and closing) for any other path or a bad hub id.
    fn upgrade(&mut self, token: Token, req: &Request, key: &str, now: Instant) -> bool {
        let app = match req.path.as_str() {
            "/im" | "/acc" => WsApp::Im {
                app_id: DEFAULT_APP_ID,
            },
            path if path.starts_with("/ws/") => WsApp::Hub,
            _ => {
                self.http_fail(token, 404, now);
                return false;
            }
        };
        let hub_id = req
            .path
            .strip_prefix("/ws/")
            .map(|raw| http::query_param(&format!("id={raw}"), "id").unwrap_or_default());
        if let Some(id) = &hub_id {
            if id.len() > MAX_USER_ID_BYTES || check_name(id.as_bytes()).is_err() {
                self.http_fail(token, 400, now);
                return false;
            }
        }
        self.msg.clear();
        http::switching_protocols(&mut self.msg, key);
        self.queue_msg(token);
        let max = self.config.ws_max_message_bytes;
        let Some(conn) = lookup(&mut self.conns, token) else {
            return false;
        };
        conn.proto = Proto::Ws {
            reader: WsReader::new(max),
            app,
        };
        conn.last_active = now;
        debug!("{conn} upgraded to WebSocket {}", req.path);
        self.schedule(token);
        if let Some(id) = hub_id {
            self.hub_join(token, &id, now);
        }
        true
    }

    /// Decodes the complete frames at the front of `data`; returns the bytes consumed.
    pub(super) fn run_frames(&mut self, token: Token, data: &mut [u8], now: Instant) -> usize {
        let max = self.config.ws_max_message_bytes;
        let mut pos = 0;
        loop {
            let Some(conn) = lookup(&mut self.conns, token) else {
                return data.len();
            };
            if conn.state != ConnState::Open {
                return data.len();
            }
            let Proto::Ws { reader, app } = &mut conn.proto else {
                return pos;
            };
            let app = *app;
            // The reader leaves the connection while its message is handled, so the
            // handler may borrow the server (and the message may borrow the reader).
            let mut reader = std::mem::replace(reader, WsReader::new(max));
            let Some(rest) = data.get_mut(pos..) else {
                return data.len();
            };
            let step = match reader.next(rest) {
                Ok(Next::Incomplete) => None,
                Ok(Next::Frame { used, msg }) => {
                    pos += used;
                    if let Some(msg) = msg {
                        self.on_ws_msg(token, app, msg, now);
                    }
                    Some(())
                }
                Err(e) => {
                    debug!("{token:?}: {e}");
                    self.ws_close(token, e.close_code(), "", now);
                    return data.len();
                }
            };
            if let Some(Proto::Ws { reader: slot, .. }) =
                lookup(&mut self.conns, token).map(|c| &mut c.proto)
            {
                *slot = reader;
            }
            if step.is_none() {
                return pos;
            }
        }
    }

    /// Acts on one complete message or control frame.
    fn on_ws_msg(&mut self, token: Token, app: WsApp, msg: Msg<'_>, now: Instant) {
        match msg {
            Msg::Text(text) => {
                self.metrics.messages_in += 1;
                match app {
                    WsApp::Im { .. } => self.im_request(token, text, now),
                    WsApp::Hub => self.hub_message(token, text, now),
                }
            }
            Msg::Binary(_) => self.ws_close(token, ws::close::UNSUPPORTED, "", now),
            Msg::Ping(payload) => {
                self.msg.clear();
                ws::encode_pong(&mut self.msg, payload);
                self.queue_msg(token);
            }
            Msg::Pong => {}
            Msg::Close { code, .. } => {
                self.ws_close(token, code.unwrap_or(ws::close::NORMAL), "", now);
            }
        }
    }

    /// Sends a close frame and ends the connection once it is written.
    pub(super) fn ws_close(&mut self, token: Token, code: u16, reason: &str, now: Instant) {
        self.msg.clear();
        ws::encode_close(&mut self.msg, code, reason);
        self.queue_msg(token);
        self.finish(token, now);
    }

    /// Frames the JSON in `self.json` and queues it to one WebSocket.
    pub(super) fn ws_send_json(&mut self, token: Token) {
        self.msg.clear();
        ws::encode_text(&mut self.msg, &self.json);
        self.queue_msg(token);
    }

    /// One `/im` request: answered in the seed's envelope.
    fn im_request(&mut self, token: Token, text: &str, now: Instant) {
        let req = im::parse(text);
        let logged_in = lookup(&mut self.conns, token).is_some_and(|c| c.online);
        let (code, data) = match req.command {
            Err(Refusal::NotJson) => {
                self.json.clear();
                let code = Code::BadParams.number();
                im::answer_with(
                    &mut self.json,
                    "",
                    "",
                    code,
                    self.texts.bad_data,
                    Value::Null,
                );
                return self.ws_send_json(token);
            }
            Err(Refusal::Code(code)) => (code, Value::Null),
            Ok(Command::Ping) => (Code::Success, json!("pong")),
            Ok(_) if !logged_in && !matches!(req.command, Ok(Command::Login { .. })) => {
                (Code::NotLoggedIn, Value::Null)
            }
            Ok(Command::Heartbeat) => (Code::Success, Value::Null),
            Ok(Command::Login {
                ref user_id,
                app_id,
            }) => match self.im_login(token, &req, user_id, app_id, now) {
                Some(code) => (code, Value::Null),
                None => return, // answered when Redis replies
            },
            Ok(Command::Msg {
                ref target,
                ref msg,
            }) => match self.im_msg(token, &req.seq, target.as_deref(), msg, now) {
                Some(answer) => answer,
                None => return, // answered when Redis replies
            },
        };
        self.json.clear();
        im::answer(&mut self.json, self.texts, &req.seq, &req.cmd, code, data);
        self.ws_send_json(token);
    }

    /// `login`: claims the name (a newer `/im` login of the same user replaces the older
    /// socket; a name held by a line or hub user is refused) and tells the room.
    fn im_login(
        &mut self,
        token: Token,
        req: &im::Request,
        user_id: &str,
        app_id: u16,
        now: Instant,
    ) -> Option<Code> {
        let Some(conn) = lookup(&mut self.conns, token) else {
            return Some(Code::Failed);
        };
        if conn.online {
            if conn.chosen_name.as_deref() == Some(user_id) && conn.room() == app_id {
                return Some(Code::Success);
            }
            self.go_offline(token);
        }
        match self.dir.lookup(user_id.as_bytes()) {
            Some(holder) if !self.is_ws_app(holder, false) => return Some(Code::Failed),
            Some(holder) => {
                debug!("{user_id} logged in again: closing the older socket");
                self.json.clear();
                let code = Code::Failed.number();
                let replaced = json!(self.texts.replaced);
                im::answer_with(
                    &mut self.json,
                    "",
                    "kick",
                    code,
                    self.texts.code_failed,
                    replaced,
                );
                self.ws_send_json(holder);
                self.ws_close(holder, ws::close::POLICY, self.texts.replaced, now);
                // The name stays this server's in the cluster: no claim needed.
            }
            None if self.cluster.is_some() => {
                if self.held_remotely(user_id) {
                    return Some(Code::Failed);
                }
                let why = ClaimFor::Login {
                    seq: req.seq.clone(),
                    app_id,
                };
                if self.claim(token, user_id, why, now) {
                    return None; // answered when Redis replies
                }
                return Some(Code::Failed);
            }
            None => {}
        }
        Some(self.im_login_local(token, user_id, app_id))
    }

    /// Completes a login whose name is free (locally, and in the cluster if there is one).
    pub(super) fn im_login_local(&mut self, token: Token, user_id: &str, app_id: u16) -> Code {
        if self.dir.claim(user_id, token).is_err() {
            return Code::Failed;
        }
        let Some(conn) = lookup(&mut self.conns, token) else {
            return Code::Failed;
        };
        conn.chosen_name = Some(user_id.into());
        conn.proto = match std::mem::replace(&mut conn.proto, Proto::Line) {
            Proto::Ws { reader, .. } => Proto::Ws {
                reader,
                app: WsApp::Im { app_id },
            },
            other => other,
        };
        debug!("{conn} logged in to app {app_id}");
        self.go_online(token);
        Code::Success
    }

    /// `msg`: to the sender's room, or to one user anywhere.
    fn im_msg(
        &mut self,
        token: Token,
        seq: &str,
        target: Option<&str>,
        msg: &str,
        now: Instant,
    ) -> Option<(Code, Value)> {
        let Some(room) = lookup(&mut self.conns, token).map(|c| c.room()) else {
            return Some((Code::Failed, Value::Null));
        };
        if !self.speak_as(token) {
            return Some((Code::Failed, Value::Null));
        }
        let Some(name) = target else {
            self.say(room, msg.as_bytes(), now);
            return Some((Code::Success, Value::Null));
        };
        if matches!(self.locate(name.as_bytes()), Place::Nowhere) && self.cluster_up() {
            let then = Then::Im {
                seq: seq.to_owned(),
            };
            self.route_by_redis(token, name, msg.as_bytes(), then, now);
            return None; // answered when Redis replies
        }
        Some(match self.send_to(name, msg.as_bytes(), now) {
            Place::Local(_) | Place::Remote(_) => (Code::Success, Value::Null),
            Place::Nowhere => (Code::Failed, json!(self.texts.no_such_user.trim_end())),
            Place::Unknown => (
                Code::Failed,
                json!(self.texts.cluster_unavailable.trim_end()),
            ),
        })
    }

    /// A hub connection for `/ws/{id}`: takes the name (replacing an older hub connection
    /// with the same id) or, if a user of another protocol holds it, closes with 1008.
    fn hub_join(&mut self, token: Token, id: &str, now: Instant) {
        match self.dir.lookup(id.as_bytes()) {
            Some(holder) if !self.is_ws_app(holder, true) => {
                return self.ws_close(token, ws::close::POLICY, self.texts.name_in_use, now);
            }
            Some(holder) => {
                debug!("hub id {id} connected again: closing the older connection");
                self.ws_close(holder, ws::close::POLICY, self.texts.replaced, now);
            }
            None if self.cluster.is_some() => {
                if self.held_remotely(id) {
                    return self.ws_close(token, ws::close::POLICY, self.texts.name_in_use, now);
                }
                if !self.claim(token, id, ClaimFor::Hub, now) {
                    let reason = self.texts.cluster_unavailable.trim_end();
                    self.ws_close(token, ws::close::POLICY, reason, now);
                }
                return; // joined when Redis replies
            }
            None => {}
        }
        self.hub_join_local(token, id);
    }

    /// Completes a hub join whose id is free.
    pub(super) fn hub_join_local(&mut self, token: Token, id: &str) {
        if self.dir.claim(id, token).is_err() {
            return;
        }
        if let Some(conn) = lookup(&mut self.conns, token) {
            conn.chosen_name = Some(id.into());
        }
        self.go_online(token);
    }

    /// One hub message: type 1 to its receiver (with the seed's system reply), any other
    /// type to the room.
    fn hub_message(&mut self, token: Token, text: &str, now: Instant) {
        let mut me = String::new();
        if let Some(conn) = lookup(&mut self.conns, token) {
            conn.user().push_name_str(&mut me);
        }
        let online = lookup(&mut self.conns, token).is_some_and(|c| c.online);
        let Some(m) = hub::parse(text).filter(|_| online) else {
            // Malformed, or sent before the id was granted (in a cluster that waits for Redis).
            return self.hub_system(token, &me, self.texts.hub_invalid);
        };
        if !self.speak_as(token) {
            return;
        }
        if m.kind != hub::SEND {
            return self.say(DEFAULT_APP_ID, m.content.as_bytes(), now);
        }
        if matches!(self.locate(m.receiver.as_bytes()), Place::Nowhere) && self.cluster_up() {
            let text = m.content.as_bytes();
            return self.route_by_redis(token, &m.receiver, text, Then::Hub, now);
        }
        let reply = match self.send_to(&m.receiver, m.content.as_bytes(), now) {
            Place::Local(_) | Place::Remote(_) => self.texts.hub_sent,
            Place::Nowhere | Place::Unknown => self.texts.hub_not_online,
        };
        self.hub_system(token, &m.receiver, reply);
    }

    /// The server's own hub message (`type` 2, `sender` 0) to one connection.
    pub(super) fn hub_system(&mut self, token: Token, receiver: &str, content: &str) {
        self.json.clear();
        hub::encode(
            &mut self.json,
            hub::SYSTEM,
            hub::SERVER_ID,
            receiver,
            content,
        );
        self.ws_send_json(token);
    }
}

const JSON_TYPE: &str = "application/json; charset=utf-8";
const HTML_TYPE: &str = "text/html; charset=utf-8";
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A JSON error page for `status`.
fn error_page(status: u16) -> (u16, &'static str, Vec<u8>) {
    let v = json!({"code": status, "msg": http::reason_phrase(status), "data": null});
    (status, JSON_TYPE, v.to_string().into_bytes())
}
