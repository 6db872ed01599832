//! The file side of a put: a blocking thread that writes the chunks the put
//! hands it and makes them durable, while the put's task hashes the next
//! ones. On two cores this overlaps sha256 with the kernel's copy.

use bytes::Bytes;
use std::fs::File;
use std::io::{self, Write};
use tokio::sync::mpsc;

/// Written bytes are made durable every this many, so the fsync that ends a
/// put has only the last stretch to flush instead of the whole file: the
/// disk works while the put is still hashing, and dirty pages do not pile up
/// in memory during a large upload.
const SYNC_EVERY_BYTES: u64 = 32 * 1024 * 1024;

/// Chunks queued for the writer: enough to keep it busy while the hasher
/// runs, few enough to bound memory whatever the body's chunk size.
const QUEUED_CHUNKS: usize = 16;

pub(crate) enum Message {
    Chunk(Bytes),
    /// Everything was sent: flush and fsync. Without it (the put failed or
    /// was dropped) the writer stops and makes nothing durable.
    Finish,
}

pub(crate) struct Writer {
    sender: mpsc::Sender<Message>,
    done: tokio::task::JoinHandle<io::Result<()>>,
}

impl Writer {
    /// Takes over `file`; `keep_alive` lives until the writer is done with
    /// the file (the temp file guard, so cleanup waits for the last write).
    pub(crate) fn start<G: Send + 'static>(mut file: File, keep_alive: G) -> Self {
        let (sender, mut receiver) = mpsc::channel(QUEUED_CHUNKS);
        let done = tokio::task::spawn_blocking(move || {
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
        Self { sender, done }
    }

    /// Queues a chunk; an error means the writer stopped, and `finish`
    /// reports why.
    pub(crate) async fn write(&self, chunk: Bytes) -> Result<(), ()> {
        self.sender.send(Message::Chunk(chunk)).await.map_err(drop)
    }

    /// Waits for every chunk to be written and fsynced.
    pub(crate) async fn finish(self) -> io::Result<()> {
        // A send error means the writer already stopped with an error.
        let _ = self.sender.send(Message::Finish).await;
        drop(self.sender);
        self.done.await.map_err(io::Error::other)?
    }
}
