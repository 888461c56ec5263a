//! HTTP on the loop: the chat page, the HTTP API of the gowebsocket tutorial, `/metrics`,
//! and the upgrade of a request to one of the WebSocket protocols.
//!
//! A request head is parsed by the codec, its body waits in the connection's input buffer
//! (both bounded), and the answer is queued like any chat message. An upgrade hands back
//! a [`WsSession`] that replaces this session in place; the bytes after the handshake are
//! fed straight to it.

use super::ws::{App, WsSession};
use super::{hub, im, Host, Pace, Reply, Routed, Voice};
use crate::chat::DEFAULT_ROOM;
use crate::codec::http::{self, Head, Method, Request};
use crate::codec::im::{Code, APP_IDS, MAX_USER_ID_BYTES};
use crate::codec::line::check_name;
use log::debug;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The chat page, served at `GET /` with `__WS_PORT__` replaced by the WebSocket port.
const PAGE_HTML: &str = include_str!("page.html");
/// How long an HTTP request may take to arrive, and a kept-alive connection may wait.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Recent `msgID`s, as a set and in arrival order (to forget the oldest).
    msg_ids: HashSet<Box<str>>,
    msg_id_order: VecDeque<Box<str>>,
}

impl Web {
    /// The state for a server whose first web listener is on `port`.
    pub fn new(port: Option<u16>) -> Self {
        let port = port.map(|p| p.to_string()).unwrap_or_default();
        Web {
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

/// An HTTP connection's protocol state.
#[derive(Debug)]
pub struct HttpSession {
    /// When the request in progress (or the keep-alive wait) began: a request must be
    /// complete within [`HTTP_TIMEOUT`] of it, however slowly its bytes trickle in.
    since: Instant,
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
        HttpSession { since: now }
    }

    /// When the request in progress must be complete.
    pub fn deadline(&self) -> Instant {
        self.since + HTTP_TIMEOUT
    }

    /// Serves the complete requests at the front of `data`.
    pub fn feed<H: Host>(&mut self, data: &[u8], host: &mut H) -> Fed {
        let mut pos = 0;
        loop {
            let Some(rest) = data.get(pos..) else {
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
            match host.pace() {
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
        let answer = match (req.method, req.path.as_str()) {
            (Method::Get, "/" | "/index.html") => {
                Answer::new(200, HTML_TYPE, host.web().page.clone())
            }
            (Method::Get, "/metrics") => {
                let text = host.snapshot().render(host.gauges());
                Answer::new(200, METRICS_TYPE, text.into_bytes())
            }
            (Method::Get, "/user/list") => envelope(host, user_list(host, &params)),
            (Method::Get, "/user/online") => envelope(host, user_online(host, &params)),
            (Method::Get, "/system/state") => envelope(host, state(host)),
            (Method::Post, "/user/sendMessage") => match send(host, &params, false) {
                Some(a) => envelope(host, a),
                None => {
                    // Answered when the cluster says where the user is; nothing else is
                    // read from this connection meanwhile, so it closes after the answer.
                    return;
                }
            },
            (Method::Post, "/user/sendMessageAll") => match send(host, &params, true) {
                Some(a) => envelope(host, a),
                None => return,
            },
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

/// A response: status, content type, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Answer {
            status,
            content_type,
            body,
        }
    }
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
    http::response(
        &mut out,
        answer.status,
        answer.content_type,
        &answer.body,
        keep_alive,
    );
    host.send(&out);
    if !keep_alive {
        host.finish();
    }
}

/// The whole response that refuses a connection before it is taken in (503 when the
/// server is full), with a JSON body.
pub fn refusal(status: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let page = error_page(status);
    http::response(&mut out, page.status, page.content_type, &page.body, false);
    out
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

    /// `appID` (or `appId`): absent means the line users' room; `None` when invalid.
    fn app_id(&self) -> Option<u16> {
        match self.get("appID").or_else(|| self.get("appId")) {
            None => Some(DEFAULT_ROOM),
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
    let mut names = Vec::new();
    for (user, room) in host.chat().everyone() {
        if room == app_id {
            let mut name = String::new();
            user.push_name_str(&mut name);
            names.push(name);
        }
    }
    ok(json!({"appID": app_id, "userCount": names.len(), "userList": names}))
}

/// `GET /user/online?appID=&userID=`.
fn user_online<H: Host>(host: &H, params: &Params<'_>) -> ApiResult {
    let (Some(app_id), Some(user_id)) = (params.app_id(), params.user_id()) else {
        return refuse(Code::BadParams);
    };
    let online = host.chat().room_of(&user_id) == Some(app_id);
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
/// (to the room, from `userID`). A repeated `msgID` is acknowledged, not sent again.
/// `None` when the answer waits for the cluster.
fn send<H: Host>(host: &mut H, params: &Params<'_>, to_all: bool) -> Option<ApiResult> {
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
    if host.web().repeated(&msg_id) {
        return Some(ok(json!({"sendResults": true, "duplicate": true})));
    }
    if to_all {
        host.say(Voice::User(&user_id), Some(app_id), message.as_bytes());
        return Some(ok(json!({"sendResults": true})));
    }
    let system = host.texts().web.system_sender;
    let reply = || Reply::Api {
        msg_id: msg_id.as_str().into(),
    };
    let outcome = host.whisper(
        Voice::Named(system),
        user_id.as_bytes(),
        message.as_bytes(),
        false,
        reply,
    );
    sent(host, &msg_id, outcome)
}

/// The API result of a `sendMessage`; `None` while it waits.
fn sent<H: Host>(host: &mut H, msg_id: &str, outcome: Routed) -> Option<ApiResult> {
    match outcome {
        Routed::Pending => None,
        Routed::Sent | Routed::Empty => Some(ok(json!({"sendResults": true}))),
        Routed::Nowhere | Routed::Unknown => {
            host.web().forget(msg_id);
            Some(ApiResult {
                data: json!({"sendResults": false}),
                ..refuse(Code::Failed)
            })
        }
    }
}

/// Answers a `sendMessage` that waited for the cluster, and closes (the requests the
/// client may have pipelined after it were not read).
pub fn answer_routed<H: Host>(msg_id: &str, outcome: Routed, host: &mut H) {
    if let Some(result) = sent(host, msg_id, outcome) {
        let answer = envelope(host, result);
        respond(host, &answer, false);
    }
}

/// Completes a valid WebSocket handshake for `/im`, `/acc` or `/ws/{id}`; `None` (and
/// the connection answered and closing) for any other path or a bad hub id.
fn upgrade<H: Host>(req: &Request, key: &str, host: &mut H) -> Option<WsSession> {
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
    let mut out = Vec::new();
    http::switching_protocols(&mut out, key);
    host.send(&out);
    debug!("{} upgraded to WebSocket {}", host.addr(), req.path);
    let session = WsSession::new(app, host.config().ws_max_message_bytes);
    if let Some(id) = hub_id {
        hub::join(&id, host);
    }
    Some(session)
}
