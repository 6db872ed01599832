//! `backups/<run>/media.json`, written and read as a stream: one JSON
//! object `{"version": 1, "run_id": ..., "objects": {<media key>: {sha256,
//! size, kind}, ...}}`, but never held whole in memory, whatever the number
//! of objects.

use crate::BackupError;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use stockflow_storage::{Key, PutMode, Storage, StorageError, Stored};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Lowercase hex; also names the object in backup storage.
    pub sha256: String,
    pub size: u64,
    /// `attachment` or `export`.
    pub kind: String,
}

/// Flushes to storage every this many bytes.
const CHUNK: usize = 64 * 1024;

pub(crate) struct ManifestWriter {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
    put: tokio::task::JoinHandle<Result<Stored, StorageError>>,
    buffer: Vec<u8>,
    first: bool,
}

impl ManifestWriter {
    pub(crate) fn start(backups: Arc<dyn Storage>, key: Key, run_id: uuid::Uuid) -> Self {
        let (sender, receiver) = mpsc::channel(4);
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
        .boxed();
        let put = tokio::spawn(async move { backups.put(&key, body, PutMode::Overwrite).await });
        let buffer = format!("{{\"version\":1,\"run_id\":\"{run_id}\",\"objects\":{{\n").into_bytes();
        Self { sender, put, buffer, first: true }
    }

    pub(crate) async fn add(&mut self, key: &str, entry: &ManifestEntry) -> Result<(), BackupError> {
        if !self.first {
            self.buffer.extend_from_slice(b",\n");
        }
        self.first = false;
        let encode = |e: serde_json::Error| BackupError::Media(format!("manifest entry {key}: {e}"));
        serde_json::to_writer(&mut self.buffer, key).map_err(encode)?;
        self.buffer.push(b':');
        serde_json::to_writer(&mut self.buffer, entry).map_err(encode)?;
        if self.buffer.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BackupError> {
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        if self.sender.send(Ok(chunk)).await.is_err() {
            // The put ended early: its error says why.
            return Err(self.put_error().await);
        }
        Ok(())
    }

    async fn put_error(&mut self) -> BackupError {
        match (&mut self.put).await {
            Ok(Err(error)) => error.into(),
            Ok(Ok(_)) => BackupError::Media("the manifest upload ended early".to_owned()),
            Err(error) => error.into(),
        }
    }

    pub(crate) async fn finish(mut self) -> Result<Stored, BackupError> {
        self.buffer.extend_from_slice(b"\n}}\n");
        self.flush().await?;
        drop(self.sender);
        Ok(self.put.await??)
    }

    /// Fails the upload, so nothing (or the previous object) stays at the key.
    pub(crate) async fn abort(self) {
        let _ = self.sender.send(Err(std::io::Error::other("the backup run failed"))).await;
        drop(self.sender);
        let _ = self.put.await;
    }
}

/// Reads the manifest at `key` entry by entry: a missing or unreadable
/// manifest is an error item.
pub(crate) fn read(
    backups: Arc<dyn Storage>,
    key: Key,
) -> mpsc::Receiver<Result<(String, ManifestEntry), BackupError>> {
    let (entries, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        let body = match backups.get(&key, None).await {
            Ok(object) => object.body,
            Err(StorageError::NotFound(_)) => {
                let missing = format!("the media manifest {} is missing", key.as_str());
                let _ = entries.send(Err(BackupError::Verify(missing))).await;
                return;
            }
            Err(other) => {
                let _ = entries.send(Err(other.into())).await;
                return;
            }
        };
        let (chunks, chunk_receiver) = mpsc::channel(4);
        let parser = tokio::task::spawn_blocking({
            let entries = entries.clone();
            move || parse(ChunkReader::new(chunk_receiver), &entries)
        });
        let mut body = body;
        while let Some(chunk) = body.next().await {
            if chunks.send(chunk).await.is_err() {
                break;
            }
        }
        drop(chunks);
        let outcome = match parser.await {
            Ok(Ok(())) => return,
            Ok(Err(message)) => BackupError::Verify(format!("unreadable media manifest: {message}")),
            Err(error) => error.into(),
        };
        let _ = entries.send(Err(outcome)).await;
    });
    receiver
}

type EntrySender = mpsc::Sender<Result<(String, ManifestEntry), BackupError>>;

fn parse(reader: ChunkReader, entries: &EntrySender) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let found = serde::Deserializer::deserialize_map(&mut deserializer, ManifestVisitor { entries })
        .map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    if !found {
        return Err("it has no \"objects\"".to_owned());
    }
    Ok(())
}

/// The top-level object; true when it had `objects`.
struct ManifestVisitor<'a> {
    entries: &'a EntrySender,
}

impl<'de> Visitor<'de> for ManifestVisitor<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a media manifest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(field) = map.next_key::<String>()? {
            if field == "objects" {
                map.next_value_seed(Objects { entries: self.entries })?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct Objects<'a> {
    entries: &'a EntrySender,
}

impl<'de> DeserializeSeed<'de> for Objects<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Objects<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("media key -> {sha256, size, kind}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(entry) = map.next_entry::<String, ManifestEntry>()? {
            self.entries.blocking_send(Ok(entry)).map_err(|_| A::Error::custom("its reader stopped"))?;
        }
        Ok(())
    }
}

/// `Read` over chunks sent from the async side, for blocking readers
/// (serde_json here, the age decryptor in `encrypted`).
pub(crate) struct ChunkReader {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl ChunkReader {
    pub(crate) fn new(chunks: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        Self { chunks, current: Bytes::new() }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_storage::LocalFs;

    fn entry(n: u64) -> ManifestEntry {
        ManifestEntry { sha256: format!("{n:064x}"), size: n, kind: "attachment".to_owned() }
    }

    #[tokio::test]
    async fn a_manifest_streams_out_and_back_in_order() {
        let root = tempfile::tempdir().unwrap();
        let backups: Arc<dyn Storage> = Arc::new(LocalFs::new(root.path()).unwrap());
        let key = Key::parse("backups/run/media.json").unwrap();
        let mut writer = ManifestWriter::start(Arc::clone(&backups), key.clone(), uuid::Uuid::nil());
        // Enough entries for several chunks, with keys that need escaping.
        for n in 0..5_000 {
            writer.add(&format!("org/attachments/\"{n:05}\""), &entry(n)).await.unwrap();
        }
        writer.finish().await.unwrap();

        let mut entries = read(Arc::clone(&backups), key.clone());
        let mut n = 0;
        while let Some(item) = entries.recv().await {
            let (media_key, read) = item.unwrap();
            assert_eq!((media_key, read), (format!("org/attachments/\"{n:05}\""), entry(n)));
            n += 1;
        }
        assert_eq!(n, 5_000);

        // The whole file is one JSON document, as readers of it whole expect.
        let whole: crate::media::Manifest =
            serde_json::from_slice(&std::fs::read(root.path().join(key.as_str())).unwrap()).unwrap();
        assert_eq!((whole.version, whole.objects.len()), (1, 5_000));
    }

    #[tokio::test]
    async fn an_aborted_manifest_leaves_nothing_and_a_cut_one_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let backups: Arc<dyn Storage> = Arc::new(LocalFs::new(root.path()).unwrap());
        let key = Key::parse("backups/run/media.json").unwrap();
        let mut writer = ManifestWriter::start(Arc::clone(&backups), key.clone(), uuid::Uuid::nil());
        writer.add("a", &entry(1)).await.unwrap();
        writer.abort().await;
        assert!(backups.head(&key).await.unwrap().is_none());
        let mut missing = read(Arc::clone(&backups), key.clone());
        let error = missing.recv().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("is missing"), "{error}");

        std::fs::create_dir_all(root.path().join("backups/run")).unwrap();
        std::fs::write(
            root.path().join(key.as_str()),
            br#"{"version":1,"objects":{"a":{"sha256":"00","size":1,"kind":"x"},"#,
        )
        .unwrap();
        let mut cut = read(backups, key);
        assert!(cut.recv().await.unwrap().is_ok());
        let error = cut.recv().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("unreadable media manifest"), "{error}");
    }
}
