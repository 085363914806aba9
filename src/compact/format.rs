//! The compact protocol's messages, byte for byte: pure encoding and decoding.

/// Bytes in a compact request or reply.
pub const MESSAGE_LEN: usize = 9;
/// Bytes in a tracker request or reply.
pub const TRACKER_LEN: usize = 4;

/// What a compact request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Stores the value under the key (type 0).
    Insert,
    /// Reads the value under the key (type 1).
    Lookup,
    /// Removes the key (type 2).
    Delete,
    /// Nothing: an answer only (type 3).
    Nothing,
}

/// How a compact request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done (0).
    Ok = 0,
    /// No value under the key (1).
    NotFound = 1,
    /// Refused or failed (2).
    Failed = 2,
}

/// A compact request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What it asks; `None` for a type byte above 3, which is answered with
    /// [`Status::Failed`] and ends the connection.
    pub op: Option<Op>,
    /// The key.
    pub key: u32,
    /// The value (only insert uses it).
    pub value: u32,
}

/// A compact reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// How the request ended.
    pub status: Status,
    /// The request's key.
    pub key: u32,
    /// The value stored, found or removed; 0 otherwise.
    pub value: u32,
}

fn be(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl Request {
    /// Decodes 9 bytes.
    pub fn decode(bytes: &[u8; MESSAGE_LEN]) -> Request {
        let op = match bytes[0] {
            0 => Some(Op::Insert),
            1 => Some(Op::Lookup),
            2 => Some(Op::Delete),
            3 => Some(Op::Nothing),
            _ => None,
        };
        Request {
            op,
            key: be(&bytes[1..5]),
            value: be(&bytes[5..9]),
        }
    }

    /// Encodes as 9 bytes (`None` as type 255).
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let ty = match self.op {
            Some(Op::Insert) => 0,
            Some(Op::Lookup) => 1,
            Some(Op::Delete) => 2,
            Some(Op::Nothing) => 3,
            None => 255,
        };
        join(ty, self.key, self.value)
    }
}

impl Reply {
    /// Encodes as 9 bytes.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        join(self.status as u8, self.key, self.value)
    }

    /// Decodes 9 bytes; `None` for a status byte above 2.
    pub fn decode(bytes: &[u8; MESSAGE_LEN]) -> Option<Reply> {
        let status = match bytes[0] {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Failed,
            _ => return None,
        };
        Some(Reply {
            status,
            key: be(&bytes[1..5]),
            value: be(&bytes[5..9]),
        })
    }
}

fn join(first: u8, key: u32, value: u32) -> [u8; MESSAGE_LEN] {
    let mut out = [0u8; MESSAGE_LEN];
    out[0] = first;
    out[1..5].copy_from_slice(&key.to_be_bytes());
    out[5..9].copy_from_slice(&value.to_be_bytes());
    out
}

/// The object name a 32-bit key maps to: its 4 bytes, big-endian.
pub fn name_of(key: u32) -> [u8; 4] {
    key.to_be_bytes()
}

/// The value an object holds, if it is a compact value (exactly 4 bytes).
pub fn value_of(data: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(data).ok().map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_documented_bytes() {
        let request = Request {
            op: Some(Op::Delete),
            key: 0x0102_0304,
            value: 0xa0b0_c0d0,
        };
        assert_eq!(request.encode(), [2, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0]);
        assert_eq!(Request::decode(&request.encode()), request);
        assert_eq!(Request::decode(&[4, 0, 0, 0, 1, 0, 0, 0, 2]).op, None);
        let reply = Reply {
            status: Status::NotFound,
            key: 7,
            value: 0,
        };
        assert_eq!(reply.encode(), [1, 0, 0, 0, 7, 0, 0, 0, 0]);
        assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        assert_eq!(Reply::decode(&[3; 9]), None);
        assert_eq!(name_of(0x0a0b_0c0d), [0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(value_of(&[0, 0, 1, 0]), Some(256));
        assert_eq!(value_of(&[0, 0, 1]), None);
    }
}
