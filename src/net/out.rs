//! Output that recipients share: a turn's fan-out bytes are written once into a
//! [`Segment`], and each recipient's queue ([`Out`]) holds references into it, sent with
//! one `writev` per recipient per flush. Bytes meant for one connection only (answers,
//! whispers, and everything queued to a socket that is full) are owned by its queue.
//!
//! The loop is single-threaded, so a segment is an `Rc`: no locks. A segment is filled while
//! the turn encodes and sealed (frozen, see [`Segment`]) before the flush phase reads it;
//! from then on nobody writes it, and it is freed when its last reference is written.
//!
//! Pinned memory stays bounded: a queue refers to a segment only while it is about to be
//! written (this turn, the next one after an exhausted write budget, or within the
//! coalescing bound). A socket that fills up gets what is left copied into its own bytes
//! ([`Out::detach`]) and takes copies from then on, exactly as before segments, so a slow
//! reader never keeps a whole turn's segment alive for a few bytes of it.
//!
//! Invariant: `pending` is the sum of the unwritten bytes of every piece, which is what
//! `--max-outbuf` and `--max-outbuf-total` count; order is the order of queuing.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Slices handed to one `writev`: a queue rarely holds more than a few pieces (consecutive
/// references into one segment merge), and more wait for the next call.
const WRITEV_SLICES: usize = 64;

/// Bytes many recipients share. Written once: the encoder appends to its own buffer while
/// the turn runs and then hands it over with [`Segment::seal`]; a `OnceCell`, not a
/// `RefCell`, because nothing ever changes it after that.
#[derive(Debug, Default)]
pub struct Segment(OnceCell<Vec<u8>>);

impl Segment {
    /// Freezes the segment with its bytes; later calls change nothing.
    pub fn seal(&self, bytes: Vec<u8>) {
        let _ = self.0.set(bytes);
    }

    /// Bytes `start..end`, once sealed.
    fn get(&self, start: u32, end: u32) -> Option<&[u8]> {
        self.0.get()?.get(start as usize..end as usize)
    }
}

/// Some bytes of an open segment, as the fan-out offers them to each recipient: a
/// reference to keep, or the bytes themselves to copy.
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    /// The segment being filled.
    pub seg: &'a Rc<Segment>,
    /// Where the bytes start in it.
    pub start: u32,
    /// The bytes (already in the segment's buffer, still being filled).
    pub bytes: &'a [u8],
}

/// One run of queued bytes.
#[derive(Debug)]
enum Piece {
    /// Bytes `start..end` of a segment; `start` moves on as they are written.
    Shared {
        seg: Rc<Segment>,
        start: u32,
        end: u32,
    },
    /// Bytes of this connection alone; `from` of them are written.
    Owned { bytes: Vec<u8>, from: usize },
}

impl Piece {
    /// The bytes not yet written; `None` for a segment not sealed yet (not to be written
    /// before the flush phase seals it).
    fn unwritten(&self) -> Option<&[u8]> {
        match self {
            Piece::Shared { seg, start, end } => seg.get(*start, *end),
            Piece::Owned { bytes, from } => bytes.get(*from..),
        }
    }
}

/// The pieces: held inline while there is one (a recipient of one turn's broadcasts, the
/// usual case, costs no allocation), in a deque beyond.
#[derive(Debug, Default)]
enum Pieces {
    #[default]
    Empty,
    One(Piece),
    Many(VecDeque<Piece>),
}

/// A connection's output waiting for its socket, in order.
#[derive(Debug, Default)]
pub struct Out {
    pieces: Pieces,
    /// Bytes queued and not yet written.
    pending: usize,
}

impl Out {
    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    fn iter(&self) -> impl Iterator<Item = &Piece> {
        let (one, many) = match &self.pieces {
            Pieces::Empty => (None, None),
            Pieces::One(p) => (Some(p), None),
            Pieces::Many(q) => (None, Some(q.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn back_mut(&mut self) -> Option<&mut Piece> {
        match &mut self.pieces {
            Pieces::Empty => None,
            Pieces::One(p) => Some(p),
            Pieces::Many(q) => q.back_mut(),
        }
    }

    fn push(&mut self, piece: Piece) {
        self.pieces = match std::mem::take(&mut self.pieces) {
            Pieces::Empty => Pieces::One(piece),
            Pieces::One(first) => Pieces::Many(VecDeque::from([first, piece])),
            Pieces::Many(mut q) => {
                q.push_back(piece);
                Pieces::Many(q)
            }
        };
    }

    /// Appends bytes of this connection's own.
    pub fn push_owned(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pending += bytes.len();
        if let Some(Piece::Owned { bytes: back, from }) = self.back_mut() {
            // Reclaim the written front once it is the larger part, so a slow reader's
            // buffer is not shifted on every partial write.
            if *from > 0 && *from >= back.len() / 2 {
                back.drain(..*from);
                *from = 0;
            }
            back.extend_from_slice(bytes);
            return;
        }
        self.push(Piece::Owned {
            bytes: bytes.to_vec(),
            from: 0,
        });
    }

    /// Appends a reference to shared bytes (extending the last piece when they follow it
    /// in the same segment, as a turn's consecutive broadcasts do).
    pub fn push_shared(&mut self, shared: Shared<'_>) {
        let len = shared.bytes.len();
        if len == 0 {
            return;
        }
        let Some(end) = u32::try_from(len)
            .ok()
            .and_then(|len| shared.start.checked_add(len))
        else {
            // Beyond what a segment indexes: keep a copy instead.
            return self.push_owned(shared.bytes);
        };
        self.pending += len;
        if let Some(Piece::Shared {
            seg, end: back_end, ..
        }) = self.back_mut()
        {
            if Rc::ptr_eq(seg, shared.seg) && *back_end == shared.start {
                *back_end = end;
                return;
            }
        }
        self.push(Piece::Shared {
            seg: Rc::clone(shared.seg),
            start: shared.start,
            end,
        });
    }

    /// Writes as much as `w` takes in one call, every piece in one vectored write.
    /// Returns the bytes written; `Ok(0)` with bytes pending means `w` took nothing.
    ///
    /// # Errors
    /// Whatever `w` returns (`WouldBlock` included).
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        debug_assert!(
            self.iter().all(|p| p.unwritten().is_some()),
            "a segment is written before it is sealed"
        );
        let mut slices = [IoSlice::new(&[]); WRITEV_SLICES];
        let mut n = 0;
        for (slot, bytes) in slices
            .iter_mut()
            .zip(self.iter().map_while(Piece::unwritten))
        {
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        let written = w.write_vectored(slices.get(..n).unwrap_or_default())?;
        self.consume(written);
        Ok(written)
    }

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.pending -= n.min(self.pending);
        while n > 0 {
            let front = match &mut self.pieces {
                Pieces::Empty => return,
                Pieces::One(p) => p,
                Pieces::Many(q) => match q.front_mut() {
                    Some(p) => p,
                    None => return,
                },
            };
            let left = front.unwritten().map_or(0, <[u8]>::len);
            if n < left {
                match front {
                    // n < left <= u32::MAX for a segment's range.
                    Piece::Shared { start, .. } => *start += n as u32,
                    Piece::Owned { from, .. } => *from += n,
                }
                return;
            }
            n -= left;
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        match &mut self.pieces {
            Pieces::Many(q) => {
                q.pop_front();
                if q.is_empty() {
                    self.pieces = Pieces::Empty;
                }
            }
            _ => self.pieces = Pieces::Empty,
        }
    }

    /// Copies every referenced byte into bytes of this queue's own, so no segment is kept
    /// alive by a socket that stopped taking output. Owned pieces stay as they are.
    pub fn detach(&mut self) {
        let old = match std::mem::take(&mut self.pieces) {
            Pieces::Empty => return,
            Pieces::One(p) => VecDeque::from([p]),
            Pieces::Many(q) => q,
        };
        let pending = self.pending;
        self.pending = 0;
        for piece in old {
            match piece {
                Piece::Shared { .. } => {
                    if let Some(bytes) = piece.unwritten() {
                        self.push_owned(bytes);
                    }
                }
                owned @ Piece::Owned { .. } => {
                    self.pending += owned.unwritten().map_or(0, <[u8]>::len);
                    self.push(owned);
                }
            }
        }
        debug_assert_eq!(pending, self.pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call and records the calls.
    struct Sink {
        got: Vec<u8>,
        limit: usize,
        calls: usize,
    }

    impl Sink {
        fn new(limit: usize) -> Self {
            Sink {
                got: Vec::new(),
                limit,
                calls: 0,
            }
        }
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sealed(bytes: &[u8]) -> Rc<Segment> {
        let seg = Rc::new(Segment::default());
        seg.seal(bytes.to_vec());
        seg
    }

    /// `bytes`, found at `start` in `seg`.
    fn at<'a>(seg: &'a Rc<Segment>, start: u32, bytes: &'a [u8]) -> Shared<'a> {
        Shared { seg, start, bytes }
    }

    #[test]
    fn consecutive_references_merge_and_keep_order_with_owned_bytes() {
        let seg = sealed(b"onetwothree");
        let mut out = Out::default();
        out.push_shared(at(&seg, 0, b"one"));
        out.push_shared(at(&seg, 3, b"two"));
        out.push_owned(b"|mine|");
        out.push_shared(at(&seg, 6, b"three"));
        assert!(matches!(&out.pieces, Pieces::Many(q) if q.len() == 3));
        assert_eq!(out.pending(), 17);
        let mut sink = Sink::new(usize::MAX);
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"onetwo|mine|three");
        assert_eq!(sink.calls, 1);
        assert!(out.is_empty());
        assert!(matches!(out.pieces, Pieces::Empty));
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let seg = sealed(b"abcdefgh");
        let mut out = Out::default();
        out.push_owned(b"12345");
        out.push_shared(at(&seg, 0, b"abcdefgh"));
        let mut sink = Sink::new(3);
        while !out.is_empty() {
            out.write_to(&mut sink).unwrap();
        }
        assert_eq!(sink.got, b"12345abcdefgh");
        assert_eq!(sink.calls, 5);
    }

    #[test]
    fn detach_copies_references_and_lets_the_segment_go() {
        let seg = sealed(b"hello world");
        let mut out = Out::default();
        out.push_shared(at(&seg, 0, b"hello "));
        out.push_owned(b"[x]");
        out.push_shared(at(&seg, 6, b"world"));
        let mut sink = Sink::new(2);
        out.write_to(&mut sink).unwrap();
        assert_eq!(Rc::strong_count(&seg), 3);
        out.detach();
        assert_eq!(Rc::strong_count(&seg), 1);
        assert_eq!(out.pending(), 12);
        sink.limit = usize::MAX;
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"hello [x]world");
    }
}
