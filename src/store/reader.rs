//! Streaming a record's data out in chunks, checking it on the way.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use super::format;
use super::{RecordMeta, StoreError, CHUNK_SIZE};
use crate::checksum::Crc32Digest;

/// A live record opened for reading; made by [`ObjectStore::reader`](super::ObjectStore::reader).
///
/// A large record's file is held open, so a concurrent overwrite or removal does not disturb
/// it: it keeps reading the version it opened. A small record is read whole, and checked,
/// when it is opened.
pub struct RecordReader {
    meta: RecordMeta,
    path: PathBuf,
    /// Data bytes not yet handed out.
    remaining: u64,
    source: Source,
    state: State,
}

/// Where the data comes from.
enum Source {
    File {
        file: File,
        digest: Crc32Digest,
        /// Reused for every chunk; never larger than [`CHUNK_SIZE`].
        buf: Vec<u8>,
    },
    /// A small record's data, its CRC already checked.
    Memory(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Streaming,
    /// Every byte was handed out and the CRC matched.
    Done,
    /// An error was returned; the file position is unknown, so no more bytes are handed out.
    Failed(String),
}

impl fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordReader")
            .field("meta", &self.meta)
            .field("path", &self.path)
            .field("remaining", &self.remaining)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl RecordReader {
    /// Wraps `file`, positioned just after its header, after checking that its length is what
    /// the header says (so truncation shows before any byte is read).
    pub(super) fn new(
        file: File,
        path: PathBuf,
        meta: RecordMeta,
    ) -> Result<RecordReader, StoreError> {
        let actual = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        let expected = format::header_len(meta.name.len()).saturating_add(meta.size);
        if actual != expected {
            return Err(StoreError::corrupt(
                path,
                format!("file is {actual} bytes, its header says {expected}"),
            ));
        }
        Ok(RecordReader {
            remaining: meta.size,
            meta,
            path,
            source: Source::File {
                file,
                digest: Crc32Digest::new(),
                buf: Vec::new(),
            },
            state: State::Streaming,
        })
    }

    /// A small record's `data`, read from the log with its CRC checked.
    pub(super) fn in_memory(meta: RecordMeta, data: Vec<u8>) -> RecordReader {
        RecordReader {
            remaining: data.len() as u64,
            meta,
            path: PathBuf::from("the store's log"),
            source: Source::Memory(data),
            state: State::Streaming,
        }
    }

    /// The record's name, key, version, size and CRC.
    pub fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    /// The next chunk of data (at most [`CHUNK_SIZE`] bytes), or `None` after the last one.
    ///
    /// After the last byte the data CRC is checked: on a mismatch, or if the file turns out
    /// shorter or longer than its header says, this returns [`StoreError::Corrupt`] instead of
    /// `None`. A caller that must not act on bad data should therefore wait for `None` before
    /// trusting what it has read. After any error every later call fails too.
    pub fn read_chunk(&mut self) -> Result<Option<&[u8]>, StoreError> {
        match &self.state {
            State::Done => return Ok(None),
            State::Failed(what) => {
                let what = format!("an earlier read failed: {what}");
                return Err(StoreError::corrupt(&self.path, what));
            }
            State::Streaming => {}
        }
        let result = if self.remaining == 0 {
            self.check_end().map(|()| 0)
        } else {
            self.fill()
        };
        match result {
            Ok(0) => {
                self.state = State::Done;
                Ok(None)
            }
            Ok(n) => Ok(Some(match &self.source {
                Source::File { buf, .. } => &buf[..n],
                Source::Memory(data) => {
                    let start = data.len() - self.remaining as usize - n;
                    &data[start..start + n]
                }
            })),
            Err(e) => {
                self.state = State::Failed(e.to_string());
                Err(e)
            }
        }
    }

    /// Reads the next chunk (into `buf` for a file); returns its length.
    fn fill(&mut self) -> Result<usize, StoreError> {
        // `remaining` was checked against the real file length, and this is at most CHUNK_SIZE
        // anyway, so the buffer stays small whatever the header claims.
        let n = usize::try_from(self.remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
        let Source::File { file, digest, buf } = &mut self.source else {
            self.remaining -= n as u64;
            return Ok(n);
        };
        buf.resize(n, 0);
        file.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                StoreError::corrupt(&self.path, "file is shorter than its header says")
            }
            _ => StoreError::io(&self.path, e),
        })?;
        digest.update(buf);
        self.remaining -= n as u64;
        Ok(n)
    }

    /// After the last data byte: the file must end here and the data CRC must match.
    fn check_end(&mut self) -> Result<(), StoreError> {
        let Source::File { file, digest, .. } = &mut self.source else {
            return Ok(());
        };
        let mut extra = [0u8; 1];
        let n = loop {
            match file.read(&mut extra) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| StoreError::io(&self.path, e))?,
            }
        };
        if n != 0 {
            return Err(StoreError::corrupt(
                &self.path,
                "file is longer than its header says",
            ));
        }
        // `finalize` consumes the digest; a fresh one is left behind, never used again.
        let crc = std::mem::replace(digest, Crc32Digest::new()).finalize();
        if crc != self.meta.crc {
            return Err(StoreError::corrupt(
                &self.path,
                format!("data CRC {crc:08x}, header says {:08x}", self.meta.crc),
            ));
        }
        Ok(())
    }
}
