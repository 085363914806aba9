//! Whole frames out of a connection's plaintext, which arrives in pieces of any size.

use bytes::{Bytes, BytesMut};

use crate::wire::{self, FrameHeader, WireError, HEADER_LEN, TRAILER_LEN};

/// The bytes of frames not yet whole. Holds what has arrived and no more: a header claiming
/// a large payload pins nothing until the payload comes.
#[derive(Debug, Default)]
pub(super) struct Assembler {
    buf: BytesMut,
}

impl Assembler {
    /// Takes the next piece of plaintext.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
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
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let h = wire::decode_header(header, max_payload)?;
        let len = HEADER_LEN + h.len as usize + TRAILER_LEN;
        if self.buf.len() < len {
            return Ok(None);
        }
        let frame = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            // Let go of a large frame's buffer once nothing else is in it.
            self.buf = BytesMut::new();
        }
        Ok(Some((h, frame)))
    }
}
