//! Copying: each object streams from the source into the target, is read
//! back and compared by sha256, and only then recorded as copied.

use super::meter::Counter;
use super::{Endpoint, Ledger, Meter, MigrateError, REPORT_SAMPLE};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use stockflow_db::DbError;
use stockflow_db::storage_migrations::{self as progress, ListedObject};
use stockflow_storage::{ByteStream, InvalidKey, Key, PutMode, Storage, StorageError};
use stockflow_telemetry::Shutdown;
use uuid::Uuid;

/// Objects fetched from the listing table per query.
const PAGE: i64 = 500;

/// Why one object was not copied. The run goes on with the others.
#[derive(Debug, thiserror::Error)]
pub(super) enum CopyError {
    #[error("it is no longer at the source")]
    Vanished,
    /// Listings only yield valid keys, so this is a bug, not bad data.
    #[error(transparent)]
    InvalidKey(InvalidKey),
    #[error("cannot read it from the source: {0}")]
    Read(StorageError),
    #[error("cannot write it to the target: {0}")]
    Write(StorageError),
    #[error("cannot read it back from the target: {0}")]
    ReadBack(StorageError),
    #[error(
        "the target holds {got} ({got_size} bytes), not the {expected} ({expected_size} bytes) read from the source"
    )]
    Mismatch { expected: String, expected_size: u64, got: String, got_size: u64 },
}

/// What one pass over the objects left to copy did.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) copied: u64,
    pub(super) bytes: u64,
    pub(super) vanished: u64,
    /// The first vanished keys, for the report.
    pub(super) vanished_sample: Vec<String>,
    pub(super) failed: u64,
}

impl Tally {
    pub(super) fn processed(&self) -> u64 {
        self.copied + self.vanished + self.failed
    }
}

enum Outcome {
    Copied(u64),
    Vanished(String),
    Failed,
}

pub(super) struct Copier<'a> {
    pub(super) ledger: &'a Ledger,
    pub(super) run: Uuid,
    pub(super) source: &'a Endpoint,
    pub(super) target: &'a Endpoint,
    pub(super) skip_missing: bool,
    pub(super) meter: &'a Meter,
}

impl Copier<'_> {
    /// Copies the listed objects no run of the pair has copied, `jobs` at a
    /// time, until done or `shutdown` fires; objects in flight then finish
    /// and are recorded.
    pub(super) async fn copy_pending(&self, jobs: NonZeroUsize, shutdown: &Shutdown) -> Result<Tally, MigrateError> {
        let pages = stream::try_unfold(String::new(), |after| {
            let ledger = self.ledger.clone();
            async move {
                let page = ledger.call(move |conn, pair| progress::pending_page(conn, pair, &after, PAGE)).await?;
                let next = page.last().map(|last| last.key.clone());
                Ok::<_, DbError>(next.map(|next| (stream::iter(page.into_iter().map(Ok::<_, DbError>)), next)))
            }
        });
        let mut outcomes = std::pin::pin!(
            pages
                .try_flatten()
                .take_until(shutdown.wait())
                .map(|object| async move { self.settle(object?).await })
                .buffer_unordered(jobs.get())
        );
        let mut tally = Tally::default();
        while let Some(outcome) = outcomes.next().await {
            match outcome? {
                Outcome::Copied(bytes) => {
                    tally.copied += 1;
                    tally.bytes += bytes;
                }
                Outcome::Vanished(key) => {
                    tally.vanished += 1;
                    if tally.vanished_sample.len() < REPORT_SAMPLE {
                        tally.vanished_sample.push(key);
                    }
                }
                Outcome::Failed => tally.failed += 1,
            }
        }
        Ok(tally)
    }

    /// Copies one object and records what happened to it. Only a failure
    /// to record is an error: the run cannot go on without its ledger.
    async fn settle(&self, object: ListedObject) -> Result<Outcome, MigrateError> {
        let ListedObject { key: raw, .. } = object;
        let copied = match Key::parse(&raw) {
            Ok(key) => {
                let (source, target) = (self.source.store.as_ref(), self.target.store.as_ref());
                let (written, verified) = self.meter.byte_counters();
                copy_object(source, target, &key, written, verified).await
            }
            Err(error) => Err(CopyError::InvalidKey(error)),
        };
        let (run, key) = (self.run, raw.clone());
        let outcome = match copied {
            Ok(Copied { size, sha256 }) => {
                let recorded = i64::try_from(size).unwrap_or(i64::MAX);
                self.ledger.call(move |conn, _| progress::record_copied(conn, run, &key, recorded, &sha256)).await?;
                Outcome::Copied(size)
            }
            Err(CopyError::Vanished) if self.skip_missing => {
                self.ledger.call(move |conn, _| progress::record_missing(conn, run, &key)).await?;
                self.meter.suspend(|| tracing::warn!(key = %raw, "gone from the source; recorded as missing"));
                Outcome::Vanished(raw)
            }
            Err(error) => {
                self.meter.suspend(|| tracing::error!(key = %raw, %error, "object not copied"));
                Outcome::Failed
            }
        };
        self.meter.done();
        Ok(outcome)
    }
}

/// A verified copy: what the source gave, which the target now holds.
struct Copied {
    size: u64,
    sha256: [u8; 32],
}

/// Streams `key` from `source` into `target` (overwriting, so a copy cut
/// short by an earlier interruption is simply redone), then reads the target
/// back. The source's digest is taken here, on the bytes as they pass, so
/// the check does not rest on either backend's own accounting.
async fn copy_object(
    source: &dyn Storage,
    target: &dyn Storage,
    key: &Key,
    written: Counter,
    verified: Counter,
) -> Result<Copied, CopyError> {
    let object = match source.get(key, None).await {
        Ok(object) => object,
        Err(StorageError::NotFound(_)) => return Err(CopyError::Vanished),
        Err(error) => return Err(CopyError::Read(error)),
    };
    let digest = Arc::new(Mutex::new(Digesting::default()));
    let body = object
        .body
        .inspect_ok({
            let digest = Arc::clone(&digest);
            move |chunk| {
                digest.lock().unwrap_or_else(PoisonError::into_inner).update(chunk);
                written(chunk.len() as u64);
            }
        })
        .boxed();
    let stored = match target.put(key, body, PutMode::Overwrite).await {
        Ok(stored) => stored,
        // The body is the source's stream: its failure is a read failure.
        Err(StorageError::Body(error)) => return Err(CopyError::Read(StorageError::Body(error))),
        Err(error) => return Err(CopyError::Write(error)),
    };
    let sent = digest.lock().unwrap_or_else(PoisonError::into_inner).clone().finish();
    check(&sent, stored.size, stored.sha256)?;

    let readback = target.get(key, None).await.map_err(CopyError::ReadBack)?;
    let held = digest_of(readback.body, verified.as_ref())
        .await
        .map_err(|error| CopyError::ReadBack(StorageError::Body(error)))?;
    check(&sent, held.size, held.sha256)?;
    Ok(sent)
}

fn check(expected: &Copied, size: u64, sha256: [u8; 32]) -> Result<(), CopyError> {
    if expected.size == size && expected.sha256 == sha256 {
        return Ok(());
    }
    Err(CopyError::Mismatch {
        expected: format!("sha256 {}", hex(&expected.sha256)),
        expected_size: expected.size,
        got: format!("sha256 {}", hex(&sha256)),
        got_size: size,
    })
}

async fn digest_of(mut body: ByteStream, progress: &dyn Fn(u64)) -> std::io::Result<Copied> {
    let mut digest = Digesting::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        digest.update(&chunk);
        progress(chunk.len() as u64);
    }
    Ok(digest.finish())
}

#[derive(Clone, Default)]
struct Digesting {
    sha256: Sha256,
    size: u64,
}

impl Digesting {
    fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        self.size += chunk.len() as u64;
    }

    fn finish(self) -> Copied {
        Copied { size: self.size, sha256: self.sha256.finalize().into() }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
