//! Protocol sessions: one adapter per protocol, each a thin layer between its codec and the
//! chat core.
//!
//! - [`line`](mod@line): the newline protocol of the Go chat server (`who`, `rename|`, `to|`, text);
//! - [`im`]: the `/im` (`/acc`) JSON protocol over WebSocket (`login`, `heartbeat`, `msg`);
//! - [`hub`]: the `/ws/{id}` hub protocol (`{type,sender,receiver,content}`);
//! - [`ws`]: the WebSocket session both JSON protocols share (frames, pings, closes);
//! - [`api`]: HTTP: the page, the HTTP API, `/metrics`, and the upgrade to WebSocket.
//!
//! An adapter *decodes* its bytes into calls on a [`Host`] (say, whisper, rename, login:
//! the chat service the loop provides, see `net`) and *renders* what comes back, an
//! outcome or an [`Event`], into its own bytes. It never sees a socket, the slab or Redis,
//! and no protocol knows which transport it runs over. An answer that waits for the
//! cluster carries a [`Reply`], which the loop hands back with the outcome
//! ([`claimed`], [`routed`]).

pub mod access;
pub mod api;
pub mod hub;
pub mod im;
pub mod line;
pub mod ws;

use crate::chat::history::History;
use crate::chat::{Chat, Event, Kind, Member};
use crate::config::Config;
use crate::metrics::{Gauges, Metrics};
use crate::text::{Texts, User};
use std::net::SocketAddr;
use std::time::Instant;

/// Who a message is from, as an adapter asks for it.
#[derive(Debug, Clone, Copy)]
pub enum Voice<'a> {
    /// The connection's own user.
    Me,
    /// The local user of this name if online, else this client's address under the name
    /// (the HTTP API's `sendMessageAll`).
    User(&'a str),
    /// This client's address under this name, never a user (the API's system sender).
    Named(&'a str),
}

/// How a private message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Delivered here, or handed to the recipient's server.
    Sent,
    /// Nobody has that name.
    Nowhere,
    /// Not here, and the cluster is unreachable.
    Unknown,
    /// The recipient exists but the text is empty (refused where the protocol asks).
    Empty,
    /// The recipient is offline but has signed in with a token before: the message is
    /// kept for its next signed login.
    Saved,
    /// The recipient is offline and its kept messages are full: this one is not kept.
    Full,
    /// The answer comes later, through [`routed`].
    Pending,
}

/// How a name claim went (login, hub id, rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is the user's now.
    Granted,
    /// Someone else holds it (or this connection may not take it).
    Taken,
    /// The cluster that decides is unreachable.
    Unavailable,
    /// The answer comes later, through [`claimed`].
    Pending,
}

/// Whether a connection may run its next command now (flood control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Go ahead.
    Go,
    /// Not yet: stop, keep the rest of the input; the loop calls again when it may go on.
    Wait,
    /// It has flooded too long: say so (in the protocol's way) and end the connection.
    Kick,
}

/// What an answer that waits for the cluster needs to be rendered.
#[derive(Debug)]
pub enum Reply {
    /// A line user's `to|` or `rename|`.
    Line,
    /// An `/im` request, answered with this `seq` and `cmd`.
    Im {
        /// The request's `seq`.
        seq: Box<str>,
        /// The request's `cmd`.
        cmd: &'static str,
    },
    /// A hub message to `receiver`, or (empty receiver) the hub id claim of `/ws/{id}`.
    Hub {
        /// The recipient of a type 1 message.
        receiver: Box<str>,
    },
    /// An HTTP API `sendMessage`, whose `msgID` is forgotten if it fails.
    Api {
        /// The API token it came with (its index; 0 when the API is open).
        token: usize,
        /// The `msgID`.
        msg_id: Box<str>,
    },
}

/// The chat service the loop offers a session, bound to one connection.
pub trait Host {
    /// The server's texts.
    fn texts(&self) -> &'static Texts;
    /// The time of this turn.
    fn now(&self) -> Instant;
    /// The server's settings.
    fn config(&self) -> &Config;
    /// Counters, to count on.
    fn metrics(&mut self) -> &mut Metrics;
    /// Every counter as of now, to show.
    fn snapshot(&self) -> Metrics;
    /// Point-in-time counts, for `/metrics` and `/system/state`.
    fn gauges(&self) -> Gauges;
    /// State the HTTP API keeps between requests.
    fn web(&mut self) -> &mut api::Web;
    /// Whether the server can serve now (`/readyz`): its cluster, if any, is reachable,
    /// and it is not shutting down.
    fn ready(&self) -> bool;
    /// Whether this connection still takes commands.
    fn is_open(&self) -> bool;
    /// Counts one command against this connection's flood allowance.
    fn pace(&mut self) -> Pace;
    /// Gives back the allowance of a command that turned out not to be there yet.
    fn unpace(&mut self);
    /// The peer address of this connection.
    fn addr(&self) -> SocketAddr;
    /// Queues bytes to this connection.
    fn send(&mut self, bytes: &[u8]);
    /// Ends this connection once what is queued to it is written.
    fn finish(&mut self);
    /// Who is online.
    fn chat(&self) -> &Chat;
    /// Each room's recent messages.
    fn history(&self) -> &History;
    /// This connection's user, while online.
    fn me(&self) -> Option<&Member>;
    /// `voice` says `text` to the room of this name (`None`: the speaker's own).
    fn say(&mut self, voice: Voice<'_>, room: Option<&str>, text: &[u8]);
    /// `voice` says `text` to the user called `to`, wherever it is; an empty text is
    /// refused with [`Routed::Empty`] when `need_text`, once the recipient is known to
    /// exist. `reply` is asked for only if the answer must wait.
    fn whisper(
        &mut self,
        voice: Voice<'_>,
        to: &[u8],
        text: &[u8],
        need_text: bool,
        reply: impl FnOnce() -> Reply,
    ) -> Routed;
    /// Renames this connection's user.
    fn rename(&mut self, new: &str, reply: Reply) -> Claim;
    /// Puts this connection online as `name` in the room called `room`. A user of the
    /// same kind holding the name is replaced (and told, in its protocol); another kind
    /// keeps it. `signed`: the login carried a valid token, so the messages kept for
    /// `name` while it was offline follow the login's answer.
    fn login(
        &mut self,
        name: &str,
        kind: Kind,
        room: &str,
        signed: bool,
        reply: impl FnOnce() -> Reply,
    ) -> Claim;
    /// Moves this connection's user to the room called `room` (a valid name); nothing
    /// happens if it is there already.
    fn enter_room(&mut self, room: &str);
}

/// What a connection speaks now, with that protocol's state. A web connection starts as
/// `Http` and may become `Ws` in place.
#[derive(Debug)]
pub enum Session {
    /// The newline protocol.
    Line(line::LineSession),
    /// HTTP/1.1 requests, before any upgrade.
    Http(api::HttpSession),
    /// A WebSocket speaking `/im` or the hub protocol (boxed: its frame reader is larger
    /// than the other sessions, and every idle line user would pay for it inline).
    Ws(Box<ws::WsSession>),
}

/// A session's protocol family, for connection gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Line protocol.
    Line = 0,
    /// WebSocket.
    Ws = 1,
    /// Plain HTTP.
    Http = 2,
}

impl Default for Session {
    fn default() -> Self {
        Session::Line(line::LineSession::default())
    }
}

impl Session {
    /// A new web connection's session, its request clock started at `now`.
    pub fn http(now: Instant) -> Self {
        Session::Http(api::HttpSession::new(now))
    }

    /// A web connection the server turned away with `status` (503 full, 429 too many
    /// from its address): its first request is answered so, then it closes.
    pub fn http_refusing(now: Instant, status: u16) -> Self {
        Session::Http(api::HttpSession::refusing(now, status))
    }

    /// Which family it is.
    pub fn family(&self) -> Family {
        match self {
            Session::Line(_) => Family::Line,
            Session::Http(_) => Family::Http,
            Session::Ws(_) => Family::Ws,
        }
    }

    /// Runs the complete commands at the front of `data` and returns the bytes used; the
    /// rest is a partial command within the protocol's limit (`--max-line`, the HTTP head
    /// and body limits, `--ws-max-message`).
    pub fn feed<H: Host>(&mut self, data: &mut [u8], host: &mut H) -> usize {
        match self {
            Session::Line(s) => s.feed(data, host),
            Session::Ws(s) => s.feed(data, host),
            Session::Http(s) => match s.feed(data, host) {
                api::Fed::Used(n) => n,
                api::Fed::Upgraded { used, session } => {
                    *self = Session::Ws(Box::new(session));
                    let rest = data.get_mut(used..).unwrap_or_default();
                    used + self.feed(rest, host)
                }
            },
        }
    }

    /// When the connection must next be looked at, given its last activity and whether
    /// its user is logged in (a WebSocket must log in within `--login-timeout`, whatever
    /// it sends meanwhile).
    pub fn deadline(
        &self,
        last_active: Instant,
        logged_in: bool,
        config: &Config,
    ) -> Option<Instant> {
        match self {
            Session::Line(_) => config.idle_timeout.map(|d| last_active + d),
            Session::Ws(s) => s.deadline(last_active, logged_in, config),
            Session::Http(s) => Some(s.deadline(config)),
        }
    }

    /// The deadline passed: an idle line user is kicked, a WebSocket that is silent, not
    /// logged in in time, or whose login token expired is closed, a slow HTTP request
    /// answered 408.
    pub fn on_timeout<H: Host>(&mut self, host: &mut H) {
        match self {
            Session::Line(_) => line::kick_idle(host),
            Session::Ws(s) => s.timed_out(host),
            Session::Http(_) => api::fail(host, 408),
        }
    }

    /// The server is stopping: each protocol says goodbye its way.
    pub fn on_shutdown<H: Host>(&mut self, host: &mut H) {
        match self {
            Session::Line(_) => line::shutting_down(host),
            Session::Ws(_) => ws::going_away(host),
            Session::Http(_) => host.finish(),
        }
    }
}

/// Appends `event` from `from` as a user of `kind` receives it; `to` is the recipient of
/// a private message (the JSON protocols name it), `None` for what a room is told. A fan-out calls this once per kind
/// present and copies the bytes to every recipient of that kind.
pub fn render(
    kind: Kind,
    texts: &Texts,
    from: User<'_>,
    to: Option<User<'_>>,
    event: Event<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    match kind {
        Kind::Line => line::render(texts, from, event, out),
        Kind::Im => im::render(texts, from, to, event, out),
        Kind::Hub => hub::render(texts, from, to, event, out),
    }
}

/// Appends the notice that precedes the `n` messages kept for `to` while it was offline,
/// as a user of `kind` receives it: a line, an `/im` message from the system sender, a
/// hub message from the server.
pub fn render_offline_notice(kind: Kind, texts: &Texts, to: User<'_>, n: usize, out: &mut Vec<u8>) {
    out.clear();
    let notice = crate::text::offline_notice(texts, n);
    match kind {
        Kind::Line => line::render_offline_notice(&notice, out),
        Kind::Im => im::render_offline_notice(texts, to, &notice, out),
        Kind::Hub => hub::render_offline_notice(to, &notice, out),
    }
}

/// Whether a user of `kind` gets the online notice of its own arrival (`/im` users get
/// their login answer instead).
pub fn greets_self(kind: Kind) -> bool {
    kind != Kind::Im
}

/// What a user of `kind` whose name a newer connection took is sent before it is closed.
pub fn render_replaced(kind: Kind, texts: &Texts, out: &mut Vec<u8>) {
    match kind {
        Kind::Im => im::render_replaced(texts, out),
        Kind::Hub => ws::render_close(crate::codec::ws::close::POLICY, texts.web.replaced, out),
        Kind::Line => {}
    }
}

/// Answers a private message that waited for the cluster.
pub fn routed<H: Host>(reply: Reply, outcome: Routed, host: &mut H) {
    match reply {
        Reply::Line => line::answer_routed(outcome, host),
        Reply::Im { seq, cmd } => im::answer_routed(&seq, cmd, outcome, host),
        Reply::Hub { receiver } => hub::answer_routed(&receiver, outcome, host),
        Reply::Api { token, msg_id } => api::answer_routed(token, &msg_id, outcome, host),
    }
}

/// Answers a name claim that waited for the cluster.
pub fn claimed<H: Host>(reply: Reply, outcome: Claim, host: &mut H) {
    match reply {
        Reply::Line => line::answer_rename(outcome, host),
        Reply::Im { seq, cmd } => im::answer_login(&seq, cmd, outcome, host),
        Reply::Hub { .. } => hub::answer_join(outcome, host),
        Reply::Api { .. } => {}
    }
}
