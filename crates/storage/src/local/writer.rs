//! The file side of a put: one blocking thread writes the chunks the put
//! hands it and makes them durable, another hashes the same chunks. The
//! put's task only receives the body: sha256 is the dearest step of a put,
//! and on the task's thread (an HTTP worker's, for an upload) it held up
//! reading the request; beside the writes it held up the disk.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use tokio::sync::mpsc;

/// Written bytes are made durable every this many, so the fsync that ends a
/// put has only the last stretch to flush instead of the whole file: the
/// disk works while the put is still hashing, and dirty pages do not pile up
/// in memory during a large upload.
const SYNC_EVERY_BYTES: u64 = 32 * 1024 * 1024;

/// Chunks queued for the writer: enough to keep it busy while the body
/// arrives, few enough to bound memory whatever the body's chunk size.
const QUEUED_CHUNKS: usize = 16;

pub(crate) enum Message {
    Chunk(Bytes),
    /// Everything was sent: flush and fsync. Without it (the put failed or
    /// was dropped) the writer stops and makes nothing durable.
    Finish,
}

pub(crate) struct Writer {
    sender: mpsc::Sender<Message>,
    to_hash: mpsc::Sender<Bytes>,
    written: tokio::task::JoinHandle<io::Result<()>>,
    hashed: tokio::task::JoinHandle<[u8; 32]>,
}

impl Writer {
    /// Takes over `file`; `keep_alive` lives until the writer is done with
    /// the file (the temp file guard, so cleanup waits for the last write).
    pub(crate) fn start<G: Send + 'static>(mut file: File, keep_alive: G) -> Self {
        let (to_hash, mut chunks) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        let hashed = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = chunks.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher.finalize().into()
        });
        let (sender, mut receiver) = mpsc::channel(QUEUED_CHUNKS);
        let written = tokio::task::spawn_blocking(move || {
            let _keep_alive = keep_alive;
            let mut unsynced = 0_u64;
            while let Some(message) = receiver.blocking_recv() {
                match message {
                    Message::Chunk(chunk) => {
                        file.write_all(&chunk)?;
                        unsynced += chunk.len() as u64;
                        if unsynced >= SYNC_EVERY_BYTES {
                            file.sync_data()?;
                            unsynced = 0;
                        }
                    }
                    Message::Finish => {
                        file.flush()?;
                        return file.sync_all();
                    }
                }
            }
            Err(io::Error::new(io::ErrorKind::Interrupted, "the put ended before its body did"))
        });
        Self { sender, to_hash, written, hashed }
    }

    /// Queues a chunk; an error means the writer stopped, and `finish`
    /// reports why.
    pub(crate) async fn write(&self, chunk: Bytes) -> Result<(), ()> {
        // The hasher stops only when the writer is dropped.
        self.to_hash.send(chunk.clone()).await.map_err(drop)?;
        self.sender.send(Message::Chunk(chunk)).await.map_err(drop)
    }

    /// Waits for every chunk to be written and fsynced; returns the sha256
    /// of what was written.
    pub(crate) async fn finish(self) -> io::Result<[u8; 32]> {
        // A send error means the writer already stopped with an error.
        let _ = self.sender.send(Message::Finish).await;
        drop(self.sender);
        // The hasher's end of the body.
        drop(self.to_hash);
        self.written.await.map_err(io::Error::other)??;
        self.hashed.await.map_err(io::Error::other)
    }
}
