// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! `restore`: into an empty database with media, refused over a used one
//! unless --force-clean, refused when the dump is not what was stored.

mod common;

use common::*;
use std::sync::Arc;
use stockflow_backup::restore::RestoreOptions;
use stockflow_db::backup_runs;
use stockflow_domain::BackupRunRef;
use stockflow_storage::{LocalFs, Storage};

#[tokio::test]
async fn a_run_restores_into_an_empty_database_with_its_media() {
    let mut fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 300);
    let (key, sha) = attach(&fixture, &tenant, b"an attachment to bring back").await;
    let run = fixture.backup.run("manual").await.unwrap();
    assert_eq!(run.status, backup_runs::SUCCEEDED, "{:?}", run.error);

    // A new installation: empty database, empty media store.
    let target = EmptyDatabase::create(fixture.env.database.url());
    let new_media = tempfile::tempdir().unwrap();
    fixture.backup.media = Arc::new(LocalFs::new(new_media.path()).unwrap()) as Arc<dyn Storage>;
    let options = RestoreOptions { target_database_url: Some(target.url.clone()), media: true, force_clean: false };
    let report = fixture.backup.restore(BackupRunRef::Latest, &options).await.unwrap();
    assert!(report.counts_match(), "{:?}", report.tables);
    assert_eq!(target.counts(), recorded_counts(&run));
    assert_eq!((report.media_copied, report.media_present), (1, 0));
    assert_eq!(sha256_of(fixture.backup.media.as_ref(), &key).await, Some(hex(&sha)));

    // Again: the target is no longer empty.
    let error = fixture.backup.restore(BackupRunRef::Id(run.id), &options).await.unwrap_err();
    assert!(error.to_string().contains("pass --force-clean"), "{error}");
    let forced = RestoreOptions { force_clean: true, ..options };
    let report = fixture.backup.restore(BackupRunRef::Id(run.id), &forced).await.unwrap();
    assert!(report.counts_match(), "{:?}", report.tables);
    assert_eq!((report.media_copied, report.media_present), (0, 1));
}

#[tokio::test]
async fn a_dump_that_is_not_what_was_stored_is_not_restored() {
    let fixture = fixture();
    seed(&mut fixture.env.database.connect(), 50);
    let run = fixture.backup.run("manual").await.unwrap();
    let dump = fixture.backup_root.join(run.db_key.as_deref().unwrap());
    let mut bytes = std::fs::read(&dump).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();

    let target = EmptyDatabase::create(fixture.env.database.url());
    let options = RestoreOptions { target_database_url: Some(target.url.clone()), ..RestoreOptions::default() };
    let error = fixture.backup.restore(BackupRunRef::Id(run.id), &options).await.unwrap_err();
    assert!(error.to_string().contains("nothing was restored"), "{error}");
    assert!(target.counts().is_empty());
}

/// A local media store that reports a nearly full disk.
#[derive(Debug)]
struct NearlyFull(LocalFs);

#[async_trait::async_trait]
impl Storage for NearlyFull {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    async fn put(
        &self,
        key: &stockflow_storage::Key,
        body: stockflow_storage::ByteStream,
        mode: stockflow_storage::PutMode,
    ) -> Result<stockflow_storage::Stored, stockflow_storage::StorageError> {
        self.0.put(key, body, mode).await
    }
    async fn get(
        &self,
        key: &stockflow_storage::Key,
        range: Option<stockflow_storage::ByteRange>,
    ) -> Result<stockflow_storage::Object, stockflow_storage::StorageError> {
        self.0.get(key, range).await
    }
    async fn head(
        &self,
        key: &stockflow_storage::Key,
    ) -> Result<Option<stockflow_storage::ObjectMeta>, stockflow_storage::StorageError> {
        self.0.head(key).await
    }
    async fn delete(&self, key: &stockflow_storage::Key) -> Result<(), stockflow_storage::StorageError> {
        self.0.delete(key).await
    }
    async fn discard_incomplete(&self, key: &stockflow_storage::Key) -> Result<u64, stockflow_storage::StorageError> {
        self.0.discard_incomplete(key).await
    }
    fn list(
        &self,
        prefix: &stockflow_storage::Prefix,
    ) -> futures_util::stream::BoxStream<'static, Result<stockflow_storage::ObjectMeta, stockflow_storage::StorageError>>
    {
        self.0.list(prefix)
    }
    async fn presign_get(
        &self,
        key: &stockflow_storage::Key,
        ttl: std::time::Duration,
        filename: &str,
    ) -> Result<Option<url::Url>, stockflow_storage::StorageError> {
        self.0.presign_get(key, ttl, filename).await
    }
    async fn health_check(&self) -> Result<(), stockflow_storage::StorageError> {
        self.0.health_check().await
    }
    async fn available_bytes(&self) -> Result<Option<u64>, stockflow_storage::StorageError> {
        Ok(Some(10))
    }
}

#[tokio::test]
async fn media_that_would_not_fit_stop_the_restore_before_it_starts() {
    let mut fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 5);
    attach(&fixture, &tenant, b"more than ten bytes of media").await;
    let run = fixture.backup.run("manual").await.unwrap();
    assert_eq!(run.status, backup_runs::SUCCEEDED, "{:?}", run.error);
    let real = LocalFs::new(fixture.media_root.clone()).unwrap();
    assert!(real.available_bytes().await.unwrap().is_some_and(|free| free > 0), "a local disk tells");

    let new_media = tempfile::tempdir().unwrap();
    fixture.backup.media = Arc::new(NearlyFull(LocalFs::new(new_media.path()).unwrap())) as Arc<dyn Storage>;
    let target = EmptyDatabase::create(fixture.env.database.url());
    let options = RestoreOptions { target_database_url: Some(target.url.clone()), media: true, force_clean: false };
    let error = fixture.backup.restore(BackupRunRef::Id(run.id), &options).await.unwrap_err();
    assert!(error.to_string().contains("media storage has 10 bytes free and the run's media take 28"), "{error}");
    assert!(target.counts().is_empty(), "nothing was restored");
}
