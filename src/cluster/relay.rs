//! The room streams as this server uses them (see [`stream`] for the format): broadcasts
//! out (one script per room and turn), broadcasts in (`XREAD BLOCK` on the reader link,
//! resumed from where it left off), and history reads. [`Relay`] owns the positions, the
//! scripts and the turn's outbox; it sends through the cluster's [`Backplane`] and answers
//! in [`News`], like the rest of the cluster.

use super::link::Backplane;
use super::news::{history_page, Ask, Echo, News, Sayer};
use super::stream::{self, Next, Outbox, Scripts, Streams};
use crate::chat::history::Query;
use crate::chat::Peer;
use redis_protocol::resp2::types::OwnedFrame;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// What a room-stream command was sent for.
#[derive(Debug)]
pub(super) enum StreamAsk<C> {
    /// `EVALSHA` of [`stream::SAY_LUA`]: a turn's broadcasts to one room, in order.
    Say { says: Vec<Sayer> },
    /// `GET im:epoch` after (re)connecting.
    Epoch,
    /// `CLIENT ID` of the reader link.
    Reader,
    /// `XREVRANGE im:stream:{room} + - COUNT 1`: where to start reading `room`.
    Top { room: Box<str> },
    /// `XREAD BLOCK` on the reader link.
    Read,
    /// `EVALSHA` of [`stream::HISTORY_LUA`], for entries after `since` if any.
    History {
        ctx: C,
        room: Box<str>,
        since: Option<u64>,
    },
}

/// The room streams of one server.
#[derive(Debug)]
pub(super) struct Relay {
    /// The rooms read, and where.
    streams: Streams,
    /// The scripts and the streams' length.
    scripts: Scripts,
    /// This turn's broadcasts, sent at its end.
    outbox: Outbox<Sayer>,
}

impl Relay {
    /// The streams of rooms keeping `history` broadcasts.
    pub(super) fn new(history: usize) -> Self {
        Relay {
            streams: Streams::default(),
            scripts: Scripts::new(history),
            outbox: Outbox::default(),
        }
    }

    /// A user here entered `room`: its stream is read from now on.
    pub(super) fn enter(&mut self, room: &str) {
        self.streams.enter(room);
    }

    /// A user here left `room`: the last one out stops the reading.
    pub(super) fn leave(&mut self, room: &str) {
        self.streams.leave(room);
    }

    /// When the outbox must be sent.
    pub(super) fn due(&self) -> Option<Instant> {
        self.outbox.due()
    }

    /// Broadcasts trimmed away before this server read them.
    pub(super) fn lost(&self) -> u64 {
        self.streams.lost()
    }

    /// The link went down.
    pub(super) fn down(&mut self) {
        self.streams.down();
    }

    /// The link is up (again, for the `ups`-th time, as node `node`): load the scripts,
    /// check the epoch, learn the reader link's id.
    pub(super) fn up<C>(
        &mut self,
        link: &mut Backplane<Ask<C>>,
        node: &str,
        ups: u64,
        now: Instant,
    ) {
        for script in Scripts::ALL {
            link.command(&[b"SCRIPT", b"LOAD", script], None, now);
        }
        // A new value on every connect: a Redis that lost its data must not get back the
        // value it had, or the servers reading it would not see the loss.
        let random = RandomState::new().hash_one(node);
        let epoch = format!("{node}-{ups}-{random:016x}");
        link.command(
            &[b"SET", stream::EPOCH_KEY, epoch.as_bytes(), b"NX"],
            None,
            now,
        );
        let ask = Some(Ask::Stream(StreamAsk::Epoch));
        link.command(&[b"GET", stream::EPOCH_KEY], ask, now);
        let ask = Some(Ask::Stream(StreamAsk::Reader));
        link.read(&[b"CLIENT", b"ID"], ask, Duration::ZERO, now);
    }

    /// Keeps `event` (a [`Wire::Say`](super::wire::Wire::Say) to `room`) for the end of
    /// the turn.
    pub(super) fn say(&mut self, room: &str, event: Vec<u8>, sayer: Sayer, now: Instant) {
        self.outbox.push(room, event, sayer, now);
    }

    /// Once per turn: sends the turn's broadcasts (one `EVALSHA` per room), asks where new
    /// rooms start, cuts a blocked read short when a room was added, and sends the next
    /// `XREAD` once the last one is answered.
    pub(super) fn pump<C>(
        &mut self,
        link: &mut Backplane<Ask<C>>,
        now: Instant,
        news: &mut Vec<News<C>>,
    ) {
        for (room, batch) in self.outbox.take() {
            if !link.is_up() {
                unsaid(batch.tags, news);
                continue;
            }
            let ask = Some(Ask::Stream(StreamAsk::Say { says: batch.tags }));
            self.scripts
                .say(&room, &batch.events, |args| link.command(args, ask, now));
        }
        if !link.is_up() {
            return;
        }
        for room in self.streams.to_ask() {
            let key = stream::key(&room);
            let ask = Some(Ask::Stream(StreamAsk::Top { room }));
            link.command(&[b"XREVRANGE", &key, b"+", b"-", b"COUNT", b"1"], ask, now);
        }
        if let Some(id) = self.streams.unblock() {
            let id = id.to_string();
            link.command(&[b"CLIENT", b"UNBLOCK", id.as_bytes()], None, now);
        }
        if let Next::Read(args) = self.streams.next_read() {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let ask = Some(Ask::Stream(StreamAsk::Read));
            link.read(&args, ask, stream::READ_BLOCK, now);
        }
    }

    /// Asks for `query` on `room`'s history, the last `keep` broadcasts of its stream; the
    /// answer comes back as [`News::History`] with `ctx`, or at once, failed, while Redis
    /// is down.
    pub(super) fn history<C>(
        &mut self,
        link: &mut Backplane<Ask<C>>,
        room: &str,
        query: Query,
        keep: usize,
        ctx: C,
        now: Instant,
    ) -> Option<News<C>> {
        let since = match query {
            Query::Since { seq, .. } => Some(seq),
            Query::Last(_) => None,
        };
        let room: Box<str> = room.into();
        if !link.is_up() {
            return Some(News::History {
                ctx,
                room,
                page: None,
            });
        }
        let ask = Some(Ask::Stream(StreamAsk::History {
            ctx,
            room: room.clone(),
            since,
        }));
        self.scripts.history(&room, query, keep, |args| {
            link.command(args, ask, now);
        });
        None
    }

    /// Redis answered a room-stream command (`node`: this server, whose own broadcasts
    /// read back are skipped).
    pub(super) fn on_reply<C>(
        &mut self,
        ask: StreamAsk<C>,
        frame: OwnedFrame,
        node: &str,
        news: &mut Vec<News<C>>,
    ) {
        match ask {
            StreamAsk::Say { says } => {
                let first = match frame {
                    OwnedFrame::Integer(seq) => u64::try_from(seq).ok(),
                    _ => None,
                };
                let Some(first) = first else {
                    return unsaid(says, news);
                };
                for (say, seq) in says.into_iter().zip(first..) {
                    if let Some(echo) = say.echo {
                        news.push(News::Numbered {
                            echo,
                            seq: Some(seq),
                        });
                    }
                }
            }
            StreamAsk::Epoch => {
                let epoch = match frame {
                    OwnedFrame::BulkString(v) => v,
                    _ => Vec::new(),
                };
                self.streams.epoch(epoch);
            }
            StreamAsk::Reader => {
                if let OwnedFrame::Integer(id) = frame {
                    self.streams.set_reader(id);
                }
            }
            StreamAsk::Top { room } => self.streams.start_at(&room, stream::parse_top(&frame)),
            StreamAsk::Read => {
                for (room, entry) in self.streams.read(Some(frame)) {
                    news.extend(News::heard(room, &entry, node));
                }
            }
            StreamAsk::History { ctx, room, since } => {
                let page = stream::parse_page(&frame)
                    .map(|(last, entries)| history_page(room.clone(), since, last, &entries));
                news.push(News::History { ctx, room, page });
            }
        }
    }

    /// A room-stream command will get no answer (Redis went away or stalled).
    pub(super) fn on_failed<C>(&mut self, ask: StreamAsk<C>, news: &mut Vec<News<C>>) {
        match ask {
            StreamAsk::Say { says } => unsaid(says, news),
            StreamAsk::Top { room } => self.streams.ask_failed(&room),
            StreamAsk::Read => {
                self.streams.read(None);
            }
            StreamAsk::History { ctx, room, .. } => news.push(News::History {
                ctx,
                room,
                page: None,
            }),
            StreamAsk::Epoch | StreamAsk::Reader => {}
        }
    }
}

/// Broadcasts Redis did not take: their speakers are told, and the users here who wait
/// for their numbers get them unnumbered.
fn unsaid<C>(says: Vec<Sayer>, news: &mut Vec<News<C>>) {
    for say in says {
        news.extend(say.by.map(|by: Peer| News::LocalOnly { by }));
        news.extend(
            say.echo
                .map(|echo: Echo| News::Numbered { echo, seq: None }),
        );
    }
}
