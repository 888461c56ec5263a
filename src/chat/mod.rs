//! The chat core: who is online, under which name, in which room, and where a name is
//! found. Protocol-neutral and free of I/O: it keeps users and answers questions about
//! them; what a user *sees* is an [`Event`] that each protocol adapter renders in its own
//! bytes, and what travels between servers is the cluster's business.
//!
//! Invariants:
//! - a user is listed here exactly while online; its name lives only here (its connection
//!   knows its [`UserId`], nothing more), so a rename or a leave has one place to change;
//! - names are unique among the users of this server (`directory`), and, in a cluster,
//!   distinct from the names the replica of other servers' users holds (Redis decides
//!   races; the replica is only a fast answer);
//! - [`Chat::locate`] is the one routing rule: local, on another server, nowhere, or
//!   unknown while the cluster is unreachable;
//! - rooms are named (the name rules of user names; `/im` appIDs are rooms named by their
//!   number), and interned to a dense [`RoomId`] while anyone here is in them: the fan-out
//!   reads a room's [`Seat`] list by index, never by name. A room is freed when its last
//!   user here leaves it, and its id may then name another room: hold a room's *name*
//!   across turns (departures, the cluster), its id only within one.
//!
//! [`offline`] keeps private messages for signed-in users who are offline, in memory;
//! [`history`] each room's recent messages.

mod directory;
pub mod history;
pub mod offline;

use directory::Directory;
pub use directory::NameTaken;
use slab::Slab;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::text;

/// The room of line and hub users, and of `/im` logins that name none (appID 101).
pub const DEFAULT_ROOM: &str = "101";

/// What the loop gave the core to reach a user's connection by: opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(pub usize);

/// A user's key in the core, stable while the user is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub u32);

/// A room's key in the core, stable while anyone here is in the room (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId(pub u32);

/// A room with users here: its name and its members, for the fan-out.
#[derive(Debug)]
struct Room {
    name: Box<str>,
    /// The members, in no particular order.
    seats: Vec<Seat>,
}

/// What a move to a room did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The user was in that room already: nothing changed.
    Stayed,
    /// The user left the room of this name for the new one.
    From(Box<str>),
}

/// Which protocol a user speaks. The core only needs it for one rule (a newer connection
/// of the same kind takes a name over; another kind is refused); the adapters use it to
/// pick the bytes a user receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The newline protocol.
    Line = 0,
    /// `/im` JSON over WebSocket.
    Im = 1,
    /// `/ws/{id}` hub JSON over WebSocket.
    Hub = 2,
}

impl Kind {
    /// How many kinds there are (for per-kind encode buffers).
    pub const COUNT: usize = 3;

    /// A dense index, `0..COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An online user of this server.
#[derive(Debug)]
pub struct Member {
    /// How to reach the user's connection.
    pub peer: Peer,
    /// The protocol it speaks.
    pub kind: Kind,
    /// The peer address: the `[addr]` of notices, and the name until one is chosen.
    pub addr: SocketAddr,
    /// The room.
    pub room: RoomId,
    /// The chosen name; `None` while the user goes by its address.
    name: Option<Box<str>>,
    /// Where the user sits in its room's [`Seat`] list.
    seat: u32,
    /// Whether it logged in with a valid token (`--auth-secret`): when it leaves, mail for
    /// its name is kept from then on.
    pub signed: bool,
}

/// A room member as the fan-out reads it: small and contiguous, so telling a room of
/// thousands touches a few cache lines per hundred users rather than every [`Member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    /// The user.
    pub id: UserId,
    /// How to reach it.
    pub peer: Peer,
    /// Its protocol.
    pub kind: Kind,
}

impl Member {
    /// The user as texts show it.
    pub fn shown(&self) -> text::User<'_> {
        text::User {
            addr: &self.addr,
            name: self.name.as_deref(),
        }
    }

    /// The user's current name, appended to `out`.
    pub fn name_into(&self, out: &mut String) {
        self.shown().push_name_str(out);
    }
}

/// A user of another server, as this one knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The server the user is on.
    pub node: Box<str>,
    /// The room's name.
    pub room: Box<str>,
    /// The user's peer address, for `[addr]` in notices.
    pub addr: SocketAddr,
}

/// Where a named user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On this server.
    Local(UserId),
    /// On the server with this id.
    Remote(Box<str>),
    /// Nowhere in the chat.
    Nowhere,
    /// Not here, and the cluster that would know is unreachable.
    Unknown,
}

/// What a user sees happen, from someone: rendered by each protocol in its own bytes.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Someone came online in the recipient's room.
    Online,
    /// Someone left the recipient's room.
    Offline,
    /// Someone said `text` to the room; `seq` is its number in the room's history (`None`
    /// with history off).
    Say {
        /// What was said.
        text: &'a [u8],
        /// Its number in the room's history.
        seq: Option<u64>,
    },
    /// Someone said this to the recipient alone.
    Whisper(&'a [u8]),
}

/// The users of this server, and what it knows of the others'.
#[derive(Debug, Default)]
pub struct Chat {
    users: Slab<Member>,
    /// The rooms with users here, by id.
    rooms: Slab<Room>,
    /// The same rooms by name.
    room_ids: HashMap<Box<str>, RoomId>,
    dir: Directory,
    /// Users of other servers by name (the cluster keeps it current).
    remote: HashMap<Box<str>, Remote>,
    /// This server's node id in a cluster: default names carry it, so they are unique
    /// across servers.
    node: Option<Box<str>>,
    /// Whether the cluster is reachable (the replica is current).
    cluster_up: bool,
}

impl Chat {
    /// An empty chat; `node` is this server's id in a cluster.
    pub fn new(node: Option<&str>) -> Self {
        Chat {
            node: node.map(Box::from),
            ..Chat::default()
        }
    }

    /// Users online here.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether nobody is online here.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// This server's node id, in a cluster.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Lists a user as online under `name`, or under its default name when `None` (its
    /// address; in a cluster `addr@node`).
    ///
    /// # Errors
    /// [`NameTaken`] when another user here holds the name; nothing changes then.
    pub fn enter(
        &mut self,
        peer: Peer,
        kind: Kind,
        addr: SocketAddr,
        name: Option<&str>,
        room: &str,
    ) -> Result<UserId, NameTaken> {
        let key = self.users.vacant_key();
        // Far more users than file descriptors would be needed to pass u32.
        let id = UserId(u32::try_from(key).map_err(|_| NameTaken)?);
        let name: Option<Box<str>> = match (name, &self.node) {
            (Some(name), _) => Some(name.into()),
            (None, Some(node)) => Some(format!("{addr}@{node}").into()),
            (None, None) => None,
        };
        match &name {
            Some(name) => self.dir.claim(name, id)?,
            None => self.dir.join(addr, id)?,
        }
        let (room, seat) = self.sit(room, Seat { id, peer, kind });
        let taken = self.users.insert(Member {
            peer,
            kind,
            addr,
            room,
            name,
            seat,
            signed: false,
        });
        debug_assert_eq!(taken, key, "a slab fills its vacant key first");
        Ok(id)
    }

    /// Takes a user offline and frees its name; returns it with the name of the room it
    /// left (which is freed if it emptied), or `None` if it was not online.
    pub fn leave(&mut self, id: UserId) -> Option<(Member, Box<str>)> {
        let member = self.users.try_remove(id.0 as usize)?;
        self.dir.leave(member.addr, member.name.as_deref(), id);
        let room = self.stand(member.room, member.seat);
        Some((member, room))
    }

    /// Moves a user to the room called `room` (a valid name), leaving its own; `None` if
    /// the user is not online.
    pub fn move_to(&mut self, id: UserId, room: &str) -> Option<Moved> {
        let member = self.users.get(id.0 as usize)?;
        if self.room_name(member.room) == room {
            return Some(Moved::Stayed);
        }
        let seat = Seat {
            id,
            peer: member.peer,
            kind: member.kind,
        };
        let from = self.stand(member.room, member.seat);
        let (room, at) = self.sit(room, seat);
        if let Some(m) = self.users.get_mut(id.0 as usize) {
            m.room = room;
            m.seat = at;
        }
        Some(Moved::From(from))
    }

    /// Seats `seat` in the room called `name`, interning the room if nobody here is in
    /// it; returns the room and the seat's place.
    fn sit(&mut self, name: &str, seat: Seat) -> (RoomId, u32) {
        let room = match self.room_ids.get(name) {
            Some(&room) => room,
            None => {
                // Rooms here are never more than users here, whose ids fit in a u32.
                let room = RoomId(self.rooms.insert(Room {
                    name: name.into(),
                    seats: Vec::new(),
                }) as u32);
                self.room_ids.insert(name.into(), room);
                room
            }
        };
        let Some(r) = self.rooms.get_mut(room.0 as usize) else {
            return (room, 0);
        };
        let at = r.seats.len() as u32;
        r.seats.push(seat);
        (room, at)
    }

    /// Takes the seat at `at` out of `room`, freeing the room if it empties; returns the
    /// room's name.
    fn stand(&mut self, room: RoomId, at: u32) -> Box<str> {
        let Some(r) = self.rooms.get_mut(room.0 as usize) else {
            return Box::from("");
        };
        let i = at as usize;
        if i < r.seats.len() {
            r.seats.swap_remove(i);
        }
        // The last seat moved into the freed one: tell its user.
        if let Some(moved) = r.seats.get(i) {
            if let Some(m) = self.users.get_mut(moved.id.0 as usize) {
                m.seat = at;
            }
        }
        if !r.seats.is_empty() {
            return r.name.clone();
        }
        match self.rooms.try_remove(room.0 as usize) {
            Some(r) => {
                self.room_ids.remove(&r.name);
                r.name
            }
            None => Box::from(""),
        }
    }

    /// Renames a user; returns its old name. Renaming to one's own name succeeds.
    ///
    /// # Errors
    /// [`NameTaken`] when another user here holds `new`; nothing changes then.
    pub fn rename(&mut self, id: UserId, new: &str) -> Result<String, NameTaken> {
        let member = self.users.get_mut(id.0 as usize).ok_or(NameTaken)?;
        self.dir
            .rename(member.addr, member.name.as_deref(), new, id)?;
        let mut old = String::new();
        member.name_into(&mut old);
        member.name = Some(new.into());
        Ok(old)
    }

    /// Notes that user `id` logged in with a valid token.
    pub fn mark_signed(&mut self, id: UserId) {
        if let Some(member) = self.users.get_mut(id.0 as usize) {
            member.signed = true;
        }
    }

    /// An online user.
    pub fn get(&self, id: UserId) -> Option<&Member> {
        self.users.get(id.0 as usize)
    }

    /// The local user called `name`.
    pub fn find(&self, name: &[u8]) -> Option<UserId> {
        self.dir.lookup(name)
    }

    /// Whether `id` (`None`: a newcomer) may take `name` as far as reserved names and
    /// look-alikes of other users' names go (see `directory`); the exact name may still be
    /// held. A fast answer before a claim goes to the cluster.
    pub fn may_take(&self, name: &str, id: Option<UserId>) -> bool {
        self.dir.may_take(name, id)
    }

    /// Where the user called `name` is: the one routing rule.
    pub fn locate(&self, name: &[u8]) -> Place {
        if let Some(id) = self.dir.lookup(name) {
            return Place::Local(id);
        }
        if self.node.is_none() {
            return Place::Nowhere;
        }
        if !self.cluster_up {
            return Place::Unknown;
        }
        match std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.remote.get(n))
        {
            Some(user) => Place::Remote(user.node.clone()),
            None => Place::Nowhere,
        }
    }

    /// The users online here in `room`, for the fan-out.
    pub fn seats(&self, room: RoomId) -> &[Seat] {
        self.rooms
            .get(room.0 as usize)
            .map_or(&[], |r| r.seats.as_slice())
    }

    /// The room called `name`, if anyone here is in it.
    pub fn room_id(&self, name: &str) -> Option<RoomId> {
        self.room_ids.get(name).copied()
    }

    /// The name of `room` (empty for a room that is gone).
    pub fn room_name(&self, room: RoomId) -> &str {
        self.rooms.get(room.0 as usize).map_or("", |r| &r.name)
    }

    /// Every room with users in the chat (here and on other servers), with how many, in
    /// the order of their names.
    pub fn rooms(&self) -> Vec<(&str, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, room) in &self.rooms {
            *counts.entry(&room.name).or_default() += room.seats.len();
        }
        for r in self.remote.values() {
            *counts.entry(&r.room).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// Every user online here, in a stable order.
    pub fn members(&self) -> impl Iterator<Item = (UserId, &Member)> {
        self.users.iter().map(|(k, m)| (UserId(k as u32), m))
    }

    /// Every user online in the chat (here, then on other servers) with the name of its
    /// room, for `who` and the API.
    pub fn everyone(&self) -> impl Iterator<Item = (text::User<'_>, &str)> {
        let local = self
            .users
            .iter()
            .map(|(_, m)| (m.shown(), self.room_name(m.room)));
        let remote = self.remote.iter().map(|(name, r)| {
            let user = text::User {
                addr: &r.addr,
                name: Some(&**name),
            };
            (user, &*r.room)
        });
        local.chain(remote)
    }

    /// The name of the room of the user called `name`, wherever it is.
    pub fn room_of(&self, name: &str) -> Option<&str> {
        match self.dir.lookup(name.as_bytes()) {
            Some(id) => self.get(id).map(|m| self.room_name(m.room)),
            None if self.cluster_up => self.remote.get(name).map(|r| &*r.room),
            None => None,
        }
    }

    /// Whether the replica says another server holds `name` (a fast refusal; Redis stays
    /// the authority).
    pub fn held_remotely(&self, name: &str) -> bool {
        self.remote.contains_key(name)
    }

    /// Users of other servers known here.
    pub fn remote_count(&self) -> usize {
        self.remote.len()
    }

    /// The nodes that have users, for liveness checks.
    pub fn remote_nodes(&self) -> Vec<Box<str>> {
        let mut nodes: Vec<Box<str>> = self.remote.values().map(|r| r.node.clone()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The cluster is reachable (the replica is being filled) or not (it is dropped).
    pub fn set_cluster_up(&mut self, up: bool) {
        self.cluster_up = up;
        if !up {
            self.remote.clear();
        }
    }

    /// Records a user of another server; returns whether it was new.
    pub fn remote_arrived(&mut self, name: &str, user: Remote) -> bool {
        self.remote.insert(name.into(), user).is_none()
    }

    /// Adds a user from a snapshot, unless a newer event already placed it.
    pub fn remote_known(&mut self, name: &str, user: Remote) {
        self.remote.entry(name.into()).or_insert(user);
    }

    /// Forgets `name` if `node` holds it (a late event never removes a newer holder).
    pub fn remote_left(&mut self, name: &str, node: &str) -> Option<Remote> {
        if self.remote.get(name).is_some_and(|r| &*r.node == node) {
            return self.remote.remove(name);
        }
        None
    }

    /// Forgets every user of `node` (it is dead) and returns them.
    pub fn remote_node_gone(&mut self, node: &str) -> Vec<(Box<str>, Remote)> {
        let names: Vec<Box<str>> = self
            .remote
            .iter()
            .filter(|(_, r)| &*r.node == node)
            .map(|(n, _)| n.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|n| self.remote.remove(&n).map(|r| (n, r)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_user_is_found_by_its_address_until_it_renames() {
        let mut c = Chat::new(None);
        let id = c
            .enter(Peer(7), Kind::Line, addr(5), None, DEFAULT_ROOM)
            .unwrap();
        assert_eq!(c.locate(b"127.0.0.1:5"), Place::Local(id));
        assert_eq!(c.rename(id, "alice").unwrap(), "127.0.0.1:5");
        assert_eq!(c.locate(b"127.0.0.1:5"), Place::Nowhere);
        assert_eq!(c.locate(b"alice"), Place::Local(id));
        assert_eq!(c.get(id).map(|m| m.peer), Some(Peer(7)));
    }

    #[test]
    fn a_taken_name_is_refused_and_leaving_frees_it() {
        let mut c = Chat::new(None);
        let a = c
            .enter(Peer(1), Kind::Im, addr(1), Some("a"), "101")
            .unwrap();
        assert_eq!(
            c.enter(Peer(2), Kind::Im, addr(2), Some("a"), "101"),
            Err(NameTaken)
        );
        let b = c.enter(Peer(2), Kind::Line, addr(2), None, "101").unwrap();
        assert_eq!(c.rename(b, "a"), Err(NameTaken));
        assert!(c.leave(a).is_some());
        assert!(c.leave(a).is_none());
        assert_eq!(c.rename(b, "a").unwrap(), "127.0.0.1:2");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn rooms_keep_their_seats_through_leaves() {
        let mut c = Chat::new(None);
        let ids: Vec<UserId> = (1..=4)
            .map(|p| {
                c.enter(Peer(p), Kind::Line, addr(p as u16), None, "101")
                    .unwrap()
            })
            .collect();
        let other = c
            .enter(Peer(9), Kind::Im, addr(9), Some("x"), "102")
            .unwrap();
        assert!(c.leave(ids[0]).is_some());
        assert!(c.leave(ids[2]).is_some());
        let lobby = c.room_id("101").unwrap();
        let mut peers: Vec<usize> = c.seats(lobby).iter().map(|s| s.peer.0).collect();
        peers.sort_unstable();
        assert_eq!(peers, [2, 4]);
        assert_eq!(
            c.seats(c.room_id("102").unwrap()),
            [Seat {
                id: other,
                peer: Peer(9),
                kind: Kind::Im
            }]
        );
        assert!(c.leave(ids[3]).is_some());
        let (_, left) = c.leave(ids[1]).unwrap();
        assert_eq!(&*left, "101");
        assert!(c.seats(lobby).is_empty());
        assert_eq!(c.room_id("101"), None);
        assert_eq!(c.rooms(), [("102", 1)]);
    }

    #[test]
    fn a_move_changes_rooms_and_frees_the_emptied_one() {
        let mut c = Chat::new(None);
        let a = c.enter(Peer(1), Kind::Line, addr(1), None, "101").unwrap();
        let b = c.enter(Peer(2), Kind::Line, addr(2), None, "101").unwrap();
        assert_eq!(c.move_to(a, "101"), Some(Moved::Stayed));
        assert_eq!(c.move_to(a, "x"), Some(Moved::From("101".into())));
        assert_eq!(c.rooms(), [("101", 1), ("x", 1)]);
        assert_eq!(c.room_of("127.0.0.1:1"), Some("x"));
        // b's seat moved when a stood up: it must still leave cleanly.
        assert_eq!(c.move_to(b, "x"), Some(Moved::From("101".into())));
        assert_eq!(c.room_id("101"), None);
        let x = c.room_id("x").unwrap();
        let mut peers: Vec<usize> = c.seats(x).iter().map(|s| s.peer.0).collect();
        peers.sort_unstable();
        assert_eq!(peers, [1, 2]);
        assert!(c.leave(a).is_some());
        assert_eq!(c.seats(x).len(), 1);
        assert_eq!(c.seats(x)[0].id, b);
        assert_eq!(c.move_to(a, "y"), None);
    }

    #[test]
    fn in_a_cluster_default_names_carry_the_node_and_routing_needs_the_link() {
        let mut c = Chat::new(Some("n1"));
        let id = c.enter(Peer(1), Kind::Line, addr(9), None, "101").unwrap();
        assert_eq!(c.locate(b"127.0.0.1:9@n1"), Place::Local(id));
        assert_eq!(c.locate(b"bob"), Place::Unknown);
        c.set_cluster_up(true);
        assert_eq!(c.locate(b"bob"), Place::Nowhere);
        let bob = Remote {
            node: "n2".into(),
            room: "102".into(),
            addr: addr(3),
        };
        assert!(c.remote_arrived("bob", bob));
        assert_eq!(c.locate(b"bob"), Place::Remote("n2".into()));
        assert_eq!(c.room_of("bob"), Some("102"));
        assert!(c.remote_left("bob", "n3").is_none());
        assert_eq!(c.remote_node_gone("n2").len(), 1);
        assert_eq!(c.locate(b"bob"), Place::Nowhere);
    }
}
