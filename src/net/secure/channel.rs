//! The Noise handshake and the records a connection's bytes travel in afterwards: pure
//! functions over byte buffers, so that any driver (a blocking thread or an event loop) can
//! run them.

use std::io;

use ring::aead;

use super::ClusterKey;
use crate::identity::BINDING_LEN;

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
    /// A responder's second key, tried when the first does not open the hello: the
    /// cluster's client key ([`ClusterKey::client_key`]).
    fallback: Option<ClusterKey>,
    /// Whether the peer proved the cluster key itself, a member's credential, rather than
    /// the client key. An initiator's peer proved the key it was given.
    member: bool,
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
        Ok(Handshake {
            state: Self::build(key, true)?,
            fallback: None,
            member: true,
        })
    }

    /// The side that accepted it: a node or discovery, holding the cluster key, which
    /// admits holders of the key (members) and of the client key derived from it (clients).
    pub fn responder(key: &ClusterKey) -> io::Result<Handshake> {
        Ok(Handshake {
            state: Self::build(key, false)?,
            fallback: Some(key.client_key()),
            member: true,
        })
    }

    fn build(key: &ClusterKey, initiator: bool) -> io::Result<snow::HandshakeState> {
        let params: snow::params::NoiseParams = PATTERN.parse().map_err(refused)?;
        let builder = snow::Builder::new(params)
            .psk(0, key.as_bytes())
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(refused)?;
        if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(refused)
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
        let n = match self.state.read_message(msg, &mut payload) {
            Ok(n) => n,
            // Not the cluster key: perhaps a client's. A state that failed a message is
            // spent, so the second try starts afresh.
            Err(first) => {
                let Some(client) = self.fallback.take() else {
                    return Err(refused(first));
                };
                self.state = Self::build(&client, false)?;
                self.member = false;
                self.state
                    .read_message(msg, &mut payload)
                    .map_err(refused)?
            }
        };
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

    /// The channel, once both messages have passed: the two keys Noise derives from the
    /// handshake (its `Split()`), one per direction, each used with Noise's nonces.
    pub fn finish(mut self) -> io::Result<Channel> {
        if !self.state.is_handshake_finished() {
            return Err(io::Error::other("the handshake has not finished"));
        }
        let mut binding = [0u8; BINDING_LEN];
        let hash = self.state.get_handshake_hash();
        if hash.len() != BINDING_LEN {
            return Err(io::Error::other("an unexpected handshake hash"));
        }
        binding.copy_from_slice(hash);
        let (to_responder, to_initiator) = self.state.dangerously_get_raw_split();
        let (send, recv) = if self.state.is_initiator() {
            (to_responder, to_initiator)
        } else {
            (to_initiator, to_responder)
        };
        Ok(Channel {
            send: Direction::new(&send)?,
            recv: Direction::new(&recv)?,
            binding,
            member: self.member,
        })
    }
}

/// An established channel: Noise transport messages (AES-256-GCM, no associated data, the
/// nonce a count of the messages sent in that direction), sealed and opened in place by
/// `ring` rather than through `snow`'s copies, which halved the throughput. A record
/// replayed, dropped, reordered or changed fails to open.
pub(crate) struct Channel {
    send: Direction,
    recv: Direction,
    /// The handshake's hash, the same at both ends and unique to this connection: what a
    /// participant signs to prove its identity on it (`identity::Proof`).
    binding: [u8; BINDING_LEN],
    /// Whether the peer proved the cluster key itself (a member), not the client key.
    member: bool,
}

/// One direction's key and the nonce of its next message. The key is kept as its 32
/// bytes, and expanded for the cipher (about 560 bytes, most of a connection's memory) only
/// while the connection is in use: [`Channel::rest`] drops the expansion of an idle one,
/// and its next record builds it again (about 0.2 µs).
struct Direction {
    raw: [u8; 32],
    key: Option<Box<aead::LessSafeKey>>,
    next: u64,
}

impl Direction {
    fn new(raw: &[u8; 32]) -> io::Result<Direction> {
        let mut direction = Direction {
            raw: *raw,
            key: None,
            next: 0,
        };
        direction.key()?; // an unusable key fails here, not at the first record
        Ok(direction)
    }

    /// The expanded key, built if the connection rested.
    fn key(&mut self) -> io::Result<&aead::LessSafeKey> {
        let key = match self.key.take() {
            Some(key) => key,
            None => {
                let key = aead::UnboundKey::new(&aead::AES_256_GCM, &self.raw)
                    .map_err(|_| io::Error::other("an unusable key"))?;
                Box::new(aead::LessSafeKey::new(key))
            }
        };
        Ok(self.key.insert(key))
    }

    /// Noise's nonce for AES-GCM: four zero bytes, then the count, big-endian. Never
    /// repeated: the channel fails rather than wrap.
    fn nonce(&mut self) -> io::Result<aead::Nonce> {
        if self.next == u64::MAX {
            return Err(io::Error::other("the channel has used up its nonces"));
        }
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&self.next.to_be_bytes());
        self.next += 1;
        Ok(aead::Nonce::assume_unique_for_key(bytes))
    }
}

impl Channel {
    /// The connection's binding: its handshake hash.
    pub fn binding(&self) -> &[u8; BINDING_LEN] {
        &self.binding
    }

    /// Whether the peer proved the cluster key itself (a member's credential) rather than
    /// the client key.
    pub fn member(&self) -> bool {
        self.member
    }

    /// Drops the keys' expansion while the connection rests: it is built again for the next
    /// record.
    pub fn rest(&mut self) {
        self.send.key = None;
        self.recv.key = None;
    }

    /// Appends to `out` the record carrying `plain` (at most [`MAX_PLAIN`] bytes): its
    /// length as a big-endian u16, then the sealed bytes and their tag.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.seal_pieces(&[plain], out)
    }

    /// [`Channel::seal`] of the bytes of `pieces` one after another, gathered as they are
    /// sealed rather than copied together first.
    pub fn seal_pieces(&mut self, pieces: &[&[u8]], out: &mut Vec<u8>) -> io::Result<()> {
        let plain_len: usize = pieces.iter().map(|p| p.len()).sum();
        debug_assert!(plain_len <= MAX_PLAIN);
        let len =
            u16::try_from(plain_len + TAG_LEN).map_err(|_| io::Error::other("record too long"))?;
        out.extend_from_slice(&len.to_be_bytes());
        let start = out.len();
        for piece in pieces {
            out.extend_from_slice(piece);
        }
        let nonce = self.send.nonce()?;
        let tag = self
            .send
            .key()?
            .seal_in_place_separate_tag(nonce, aead::Aad::empty(), &mut out[start..])
            .map_err(|_| io::Error::other("sealing failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens, in place, a record's sealed bytes (what follows its length): on success
    /// `record` holds what it carried.
    pub fn open(&mut self, record: &mut Vec<u8>) -> io::Result<()> {
        match self.open_in_place(record) {
            Ok(plain) => {
                let n = plain.len();
                record.truncate(n);
                Ok(())
            }
            Err(e) => {
                record.clear();
                Err(e)
            }
        }
    }

    /// Opens, in place, a record's sealed bytes where they lie: what it carried, at their
    /// start.
    pub fn open_in_place<'a>(&mut self, sealed: &'a mut [u8]) -> io::Result<&'a [u8]> {
        let nonce = self.recv.nonce()?;
        match self
            .recv
            .key()?
            .open_in_place(nonce, aead::Aad::empty(), sealed)
        {
            Ok(plain) => Ok(plain),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a record failed to open: changed, replayed or out of order",
            )),
        }
    }
}

/// The two ends of a connection's cipher, made by a handshake under `key`: what tests of
/// the code that carries records need.
#[cfg(test)]
pub(crate) fn channel_pair(key: &ClusterKey) -> (Channel, Channel) {
    tests::channels(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends of a handshake, as they are before `finish`.
    fn handshake(a: &ClusterKey, b: &ClusterKey) -> io::Result<(Handshake, Handshake)> {
        let mut i = Handshake::initiator(a)?;
        let mut r = Handshake::responder(b)?;
        let hello = r.read_hello(&i.hello(42)?)?;
        assert_eq!(hello.sent_ms, 42);
        i.read_reply(&r.reply()?)?;
        Ok((i, r))
    }

    pub(super) fn channels(key: &ClusterKey) -> (Channel, Channel) {
        let (i, r) = handshake(key, key).unwrap();
        (i.finish().unwrap(), r.finish().unwrap())
    }

    fn record_body(sealed: &[u8]) -> Vec<u8> {
        let len = usize::from(u16::from_be_bytes([sealed[0], sealed[1]]));
        assert_eq!(sealed.len(), 2 + len);
        sealed[2..].to_vec()
    }

    #[test]
    fn records_pass_between_holders_of_one_key_and_not_twice() {
        let (mut a, mut b) = channels(&ClusterKey::from_bytes([5; 32]));
        let mut sealed = Vec::new();
        a.seal(b"hello", &mut sealed).unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"), "sealed");
        let mut record = record_body(&sealed);
        b.open(&mut record).unwrap();
        assert_eq!(record, b"hello");
        // The same record again is a replay: its nonce has passed.
        let mut again = record_body(&sealed);
        assert!(b.open(&mut again).is_err());
        assert!(again.is_empty(), "nothing handed out by a failed open");
        let mut full = Vec::new();
        b.seal(&vec![7u8; MAX_PLAIN], &mut full).unwrap();
        assert_eq!(full.len(), 2 + MAX_RECORD);
    }

    #[test]
    fn a_channel_that_rested_goes_on_with_its_keys_and_nonces() {
        let (mut a, mut b) = channels(&ClusterKey::from_bytes([6; 32]));
        let mut records = Vec::new();
        for (i, text) in [&b"before"[..], b"while", b"after"].into_iter().enumerate() {
            // Either end may rest between records, or both.
            if i == 1 {
                a.rest();
            } else if i == 2 {
                a.rest();
                b.rest();
            }
            let mut sealed = Vec::new();
            a.seal(text, &mut sealed).unwrap();
            let mut record = record_body(&sealed);
            b.open(&mut record).unwrap();
            assert_eq!(record, text);
            records.push(sealed);
        }
        b.rest();
        // The nonces went on: an earlier record is refused after a rest too.
        let mut replayed = record_body(&records[0]);
        assert!(b.open(&mut replayed).is_err());
    }

    #[test]
    fn records_are_noise_transport_messages_that_snow_itself_opens() {
        let key = ClusterKey::from_bytes([9; 32]);
        let (i, r) = handshake(&key, &key).unwrap();
        let mut ours = i.finish().unwrap();
        let mut theirs = r.state.into_transport_mode().unwrap();
        for text in [&b"first"[..], &[0u8; 1000][..], b""] {
            let mut sealed = Vec::new();
            ours.seal(text, &mut sealed).unwrap();
            let mut plain = vec![0u8; sealed.len()];
            let n = theirs.read_message(&sealed[2..], &mut plain).unwrap();
            assert_eq!(&plain[..n], text);
        }
        let mut reply = vec![0u8; 64];
        let n = theirs.write_message(b"back", &mut reply).unwrap();
        let mut record = reply[..n].to_vec();
        ours.open(&mut record).unwrap();
        assert_eq!(record, b"back");
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

        let (mut a, mut b) = channels(&mine);
        let mut sealed = Vec::new();
        a.seal(b"payload", &mut sealed).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(b.open(&mut record_body(&sealed)).is_err());
        assert!(
            Handshake::initiator(&mine).unwrap().finish().is_err(),
            "unfinished"
        );
    }
}
