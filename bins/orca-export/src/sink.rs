//! Where compressed bytes go: a file, hashed with SHA-256 on the way, written
//! on its own thread so disk writes overlap with reading and compressing.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use sha2::{Digest, Sha256};

/// Hashes and counts everything written through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the lowercase hex SHA-256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let digest = self.hasher.finalize();
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        (self.inner, hex, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The end of the chain: the file, hashed (SHA-256 of what is on disk), with
/// age encryption in front of it when the archive is encrypted.
pub enum FileSink {
    /// Compressed bytes straight to the file.
    Plain(HashingWriter<std::fs::File>),
    /// Compressed bytes encrypted, then to the file.
    Age(Box<age::stream::StreamWriter<HashingWriter<std::fs::File>>>),
}

impl FileSink {
    /// Finish (the age stream's last chunk) and return the hashing writer.
    pub fn finish(self) -> io::Result<HashingWriter<std::fs::File>> {
        match self {
            FileSink::Plain(w) => Ok(w),
            FileSink::Age(w) => w.finish(),
        }
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FileSink::Plain(w) => w.write(buf),
            FileSink::Age(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            FileSink::Plain(w) => w.write_all(buf),
            FileSink::Age(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            FileSink::Plain(w) => w.flush(),
            FileSink::Age(w) => w.flush(),
        }
    }
}

const CHUNK: usize = 1 << 20;
const SLOTS: usize = 4;

/// Collects writes into large chunks and writes them to `W` on another thread.
pub struct ThreadedWriter<W: Write + Send + 'static> {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ThreadedWriter<W> {
    /// Start the writer thread.
    pub fn new(mut inner: W) -> io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<u8>>(SLOTS);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(SLOTS + 2);
        for _ in 0..SLOTS {
            let _ = free_tx.send(Vec::with_capacity(CHUNK));
        }
        let handle = thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                for mut chunk in rx.iter() {
                    inner.write_all(&chunk)?;
                    chunk.clear();
                    let _ = free_tx.try_send(chunk);
                }
                inner.flush()?;
                Ok(inner)
            })?;
        Ok(ThreadedWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            free: free_rx,
            handle: Some(handle),
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .free
            .recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        match self.tx.as_ref().map(|tx| tx.send(full)) {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the writer thread stopped")),
        }
    }

    /// Write what is buffered, stop the thread and return the inner writer
    /// (or the error that stopped it).
    pub fn finish(mut self) -> io::Result<W> {
        let sent = self.send();
        self.tx = None;
        let joined = match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the writer thread panicked")),
        };
        match (joined, sent) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(w), Ok(())) => Ok(w),
        }
    }
}

impl<W: Write + Send + 'static> Write for ThreadedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ThreadedWriter<W> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threaded_writer_keeps_order_and_hash() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = ThreadedWriter::new(HashingWriter::new(Vec::new())).unwrap();
        for c in data.chunks(12345) {
            w.write_all(c).unwrap();
        }
        let (out, hex, n) = w.finish().unwrap().finish();
        assert_eq!(out, data);
        assert_eq!(n, data.len() as u64);
        let want: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, want);
    }
}
