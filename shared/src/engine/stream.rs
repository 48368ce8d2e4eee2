//! Tar streams out of and into a container through the archive endpoints
//! (`GET`/`PUT /containers/ID/archive`), as blocking `Read` and `Write`.
//!
//! Out: a task on the engine runtime pulls the response body (hyper parses
//! its framing, chunked or not) and hands its frames over a small bounded
//! channel in batches of about 256 KiB, without copying them, so the engine
//! keeps sending while we compress, memory stays bounded, and the reading
//! thread wakes once per batch rather than once per 32 KiB frame. Silence longer than the request
//! deadline ends the stream with an error; Ctrl-C ends an interruptible one
//! at once. A stream cut short is caught by the caller's tar reader, which
//! insists on the end-of-archive marker.
//!
//! In: writes are gathered into 1 MiB blocks and sent through a bounded
//! channel to the upload request (a chunked body). Aborting cancels the
//! request mid-body, so the engine sees a broken upload, never a short but
//! well-formed one.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{EngineError, Mode, block_on, classify, engine, runtime, timeouts};

const GATHER: usize = 256 * 1024;
const OUT_SLOTS: usize = 8;
const IN_BLOCK: usize = 1 << 20;
const IN_SLOTS: usize = 4;

/// A tar stream coming out of a container.
pub struct ArchiveReader {
    rx: mpsc::Receiver<Result<Vec<Bytes>, EngineError>>,
    ready: std::collections::VecDeque<Bytes>,
    task: tokio::task::JoinHandle<()>,
    mode: Mode,
    what: String,
    done: bool,
}

impl ArchiveReader {
    /// Stream `path` of `container`; `mode` says whether Ctrl-C ends it.
    pub fn open(container: &str, path: &str, mode: Mode) -> anyhow::Result<ArchiveReader> {
        let engine = engine()?;
        let docker = engine.docker().clone();
        let idle = timeouts().request;
        let (tx, rx) = mpsc::channel(OUT_SLOTS);
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let id = container.to_string();
        let task = runtime().spawn(async move {
            let mut body = docker.download_from_container(&id, Some(options));
            // Frames are handed over in batches, without copying them.
            let mut batch: Vec<Bytes> = Vec::new();
            let mut batched = 0usize;
            loop {
                let next = match tokio::time::timeout(idle, body.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        let _ = tx.send(Err(EngineError::Timeout(idle))).await;
                        return;
                    }
                };
                match next {
                    Some(Ok(chunk)) => {
                        batched += chunk.len();
                        batch.push(chunk);
                        if batched >= GATHER {
                            batched = 0;
                            if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                                return; // the reader is gone
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(classify(e))).await;
                        return;
                    }
                    None => {
                        if !batch.is_empty() {
                            let _ = tx.send(Ok(batch)).await;
                        }
                        return;
                    }
                }
            }
        });
        Ok(ArchiveReader {
            rx,
            ready: std::collections::VecDeque::new(),
            task,
            mode,
            what: format!(
                "send the contents of {path} in container {}",
                short(container)
            ),
            done: false,
        })
    }

    /// The next piece of the stream as it arrived (`None` at its end), for
    /// callers that can use the bytes without another copy.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                if b.is_empty() {
                    continue;
                }
                return Ok(Some(b));
            }
            if self.done {
                return Ok(None);
            }
            // The producer enforces the silence deadline; this wait only
            // needs an upper bound for safety and the interrupt.
            let limit = timeouts().request * 2;
            let rx = &mut self.rx;
            let next = block_on(limit, self.mode, async move { Ok(rx.recv().await) });
            match next {
                Ok(Some(Ok(batch))) => self.ready.extend(batch),
                Ok(None) => self.done = true,
                Ok(Some(Err(e))) | Err(e) => {
                    self.done = true;
                    self.task.abort();
                    return Err(io::Error::other(EngineIoError {
                        error: e,
                        what: self.what.clone(),
                    }));
                }
            }
        }
    }

    /// Stop the stream now (after an error on our side): the connection closes.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(mut chunk) = self.next_chunk()? else {
            return Ok(0);
        };
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        let _ = chunk.split_to(n);
        if !chunk.is_empty() {
            self.ready.push_front(chunk);
        }
        Ok(n)
    }
}

impl Drop for ArchiveReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An engine error carried through `io::Error`, so `Read`/`Write` users keep
/// the kind (unreachable, timeout, interrupted) and the message.
#[derive(Debug)]
pub struct EngineIoError {
    /// The error.
    pub error: EngineError,
    /// What the engine was asked to do.
    pub what: String,
}

impl std::fmt::Display for EngineIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error.clone().into_error(&self.what))
    }
}

impl std::error::Error for EngineIoError {}

/// The user-facing error inside an I/O error from these streams, if any.
pub fn engine_error_of(e: &io::Error) -> Option<anyhow::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<EngineIoError>())
        .map(|x| x.error.clone().into_error(&x.what))
}

type Upload = tokio::task::JoinHandle<Result<(), EngineError>>;

/// A tar stream going into a container, extracted by the engine as it arrives.
pub struct ArchiveWriter {
    tx: Option<mpsc::Sender<Result<Bytes, io::Error>>>,
    block: BytesMut,
    task: Option<Upload>,
    mode: Mode,
    what: String,
}

impl ArchiveWriter {
    /// Extract into `path` of `container` (a directory); `mode` says whether
    /// Ctrl-C ends it.
    pub fn open(container: &str, path: &str, mode: Mode) -> anyhow::Result<ArchiveWriter> {
        let engine = engine()?;
        let docker = engine.docker().clone();
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(IN_SLOTS);
        let body = bollard::body_try_stream(tokio_stream_from(rx));
        let options = bollard::query_parameters::UploadToContainerOptions {
            path: path.to_string(),
            // As `docker cp`: never replace a directory with a file or back.
            no_overwrite_dir_non_dir: Some("true".into()),
            copy_uidgid: None,
        };
        let id = container.to_string();
        let task = runtime().spawn(async move {
            docker
                .upload_to_container(&id, Some(options), body)
                .await
                .map_err(classify)
        });
        Ok(ArchiveWriter {
            tx: Some(tx),
            block: BytesMut::with_capacity(IN_BLOCK),
            task: Some(task),
            mode,
            what: format!("extract into {path} of container {}", short(container)),
        })
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = self.block.split().freeze();
        self.block.reserve(IN_BLOCK);
        let Some(tx) = self.tx.as_ref() else {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        };
        let tx = tx.clone();
        let sent = block_on(timeouts().request, self.mode, async move {
            Ok(tx.send(Ok(block)).await.is_ok())
        });
        match sent {
            Ok(true) => Ok(()),
            // The upload ended early: the engine refused; finish() says why.
            Ok(false) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            Err(e) => {
                self.cancel();
                Err(io::Error::other(EngineIoError {
                    error: e,
                    what: self.what.clone(),
                }))
            }
        }
    }

    fn cancel(&mut self) {
        self.tx = None;
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Stop now: the upload is cut mid-body, so the engine fails it (what it
    /// already extracted stays extracted).
    pub fn abort(mut self) {
        self.cancel();
    }

    /// End the stream and wait for the engine to finish extracting.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.send_block()
            .map_err(|e| engine_error_of(&e).unwrap_or_else(|| anyhow::Error::from(e)))
            .or_else(|e| match self.task.is_some() {
                // A broken pipe: the engine's own answer says more.
                true => Ok::<(), anyhow::Error>(()),
                false => Err(e),
            })?;
        self.tx = None; // the end of the body
        let Some(task) = self.task.take() else {
            crate::fail!(Failure, "the upload to Docker was already stopped");
        };
        let what = self.what.clone();
        match block_on(timeouts().request, self.mode, async move {
            task.await
                .unwrap_or(Err(EngineError::Other("the upload task stopped".into())))
        }) {
            Ok(()) => Ok(()),
            Err(e) => Err(e.into_error(&what)),
        }
    }
}

impl Write for ArchiveWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (IN_BLOCK - self.block.len()).min(data.len());
        self.block.extend_from_slice(&data[..n]);
        if self.block.len() >= IN_BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        // Dropped without finish(): an error path. Never let the engine take
        // a cut stream for a complete one.
        self.cancel();
    }
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
