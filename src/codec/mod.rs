//! Pure codecs: framing and parsing with no I/O, no clock and no state beyond a buffer.
//! Nothing here knows a connection, a user or the server; each function takes bytes and
//! returns a value, so every edge case is a one-line unit test (and a fuzz target).

pub mod http;
pub mod hub;
pub mod im;
pub mod line;
pub mod ws;
