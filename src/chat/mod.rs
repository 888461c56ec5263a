//! The chat core.
pub mod directory;
