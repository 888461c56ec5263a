//! The fan-out: one event, encoded once per protocol present among its recipients, the
//! bytes copied into each recipient's output buffer. The chat core decides who receives;
//! the protocol adapters decide the bytes; nothing is written until the flush phase.

use super::conns::Conns;
use crate::chat::{Chat, Event, Kind, Member, UserId};
use crate::proto;
use crate::text::{Texts, User};
use mio::Token;

/// Each protocol's bytes of one fan-out, encoded for the first recipient of that kind and
/// copied to the others. Scratch: every use starts by clearing what it writes.
#[derive(Debug)]
pub struct Fanout {
    texts: &'static Texts,
    forms: [Vec<u8>; Kind::COUNT],
}

impl Fanout {
    /// Buffers for texts in `texts`.
    pub fn new(texts: &'static Texts) -> Self {
        Fanout {
            texts,
            forms: Default::default(),
        }
    }

    /// The server's texts.
    pub fn texts(&self) -> &'static Texts {
        self.texts
    }

    /// Tells every user in `room` about `event` from `from`, each in its protocol's form;
    /// `except` is an `/im` user whose own arrival is answered by its login instead.
    /// Presence notices skip connections whose peer has hung up (a half-closed client
    /// still gets what is said: it may be reading the answers to its last lines).
    pub fn room(
        &mut self,
        chat: &Chat,
        conns: &mut Conns,
        room: u16,
        from: User<'_>,
        event: Event<'_>,
        except: Option<UserId>,
    ) {
        let mut encoded = [false; Kind::COUNT];
        let notice = matches!(event, Event::Online | Event::Offline);
        for (id, member) in chat.members() {
            if member.room != room || (except == Some(id) && !proto::greets_self(member.kind)) {
                continue;
            }
            let token = Token(member.peer.0);
            if notice && conns.get(token).is_none_or(|c| c.hung_up) {
                continue;
            }
            let i = member.kind.index();
            let (Some(done), Some(buf)) = (encoded.get_mut(i), self.forms.get_mut(i)) else {
                continue;
            };
            if !*done {
                proto::render(member.kind, self.texts, from, member.shown(), event, buf);
                *done = true;
            }
            conns.queue(token, buf);
        }
    }

    /// Sends `text` from `from` to one user.
    pub fn one(&mut self, conns: &mut Conns, to: &Member, from: User<'_>, text: &[u8]) {
        let Some(buf) = self.forms.get_mut(to.kind.index()) else {
            return;
        };
        proto::render(
            to.kind,
            self.texts,
            from,
            to.shown(),
            Event::Whisper(text),
            buf,
        );
        conns.queue(Token(to.peer.0), buf);
    }
}
