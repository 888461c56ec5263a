//! imserver-mio: the seeds' chat system as one single-threaded `mio` event loop.
//!
//! One [`mio::Poll`] owns every connection in a [`slab::Slab`], each with its own read and
//! write buffer. Lines are parsed by pure functions, idle users are kicked by a hashed timer
//! wheel, and a broadcast is encoded once and appended to every recipient's write buffer,
//! which the loop flushes once per turn: one `write` per recipient per turn, however many
//! messages it holds. No locks, no channels, no async runtime. WebSocket and HTTP clients
//! (seeds 003 and 004) live in the same loop, slab and user space as line clients.
//!
//! # Layout
//! - [`config`]: settings and their defaults, with units.
//! - [`cli`]: the command-line flags, shared by the server binaries.
//! - [`server`]: the loop: poll, accept, dispatch, expire, close, flush; its `chat` part
//!   runs the line commands and its `web` part HTTP and the WebSocket protocols.
//! - [`conn`]: one socket with its buffers and state; knows nothing of chat.
//! - [`protocol`]: pure line framing and command parsing.
//! - [`http`]: pure HTTP/1.1 request heads (httparse) and responses.
//! - [`ws`]: pure RFC 6455 framing on the connection's buffers.
//! - [`im`]: seed 003's JSON protocol (`/im`), parsed and encoded.
//! - [`hub`]: seed 004's hub protocol (`/ws/{id}`), parsed and encoded.
//! - [`metrics`]: counters, rendered for Prometheus.
//! - [`directory`]: user names to connection tokens.
//! - [`timer`]: the hashed timer wheel of idle deadlines.
//! - [`heap`]: giving freed buffer memory back to the OS after a storm.
//! - [`text`]: every text the server says, in zh and en.
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
pub mod text;
pub mod timer;

pub use config::Config;
pub use net::{Server, StartError};
