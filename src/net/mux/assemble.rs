//! Whole frames out of a connection's plaintext, which arrives in pieces of any size.

use bytes::{Bytes, BytesMut};

use crate::net::{buffers, room_for_whole};
use crate::wire::{self, FrameHeader, WireError, HEADER_LEN, TRAILER_LEN};

/// The bytes of frames not yet whole. Holds what has arrived and no more: a header claiming
/// a large payload pins nothing until the payload comes. Room for the whole frame is made
/// once enough of it has come ([`room_for_whole`]), so that it is not moved as it grows; a
/// large frame's room is a buffer of the shared pool, which comes back to it once the frame
/// has been used (a large transfer's frames then reuse warm pages).
#[derive(Debug, Default)]
pub(super) struct Assembler {
    buf: BytesMut,
    /// A large frame arriving (nothing else is held meanwhile).
    large: Option<Large>,
    /// A large frame that came whole, for [`Assembler::next`].
    whole: Option<(FrameHeader, Bytes)>,
}

/// A large frame arriving, in a buffer with room for all of it.
#[derive(Debug)]
struct Large {
    header: FrameHeader,
    /// Its whole length, header and trailer included.
    len: usize,
    buf: Vec<u8>,
}

/// The header and whole length of the frame that begins with `held` and then `more`, once its
/// header is there and valid.
fn frame_head(held: &[u8], more: &[u8], max_payload: u32) -> Option<(FrameHeader, usize)> {
    let mut header = [0u8; HEADER_LEN];
    let old = held.len().min(HEADER_LEN);
    let new = more.len().min(HEADER_LEN - old);
    if old + new < HEADER_LEN {
        return None;
    }
    header[..old].copy_from_slice(&held[..old]);
    header[old..].copy_from_slice(&more[..new]);
    let h = wire::decode_header(&header, max_payload).ok()?;
    Some((h, HEADER_LEN + h.len as usize + TRAILER_LEN))
}

impl Assembler {
    /// Takes the next piece of plaintext, up to the end of a large frame arriving; returns
    /// how many bytes it took (at least one of a piece that is not empty). Whole frames are
    /// to be taken ([`Assembler::next`]) before the next piece.
    pub fn push(&mut self, bytes: &[u8], max_payload: u32) -> usize {
        if let Some(mut large) = self.large.take() {
            let n = (large.len - large.buf.len()).min(bytes.len());
            large.buf.extend_from_slice(&bytes[..n]);
            if large.buf.len() == large.len {
                self.whole = Some((large.header, buffers::into_bytes(large.buf)));
            } else {
                self.large = Some(large);
            }
            return n;
        }
        let held = self.buf.len() + bytes.len();
        if held > self.buf.capacity() {
            let arriving = frame_head(&self.buf, bytes, max_payload);
            if let Some((header, len)) = arriving.filter(|&(_, len)| room_for_whole(held, len)) {
                if len >= buffers::SMALLEST {
                    // What is held is this frame's beginning: it moves to the frame's room.
                    let mut buf = buffers::take(len);
                    buf.clear();
                    buf.extend_from_slice(&self.buf);
                    self.buf = BytesMut::new();
                    self.large = Some(Large { header, len, buf });
                    return self.push(bytes, max_payload);
                }
                self.buf.reserve(len.max(held) - self.buf.len());
            }
        }
        self.buf.extend_from_slice(bytes);
        bytes.len()
    }

    /// The header of the frame now arriving and its whole length (header and trailer
    /// included), once the header is whole; an error if it is not valid.
    fn arriving(&self, max_payload: u32) -> Result<Option<(FrameHeader, usize)>, WireError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let h = wire::decode_header(header, max_payload)?;
        Ok(Some((h, HEADER_LEN + h.len as usize + TRAILER_LEN)))
    }

    /// Whether part of a frame is held (its end is due within the frame deadline).
    pub fn is_mid_frame(&self) -> bool {
        !self.buf.is_empty() || self.large.is_some()
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.buf.len() + self.large.as_ref().map_or(0, |l| l.buf.len())
    }

    /// Room made for what is held: the room asked for a large frame (the pool's buffer may
    /// be larger, but is not new memory).
    #[cfg(test)]
    fn room(&self) -> usize {
        match (&self.large, &self.whole) {
            (Some(large), _) => large.len,
            (None, Some((_, frame))) => frame.len(),
            (None, None) => self.buf.capacity(),
        }
    }

    /// The next whole frame with its header, or `None` until one is complete. The header is
    /// checked as soon as it is complete: a length over `max_payload` is refused before its
    /// payload arrives.
    pub fn next(&mut self, max_payload: u32) -> Result<Option<(FrameHeader, Bytes)>, WireError> {
        if let Some(whole) = self.whole.take() {
            return Ok(Some(whole));
        }
        let Some((h, len)) = self.arriving(max_payload)? else {
            return Ok(None);
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        // A buffer holding just this frame (most small messages come alone) becomes the
        // frame as it is; splitting it would allocate the shared count `Bytes` needs. Either
        // way a large frame's buffer is let go once nothing else is in it.
        let frame = if self.buf.len() == len {
            std::mem::take(&mut self.buf).freeze()
        } else {
            self.buf.split_to(len).freeze()
        };
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        Ok(Some((h, frame)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 4 << 20;

    /// Feeds a chunk frame of `len` bytes in pieces of `piece`; returns, after each piece,
    /// the bytes that had come and the room held.
    fn feed(len: usize, piece: usize) -> (Assembler, Vec<(usize, usize)>) {
        let mut frame = BytesMut::new();
        wire::encode_chunk(&vec![7u8; len], 1, wire::Trailer::Crc, &mut frame);
        let mut asm = Assembler::default();
        let mut seen = Vec::new();
        let mut came = 0;
        for bytes in frame.chunks(piece) {
            assert_eq!(asm.push(bytes, MAX), bytes.len(), "one frame: all taken");
            came += bytes.len();
            seen.push((came, asm.room()));
        }
        (asm, seen)
    }

    #[test]
    fn a_frame_gets_its_whole_room_once_an_eighth_of_it_came_and_never_more() {
        let len = 256 * 1024;
        let whole = HEADER_LEN + len + TRAILER_LEN;
        let (mut asm, seen) = feed(len, 65_519);
        for &(came, room) in &seen {
            // Never sized from the header alone: at most eight times what came.
            assert!(room <= 8 * came, "{came} {room}");
            if 8 * came >= whole {
                // Room for all of it, so the rest is not moved again; none past its end.
                assert_eq!(room, whole, "after {came} bytes");
            }
        }
        let (_, frame) = asm.next(MAX).unwrap().expect("whole");
        assert_eq!(frame.len(), whole);
        assert!(asm.next(MAX).unwrap().is_none());
    }

    #[test]
    fn a_header_alone_claims_no_room_and_one_over_the_most_none_however_much_comes() {
        let (mut asm, seen) = feed(4 << 20, HEADER_LEN);
        assert!(seen[0].1 < 1024, "room {} for a header", seen[0].1);
        let (_, frame) = asm.next(MAX).unwrap().expect("whole");
        assert_eq!(frame.len(), HEADER_LEN + (4 << 20) + TRAILER_LEN);
        // Over this link's most: however much of it came, no room is made for the rest.
        let mut frame = BytesMut::new();
        wire::encode_chunk(&vec![0u8; 4 << 20], 1, wire::Trailer::Crc, &mut frame);
        let mut asm = Assembler::default();
        asm.push(&frame[..HEADER_LEN], 1 << 20);
        asm.push(&frame[HEADER_LEN..3 << 20], 1 << 20);
        assert!(asm.room() < 4 << 20, "{}", asm.room());
        assert!(asm.next(1 << 20).is_err());
    }

    #[test]
    fn large_and_small_frames_in_one_piece_come_out_whole_and_in_order() {
        let sizes = [40_000, 10, 3 * buffers::SMALLEST, 5, 0, 70_000];
        let mut all = BytesMut::new();
        let mut frames = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            let mut frame = BytesMut::new();
            wire::encode_chunk(
                &vec![i as u8; *len],
                i as u32 + 1,
                wire::Trailer::Crc,
                &mut frame,
            );
            all.extend_from_slice(&frame);
            frames.push(frame.freeze());
        }
        for piece in [all.len(), 65_536, 7] {
            let mut asm = Assembler::default();
            let mut got = Vec::new();
            for mut rest in all.chunks(piece) {
                // As a link takes them: the frames a piece completed, before the next piece.
                while !rest.is_empty() {
                    let taken = asm.push(rest, MAX);
                    assert!(taken > 0);
                    rest = &rest[taken..];
                    while let Some((h, frame)) = asm.next(MAX).unwrap() {
                        got.push((h.stream, frame));
                    }
                }
            }
            assert!(!asm.is_mid_frame());
            assert_eq!(got.len(), frames.len(), "pieces of {piece}");
            for (i, (stream, frame)) in got.iter().enumerate() {
                assert_eq!(*stream, i as u32 + 1);
                assert_eq!(frame, &frames[i], "frame {i} in pieces of {piece}");
            }
        }
    }
}
