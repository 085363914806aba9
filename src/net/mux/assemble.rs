//! Whole frames out of a connection's plaintext, which arrives in pieces of any size.

use bytes::{Bytes, BytesMut};

use crate::net::room_for_whole;
use crate::wire::{self, FrameHeader, WireError, HEADER_LEN, TRAILER_LEN};

/// The bytes of frames not yet whole. Holds what has arrived and no more: a header claiming
/// a large payload pins nothing until the payload comes. Room for the whole frame is made
/// once enough of it has come ([`room_for_whole`]), so that it is not moved as it grows.
#[derive(Debug, Default)]
pub(super) struct Assembler {
    buf: BytesMut,
}

/// The whole length of the frame that begins with `held` and then `more`, once its header is
/// there and valid.
fn frame_len(held: &[u8], more: &[u8], max_payload: u32) -> Option<usize> {
    let mut header = [0u8; HEADER_LEN];
    let old = held.len().min(HEADER_LEN);
    let new = more.len().min(HEADER_LEN - old);
    if old + new < HEADER_LEN {
        return None;
    }
    header[..old].copy_from_slice(&held[..old]);
    header[old..].copy_from_slice(&more[..new]);
    let h = wire::decode_header(&header, max_payload).ok()?;
    Some(HEADER_LEN + h.len as usize + TRAILER_LEN)
}

impl Assembler {
    /// Takes the next piece of plaintext.
    pub fn push(&mut self, bytes: &[u8], max_payload: u32) {
        let held = self.buf.len() + bytes.len();
        if held > self.buf.capacity() {
            let arriving = frame_len(&self.buf, bytes, max_payload);
            if let Some(frame) = arriving.filter(|&f| room_for_whole(held, f)) {
                self.buf.reserve(frame.max(held) - self.buf.len());
            }
        }
        self.buf.extend_from_slice(bytes);
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
        !self.buf.is_empty()
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame with its header, or `None` until one is complete. The header is
    /// checked as soon as it is complete: a length over `max_payload` is refused before its
    /// payload arrives.
    pub fn next(&mut self, max_payload: u32) -> Result<Option<(FrameHeader, Bytes)>, WireError> {
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
        wire::encode_chunk(&vec![7u8; len], 1, &mut frame);
        let mut asm = Assembler::default();
        let mut seen = Vec::new();
        let mut came = 0;
        for bytes in frame.chunks(piece) {
            asm.push(bytes, MAX);
            came += bytes.len();
            seen.push((came, asm.buf.capacity()));
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
        let (asm, seen) = feed(4 << 20, HEADER_LEN);
        assert!(seen[0].1 < 1024, "room {} for a header", seen[0].1);
        assert!(asm.is_mid_frame());
        // Over this link's most: however much of it came, no room is made for the rest.
        let mut frame = BytesMut::new();
        wire::encode_chunk(&vec![0u8; 4 << 20], 1, &mut frame);
        let mut asm = Assembler::default();
        asm.push(&frame[..HEADER_LEN], 1 << 20);
        asm.push(&frame[HEADER_LEN..3 << 20], 1 << 20);
        assert!(asm.buf.capacity() < 4 << 20, "{}", asm.buf.capacity());
        assert!(asm.next(1 << 20).is_err());
    }
}
