//! Encoding and decoding of frames (layout in the [module docs](super)): the frame here,
//! the payloads of the message set in [`payload`], their tests in `tests`.
//!
//! Payload fields are big-endian: an [`Id`](crate::id::Id) is a `u16`; a `Vec` is a `u32`
//! count then its items; a `String` is a `u16` byte length then UTF-8; an `Option` is a `u8`
//! tag (0 none, 1 some) then the value; a [`SocketAddr`](std::net::SocketAddr) is a `u8`
//! family (4 or 6), 4 or 16 address bytes and a `u16` port (IPv6 flow info and scope id are
//! not sent); a [`RemoteCode`](super::RemoteCode) is its `u8` value.
//!
//! A string longer than `u16::MAX` bytes (only ever an error's reason) is cut at a character
//! boundary, so every message can be encoded and none is misread.

mod fields;
mod payload;
#[cfg(test)]
mod tests;

use bytes::{BufMut, Bytes, BytesMut};

use super::message::Message;
use super::{Trailer, WireError, HEADER_LEN, MAGIC, TRAILER_LEN, VERSION};
use crate::checksum::Crc32Digest;
use payload::ty;
use payload::{decode_body, put_payload};
pub(crate) use payload::{name_of, type_of};

/// The parsed fixed-size start of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message type byte (known to this build).
    pub kind: u8,
    /// The stream the frame belongs to: the request it asks, answers or continues.
    pub stream: u32,
    /// The payload length in bytes (at most the configured maximum).
    pub len: u32,
}

/// Appends one whole frame for `msg` on `stream` to `buf` (header, payload, trailer).
pub fn encode(msg: &Message, stream: u32, trailer: Trailer, buf: &mut BytesMut) {
    // Room for most messages at once: grown from nothing, a small one was moved three times.
    // Only into a buffer with no room yet: one already holding frames (a record's chunks,
    // say) grows by doubling, and asking for this much to add a small frame would double it
    // again; one its caller sized keeps that size.
    if buf.capacity() == 0 {
        buf.reserve(HEADER_LEN + SMALL_PAYLOAD + TRAILER_LEN);
    }
    encode_with(type_of(msg), stream, trailer, buf, |buf| {
        put_payload(msg, buf)
    });
}

/// Payload bytes [`encode`] makes room for before it writes: a route or a get and its answer
/// fit, a leaf set of 16 members nearly does.
const SMALL_PAYLOAD: usize = 500;

/// Appends a [`Message::Chunk`] frame on `stream` carrying `data`, straight from the slice:
/// the data is copied once, into the frame.
pub fn encode_chunk(data: &[u8], stream: u32, trailer: Trailer, buf: &mut BytesMut) {
    // Room for the whole frame at once: grown by doubling, a chunk would be copied again.
    buf.reserve(HEADER_LEN + data.len() + TRAILER_LEN);
    encode_with(ty::CHUNK, stream, trailer, buf, |buf| buf.put_slice(data));
}

/// The bytes before and after `data` in its chunk frame on `stream`, so that a large chunk
/// can be written from where it lies (a vectored write) rather than copied into a frame first.
pub fn chunk_frame_parts(
    data: &[u8],
    stream: u32,
    trailer: Trailer,
) -> ([u8; HEADER_LEN], [u8; TRAILER_LEN]) {
    // Payloads are bounded by the configured maximum (far below 4 GiB) on every receiver.
    let header = header_bytes(ty::CHUNK, stream, data.len() as u32);
    (header, trailer.value(&header, data).to_be_bytes())
}

impl Trailer {
    /// The trailer of the frame made of `header` and `payload`.
    fn value(self, header: &[u8], payload: &[u8]) -> u32 {
        match self {
            Trailer::Crc => {
                let mut crc = Crc32Digest::new();
                crc.update(header);
                crc.update(payload);
                crc.finalize()
            }
            Trailer::Zero => 0,
        }
    }
}

/// A frame's header: magic, version, type, stream and payload length.
fn header_bytes(kind: u8, stream: u32, len: u32) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..3].copy_from_slice(&[MAGIC, VERSION, kind]);
    header[3..7].copy_from_slice(&stream.to_be_bytes());
    header[7..].copy_from_slice(&len.to_be_bytes());
    header
}

/// Appends a frame of type `kind` on `stream` whose payload `payload` writes.
fn encode_with(
    kind: u8,
    stream: u32,
    trailer: Trailer,
    buf: &mut BytesMut,
    payload: impl FnOnce(&mut BytesMut),
) {
    let start = buf.len();
    // The length is patched below once the payload is written.
    buf.put_slice(&header_bytes(kind, stream, 0));
    let body = buf.len();
    payload(buf);
    // Payloads are bounded by the configured maximum (far below 4 GiB) on every receiver.
    let len = (buf.len() - body) as u32;
    buf[start + 7..body].copy_from_slice(&len.to_be_bytes());
    let value = trailer.value(&buf[start..body], &buf[body..]);
    buf.put_u32(value);
}

/// Parses the first [`HEADER_LEN`] bytes of a frame.
///
/// Checks, in order, the magic, the version, that the type is known and that the length is at
/// most `max_payload` ([`WireError::TooLarge`]), so a reader can refuse a frame before reading or
/// allocating its body.
pub fn decode_header(
    header: &[u8; HEADER_LEN],
    max_payload: u32,
) -> Result<FrameHeader, WireError> {
    let [magic, version, kind, s0, s1, s2, s3, l0, l1, l2, l3] = *header;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    if name_of(kind).is_none() {
        return Err(WireError::UnknownType(kind));
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if len > max_payload {
        return Err(WireError::TooLarge {
            len,
            max: max_payload,
        });
    }
    Ok(FrameHeader {
        kind,
        stream: u32::from_be_bytes([s0, s1, s2, s3]),
        len,
    })
}

/// Decodes the body of a frame: `rest` is exactly the `len` payload bytes the header declares
/// followed by the [`TRAILER_LEN`] bytes of its trailer.
///
/// A frame as sent on a connection without encryption ([`Trailer::Crc`]): re-checks the
/// header, then the CRC (over header and payload), then decodes the payload. A
/// short `rest` gives [`WireError::Truncated`] (counted over the whole frame, header included);
/// a longer one, or payload bytes left after the message, gives [`WireError::Malformed`].
pub fn decode_payload(
    header: &[u8; HEADER_LEN],
    rest: &[u8],
    max_payload: u32,
) -> Result<Message, WireError> {
    let body = decode_frame_body(header, rest, max_payload, Trailer::Crc)?;
    Ok(match body {
        Body::Chunk(data) => Message::Chunk {
            data: Bytes::copy_from_slice(data),
        },
        Body::Message(msg) => msg,
    })
}

/// A decoded frame body: a chunk's data borrowed from the frame, or any other message.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The data of a [`Message::Chunk`], not copied out of the frame.
    Chunk(&'a [u8]),
    /// Any other message.
    Message(Message),
}

/// [`decode_payload`] of a frame with `trailer`, without copying a chunk's data: the
/// receiving end of a streamed record hands it straight on.
pub fn decode_frame_body<'a>(
    header: &[u8; HEADER_LEN],
    rest: &'a [u8],
    max_payload: u32,
    trailer: Trailer,
) -> Result<Body<'a>, WireError> {
    let h = decode_header(header, max_payload)?;
    let kind = name_of(h.kind).unwrap_or("unknown"); // always known: decode_header checked it
    let needed = frame_len(h.len as usize);
    let have = rest.len().saturating_add(HEADER_LEN);
    if have < needed {
        return Err(WireError::Truncated { needed, have });
    }
    if have > needed {
        return Err(malformed(kind, "bytes after the frame's trailer"));
    }
    // Cannot fail after the checks above; `split_last_chunk` keeps this total all the same.
    let Some((payload, crc)) = rest.split_last_chunk::<TRAILER_LEN>() else {
        return Err(WireError::Truncated { needed, have });
    };
    let expected = u32::from_be_bytes(*crc);
    let actual = trailer.value(header, payload);
    if expected != actual {
        return Err(WireError::BadChecksum { expected, actual });
    }
    if h.kind == ty::CHUNK {
        return Ok(Body::Chunk(payload));
    }
    decode_body(h.kind, kind, payload).map(Body::Message)
}

/// Decodes one frame, as sent on a connection without encryption ([`Trailer::Crc`]), from the
/// front of `input`: the message and the number of bytes the frame used (bytes after it are
/// left alone).
///
/// Input that ends inside the frame gives [`WireError::Truncated`]; a header that declares more
/// than `max_payload` gives [`WireError::TooLarge`] even when the body is missing.
pub fn decode(input: &[u8], max_payload: u32) -> Result<(Message, usize), WireError> {
    let have = input.len();
    let Some(header) = input.first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Truncated {
            needed: HEADER_LEN,
            have,
        });
    };
    let h = decode_header(header, max_payload)?;
    let needed = frame_len(h.len as usize);
    let Some(rest) = input.get(HEADER_LEN..needed) else {
        return Err(WireError::Truncated { needed, have });
    };
    decode_payload(header, rest, max_payload).map(|msg| (msg, needed))
}

/// Whole-frame length for a payload length; saturates so 32-bit targets cannot overflow.
fn frame_len(payload: usize) -> usize {
    payload.saturating_add(HEADER_LEN + TRAILER_LEN)
}

fn malformed(kind: &'static str, what: &'static str) -> WireError {
    WireError::Malformed { kind, what }
}
