//! The user directory: which online user holds which name.
//!
//! Names are unique among online users. A connection's default name is its peer address
//! `ip:port`, unique by construction; a chosen name never contains `:`, so the two kinds can
//! never collide, and they are kept in two maps: default names by `SocketAddr` (no string
//! per connection), chosen names by string. The directory only records; it sends nothing.
//!
//! Chosen names are also unique by how they *look*: two names with the same confusable
//! skeleton (Unicode TR39 §4, as the Ergo IRC server does for nicks: `аlice` with a
//! Cyrillic `а` looks like `alice`) cannot both be held, whenever either of them has a
//! character beyond ASCII. Two ASCII names never clash this way, so `Tom` and `Torn` (whose
//! skeletons agree) can both exist, as people who type in ASCII expect. Every chosen name's
//! skeleton is indexed with whether that name is ASCII; a claim looks up its own skeleton.
//! The API's sender name (`system`, exactly, case-sensitive) and its look-alikes are
//! reserved: nobody holds them, and nobody may take them.

use super::UserId;
use crate::text;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use unicode_security::confusable_detection::skeleton;

/// Names no user may take: the sender of the HTTP API's messages, in every language.
const RESERVED: [&str; 2] = [text::ZH.web.system_sender, text::EN.web.system_sender];

/// Why a name could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameTaken;

/// Names of online users mapped to their connection ids.
#[derive(Debug, Default)]
pub struct Directory {
    by_addr: HashMap<SocketAddr, UserId>,
    by_name: HashMap<Box<str>, UserId>,
    /// The skeleton of every chosen name: who holds a name that looks like it, and whether
    /// that name is ASCII (several ASCII names may share one skeleton).
    by_skeleton: HashMap<Box<str>, Vec<(UserId, bool)>>,
}

/// A name's confusable skeleton (TR39): what it looks like, as a string.
fn skeleton_of(name: &str) -> Box<str> {
    skeleton(name).collect::<String>().into()
}

impl Directory {
    /// Lists a newcomer under its default name, its address.
    ///
    /// # Errors
    /// [`NameTaken`] if another connection with that address is still listed.
    pub fn join(&mut self, addr: SocketAddr, id: UserId) -> Result<(), NameTaken> {
        match self.by_addr.get(&addr) {
            Some(&holder) if holder != id => Err(NameTaken),
            _ => {
                self.by_addr.insert(addr, id);
                Ok(())
            }
        }
    }

    /// Records the chosen name `name` as `id`'s (a WebSocket user's id).
    ///
    /// # Errors
    /// [`NameTaken`] when another connection holds it; claiming one's own name succeeds.
    pub fn claim(&mut self, name: &str, id: UserId) -> Result<(), NameTaken> {
        match self.by_name.get(name) {
            Some(&holder) if holder != id => Err(NameTaken),
            Some(_) => Ok(()),
            None => {
                let skeleton = self.check_looks(name, id)?;
                self.insert(name, skeleton, id);
                Ok(())
            }
        }
    }

    /// Whether `id` may take `name` as far as reservations and look-alikes go (not whether
    /// the exact name is free): for a fast refusal before asking the cluster.
    pub fn may_take(&self, name: &str, id: Option<UserId>) -> bool {
        // No user has this id: only the reservations and other users' names count.
        let id = id.unwrap_or(UserId(u32::MAX));
        self.check_looks(name, id).is_ok()
    }

    /// Refuses a reserved name, and a name that looks like one held by someone else when
    /// either has a non-ASCII character; returns `name`'s skeleton otherwise.
    fn check_looks(&self, name: &str, id: UserId) -> Result<Box<str>, NameTaken> {
        if RESERVED.contains(&name) {
            return Err(NameTaken);
        }
        let skeleton = skeleton_of(name);
        let ascii = name.is_ascii();
        if !ascii && RESERVED.iter().any(|r| skeleton_of(r) == skeleton) {
            return Err(NameTaken);
        }
        let clash = self.by_skeleton.get(&skeleton).is_some_and(|holders| {
            holders
                .iter()
                .any(|&(holder, holder_ascii)| holder != id && !(ascii && holder_ascii))
        });
        if clash {
            return Err(NameTaken);
        }
        Ok(skeleton)
    }

    /// Records `name`, whose skeleton is `skeleton`, as `id`'s.
    fn insert(&mut self, name: &str, skeleton: Box<str>, id: UserId) {
        self.by_name.insert(name.into(), id);
        self.by_skeleton
            .entry(skeleton)
            .or_default()
            .push((id, name.is_ascii()));
    }

    /// Forgets `name` as `id`'s, skeleton included.
    fn remove(&mut self, name: &str, id: UserId) {
        self.by_name.remove(name);
        let skeleton = skeleton_of(name);
        if let Some(holders) = self.by_skeleton.get_mut(&skeleton) {
            holders.retain(|&(holder, _)| holder != id);
            if holders.is_empty() {
                self.by_skeleton.remove(&skeleton);
            }
        }
    }

    /// Moves `id` from its current name (`chosen`, or its address when `None`) to `new`,
    /// atomically: on error nothing changed. Renaming to one's own name succeeds.
    ///
    /// # Errors
    /// [`NameTaken`] when another connection holds `new`.
    pub fn rename(
        &mut self,
        addr: SocketAddr,
        chosen: Option<&str>,
        new: &str,
        id: UserId,
    ) -> Result<(), NameTaken> {
        match self.by_name.get(new) {
            Some(&holder) if holder != id => return Err(NameTaken),
            Some(_) => return Ok(()),
            None => {}
        }
        // The user's own current name never clashes with its new one.
        let skeleton = self.check_looks(new, id)?;
        self.leave(addr, chosen, id);
        self.insert(new, skeleton, id);
        Ok(())
    }

    /// Forgets `id`'s current name (a stale call is harmless).
    pub fn leave(&mut self, addr: SocketAddr, chosen: Option<&str>, id: UserId) {
        match chosen {
            Some(name) if self.by_name.get(name) == Some(&id) => self.remove(name, id),
            None if self.by_addr.get(&addr) == Some(&id) => {
                self.by_addr.remove(&addr);
            }
            _ => {}
        }
    }

    /// The connection of the user called `name`, if online. An address names its
    /// connection only in its canonical form (`127.0.0.1:5000`, not `127.0.0.1:05000`), and
    /// only while that user has not chosen a name. Bytes that are not UTF-8 name nobody.
    pub fn lookup(&self, name: &[u8]) -> Option<UserId> {
        let name = std::str::from_utf8(name).ok()?;
        if !name.contains(':') {
            return self.by_name.get(name).copied();
        }
        if let Some(addr) = canonical_v4(name) {
            return self.by_addr.get(&addr).copied();
        }
        // Left: IPv6 addresses, IPv4 ones written another way (which name nobody), and
        // cluster default names (`ip:port@node`), chosen names as far as this directory is
        // concerned.
        match name.parse::<SocketAddr>() {
            Ok(addr) if is_canonical(&addr, name) => self.by_addr.get(&addr).copied(),
            Ok(_) => None,
            Err(_) => self.by_name.get(name).copied(),
        }
    }
}

/// The IPv4 address `text` names if it is written the one way addresses are shown
/// (`a.b.c.d:port`, no leading zeros), read digit by digit: every whisper to a default
/// name comes here, and `core::net`'s parser with the `fmt` check below were 8 % of the
/// server's time in the private-message benchmark. Anything else is left to them.
fn canonical_v4(text: &str) -> Option<SocketAddr> {
    // Four octets and the port; which part the digits go to, and how many it has so far.
    let mut parts = [0u32; 5];
    let (mut part, mut digits) = (0, 0);
    for &byte in text.as_bytes() {
        match byte {
            b'0'..=b'9' => {
                let value = parts.get_mut(part)?;
                if digits == 5 || (digits == 1 && *value == 0) {
                    return None; // too long, or a leading zero
                }
                *value = *value * 10 + u32::from(byte - b'0');
                digits += 1;
            }
            b'.' if part < 3 && digits > 0 => (part, digits) = (part + 1, 0),
            b':' if part == 3 && digits > 0 => (part, digits) = (part + 1, 0),
            _ => return None,
        }
    }
    if part != 4 || digits == 0 {
        return None;
    }
    let [a, b, c, d, port] = parts;
    let octets = [a, b, c, d].map(u8::try_from);
    let [Ok(a), Ok(b), Ok(c), Ok(d)] = octets else {
        return None;
    };
    Some(SocketAddr::from(([a, b, c, d], u16::try_from(port).ok()?)))
}

/// Whether `text` is exactly how `addr` is written (`127.0.0.1:5000`, not `:05000`).
fn is_canonical(addr: &SocketAddr, text: &str) -> bool {
    let mut canonical = [0u8; 64];
    let mut w = &mut canonical[..];
    if write!(w, "{addr}").is_err() {
        return false;
    }
    let len = 64 - w.len();
    canonical.get(..len) == Some(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_newcomer_is_found_by_its_address() {
        let mut d = Directory::default();
        d.join(addr(5000), UserId(1)).unwrap();
        assert_eq!(d.lookup(b"127.0.0.1:5000"), Some(UserId(1)));
        assert_eq!(d.lookup(b"127.0.0.1:05000"), None);
        assert_eq!(d.lookup(b"127.0.0.1:5001"), None);
        assert_eq!(d.lookup(b"nobody"), None);
        assert_eq!(d.lookup(b"\xff"), None);
    }

    #[test]
    fn canonical_v4_reads_exactly_what_display_writes() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:5000",
            "255.255.255.255:65535",
            "10.0.0.1:1",
            "127.0.0.1:05000",
            "127.0.0.01:5000",
            "256.0.0.1:1",
            "1.2.3:4",
            "1.2.3.4.5:6",
            "1.2.3.4:65536",
            "1.2.3.4:",
            ":1",
            "1..3.4:5",
            "+1.2.3.4:5",
            "1.2.3.4:+5",
            "[::1]:5000",
            "127.0.0.1:5000@a",
            "１.2.3.4:5",
        ] {
            let by_std = text
                .parse::<SocketAddr>()
                .ok()
                .filter(|a| a.is_ipv4() && a.to_string() == text);
            assert_eq!(canonical_v4(text), by_std, "{text}");
        }
    }

    #[test]
    fn after_a_rename_only_the_new_name_finds_the_user() {
        let mut d = Directory::default();
        d.join(addr(5000), UserId(1)).unwrap();
        d.rename(addr(5000), None, "alice", UserId(1)).unwrap();
        assert_eq!(d.lookup(b"127.0.0.1:5000"), None);
        assert_eq!(d.lookup(b"alice"), Some(UserId(1)));
        d.rename(addr(5000), Some("alice"), "b", UserId(1)).unwrap();
        assert_eq!(d.lookup(b"alice"), None);
        assert_eq!(d.lookup(b"b"), Some(UserId(1)));
        assert_eq!(d.lookup(b"127.0.0.1:5000"), None);
    }

    #[test]
    fn rename_to_taken_name_is_refused_and_changes_nothing() {
        let mut d = Directory::default();
        d.join(addr(1), UserId(1)).unwrap();
        d.join(addr(2), UserId(2)).unwrap();
        d.rename(addr(1), None, "alice", UserId(1)).unwrap();
        assert_eq!(d.rename(addr(2), None, "alice", UserId(2)), Err(NameTaken));
        assert_eq!(d.lookup(b"alice"), Some(UserId(1)));
        assert_eq!(d.lookup(b"127.0.0.1:2"), Some(UserId(2)));
    }

    #[test]
    fn rename_to_ones_own_name_succeeds() {
        let mut d = Directory::default();
        d.join(addr(1), UserId(1)).unwrap();
        d.rename(addr(1), None, "a", UserId(1)).unwrap();
        d.rename(addr(1), Some("a"), "a", UserId(1)).unwrap();
        assert_eq!(d.lookup(b"a"), Some(UserId(1)));
    }

    #[test]
    fn leave_frees_the_name_and_a_stale_leave_keeps_the_new_owner() {
        let mut d = Directory::default();
        d.join(addr(1), UserId(1)).unwrap();
        d.rename(addr(1), None, "a", UserId(1)).unwrap();
        d.leave(addr(1), Some("a"), UserId(1));
        assert_eq!(d.lookup(b"a"), None);
        d.join(addr(2), UserId(2)).unwrap();
        d.rename(addr(2), None, "a", UserId(2)).unwrap();
        d.leave(addr(1), Some("a"), UserId(1));
        assert_eq!(d.lookup(b"a"), Some(UserId(2)));
    }

    #[test]
    fn cluster_default_names_with_colons_are_chosen_names() {
        let mut d = Directory::default();
        d.claim("127.0.0.1:5000@a", UserId(4)).unwrap();
        assert_eq!(d.lookup(b"127.0.0.1:5000@a"), Some(UserId(4)));
        assert_eq!(d.lookup(b"127.0.0.1:5000"), None);
    }

    #[test]
    fn look_alikes_clash_when_either_name_is_not_ascii() {
        let mut d = Directory::default();
        d.claim("alice", UserId(1)).unwrap();
        assert_eq!(d.claim("аlice", UserId(2)), Err(NameTaken)); // Cyrillic а
        assert!(!d.may_take("аlice", None));
        d.claim("Tom", UserId(3)).unwrap();
        d.claim("Torn", UserId(4)).unwrap(); // both ASCII: no clash
        d.claim("张三", UserId(5)).unwrap();
        d.join(addr(6), UserId(6)).unwrap();
        assert_eq!(d.rename(addr(6), None, "аlice", UserId(6)), Err(NameTaken));
        assert_eq!(d.lookup(b"127.0.0.1:6"), Some(UserId(6)));
        // Alice may switch to the look-alike herself; then the ASCII name clashes.
        d.rename(addr(1), Some("alice"), "аlice", UserId(1))
            .unwrap();
        assert_eq!(d.claim("alice", UserId(2)), Err(NameTaken));
        d.leave(addr(1), Some("аlice"), UserId(1));
        d.claim("alice", UserId(2)).unwrap();
        assert!(d.by_skeleton.values().all(|h| !h.is_empty()));
    }

    #[test]
    fn the_api_sender_is_reserved() {
        let mut d = Directory::default();
        assert_eq!(d.claim("system", UserId(1)), Err(NameTaken));
        assert_eq!(d.claim("ѕystem", UserId(1)), Err(NameTaken)); // Cyrillic ѕ
        assert!(!d.may_take("system", None));
        d.claim("System", UserId(1)).unwrap(); // case-sensitive
        d.claim("systems", UserId(2)).unwrap();
    }

    #[test]
    fn ipv6_addresses_are_names_too() {
        let mut d = Directory::default();
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        d.join(v6, UserId(3)).unwrap();
        assert_eq!(d.lookup(b"[::1]:7000"), Some(UserId(3)));
    }
}
