//! The send side of an encrypted connection read and written in frames: plaintext gathered
//! into records, sealed, and written in batches.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;

use super::super::secure::{Channel, MAX_PLAIN, RECORD_OVERHEAD};
use super::{READ_BUFFER, SEAL_BATCH};

/// The buffers of an encrypted connection besides its cipher.
pub(super) struct Sealed {
    pub(super) channel: Channel,
    /// The last record read, opened in place: its plaintext, read from `taken` on.
    pub(super) record: Vec<u8>,
    pub(super) taken: usize,
    /// Plaintext waiting to fill a record, and records waiting to be written.
    pub(super) staged: Vec<u8>,
    pub(super) sealed: Vec<u8>,
}

/// Writes `parts` in order, with vectored writes. Sent with `MSG_NOSIGNAL` (as std's own
/// socket writes are, but not its `writev`): a peer that closed gives an error, never a
/// SIGPIPE that would end a C program that did not ignore it.
pub(super) fn write_all_parts(stream: &TcpStream, mut parts: [&[u8]; 4]) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    // Bounded: every pass writes at least one byte or ends the loop.
    while parts.iter().any(|p| !p.is_empty()) {
        match socket.send_vectored_with_flags(&parts.map(IoSlice::new), libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                for part in &mut parts {
                    let k = n.min(part.len());
                    *part = &part[k..];
                    n -= k;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Sealed {
    /// Seals `parts` into records, as full as they go, and writes them in batches.
    pub(super) fn write_parts(
        &mut self,
        mut stream: &TcpStream,
        parts: [&[u8]; 4],
    ) -> io::Result<()> {
        for part in parts {
            let mut rest = part;
            // Bounded: each pass consumes at least one byte of `rest`.
            while !rest.is_empty() {
                if self.staged.is_empty() && rest.len() >= MAX_PLAIN {
                    self.channel.seal(&rest[..MAX_PLAIN], &mut self.sealed)?;
                    rest = &rest[MAX_PLAIN..];
                } else {
                    let n = (MAX_PLAIN - self.staged.len()).min(rest.len());
                    self.staged.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if self.staged.len() == MAX_PLAIN {
                        self.channel.seal(&self.staged, &mut self.sealed)?;
                        self.staged.clear();
                    }
                }
                if self.sealed.len() >= SEAL_BATCH {
                    stream.write_all(&self.sealed)?;
                    self.sealed.clear();
                }
            }
        }
        if !self.staged.is_empty() {
            self.channel.seal(&self.staged, &mut self.sealed)?;
        }
        let written = stream.write_all(&self.sealed);
        // A transfer in progress keeps its buffers for the next chunk; small frames let a
        // large one's go.
        let large = parts.iter().map(|p| p.len()).sum::<usize>() >= MAX_PLAIN;
        for buf in [&mut self.staged, &mut self.sealed] {
            buf.clear();
            if !large && buf.capacity() > READ_BUFFER + RECORD_OVERHEAD {
                *buf = Vec::new();
            }
        }
        written
    }
}
