//! Media backup: incremental and content-addressed. Every object the
//! snapshot references goes to `media/objects/<sha[0..2]>/<sha>` in backup
//! storage unless already there, so a run over unchanged media copies
//! nothing; a per-run manifest maps each media key to its object.

use crate::BackupError;
pub use crate::manifest::ManifestEntry;
use crate::manifest::ManifestWriter;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Nullable, Text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use stockflow_storage::{Key, PutMode, Storage, StorageError};

/// One referenced object, as its row describes it.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Referenced {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    sha256: Option<Vec<u8>>,
    #[diesel(sql_type = BigInt)]
    size: i64,
    #[diesel(sql_type = Text)]
    kind: String,
}

/// A whole `backups/<run>/media.json`, for readers that want it in memory
/// (prune reads small sets of them); runs and verify stream it instead
/// (see manifest.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub run_id: uuid::Uuid,
    /// Media key -> its object.
    pub objects: BTreeMap<String, ManifestEntry>,
}

/// What a media backup stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaTotals {
    pub objects: i64,
    pub bytes: i64,
    pub new_bytes: i64,
}

/// Opens a cursor over every stored attachment and succeeded export, in
/// the session's snapshot (call inside it); `fetch` reads it in batches,
/// so the listing is never whole in memory.
pub(crate) fn declare_listing(conn: &mut PgConnection) -> Result<(), BackupError> {
    diesel::sql_query(
        "DECLARE media_listing NO SCROLL CURSOR FOR \
         SELECT storage_key AS key, sha256, size_bytes AS size, 'attachment' AS kind \
         FROM attachments WHERE state = 'stored' \
         UNION ALL \
         SELECT storage_key, sha256, size_bytes, 'export' FROM exports \
         WHERE status = 'succeeded' AND storage_key IS NOT NULL AND size_bytes IS NOT NULL",
    )
    .execute(conn)?;
    Ok(())
}

/// The next batch of the listing; empty at its end.
pub(crate) fn fetch(conn: &mut PgConnection) -> Result<Vec<Referenced>, BackupError> {
    Ok(diesel::sql_query("FETCH 500 FROM media_listing").load(conn)?)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where an object of this digest lives in backup storage.
pub fn object_key(sha256_hex: &str) -> Result<Key, BackupError> {
    let shard = sha256_hex.get(..2).unwrap_or("00");
    Key::parse(&format!("media/objects/{shard}/{sha256_hex}")).map_err(|e| BackupError::Media(e.to_string()))
}

/// Copies the objects of one batch that backup storage lacks, checking
/// each copy's sha256 as it streams by, and adds them to the manifest.
pub(crate) async fn copy_batch(
    batch: Vec<Referenced>,
    media: &Arc<dyn Storage>,
    backups: &Arc<dyn Storage>,
    manifest: &mut ManifestWriter,
    totals: &mut MediaTotals,
) -> Result<(), BackupError> {
    for object in batch {
        let sha = object
            .sha256
            .as_deref()
            .filter(|sha| sha.len() == 32)
            .map(hex)
            .ok_or_else(|| BackupError::Media(format!("{}: its row has no sha256", object.key)))?;
        let target = object_key(&sha)?;
        let size = u64::try_from(object.size).unwrap_or_default();
        let present = backups.head(&target).await?.is_some_and(|meta| meta.size == size);
        if !present {
            totals.new_bytes += copy_one(&object.key, &sha, &target, media.as_ref(), backups.as_ref()).await?;
        }
        totals.objects += 1;
        totals.bytes += object.size;
        manifest.add(&object.key, &ManifestEntry { sha256: sha, size, kind: object.kind }).await?;
    }
    Ok(())
}

async fn copy_one(
    key: &str,
    sha: &str,
    target: &Key,
    media: &dyn Storage,
    backups: &dyn Storage,
) -> Result<i64, BackupError> {
    let source = Key::parse(key).map_err(|e| BackupError::Media(e.to_string()))?;
    let object = media.get(&source, None).await.map_err(|error| match error {
        StorageError::NotFound(_) => BackupError::Media(format!("{key}: not in media storage")),
        other => BackupError::Storage(other),
    })?;
    let stored = backups.put(target, object.body, PutMode::Overwrite).await?;
    let read = hex(&stored.sha256);
    if read != sha {
        backups.delete(target).await?;
        return Err(BackupError::Media(format!("{key}: sha256 {read} read, but its row says {sha}")));
    }
    Ok(i64::try_from(stored.size).unwrap_or(i64::MAX))
}
