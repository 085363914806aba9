//! Records on the wire: a head, chunks of at most [`CHUNK_SIZE`] bytes, and an end carrying
//! the CRC-32 of the data. One implementation serves every direction (a client's put and get,
//! a node's hand-off and pull), so that no side ever holds more than a chunk of a record.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::net::{refusal_to_error, Frames, ReadError};
use crate::store::{RecordReader, RecordWriter, CHUNK_SIZE};
use crate::wire::{Body, Message, RecordHead};

// The CRC-32 of record data, as the store keeps it.
use crate::checksum::Crc32Digest;

/// Chunks at least this large are written from where they lie rather than copied into a frame:
/// a copy of a small chunk costs less than a second write.
const DIRECT_CHUNK: usize = 64 * 1024;

/// Where a record's bytes come from, a chunk at a time.
pub(crate) trait Source {
    /// The next chunk (at most [`CHUNK_SIZE`] bytes), or `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<&[u8]>>;

    /// The CRC-32 of all the data, when the source knows it and fails rather than yield
    /// data that does not match it (a stored record): sending then needs no checksum pass.
    fn known_crc(&self) -> Option<u32> {
        None
    }
}

impl<T: Sink + ?Sized> Sink for &mut T {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        (**self).write_chunk(chunk)
    }

    fn crc(&self) -> Option<u32> {
        (**self).crc()
    }
}

/// Where a record's bytes go, a chunk at a time.
pub(crate) trait Sink {
    /// Takes the next chunk.
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()>;

    /// The CRC-32 of everything written so far, when the sink computes it anyway (the object
    /// store): receiving then needs no checksum pass of its own.
    fn crc(&self) -> Option<u32> {
        None
    }
}

/// A sink that can start over: a get's destination, filled again from another holder when
/// the first one fails half-way.
pub(crate) trait Refill: Sink {
    /// Drops everything written so far.
    fn reset(&mut self) -> Result<()>;
}

/// Queues a record's head and data from `source`, writing as chunks accumulate; returns the
/// CRC-32 of the data. The caller queues the end ([`Message::RecordEnd`] with that CRC) and
/// flushes, so that a small record travels in one write. A failure of `source` stops the
/// record half-way: the caller must then end the stream (with an error reply, or by closing
/// the connection).
pub(crate) fn send_record(
    framed: &mut dyn Frames,
    head: &RecordHead,
    source: &mut dyn Source,
) -> Result<u32> {
    framed.queue(&Message::Record(head.clone()));
    let known = source.known_crc();
    let mut digest = Crc32Digest::new();
    let mut sent = 0u64;
    while let Some(chunk) = source.next_chunk()? {
        if known.is_none() {
            digest.update(chunk);
        }
        sent += chunk.len() as u64;
        if sent > head.size {
            break;
        }
        if chunk.len() >= DIRECT_CHUNK {
            // Sent from where it lies, with whatever is queued: no copy into the queue.
            framed
                .send_chunk(chunk)
                .map_err(|e| framed.error(ReadError::Io(e)))?;
            continue;
        }
        // Write what is queued before it would hold more than a chunk; a small record still
        // goes out in one write with its end.
        if framed.queued() + chunk.len() > CHUNK_SIZE {
            framed.flush_or_fail()?;
        }
        framed.queue_chunk(chunk);
    }
    if sent != head.size {
        return Err(Error::Corrupt {
            name: lossy(&head.name),
            what: format!("the source does not hold the {} bytes announced", head.size),
        });
    }
    Ok(known.unwrap_or_else(|| digest.finalize()))
}

/// Sends a whole record: head, data and end, then flushes.
pub(crate) fn send_whole_record(
    framed: &mut dyn Frames,
    head: &RecordHead,
    source: &mut dyn Source,
) -> Result<()> {
    let crc = send_record(framed, head, source)?;
    framed.queue(&Message::RecordEnd { crc });
    framed.flush_or_fail()
}

/// Receives the data and end of a record whose head was `head`, into `sink`. Checks the size
/// and the CRC-32; returns the CRC. Any other frame, or an error reply, ends it with an error.
pub(crate) fn recv_record(
    framed: &mut dyn Frames,
    head: &RecordHead,
    sink: &mut dyn Sink,
) -> Result<u32> {
    // A sink that checksums what it keeps saves a pass over the data.
    let own_digest = sink.crc().is_none();
    let mut digest = Crc32Digest::new();
    let mut got = 0u64;
    let peer = framed.peer();
    loop {
        let message = match framed.recv_body() {
            Ok(Body::Chunk(data)) => {
                // Every chunk carries data, so the frames of a record are bounded by its size.
                if data.is_empty() {
                    return Err(corrupt(head, "an empty chunk"));
                }
                got += data.len() as u64;
                if got > head.size {
                    return Err(corrupt(head, "more data than announced"));
                }
                if own_digest {
                    digest.update(data);
                }
                sink.write_chunk(data)?;
                continue;
            }
            Ok(Body::Message(message)) => refusal_to_error(peer, message)?,
            Err(e) => return Err(framed.error(e)),
        };
        match message {
            Message::RecordEnd { crc } => {
                if got != head.size {
                    return Err(corrupt(head, "less data than announced"));
                }
                let computed = if own_digest {
                    Some(digest.finalize())
                } else {
                    sink.crc()
                };
                if computed != Some(crc) {
                    return Err(corrupt(head, "checksum mismatch in transfer"));
                }
                return Ok(crc);
            }
            other => {
                return Err(Error::Protocol {
                    addr: peer,
                    what: format!("expected Chunk or RecordEnd, got {}", other.name()),
                })
            }
        }
    }
}

/// Asks the peer of `conn` for the object `name` and receives it into the sink `open` makes
/// from the record's head; returns the head and the sink. A `direct` get is served only by a
/// node responsible for the name ([`Message::Get`]).
pub(crate) fn get_record<K: Sink>(
    conn: &mut dyn Frames,
    name: &[u8],
    direct: bool,
    open: impl FnOnce(&RecordHead) -> Result<K>,
) -> Result<(RecordHead, K)> {
    conn.send(&Message::Get {
        name: name.to_vec(),
        direct,
    })
    .map_err(|e| conn.error(ReadError::Io(e)))?;
    match conn.recv_or_fail()? {
        Message::Record(head) if head.name == name && !head.deleted => {
            let mut sink = open(&head)?;
            recv_record(conn, &head, &mut sink)?;
            Ok((head, sink))
        }
        other => Err(Error::unexpected_reply(conn.peer(), "Record", &other)),
    }
}

fn corrupt(head: &RecordHead, what: &str) -> Error {
    Error::Corrupt {
        name: lossy(&head.name),
        what: what.to_string(),
    }
}

/// A name for error texts.
pub(crate) fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Source for RecordReader {
    fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        let name = self.meta().name.clone();
        self.read_chunk().map_err(|e| Error::from_store(&name, e))
    }

    fn known_crc(&self) -> Option<u32> {
        // The reader checks the data against it and fails at the end on a mismatch.
        Some(self.meta().crc)
    }
}

impl Sink for RecordWriter<'_> {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.write(chunk)
            .map_err(|e| Error::from_store(b"(record being written)", e))
    }

    fn crc(&self) -> Option<u32> {
        Some(self.crc_so_far())
    }
}

/// Bytes in memory, sent in chunks.
pub(crate) struct SliceSource<'a>(pub &'a [u8]);

impl Source for SliceSource<'_> {
    fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (chunk, rest) = self.0.split_at(self.0.len().min(CHUNK_SIZE));
        self.0 = rest;
        Ok(Some(chunk))
    }
}

impl Sink for Vec<u8> {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// Passes a record's chunks on to another connection as they arrive (a relayed put).
pub(crate) struct Forward<'a>(pub &'a mut dyn Frames);

impl Sink for Forward<'_> {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.0
            .send_chunk(chunk)
            .map_err(|e| self.0.error(ReadError::Io(e)))
    }
}

/// A file read a chunk at a time into one reused buffer.
pub(crate) struct FileSource {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl FileSource {
    /// Opens `path`; returns the source and the file's size.
    pub fn open(path: &Path) -> Result<(FileSource, u64)> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let source = FileSource {
            path: path.to_path_buf(),
            file,
            buf: vec![0; CHUNK_SIZE],
        };
        Ok((source, size))
    }
}

impl Source for FileSource {
    fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        let mut filled = 0;
        while filled < self.buf.len() {
            match self.file.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok((filled > 0).then(|| &self.buf[..filled]))
    }
}

/// A file written through a temporary file beside it, renamed into place only once the whole
/// record has arrived and checked: a failed retrieval never leaves wrong bytes at `path`.
pub(crate) struct FileSink {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<File>>,
    sync: bool,
    /// Set once the file is in place: nothing left to clean up.
    renamed: bool,
}

impl FileSink {
    /// Starts writing what will become `path`, synced before it is renamed if `sync`.
    pub fn create(path: &Path, sync: bool) -> Result<FileSink> {
        // A name of this sink's own: two retrieves into one path never share a file.
        static SINKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let sink = SINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".pastry-{}-{sink}.part", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file = new_file(&tmp)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::with_capacity(CHUNK_SIZE, file)),
            sync,
            renamed: false,
        })
    }

    /// Flushes, syncs (if asked) and renames the file into place. On failure the temporary
    /// file is removed (by `Drop`): a failed retrieval leaves nothing behind.
    pub fn finish(mut self) -> Result<()> {
        let io = |path: &Path, source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(file) = self.file.take() {
            let file = file
                .into_inner()
                .map_err(|e| io(&self.tmp, e.into_error()))?;
            if self.sync {
                file.sync_all().map_err(|e| io(&self.tmp, e))?;
            }
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io(&self.path, e))?;
        self.renamed = true;
        Ok(())
    }
}

impl Sink for FileSink {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(chunk).map_err(|source| Error::Io {
            path: self.tmp.clone(),
            source,
        })
    }
}

impl Refill for FileSink {
    fn reset(&mut self) -> Result<()> {
        // What the old writer buffered is discarded, not flushed (a flush would land past the
        // start of the emptied file); the file starts empty again.
        if let Some(old) = self.file.take() {
            drop(old.into_parts());
        }
        let file = new_file(&self.tmp)?;
        self.file = Some(std::io::BufWriter::with_capacity(CHUNK_SIZE, file));
        Ok(())
    }
}

/// Creates the file `tmp` anew, removing whatever an earlier attempt left there rather than
/// truncating it: ext4 takes a file truncated to nothing and written again for one being
/// replaced, and when it is closed writes back all of it on the closing thread (a 256 MiB
/// retrieve, whose every attempt begins with [`Refill::reset`], took a third longer so).
fn new_file(tmp: &Path) -> Result<File> {
    let io = |source| Error::Io {
        path: tmp.to_path_buf(),
        source,
    };
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    File::create(tmp).map_err(io)
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What a program's reader or writer failed with, as an error that ends the operation.
fn program_io(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: PathBuf::from(what),
        source,
    }
}

/// A record's bytes from a positional reader of the program's (`Client::put_with`).
pub(crate) struct ReadAt<'a, F> {
    read: &'a parking_lot::Mutex<F>,
    size: u64,
    offset: u64,
    buf: Vec<u8>,
}

impl<'a, F> ReadAt<'a, F> {
    /// Reads `size` bytes from offset 0.
    pub fn new(read: &'a parking_lot::Mutex<F>, size: u64) -> Self {
        ReadAt {
            read,
            size,
            offset: 0,
            buf: Vec::new(),
        }
    }
}

impl<F> Source for ReadAt<'_, F>
where
    F: FnMut(u64, &mut [u8]) -> std::io::Result<usize>,
{
    fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        let left = self.size - self.offset;
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left).map_or(CHUNK_SIZE, |l| l.min(CHUNK_SIZE));
        self.buf.resize(want, 0);
        let mut read = self.read.lock();
        let mut filled = 0;
        while filled < want {
            match read(self.offset + filled as u64, &mut self.buf[filled..]) {
                Ok(0) => {
                    let end = self.offset + filled as u64;
                    let why = format!("the reader ended at byte {end} of {}", self.size);
                    return Err(program_io(
                        "(the program's reader)",
                        std::io::Error::other(why),
                    ));
                }
                Ok(n) => filled += n.min(want - filled),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(program_io("(the program's reader)", e)),
            }
        }
        self.offset += want as u64;
        Ok(Some(&self.buf[..want]))
    }
}

/// A record's bytes to a positional writer of the program's (`Client::get_with`).
pub(crate) struct WriteAt<F> {
    write: F,
    offset: u64,
}

impl<F> WriteAt<F> {
    /// Writes from offset 0.
    pub fn new(write: F) -> Self {
        WriteAt { write, offset: 0 }
    }
}

impl<F: FnMut(u64, &[u8]) -> std::io::Result<()>> Sink for WriteAt<F> {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        (self.write)(self.offset, chunk).map_err(|e| program_io("(the program's writer)", e))?;
        self.offset += chunk.len() as u64;
        Ok(())
    }
}

impl<F: FnMut(u64, &[u8]) -> std::io::Result<()>> Refill for WriteAt<F> {
    fn reset(&mut self) -> Result<()> {
        self.offset = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of the test's own.
    fn empty_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pastry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_sink_begun_again_holds_only_what_came_after() {
        let dir = empty_dir("file-sink");
        let out = dir.join("object");
        let mut sink = FileSink::create(&out, false).unwrap();
        // A whole chunk reaches the file; a few bytes more wait in the writer's buffer.
        sink.write_chunk(&vec![7u8; CHUNK_SIZE]).unwrap();
        sink.write_chunk(b"from a holder that failed").unwrap();
        assert!(std::fs::metadata(&sink.tmp).unwrap().len() >= CHUNK_SIZE as u64);
        sink.reset().unwrap();
        assert_eq!(std::fs::metadata(&sink.tmp).unwrap().len(), 0);
        sink.write_chunk(b"the whole").unwrap();
        sink.write_chunk(b" object").unwrap();
        let tmp = sink.tmp.clone();
        sink.finish().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"the whole object");
        assert!(!tmp.exists(), "the temporary file is renamed into place");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_file_sinks_into_one_path_write_files_of_their_own() {
        let dir = empty_dir("two-sinks");
        let out = dir.join("object");
        let mut first = FileSink::create(&out, false).unwrap();
        let mut second = FileSink::create(&out, false).unwrap();
        assert_ne!(first.tmp, second.tmp);
        second.write_chunk(b"second").unwrap();
        first.write_chunk(b"first").unwrap();
        second.reset().unwrap();
        second.write_chunk(b"second again").unwrap();
        first.finish().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"first");
        second.finish().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"second again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
