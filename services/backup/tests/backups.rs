// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! Backup runs through the library against a real PostgreSQL, pg_dump and
//! pg_restore, LocalFs and S3 stores: what is stored restores to the
//! snapshot's counts, media are copied once, corruption fails verify, and
//! a pg_dump that cannot be used is one clear error.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use stockflow_backup::media::object_key;
use stockflow_config::{Env, StorageBackendKind, StorageSettings};
use stockflow_db::backup_runs::{self, BackupRun};
use stockflow_domain::BackupRunRef;
use stockflow_storage::{Key, S3, Storage};
use stockflow_testkit::S3Server;

fn assert_verified(run: &BackupRun) {
    assert_eq!(run.status, backup_runs::SUCCEEDED, "{:?}", run.error);
    assert_eq!(run.verify_method.as_deref(), Some("restore"));
    assert!(run.verified_at.is_some());
}

/// Restores the run's stored dump into an empty database by hand and
/// checks it has exactly the snapshot's counts.
async fn restore_and_compare(fixture: &Fixture, backups: &dyn Storage, run: &BackupRun) {
    let dump = tempfile::NamedTempFile::new().unwrap();
    let key = Key::parse(run.db_key.as_deref().unwrap()).unwrap();
    let mut body = backups.get(&key, None).await.unwrap().body;
    let mut file = tokio::fs::File::create(dump.path()).await.unwrap();
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk.unwrap()).await.unwrap();
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.unwrap();
    let target = EmptyDatabase::create(fixture.env.database.url());
    pg_restore(dump.path(), &target.url);
    assert_eq!(target.counts(), recorded_counts(run));
}

#[tokio::test]
async fn backup_then_restore_into_an_empty_database_gives_the_snapshot_counts() {
    let fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 500);
    let (_, sha_a) = attach(&fixture, &tenant, b"first attachment").await;
    let (_, sha_b) = attach(&fixture, &tenant, &vec![42u8; 300_000]).await;

    let run = fixture.backup.run("manual").await.unwrap();
    assert_verified(&run);
    let counts = recorded_counts(&run);
    assert_eq!(counts["batches"], 500);
    assert_eq!(counts["attachments"], 2);
    assert!(counts.contains_key("__diesel_schema_migrations"));
    assert_eq!((run.media_objects, run.media_bytes, run.media_new_bytes), (Some(2), Some(300_016), Some(300_016)));
    restore_and_compare(&fixture, fixture.backup.backups.as_ref(), &run).await;
    for sha in [sha_a, sha_b] {
        let stored = sha256_of(fixture.backup.backups.as_ref(), &object_key(&hex(&sha)).unwrap()).await;
        assert_eq!(stored, Some(hex(&sha)));
    }
}

#[tokio::test]
async fn backups_round_trip_through_s3() {
    let server = S3Server::start().await;
    server.create_bucket("backups");
    let settings =
        StorageSettings::from_env(&Env::from_pairs(server.env("S3_", "backups")).with("STORAGE_BACKEND", "s3"))
            .unwrap();
    let StorageBackendKind::S3(settings) = settings.backend else { panic!("not S3") };
    let backups: Arc<dyn Storage> = Arc::new(S3::new(&settings).unwrap());
    let mut fixture = fixture();
    fixture.backup = backup_over(&fixture.env.env, Arc::clone(&backups));
    let tenant = seed(&mut fixture.env.database.connect(), 200);
    let (_, sha) = attach(&fixture, &tenant, b"on s3").await;

    let run = fixture.backup.run("manual").await.unwrap();
    assert_verified(&run);
    restore_and_compare(&fixture, backups.as_ref(), &run).await;
    assert_eq!(sha256_of(backups.as_ref(), &object_key(&hex(&sha)).unwrap()).await, Some(hex(&sha)));
}

#[tokio::test]
async fn a_second_run_over_unchanged_media_copies_nothing() {
    let fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 10);
    attach(&fixture, &tenant, b"one").await;
    attach(&fixture, &tenant, b"two!").await;
    let first = fixture.backup.run("manual").await.unwrap();
    assert_verified(&first);
    assert_eq!(first.media_new_bytes, Some(7));

    let second = fixture.backup.run("scheduled").await.unwrap();
    assert_verified(&second);
    assert_eq!((second.media_objects, second.media_bytes, second.media_new_bytes), (Some(2), Some(7), Some(0)));

    attach(&fixture, &tenant, b"three").await;
    let third = fixture.backup.run("scheduled").await.unwrap();
    assert_eq!((third.media_objects, third.media_new_bytes), (Some(3), Some(5)));
}

#[tokio::test]
async fn writes_during_a_backup_do_not_change_the_recorded_counts() {
    let fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 20_000);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, url) = (Arc::clone(&stop), fixture.env.database.url().to_owned());
        let (org, product) = (tenant.org, tenant.product);
        std::thread::spawn(move || {
            use diesel::Connection;
            let mut conn = diesel::PgConnection::establish(&url).unwrap();
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                add_batches(&mut conn, org, product, 20_000 + written, 50);
                written += 50;
            }
            written
        })
    };
    let run = fixture.backup.run("manual").await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert_verified(&run);
    let recorded = recorded_counts(&run)["batches"];
    assert!(written > 0, "the writer wrote during the run");
    assert!((20_000..20_000 + written).contains(&recorded), "{recorded} of {} rows", 20_000 + written);
    restore_and_compare(&fixture, fixture.backup.backups.as_ref(), &run).await;
}

#[tokio::test]
async fn corruption_fails_verify_and_marks_the_run_failed() {
    let fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 100);
    attach(&fixture, &tenant, b"kept safe").await;

    // A flipped byte in the dump.
    let run = fixture.backup.run("manual").await.unwrap();
    assert_verified(&run);
    let dump = fixture.backup_root.join(run.db_key.as_deref().unwrap());
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).unwrap();
    let checked = fixture.backup.verify(BackupRunRef::Id(run.id)).await.unwrap();
    assert_eq!(checked.status, backup_runs::FAILED);
    assert!(checked.error.as_deref().unwrap().contains("the dump's sha256 is"), "{:?}", checked.error);
    assert_eq!(checked.verified_at, None);

    // A deleted media object (every run shares it, so the next run copies it again).
    let run = fixture.backup.run("manual").await.unwrap();
    assert_verified(&run);
    let objects = fixture.backup_root.join("media/objects");
    for shard in std::fs::read_dir(&objects).unwrap() {
        std::fs::remove_dir_all(shard.unwrap().path()).unwrap();
    }
    let checked = fixture.backup.verify(BackupRunRef::Latest).await.unwrap();
    assert_eq!((checked.id, checked.status.as_str()), (run.id, backup_runs::FAILED));
    assert!(checked.error.as_deref().unwrap().contains("is missing"), "{:?}", checked.error);

    // A deleted manifest.
    let run = fixture.backup.run("manual").await.unwrap();
    assert_verified(&run);
    std::fs::remove_file(fixture.backup_root.join(run.media_manifest_key.as_deref().unwrap())).unwrap();
    let checked = fixture.backup.verify(BackupRunRef::Latest).await.unwrap();
    assert_eq!(checked.status, backup_runs::FAILED);
    assert!(checked.error.as_deref().unwrap().contains("manifest"), "{:?}", checked.error);
    assert!(backup_runs::latest_succeeded(&mut fixture.env.database.connect()).unwrap().is_none());
}

#[tokio::test]
async fn a_missing_pg_dump_is_one_clear_error() {
    let fixture = fixture_with(&[("BACKUP_PG_DUMP", "/nonexistent/pg_dump")]);
    seed(&mut fixture.env.database.connect(), 3);
    let run = fixture.backup.run("manual").await.unwrap();
    assert_eq!(run.status, backup_runs::FAILED);
    assert!(run.error.as_deref().unwrap().starts_with("cannot run /nonexistent/pg_dump"), "{:?}", run.error);
    assert_eq!(run.db_key, None);
    assert!(!fixture.backup_root.join("backups").join(run.id.to_string()).join("database.dump").exists());
}

#[tokio::test]
async fn a_pg_dump_of_another_major_version_is_one_clear_error() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("pg_dump");
    std::fs::write(&script, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6'\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fixture = fixture_with(&[("BACKUP_PG_DUMP", script.to_str().unwrap())]);
    let run = fixture.backup.run("manual").await.unwrap();
    assert_eq!(run.status, backup_runs::FAILED);
    let error = run.error.unwrap();
    assert!(error.contains("is PostgreSQL 9 but the server is PostgreSQL"), "{error}");
    let runs = backup_runs::list(&mut fixture.env.database.connect(), 10).unwrap();
    assert!(runs.iter().all(|run| run.status != backup_runs::SUCCEEDED));
}
