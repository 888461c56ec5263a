//! The user directory: who is online under which name, and on which connection.
//!
//! Names are unique among online users. A connection's default name is its peer address
//! `ip:port`, which is unique by construction and which no chosen name can equal (chosen
//! names never contain `:`). The directory only records; it never sends anything.

use mio::Token;
use std::collections::HashMap;

/// Why a name could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameTaken;

/// Names of online users mapped to their connection tokens.
#[derive(Debug, Default)]
pub struct Directory {
    by_name: HashMap<Box<str>, Token>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Users online.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether nobody is online.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Records `name` as `token`'s.
    ///
    /// # Errors
    /// [`NameTaken`] when another connection holds `name`; claiming one's own name again
    /// succeeds.
    pub fn claim(&mut self, name: &str, token: Token) -> Result<(), NameTaken> {
        match self.by_name.get(name) {
            Some(&holder) if holder != token => Err(NameTaken),
            Some(_) => Ok(()),
            None => {
                self.by_name.insert(name.into(), token);
                Ok(())
            }
        }
    }

    /// Moves `token` from name `old` to name `new`, atomically: on error nothing changed.
    ///
    /// # Errors
    /// [`NameTaken`] when another connection holds `new`.
    pub fn rename(&mut self, old: &str, new: &str, token: Token) -> Result<(), NameTaken> {
        self.claim(new, token)?;
        if old != new {
            self.release(old, token);
        }
        Ok(())
    }

    /// Forgets `name` if `token` holds it (a stale release is harmless).
    pub fn release(&mut self, name: &str, token: Token) {
        if self.by_name.get(name) == Some(&token) {
            self.by_name.remove(name);
        }
    }

    /// The connection of the user called `name`, if online. Bytes that are not UTF-8 name
    /// nobody.
    pub fn lookup(&self, name: &[u8]) -> Option<Token> {
        let name = std::str::from_utf8(name).ok()?;
        self.by_name.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_name_is_found() {
        let mut d = Directory::new();
        d.claim("127.0.0.1:5000", Token(1)).unwrap();
        assert_eq!(d.lookup(b"127.0.0.1:5000"), Some(Token(1)));
        assert_eq!(d.lookup(b"nobody"), None);
        assert_eq!(d.lookup(b"\xff"), None);
    }

    #[test]
    fn rename_to_taken_name_is_refused_and_changes_nothing() {
        let mut d = Directory::new();
        d.claim("alice", Token(1)).unwrap();
        d.claim("bob", Token(2)).unwrap();
        assert_eq!(d.rename("bob", "alice", Token(2)), Err(NameTaken));
        assert_eq!(d.lookup(b"alice"), Some(Token(1)));
        assert_eq!(d.lookup(b"bob"), Some(Token(2)));
    }

    #[test]
    fn rename_frees_the_old_name() {
        let mut d = Directory::new();
        d.claim("a", Token(1)).unwrap();
        d.rename("a", "b", Token(1)).unwrap();
        assert_eq!(d.lookup(b"a"), None);
        assert_eq!(d.lookup(b"b"), Some(Token(1)));
        assert_eq!(d.len(), 1);
        d.claim("a", Token(2)).unwrap();
    }

    #[test]
    fn rename_to_ones_own_name_succeeds() {
        let mut d = Directory::new();
        d.claim("a", Token(1)).unwrap();
        d.rename("a", "a", Token(1)).unwrap();
        assert_eq!(d.lookup(b"a"), Some(Token(1)));
    }

    #[test]
    fn release_by_a_stale_holder_keeps_the_new_owner() {
        let mut d = Directory::new();
        d.claim("a", Token(1)).unwrap();
        d.release("a", Token(1));
        d.claim("a", Token(2)).unwrap();
        d.release("a", Token(1));
        assert_eq!(d.lookup(b"a"), Some(Token(2)));
        assert!(!d.is_empty());
    }
}
