//! The Noise handshake and the records a connection's bytes travel in afterwards: pure
//! functions over byte buffers, so that any driver (a blocking thread or an event loop) can
//! run them.

use std::io;

use super::ClusterKey;

/// The handshake and cipher suite. `NN`: no long-term keys, both sides ephemeral; `psk0`:
/// the cluster key mixed in before the first message, so each side proves it holds the key
/// by the first message it sends. AES-256-GCM with the CPU's AES instructions (through
/// `ring`) seals about twice as fast as ChaCha20-Poly1305 on this project's machines.
const PATTERN: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";

/// Bound into the handshake: a peer of another protocol or version fails it rather than
/// misreading what follows.
const PROLOGUE: &[u8] = b"libpastry/1";

/// Bytes of the first handshake message: the initiator's ephemeral public key, then its
/// clock (milliseconds since the Unix epoch, big-endian), sealed with the tag that proves the
/// cluster key.
pub(crate) const HELLO_LEN: usize = 32 + 8 + TAG_LEN;

/// Bytes of the second: the responder's ephemeral public key and its tag.
pub(crate) const REPLY_LEN: usize = 32 + TAG_LEN;

const TAG_LEN: usize = 16;

/// Largest record on the wire after its 2-byte length: Noise's limit on a message.
pub(crate) const MAX_RECORD: usize = 65_535;

/// Bytes a record adds to what it carries: its length and its tag.
pub(crate) const RECORD_OVERHEAD: usize = 2 + TAG_LEN;

/// Most plaintext one record carries.
pub(crate) const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;

/// One side of a handshake in progress: the initiator sends the hello and reads the reply,
/// the responder the other way round.
pub(crate) struct Handshake {
    state: snow::HandshakeState,
}

/// What a responder learns from a hello that proved the key: enough to refuse a replay.
pub(crate) struct Hello {
    /// The initiator's ephemeral public key, new for every connection.
    pub ephemeral: [u8; 32],
    /// The initiator's clock when it sent the hello, in milliseconds since the Unix epoch.
    pub sent_ms: u64,
}

/// Any failure of the cryptography: the peer does not hold the key, or its bytes were
/// changed on the way. Deliberately says no more.
fn refused(e: snow::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("secure channel failed ({e}): the peer does not hold this cluster's key"),
    )
}

impl Handshake {
    /// The side that opened the connection.
    pub fn initiator(key: &ClusterKey) -> io::Result<Handshake> {
        Self::build(key, true)
    }

    /// The side that accepted it.
    pub fn responder(key: &ClusterKey) -> io::Result<Handshake> {
        Self::build(key, false)
    }

    fn build(key: &ClusterKey, initiator: bool) -> io::Result<Handshake> {
        let params: snow::params::NoiseParams = PATTERN.parse().map_err(refused)?;
        let builder = snow::Builder::new(params)
            .psk(0, key.as_bytes())
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(refused)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(refused)?;
        Ok(Handshake { state })
    }

    /// The initiator's first message, carrying its clock `now_ms`.
    pub fn hello(&mut self, now_ms: u64) -> io::Result<[u8; HELLO_LEN]> {
        let mut msg = [0u8; HELLO_LEN];
        let n = self
            .state
            .write_message(&now_ms.to_be_bytes(), &mut msg)
            .map_err(refused)?;
        debug_assert_eq!(n, HELLO_LEN);
        Ok(msg)
    }

    /// The responder reads the first message; fails unless the initiator holds the key.
    pub fn read_hello(&mut self, msg: &[u8; HELLO_LEN]) -> io::Result<Hello> {
        let mut payload = [0u8; HELLO_LEN];
        let n = self
            .state
            .read_message(msg, &mut payload)
            .map_err(refused)?;
        let clock: [u8; 8] = payload[..n]
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a hello without its clock"))?;
        let mut ephemeral = [0u8; 32];
        ephemeral.copy_from_slice(&msg[..32]);
        Ok(Hello {
            ephemeral,
            sent_ms: u64::from_be_bytes(clock),
        })
    }

    /// The responder's answer.
    pub fn reply(&mut self) -> io::Result<[u8; REPLY_LEN]> {
        let mut msg = [0u8; REPLY_LEN];
        let n = self.state.write_message(&[], &mut msg).map_err(refused)?;
        debug_assert_eq!(n, REPLY_LEN);
        Ok(msg)
    }

    /// The initiator reads the answer; fails unless the responder holds the key.
    pub fn read_reply(&mut self, msg: &[u8; REPLY_LEN]) -> io::Result<()> {
        let mut payload = [0u8; REPLY_LEN];
        self.state
            .read_message(msg, &mut payload)
            .map_err(refused)?;
        Ok(())
    }

    /// The channel, once both messages have passed.
    pub fn finish(self) -> io::Result<Channel> {
        let transport = self.state.into_transport_mode().map_err(refused)?;
        Ok(Channel { transport })
    }
}

/// An established channel: records sealed with this connection's keys, each with its own
/// nonce, so that a record replayed, dropped, reordered or changed fails to open.
pub(crate) struct Channel {
    transport: snow::TransportState,
}

impl Channel {
    /// Appends to `out` the record carrying `plain` (at most [`MAX_PLAIN`] bytes): its
    /// length as a big-endian u16, then the sealed bytes.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        debug_assert!(plain.len() <= MAX_PLAIN);
        let start = out.len();
        out.resize(start + 2 + plain.len() + TAG_LEN, 0);
        let n = self
            .transport
            .write_message(plain, &mut out[start + 2..])
            .map_err(refused)?;
        out.truncate(start + 2 + n);
        let len = u16::try_from(n).map_err(|_| io::Error::other("record too long"))?;
        out[start..start + 2].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Opens a record's sealed bytes (what follows its length), appending what it carries
    /// to `plain`.
    pub fn open(&mut self, record: &[u8], plain: &mut Vec<u8>) -> io::Result<()> {
        if record.len() < TAG_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a record shorter than its tag",
            ));
        }
        let start = plain.len();
        plain.resize(start + record.len(), 0);
        let opened = self.transport.read_message(record, &mut plain[start..]);
        match opened {
            Ok(n) => {
                plain.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                plain.truncate(start);
                Err(refused(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(a: &ClusterKey, b: &ClusterKey) -> io::Result<(Channel, Channel)> {
        let mut i = Handshake::initiator(a)?;
        let mut r = Handshake::responder(b)?;
        let hello = r.read_hello(&i.hello(42)?)?;
        assert_eq!(hello.sent_ms, 42);
        i.read_reply(&r.reply()?)?;
        Ok((i.finish()?, r.finish()?))
    }

    fn record_body(sealed: &[u8]) -> &[u8] {
        let len = usize::from(u16::from_be_bytes([sealed[0], sealed[1]]));
        assert_eq!(sealed.len(), 2 + len);
        &sealed[2..]
    }

    #[test]
    fn records_pass_between_holders_of_one_key_and_not_twice() {
        let key = ClusterKey::from_bytes([5; 32]);
        let (mut a, mut b) = handshake(&key, &key).unwrap();
        let mut sealed = Vec::new();
        a.seal(b"hello", &mut sealed).unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"), "sealed");
        let mut plain = Vec::new();
        b.open(record_body(&sealed), &mut plain).unwrap();
        assert_eq!(plain, b"hello");
        // The same record again is a replay: its nonce has passed.
        assert!(b.open(record_body(&sealed), &mut plain).is_err());
        assert_eq!(plain, b"hello", "nothing appended by a failed open");
        let mut full = Vec::new();
        b.seal(&vec![7u8; MAX_PLAIN], &mut full).unwrap();
        assert_eq!(full.len(), 2 + MAX_RECORD);
    }

    #[test]
    fn another_key_fails_at_the_first_message_and_a_changed_byte_fails_to_open() {
        let (mine, theirs) = (
            ClusterKey::from_bytes([1; 32]),
            ClusterKey::from_bytes([2; 32]),
        );
        let mut i = Handshake::initiator(&theirs).unwrap();
        let mut r = Handshake::responder(&mine).unwrap();
        assert!(
            r.read_hello(&i.hello(1).unwrap()).is_err(),
            "the responder finds out first"
        );

        let (mut a, mut b) = handshake(&mine, &mine).unwrap();
        let mut sealed = Vec::new();
        a.seal(b"payload", &mut sealed).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(b.open(record_body(&sealed), &mut Vec::new()).is_err());
    }
}
