//! Private messages kept for signed-in users who are offline (`--auth-secret`): the letter
//! every server keeps and delivers the same way, and the in-memory mailbox of a server
//! without Redis (with `--redis` the letters live in Redis, see `cluster`).
//!
//! Only a name that has signed in with a token gets mail: a name without a token can be
//! taken by anyone, so a letter kept for it could be read by whoever takes it next. A
//! signed login is remembered for the TTL (`--offline-ttl`) after the user was last online
//! with it (its login, renewed when it leaves: a user online for longer than the TTL still
//! gets mail once gone), and each letter for the TTL after it was sent.
//!
//! Bounds: at most `max_per_user` letters per name (`--offline-max`); a letter beyond that
//! is refused and its sender told, so nobody's mail is dropped without a word. In all, at
//! most [`MAX_TOTAL_BYTES`] of letters and [`MAX_NAMES`] names; past either, new letters
//! (or new names) are refused the same way. Expired entries are swept a batch at a time
//! from a queue holding each name once with when to look at it next; an entry renewed
//! meanwhile goes back in the queue at its new time when the old one comes (the timer
//! wheel's lazy reset), so an entry is freed at most one TTL late, and correctness never
//! depends on the sweep: every question checks the times itself.
//!
//! Time is wall-clock milliseconds since the Unix epoch, passed in: letters cross servers
//! through Redis in that unit.

use super::Peer;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Letter bytes (texts and sender names) the in-memory mailbox holds at most, in all.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// Names (signed logins and mailboxes) the in-memory mailbox remembers at most.
pub const MAX_NAMES: usize = 250_000;
/// What a letter costs besides its text and sender name: its slot in a queue.
const LETTER_OVERHEAD_BYTES: usize = std::mem::size_of::<Letter>();
/// Expired names looked at per call, so one call never stalls the loop.
const SWEEP_BATCH: usize = 256;

/// A private message kept for a user who was offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The sender's name, as it was when sent.
    pub from: Box<str>,
    /// The sender's address.
    pub addr: SocketAddr,
    /// When it was sent: wall-clock milliseconds since the Unix epoch.
    pub sent_ms: u64,
    /// The text, byte for byte.
    pub text: Box<[u8]>,
}

impl Letter {
    /// Whether it is still to be delivered at `now_ms`, with letters kept `ttl`.
    pub fn fresh(&self, now_ms: u64, ttl: Duration) -> bool {
        now_ms < self.sent_ms.saturating_add(millis(ttl))
    }

    fn cost(&self) -> usize {
        self.from.len() + self.text.len() + LETTER_OVERHEAD_BYTES
    }
}

/// What became of a private message to a name that is online nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The name has not signed in with a token within the TTL: it is nobody's.
    NotSigned,
    /// Kept for the user's next signed login.
    Saved,
    /// The user's mailbox (or all mail together) is full: not kept.
    Full,
    /// The name has signed in before; nothing was asked to be kept (an empty text).
    Signed,
}

/// Letters for a user who just signed in, oldest first, with whom they are for: its
/// connection, and its name (checked again on delivery).
#[derive(Debug)]
pub struct Delivery {
    /// The connection that signed in.
    pub peer: Peer,
    /// Its user's name.
    pub name: Box<str>,
    /// The letters, oldest first.
    pub letters: Vec<Letter>,
}

/// What is known of one name.
#[derive(Debug, Default)]
struct Entry {
    /// When the name was last online signed in (its login, or its leaving), while within
    /// the TTL (the sweep clears it).
    signed_ms: Option<u64>,
    /// Letters, oldest first.
    letters: VecDeque<Letter>,
}

impl Entry {
    /// When the entry ends: one TTL after its last signed login or its newest letter.
    fn ends_ms(&self, ttl_ms: u64) -> u64 {
        let newest = self.letters.back().map(|l| l.sent_ms);
        self.signed_ms
            .max(newest)
            .unwrap_or(0)
            .saturating_add(ttl_ms)
    }
}

/// The in-memory mailbox (see the module docs).
#[derive(Debug)]
pub struct Offline {
    max_per_user: usize,
    ttl: Duration,
    entries: HashMap<Box<str>, Entry>,
    /// Every name in `entries` once, with when to look at it again; nearly in order.
    due: VecDeque<(u64, Box<str>)>,
    /// What the kept letters cost, in bytes.
    bytes: usize,
}

impl Offline {
    /// An empty mailbox keeping at most `max_per_user` letters per name for `ttl`.
    pub fn new(max_per_user: usize, ttl: Duration) -> Self {
        Offline {
            max_per_user,
            ttl,
            entries: HashMap::new(),
            due: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Records that `name` signed in with a token at `now_ms`, and takes what was kept for
    /// it, oldest first.
    pub fn sign_in(&mut self, name: &str, now_ms: u64) -> Vec<Letter> {
        self.sweep(now_ms);
        let Some(entry) = self.entry(name, now_ms) else {
            return Vec::new(); // too many names: this one is not remembered
        };
        entry.signed_ms = Some(now_ms);
        let letters: Vec<Letter> = entry.letters.drain(..).collect();
        let taken: usize = letters.iter().map(Letter::cost).sum();
        self.bytes = self.bytes.saturating_sub(taken);
        letters
            .into_iter()
            .filter(|l| l.fresh(now_ms, self.ttl))
            .collect()
    }

    /// A signed-in user left: its signed login is remembered for the TTL from now, since
    /// mail for it is kept from now on.
    pub fn signed_out(&mut self, name: &str, now_ms: u64) {
        self.sweep(now_ms);
        if let Some(entry) = self.entry(name, now_ms) {
            entry.signed_ms = Some(now_ms);
        }
    }

    /// Keeps `letter` for `name` if it signed in within the TTL; `None` only asks whether it
    /// did.
    pub fn keep(&mut self, name: &str, letter: Option<Letter>, now_ms: u64) -> Keep {
        self.sweep(now_ms);
        let ttl = self.ttl;
        let Some(entry) = self.entries.get_mut(name) else {
            return Keep::NotSigned;
        };
        let signed = entry
            .signed_ms
            .is_some_and(|at| now_ms < at.saturating_add(millis(ttl)));
        if !signed {
            return Keep::NotSigned;
        }
        let Some(letter) = letter else {
            return Keep::Signed;
        };
        // Expired letters make room before the count is checked.
        while entry.letters.front().is_some_and(|l| !l.fresh(now_ms, ttl)) {
            if let Some(old) = entry.letters.pop_front() {
                self.bytes = self.bytes.saturating_sub(old.cost());
            }
        }
        let cost = letter.cost();
        if entry.letters.len() >= self.max_per_user || self.bytes + cost > MAX_TOTAL_BYTES {
            return Keep::Full;
        }
        entry.letters.push_back(letter);
        self.bytes += cost;
        Keep::Saved
    }

    /// Puts back letters that could not be delivered (their recipient left before they
    /// arrived), ahead of any kept since.
    pub fn put_back(&mut self, name: &str, letters: Vec<Letter>, now_ms: u64) {
        let cost: usize = letters.iter().map(Letter::cost).sum();
        let Some(entry) = self.entry(name, now_ms) else {
            return;
        };
        for letter in letters.into_iter().rev() {
            entry.letters.push_front(letter);
        }
        self.bytes += cost;
    }

    /// Names remembered, letters kept and their cost in bytes (what the tests look at).
    #[cfg(test)]
    fn len(&self) -> (usize, usize, usize) {
        let letters = self.entries.values().map(|e| e.letters.len()).sum();
        (self.entries.len(), letters, self.bytes)
    }

    /// The entry of `name`, made if there is room for another name.
    fn entry(&mut self, name: &str, now_ms: u64) -> Option<&mut Entry> {
        if !self.entries.contains_key(name) {
            if self.entries.len() >= MAX_NAMES {
                return None;
            }
            let ttl_ms = millis(self.ttl);
            self.entries.insert(name.into(), Entry::default());
            self.due
                .push_back((now_ms.saturating_add(ttl_ms), name.into()));
        }
        self.entries.get_mut(name)
    }

    /// Frees what expired by `now_ms`: at most [`SWEEP_BATCH`] names looked at.
    fn sweep(&mut self, now_ms: u64) {
        let ttl_ms = millis(self.ttl);
        for _ in 0..SWEEP_BATCH {
            match self.due.front() {
                Some((at, _)) if *at <= now_ms => {}
                _ => return,
            }
            let Some((_, name)) = self.due.pop_front() else {
                return;
            };
            let Some(entry) = self.entries.get_mut(&name) else {
                continue;
            };
            let ends = entry.ends_ms(ttl_ms);
            if ends > now_ms {
                self.due.push_back((ends, name)); // renewed meanwhile
                continue;
            }
            if let Some(gone) = self.entries.remove(&name) {
                let cost: usize = gone.letters.iter().map(Letter::cost).sum();
                self.bytes = self.bytes.saturating_sub(cost);
            }
        }
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn letter(text: &str, sent_ms: u64) -> Letter {
        Letter {
            from: "bob".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 5)),
            sent_ms,
            text: text.as_bytes().into(),
        }
    }

    fn texts(letters: &[Letter]) -> Vec<&[u8]> {
        letters.iter().map(|l| &*l.text).collect()
    }

    #[test]
    fn only_a_signed_name_gets_mail_and_takes_it_oldest_first() {
        let mut o = Offline::new(10, TTL);
        assert_eq!(o.keep("alice", Some(letter("x", 0)), 0), Keep::NotSigned);
        assert!(o.sign_in("alice", 1_000).is_empty());
        assert_eq!(o.keep("alice", None, 2_000), Keep::Signed);
        assert_eq!(
            o.keep("alice", Some(letter("one", 2_000)), 2_000),
            Keep::Saved
        );
        assert_eq!(
            o.keep("alice", Some(letter("two", 3_000)), 3_000),
            Keep::Saved
        );
        let got = o.sign_in("alice", 4_000);
        assert_eq!(texts(&got), [b"one".as_slice(), b"two"]);
        assert!(o.sign_in("alice", 5_000).is_empty());
        assert_eq!(o.len(), (1, 0, 0));
    }

    #[test]
    fn a_signed_login_is_remembered_for_the_ttl_after_its_user_left() {
        let mut o = Offline::new(10, TTL);
        o.sign_in("alice", 0);
        // Online for longer than the TTL, then gone: mail is kept from its leaving on.
        o.signed_out("alice", 25_000);
        assert_eq!(
            o.keep("alice", Some(letter("x", 26_000)), 26_000),
            Keep::Saved
        );
        assert_eq!(o.keep("alice", None, 34_999), Keep::Signed);
        assert_eq!(o.keep("alice", None, 35_000), Keep::NotSigned);
    }

    #[test]
    fn a_full_mailbox_refuses_the_newest_and_keeps_the_oldest() {
        let mut o = Offline::new(2, TTL);
        o.sign_in("alice", 0);
        for (i, text) in ["1", "2"].into_iter().enumerate() {
            assert_eq!(
                o.keep("alice", Some(letter(text, i as u64)), 1),
                Keep::Saved
            );
        }
        assert_eq!(o.keep("alice", Some(letter("3", 2)), 2), Keep::Full);
        assert_eq!(texts(&o.sign_in("alice", 3)), [b"1".as_slice(), b"2"]);
    }

    #[test]
    fn letters_and_signed_logins_expire_after_the_ttl() {
        let mut o = Offline::new(2, TTL);
        o.sign_in("alice", 0);
        assert_eq!(o.keep("alice", Some(letter("old", 1)), 1), Keep::Saved);
        assert_eq!(
            o.keep("alice", Some(letter("new", 9_000)), 9_000),
            Keep::Saved
        );
        // The old letter's room is free again once it expired.
        assert_eq!(o.keep("alice", Some(letter("3", 9_999)), 9_999), Keep::Full);
        assert_eq!(
            o.keep("alice", Some(letter("late", 10_001)), 10_001),
            Keep::NotSigned
        );
        assert_eq!(texts(&o.sign_in("alice", 18_000)), [b"new".as_slice()]);
        // Nothing refreshes a name but signing in: it and its mail are swept a TTL later.
        assert_eq!(
            o.keep("alice", Some(letter("x", 20_000)), 20_000),
            Keep::Saved
        );
        let _ = o.keep("nobody", None, 40_000);
        assert_eq!(o.len(), (0, 0, 0));
    }

    #[test]
    fn expired_letters_make_room() {
        let mut o = Offline::new(1, TTL);
        o.sign_in("alice", 0);
        assert_eq!(o.keep("alice", Some(letter("a", 0)), 0), Keep::Saved);
        // Only letters put back can outlive the signed login they were kept under.
        let signed_again = o.sign_in("alice", 9_500);
        assert_eq!(texts(&signed_again), [b"a".as_slice()]);
        o.put_back("alice", signed_again, 9_500);
        assert_eq!(
            o.keep("alice", Some(letter("b", 10_500)), 10_500),
            Keep::Saved
        );
        assert_eq!(texts(&o.sign_in("alice", 11_000)), [b"b".as_slice()]);
    }

    #[test]
    fn put_back_letters_come_before_newer_ones() {
        let mut o = Offline::new(5, TTL);
        o.sign_in("alice", 0);
        o.keep("alice", Some(letter("1", 1)), 1);
        o.keep("alice", Some(letter("2", 2)), 2);
        let taken = o.sign_in("alice", 3);
        o.keep("alice", Some(letter("3", 4)), 4);
        o.put_back("alice", taken, 5);
        assert_eq!(texts(&o.sign_in("alice", 6)), [b"1".as_slice(), b"2", b"3"]);
    }

    #[test]
    fn all_mail_together_is_bounded() {
        let mut o = Offline::new(usize::MAX, TTL);
        o.sign_in("alice", 0);
        let big = "x".repeat(1024 * 1024);
        let mut saved = 0;
        for i in 0..100 {
            match o.keep("alice", Some(letter(&big, i)), i) {
                Keep::Saved => saved += 1,
                other => {
                    assert_eq!(other, Keep::Full);
                    break;
                }
            }
        }
        assert_eq!(saved, MAX_TOTAL_BYTES / (1024 * 1024) - 1);
        assert!(o.len().2 <= MAX_TOTAL_BYTES);
    }
}
