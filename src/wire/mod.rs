//! The wire: every message the protocols exchange, and its binary frame.
//!
//! A frame is `magic (0x50) | version (9) | type (u8) | stream (u32, big-endian) | payload
//! length (u32, big-endian) | payload | trailer (u32, big-endian)`. On a connection without
//! encryption the trailer is the CRC-32 (ISO-HDLC) of everything before it; on an encrypted
//! one it is zero, since the records frames travel in are authenticated whole ([`Trailer`]).
//! The stream names the request a frame asks, answers or continues: the side that
//! opened the connection numbers its requests with odd streams, the other side with even
//! ones, each side's increasing.
//!
//! Decoding is total: any byte string gives a message or a [`WireError`], never a panic, and
//! a length above the configured maximum is refused before anything is allocated.

mod codec;
mod message;

pub use codec::{
    chunk_frame_parts, decode, decode_frame_body, decode_header, decode_payload, encode,
    encode_chunk, Body, FrameHeader,
};
pub use message::{Message, RecordHead, RemoteCode};

/// First byte of every frame: tells a libpastry peer from anything else.
pub const MAGIC: u8 = 0x50;
/// Version of the frame format and message set.
pub const VERSION: u8 = 9;
/// Bytes before the payload: magic, version, type, stream, length.
pub const HEADER_LEN: usize = 11;
/// Bytes after the payload: the trailer.
pub const TRAILER_LEN: usize = 4;

/// What a frame's last [`TRAILER_LEN`] bytes hold, which depends on the connection it
/// travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    /// The CRC-32 (ISO-HDLC, big-endian) of everything before it: frames sent as they are,
    /// on a connection without encryption.
    Crc,
    /// Zero: frames sealed into records (an encrypted connection), whose tags authenticate
    /// every byte already. A checksum there would cost two passes over every byte a
    /// transfer moves and catch nothing the tag does not.
    Zero,
}

impl Trailer {
    /// The trailer of frames on a connection whose records are `sealed` or not.
    pub fn on(sealed: bool) -> Trailer {
        if sealed {
            Trailer::Zero
        } else {
            Trailer::Crc
        }
    }
}

/// Default largest payload accepted, in bytes.
pub const DEFAULT_MAX_PAYLOAD: u32 = 4 << 20;

/// Why a byte string is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends before the frame does.
    #[error("truncated frame: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The first byte is not [`MAGIC`]: the peer does not speak this protocol.
    #[error("bad magic byte {0:#04x}: not a libpastry peer")]
    BadMagic(u8),
    /// The frame is of a version this build does not speak.
    #[error("unsupported frame version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    /// The declared payload is larger than allowed.
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared payload length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The trailer is not what the frame's bytes require: their CRC-32 ([`Trailer::Crc`]),
    /// or zero ([`Trailer::Zero`]).
    #[error("checksum mismatch: frame says {expected:#010x}, bytes give {actual:#010x}")]
    BadChecksum {
        /// The trailer the frame carries.
        expected: u32,
        /// What the bytes received require.
        actual: u32,
    },
    /// The message type is not one this build knows.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The payload does not parse as its message type.
    #[error("malformed {kind} payload: {what}")]
    Malformed {
        /// The message type being decoded.
        kind: &'static str,
        /// What was wrong.
        what: &'static str,
    },
}
