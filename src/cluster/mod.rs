//! Many servers, one chat.
pub mod link;
pub mod wire;
