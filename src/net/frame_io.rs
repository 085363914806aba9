//! Reading and writing whole frames on a stream.

use std::io::{self, Read, Write};

use bytes::BytesMut;

use crate::wire::{self, Message, WireError, HEADER_LEN, TRAILER_LEN};

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream failed, timed out, or ended (`UnexpectedEof`).
    Io(io::Error),
    /// The bytes are not a valid frame.
    Wire(WireError),
}

/// Reads one frame. The payload length is checked against `max_payload` before the body is
/// read or allocated. `body` is scratch space reused between calls.
pub(crate) fn read_message(
    r: &mut impl Read,
    max_payload: u32,
    body: &mut Vec<u8>,
) -> Result<Message, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).map_err(ReadError::Io)?;
    let h = wire::decode_header(&header, max_payload).map_err(ReadError::Wire)?;
    body.clear();
    body.resize(h.len as usize + TRAILER_LEN, 0);
    r.read_exact(body).map_err(ReadError::Io)?;
    wire::decode_payload(&header, body, max_payload).map_err(ReadError::Wire)
}

/// Writes one frame for `msg` in a single write. `buf` is scratch space reused between calls.
pub(crate) fn write_message(
    w: &mut impl Write,
    msg: &Message,
    buf: &mut BytesMut,
) -> io::Result<()> {
    buf.clear();
    wire::encode(msg, buf);
    w.write_all(buf)?;
    w.flush()
}
