//! HTTP on the loop: the chat page, the HTTP API of the gowebsocket tutorial, `/metrics`,
//! the health checks (`/healthz`, `/readyz`), and the upgrade of a request to one of the
//! WebSocket protocols.
//!
//! Access (see [`access`]): API requests (`/user/...`, `/system/...`) and upgrades that
//! carry an `Origin` must come from the server's own origin or `--allowed-origins` (403
//! otherwise); the API's writes need a bearer token when `--api-token` is set (401); with
//! `--auth-secret`, `/ws/{id}` needs `?token=`, a JWT for that id (401 before the
//! upgrade). The page, `/metrics` and the health checks stay open to everyone.
//!
//! A request head is parsed by the codec, its body waits in the connection's input buffer
//! (both bounded), and the answer is queued like any chat message. An upgrade hands back
//! a [`WsSession`] that replaces this session in place; the bytes after the handshake are
//! fed straight to it.

use super::ws::{App, WsSession};
use super::{access, hub, im, Host, Pace, Reply, Routed, Voice};
use crate::codec::http::{self, Head, Method, Request};
use crate::codec::im::{Code, APP_IDS, DEFAULT_APP_ID, MAX_USER_ID_BYTES};
use crate::codec::line::{check_name, check_room};
use crate::config::Config;
use log::debug;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::time::Instant;

/// The chat page, served at `GET /` with `__WS_PORT__` replaced by the WebSocket port.
const PAGE_HTML: &str = include_str!("page.html");
/// The longest `msgID` the HTTP API accepts.
const MAX_MSG_ID_BYTES: usize = 64;
/// How many recent `msgID`s the HTTP API remembers to refuse repeats.
const MAX_REMEMBERED_MSG_IDS: usize = 10_000;

const JSON_TYPE: &str = "application/json; charset=utf-8";
const HTML_TYPE: &str = "text/html; charset=utf-8";
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP side keeps between requests.
#[derive(Debug)]
pub struct Web {
    /// The page with its WebSocket port filled in, rendered once at start.
    page: Vec<u8>,
    /// The ports of the web listeners: a page served from one may connect to another,
    /// and its origin is still the server's own.
    ports: Vec<u16>,
    /// Recent `msgID`s with the API token they came with, as a set and in arrival order
    /// (to forget the oldest): each token has its own ids.
    msg_ids: HashSet<MsgKey>,
    msg_id_order: VecDeque<MsgKey>,
}

/// A `msgID` under an API token (its index in `--api-token`; 0 when the API is open).
type MsgKey = (usize, Box<str>);

impl Web {
    /// The state for a server whose web listeners are on `ports` (the page connects to
    /// the first).
    pub fn new(ports: &[u16]) -> Self {
        let port = ports.first().map(|p| p.to_string()).unwrap_or_default();
        Web {
            page: PAGE_HTML.replace("__WS_PORT__", &port).into_bytes(),
            ports: ports.to_vec(),
            msg_ids: HashSet::new(),
            msg_id_order: VecDeque::new(),
        }
    }

    /// Forgets `id` of `token` again (a message that could not be sent may be retried).
    fn forget(&mut self, token: usize, id: &str) {
        let key = (token, Box::from(id));
        if self.msg_ids.remove(&key) {
            self.msg_id_order.retain(|old| *old != key);
        }
    }

    /// Records `id` of `token`; true if that token sent it before (an empty id is never
    /// a repeat).
    fn repeated(&mut self, token: usize, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        let key = (token, Box::from(id));
        if self.msg_ids.contains(&key) {
            return true;
        }
        if self.msg_id_order.len() >= MAX_REMEMBERED_MSG_IDS {
            if let Some(old) = self.msg_id_order.pop_front() {
                self.msg_ids.remove(&old);
            }
        }
        self.msg_ids.insert(key.clone());
        self.msg_id_order.push_back(key);
        false
    }
}

/// An HTTP connection's protocol state.
#[derive(Debug)]
pub struct HttpSession {
    /// When the request in progress (or the keep-alive wait) began: a request must be
    /// complete within `--login-timeout` of it, however slowly its bytes trickle in.
    since: Instant,
    /// Set while a request's answer waits for the cluster: what the client sends
    /// meanwhile is dropped, and the answer closes the connection.
    awaiting: bool,
    /// Set for a connection the server turned away (full: 503; too many from its address:
    /// 429): its first request gets that answer, as JSON or, for a WebSocket upgrade, as a
    /// close 1008 after the handshake; then it closes. Health checks are still answered.
    refuse: Option<u16>,
}

/// What feeding an HTTP session did.
pub enum Fed {
    /// Consumed this many bytes; still HTTP.
    Used(usize),
    /// Upgraded after `used` bytes: the connection speaks WebSocket from here on.
    Upgraded {
        /// Bytes of the upgrade request.
        used: usize,
        /// The new session.
        session: WsSession,
    },
}

impl HttpSession {
    /// A session whose first request is due within the timeout of `now`.
    pub fn new(now: Instant) -> Self {
        HttpSession {
            since: now,
            awaiting: false,
            refuse: None,
        }
    }

    /// A session that answers its first request with the refusal `status` and closes.
    pub fn refusing(now: Instant, status: u16) -> Self {
        HttpSession {
            since: now,
            awaiting: false,
            refuse: Some(status),
        }
    }

    /// When the request in progress must be complete.
    pub fn deadline(&self, config: &Config) -> Instant {
        self.since + config.login_timeout
    }

    /// Serves the complete requests at the front of `data`.
    pub fn feed<H: Host>(&mut self, data: &[u8], host: &mut H) -> Fed {
        let mut pos = 0;
        loop {
            let Some(rest) = data.get(pos..).filter(|_| !self.awaiting) else {
                return Fed::Used(data.len());
            };
            let (request, used) = match http::parse_head(rest) {
                Ok(Head::Incomplete) => return Fed::Used(pos),
                Ok(Head::Complete { request, used }) => (request, used),
                Err(e) => {
                    debug!("{}: {e}", host.addr());
                    fail(host, e.status());
                    return Fed::Used(data.len());
                }
            };
            let end = used + request.content_length;
            let Some(body) = rest.get(used..end) else {
                return Fed::Used(pos); // the body is still arriving (bounded)
            };
            // Health checks are cheap and unlimited: load balancers must always get through.
            let health = matches!(request.path.as_str(), "/healthz" | "/readyz");
            if let (Some(status), false) = (self.refuse, health) {
                turn_away(&request, status, host);
                return Fed::Used(data.len());
            }
            match if health { Pace::Go } else { host.pace() } {
                Pace::Go => {}
                Pace::Wait => return Fed::Used(pos),
                Pace::Kick => {
                    fail(host, 429);
                    return Fed::Used(data.len());
                }
            }
            host.metrics().messages_in += 1;
            host.metrics().http_requests += 1;
            match &request.websocket {
                Some(Ok(key)) => {
                    return match upgrade(&request, key, host) {
                        Some(session) => Fed::Upgraded {
                            used: pos + end,
                            session,
                        },
                        None => Fed::Used(data.len()),
                    };
                }
                Some(Err(e)) => {
                    debug!("{}: {e}", host.addr());
                    fail(host, e.status());
                    return Fed::Used(data.len());
                }
                None => self.serve(&request, body, host),
            }
            pos += end;
            if !host.is_open() {
                return Fed::Used(data.len());
            }
        }
    }

    /// Routes one plain HTTP request and queues its response.
    fn serve<H: Host>(&mut self, req: &Request, body: &[u8], host: &mut H) {
        let params = Params(if body.is_empty() {
            req.query.as_str().into()
        } else {
            String::from_utf8_lossy(body)
        });
        let path = req.path.as_str();
        let api = ["/user/", "/system/", "/room/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
        let answer = match (req.method, path) {
            _ if api && !origin_allowed(req, host) => refusal(host, 403),
            (Method::Get, "/" | "/index.html") => {
                Answer::new(200, HTML_TYPE, host.web().page.clone())
            }
            (Method::Get, "/healthz") => envelope(host, ok(json!({"status": "ok"}))),
            (Method::Get, "/readyz") => ready(host),
            (Method::Get, "/metrics") => {
                let text = host.snapshot().render(host.gauges());
                Answer::new(200, METRICS_TYPE, text.into_bytes())
            }
            (Method::Get, "/user/list") => envelope(host, user_list(host, &params)),
            (Method::Get, "/room/list") => envelope(host, room_list(host)),
            (Method::Get, "/user/online") => envelope(host, user_online(host, &params)),
            (Method::Get, "/system/state") => envelope(host, state(host)),
            (Method::Post, "/user/sendMessage" | "/user/sendMessageAll") => {
                let to_all = path == "/user/sendMessageAll";
                match access::api_token(host.config(), req.authorization.as_deref()) {
                    None => refusal(host, 401),
                    Some(token) => match send(host, &params, token, to_all) {
                        Some(a) => envelope(host, a),
                        None => {
                            // Answered when the cluster says where the user is; nothing
                            // else is read from this connection meanwhile, so it closes
                            // after the answer.
                            self.awaiting = true;
                            return;
                        }
                    },
                }
            }
            (
                _,
                "/"
                | "/healthz"
                | "/readyz"
                | "/metrics"
                | "/user/list"
                | "/room/list"
                | "/user/online"
                | "/system/state"
                | "/user/sendMessage"
                | "/user/sendMessageAll",
            ) => error_page(405),
            _ => {
                let code = Code::NoRoute;
                let v = json!({"code": code.number(), "msg": im::code_message(code, host.texts()), "data": null});
                Answer::new(404, JSON_TYPE, v.to_string().into_bytes())
            }
        };
        respond(host, &answer, req.keep_alive);
        if req.keep_alive {
            self.since = host.now();
        }
    }
}

/// A response: status, content type, more headers, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Answer {
            status,
            content_type,
            headers: &[],
            body,
        }
    }
}

/// Whether the request's `Origin`, if any, may use the API or open a WebSocket.
fn origin_allowed<H: Host>(req: &Request, host: &mut H) -> bool {
    if req.origin.is_none() {
        return true;
    }
    let ports = host.web().ports.clone(); // two or three numbers
    access::origin_allowed(
        host.config(),
        &ports,
        req.host.as_deref(),
        req.origin.as_deref(),
    )
}

/// A refusal in the API's envelope: 401 (with `WWW-Authenticate: Bearer`) for a write
/// without a valid API token, 403 for a foreign origin.
fn refusal<H: Host>(host: &H, status: u16) -> Answer {
    let web = &host.texts().web;
    let (msg, headers): (_, &'static [_]) = match status {
        401 => (web.api_unauthorized, &[("WWW-Authenticate", "Bearer")]),
        _ => (web.origin_forbidden, &[]),
    };
    let v = json!({"code": status, "msg": msg, "data": null});
    Answer {
        headers,
        ..Answer::new(status, JSON_TYPE, v.to_string().into_bytes())
    }
}

/// `GET /readyz`: 200 while the server can serve, 503 while its cluster is unreachable
/// or it is shutting down (a load balancer then sends new clients elsewhere).
fn ready<H: Host>(host: &H) -> Answer {
    if host.ready() {
        return envelope(host, ok(json!({"ready": true})));
    }
    let v = json!({"code": 503, "msg": host.texts().web.not_ready, "data": {"ready": false}});
    Answer::new(503, JSON_TYPE, v.to_string().into_bytes())
}

/// An API result: the envelope's code, `msg` and `data`.
struct ApiResult {
    code: Code,
    data: Value,
}

fn ok(data: Value) -> ApiResult {
    ApiResult {
        code: Code::Success,
        data,
    }
}

fn refuse(code: Code) -> ApiResult {
    ApiResult {
        code,
        data: Value::Null,
    }
}

/// The API's envelope, `{"code","msg","data"}` in that order.
fn envelope<H: Host>(host: &H, r: ApiResult) -> Answer {
    let msg = im::code_message(r.code, host.texts());
    let v = json!({"code": r.code.number(), "msg": msg, "data": r.data});
    Answer::new(200, JSON_TYPE, v.to_string().into_bytes())
}

/// A JSON error page for `status`.
fn error_page(status: u16) -> Answer {
    let v = json!({"code": status, "msg": http::reason_phrase(status), "data": null});
    Answer::new(status, JSON_TYPE, v.to_string().into_bytes())
}

fn respond<H: Host>(host: &mut H, answer: &Answer, keep_alive: bool) {
    let mut out = Vec::new();
    http::response_with(
        &mut out,
        answer.status,
        answer.content_type,
        answer.headers,
        &answer.body,
        keep_alive,
    );
    host.send(&out);
    if !keep_alive {
        host.finish();
    }
}

/// Answers the first request of a connection the server turned away, then closes: a
/// full server answers 503 with a JSON body, to WebSocket upgrades too; an address over
/// its limits gets 429, or, asking for a WebSocket, the handshake and a close 1008.
fn turn_away<H: Host>(req: &Request, status: u16, host: &mut H) {
    debug!("{} turned away with {status}", host.addr());
    let Some(Ok(key)) = req.websocket.as_ref().filter(|_| status == 429) else {
        return fail(host, status);
    };
    let reason = host.texts().limits.too_many_conns.trim_end();
    let mut out = Vec::new();
    http::switching_protocols(&mut out, key);
    host.send(&out);
    super::ws::close_with(host, crate::codec::ws::close::POLICY, reason);
}

/// Answers with `status` and a JSON error, then closes.
pub fn fail<H: Host>(host: &mut H, status: u16) {
    respond(host, &error_page(status), false);
}

/// The parameters of an API call: the form body of a POST, else the query string.
struct Params<'a>(std::borrow::Cow<'a, str>);

impl Params<'_> {
    fn get(&self, name: &str) -> Option<String> {
        http::query_param(&self.0, name)
    }

    /// `appID` (or `appId`): absent means the line users' room (appID 101); `None` when
    /// invalid.
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

/// `GET /user/list?appID=`: the names online in that room, here and elsewhere.
fn user_list<H: Host>(host: &H, params: &Params<'_>) -> ApiResult {
    let Some(app_id) = params.app_id() else {
        return refuse(Code::BadParams);
    };
    let room = app_id.to_string();
    let mut names = Vec::new();
    for (user, in_room) in host.chat().everyone() {
        if in_room == room {
            let name = user.name_string();
            names.push(name);
        }
    }
    ok(json!({"appID": app_id, "userCount": names.len(), "userList": names}))
}

/// `GET /room/list`: every room with users, here and elsewhere, by name, with how many.
fn room_list<H: Host>(host: &H) -> ApiResult {
    let rooms: Vec<Value> = host
        .chat()
        .rooms()
        .into_iter()
        .map(|(room, count)| json!({"room": room, "count": count}))
        .collect();
    ok(Value::Array(rooms))
}

/// `GET /user/online?appID=&userID=`.
fn user_online<H: Host>(host: &H, params: &Params<'_>) -> ApiResult {
    let (Some(app_id), Some(user_id)) = (params.app_id(), params.user_id()) else {
        return refuse(Code::BadParams);
    };
    let room = app_id.to_string();
    let online = host.chat().room_of(&user_id) == Some(room.as_str());
    ok(json!({"userID": user_id, "online": online}))
}

/// `GET /system/state`: connection and user counts.
fn state<H: Host>(host: &H) -> ApiResult {
    let g = host.gauges();
    ok(json!({
        "connections": g.line + g.ws + g.http,
        "users": g.users,
        "line": g.line,
        "ws": g.ws,
        "http": g.http,
    }))
}

/// `POST /user/sendMessage` (to `userID`, from the system) and `/user/sendMessageAll`
/// (to the room, from `userID`). A `msgID` repeated under the same API `token` is
/// acknowledged, not sent again. `None` when the answer waits for the cluster.
fn send<H: Host>(
    host: &mut H,
    params: &Params<'_>,
    token: usize,
    to_all: bool,
) -> Option<ApiResult> {
    let (Some(app_id), Some(user_id), Some(message)) =
        (params.app_id(), params.user_id(), params.get("message"))
    else {
        return Some(refuse(Code::BadParams));
    };
    let msg_id = params
        .get("msgID")
        .or_else(|| params.get("msgId"))
        .unwrap_or_default();
    // Remembered ids are global state: bound them. A user id is a name like any other.
    if msg_id.len() > MAX_MSG_ID_BYTES || check_name(user_id.as_bytes()).is_err() {
        return Some(refuse(Code::BadParams));
    }
    if host.web().repeated(token, &msg_id) {
        return Some(ok(json!({"sendResults": true, "duplicate": true})));
    }
    if to_all {
        let room = app_id.to_string();
        host.say(Voice::User(&user_id), Some(&room), message.as_bytes());
        return Some(ok(json!({"sendResults": true})));
    }
    let system = host.texts().web.system_sender;
    let reply = || Reply::Api {
        token,
        msg_id: msg_id.as_str().into(),
    };
    let outcome = host.whisper(
        Voice::Named(system),
        user_id.as_bytes(),
        message.as_bytes(),
        false,
        reply,
    );
    sent(host, token, &msg_id, outcome)
}

/// The API result of a `sendMessage`; `None` while it waits.
fn sent<H: Host>(host: &mut H, token: usize, msg_id: &str, outcome: Routed) -> Option<ApiResult> {
    match outcome {
        Routed::Pending => None,
        Routed::Sent | Routed::Empty => Some(ok(json!({"sendResults": true}))),
        Routed::Saved => {
            let saved = host.texts().offline.saved.trim_end();
            Some(ok(json!({"sendResults": true, "offline": saved})))
        }
        Routed::Nowhere | Routed::Unknown | Routed::Full => {
            host.web().forget(token, msg_id);
            let data = match outcome {
                Routed::Full => {
                    let full = host.texts().offline.full.trim_end();
                    json!({"sendResults": false, "offline": full})
                }
                _ => json!({"sendResults": false}),
            };
            Some(ApiResult {
                data,
                ..refuse(Code::Failed)
            })
        }
    }
}

/// Answers a `sendMessage` that waited for the cluster, and closes (the requests the
/// client may have pipelined after it were not read).
pub fn answer_routed<H: Host>(token: usize, msg_id: &str, outcome: Routed, host: &mut H) {
    if let Some(result) = sent(host, token, msg_id, outcome) {
        let answer = envelope(host, result);
        respond(host, &answer, false);
    }
}

/// Completes a valid WebSocket handshake for `/im`, `/acc` or `/ws/{id}`; `None` (and
/// the connection answered and closing) for a foreign origin, any other path, a bad hub
/// id, or (with `--auth-secret`) a hub id without a valid `?token=`.
fn upgrade<H: Host>(req: &Request, key: &str, host: &mut H) -> Option<WsSession> {
    if !origin_allowed(req, host) {
        debug!(
            "{}: upgrade from origin {:?} refused",
            host.addr(),
            req.origin
        );
        let answer = refusal(host, 403);
        respond(host, &answer, false);
        return None;
    }
    let app = match req.path.as_str() {
        "/im" | "/acc" => App::Im,
        path if path.starts_with("/ws/") => App::Hub,
        _ => {
            fail(host, 404);
            return None;
        }
    };
    let hub_id = match req.path.strip_prefix("/ws/") {
        None => None,
        Some(raw) => match http::decode_path_segment(raw) {
            Some(id) if id.len() <= MAX_USER_ID_BYTES && check_name(id.as_bytes()).is_ok() => {
                Some(id)
            }
            _ => {
                fail(host, 400);
                return None;
            }
        },
    };
    // A hub user's room: `?room=NAME`, a valid name, or the line users' room.
    let room = http::query_param(&req.query, "room").filter(|_| hub_id.is_some());
    if room
        .as_ref()
        .is_some_and(|r| check_room(r.as_bytes()).is_err())
    {
        fail(host, 400);
        return None;
    }
    let now = host.now();
    let mut session = WsSession::new(app, host.config().ws_max_message_bytes, now);
    let mut signed = false;
    if let (Some(id), Some(secret)) = (&hub_id, &host.config().access.auth_secret) {
        let token = http::query_param(&req.query, "token");
        match token.and_then(|t| access::verify_login(secret, &t, id, now)) {
            Some(until) => {
                session.set_expiry(until);
                signed = true;
            }
            None => {
                debug!("{}: /ws/{id} without a valid token refused", host.addr());
                let answer = login_refusal(host);
                respond(host, &answer, false);
                return None;
            }
        }
    }
    let mut out = Vec::new();
    http::switching_protocols(&mut out, key);
    host.send(&out);
    debug!("{} upgraded to WebSocket {}", host.addr(), req.path);
    if let Some(id) = hub_id {
        hub::join(&id, room.as_deref(), signed, host);
    }
    Some(session)
}

/// The 401 of a `/ws/{id}` upgrade without a valid `?token=`.
fn login_refusal<H: Host>(host: &H) -> Answer {
    let msg = host.texts().web.login_unauthorized;
    let v = json!({"code": 401, "msg": msg, "data": null});
    Answer {
        headers: &[("WWW-Authenticate", "Bearer")],
        ..Answer::new(401, JSON_TYPE, v.to_string().into_bytes())
    }
}
