//! imserver-mio: an instant-messaging server on one single-threaded `mio` event loop.
//!
//! One [`mio::Poll`] owns every connection in a [`slab::Slab`], each with its own read
//! buffer and output queue. Line, WebSocket and HTTP clients share one loop and one user
//! space; a broadcast is encoded once per protocol present into a shared segment that
//! every recipient's queue refers to, and the loop flushes each queue with one `writev`
//! per turn (held a little longer under load, `--coalesce-us`). No locks, no channels, no
//! async runtime.
//!
//! # Layout
//! Folders are layers; each uses only the layers below it.
//! - [`net`]: **the loop.** Poll, listeners, the slab of connections with their buffers,
//!   the turn's phases (read, expire, close, flush), timers, signals, shutdown; and the
//!   chat service the adapters call (`net::host`: presence, say, whisper, claims,
//!   offline messages, each flow written once, joining the core, the cluster and the
//!   connections; `net::news` for what the cluster hands back).
//! - [`proto`]: **protocol sessions**, one adapter per protocol (`line`, `im`, `hub`,
//!   `ws`, `api`): decode a frame into calls on [`proto::Host`], render an outcome or a
//!   chat event into the protocol's bytes. No socket, no slab, no Redis, no transport.
//! - [`chat`]: **the chat core**, protocol-neutral: who is online, the one place a name
//!   lives, rooms, routing ([`chat::Chat::locate`]), the replica of other servers' users,
//!   the in-memory mailbox of offline messages ([`chat::offline`]).
//!   Speaks in [`chat::Event`]s and outcomes, never bytes. Uses only [`text`].
//! - [`cluster`]: **many servers, one chat**: the Redis link (mio sources the loop
//!   polls), the wire between servers, claims and look-ups carrying the caller's
//!   context, liveness, the room streams that carry broadcasts and keep history.
//!   Feeds what other servers say into the core and the loop.
//! - [`codec`]: **pure codecs**: line framing and commands, HTTP heads, WebSocket
//!   frames and handshake, `/im` and hub JSON. No I/O, no clock, no crate layer above.
//! - [`supervisor`]: **one process per core** (`--workers N`): N copies of the binary,
//!   each the whole stack above on one thread, sharing the ports (`SO_REUSEPORT`) and
//!   joined by Redis; restarts one that dies, forwards the stop signals. Uses [`net`] only
//!   to hold the ports.
//! - Leaves: [`timer`] (the hashed wheel, `now` passed in), [`text`] (every text the
//!   server says, zh and en), [`metrics`], [`config`] and [`cli`] (settings and flags),
//!   [`heap`] (giving memory back after a storm).
//!
//! Adding a protocol is a new adapter in `proto/` (a [`proto::Session`] variant and its
//! renderer) over a codec in `codec/`; a transport under every protocol (TLS) belongs to
//! `net/conn.rs`, where bytes meet sockets.
#![warn(missing_docs)]

pub mod chat;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod heap;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod supervisor;
pub mod text;
pub mod timer;

pub use config::Config;
pub use net::{Server, StartError};
