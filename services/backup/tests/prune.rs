// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! Prune over real runs: the plan is printed and nothing moves with
//! `--dry-run`; for real, forgotten runs lose their dump, manifest and row,
//! and a media object goes only when no kept run's manifest names it.

mod common;

use common::*;
use diesel::prelude::*;
use stockflow_backup::media::object_key;
use stockflow_backup::retention::KeepPolicy;
use stockflow_db::backup_runs::{self, BackupRun};
use stockflow_db::schema::{attachments, backup_runs as runs_table};
use stockflow_storage::{Key, Storage};

async fn exists(storage: &dyn Storage, key: &str) -> bool {
    storage.head(&Key::parse(key).unwrap()).await.unwrap().is_some()
}

/// Moves a run `days` into the past, as if it had been taken then.
fn age(fixture: &Fixture, run: &BackupRun, days: i32) {
    diesel::update(runs_table::table.find(run.id))
        .set(runs_table::started_at.eq(diesel::dsl::sql(&format!("now() - interval '{days} days'"))))
        .execute(&mut fixture.env.database.connect())
        .unwrap();
}

#[tokio::test]
async fn prune_forgets_what_the_policy_does_not_keep_and_only_unreferenced_media() {
    let fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 5);
    let (_, kept_sha) = attach(&fixture, &tenant, b"kept by every run").await;
    let (old_key, old_sha) = attach(&fixture, &tenant, b"only in the oldest run").await;
    let oldest = fixture.backup.run("scheduled").await.unwrap();
    assert_eq!(oldest.status, backup_runs::SUCCEEDED, "{:?}", oldest.error);
    // The attachment is deleted: later runs no longer reference its object.
    diesel::delete(attachments::table.filter(attachments::storage_key.eq(old_key.as_str())))
        .execute(&mut fixture.env.database.connect())
        .unwrap();
    let middle = fixture.backup.run("scheduled").await.unwrap();
    let newest = fixture.backup.run("scheduled").await.unwrap();
    age(&fixture, &oldest, 2);
    age(&fixture, &middle, 1);
    let backups = fixture.backup.backups.as_ref();
    let kept_object = object_key(&hex(&kept_sha)).unwrap();
    let old_object = object_key(&hex(&old_sha)).unwrap();
    let dump = |run: &BackupRun| run.db_key.clone().unwrap();
    let policy = KeepPolicy { daily: 2, weekly: 0, monthly: 0 };

    let plan = fixture.backup.prune(policy, true).await.unwrap();
    assert_eq!(plan.plan.forget, vec![oldest.id]);
    assert_eq!(plan.objects_deleted, vec![old_object.as_str().to_owned()]);
    let printed = plan.lines().join("\n");
    assert!(printed.contains(&format!("forget  {}", oldest.id)), "{printed}");
    assert!(printed.contains(&format!("keep    {}", newest.id)) && printed.contains("newest verified"), "{printed}");
    assert!(printed.ends_with("would forget 1 run(s) and delete 1 media object(s), 22 bytes"), "{printed}");
    assert!(
        exists(backups, &dump(&oldest)).await && exists(backups, old_object.as_str()).await,
        "a dry run moves nothing"
    );
    assert_eq!(fixture.backup.list(10).await.unwrap().len(), 3);

    let done = fixture.backup.prune(policy, false).await.unwrap();
    assert_eq!(done.rows_deleted, vec![oldest.id]);
    assert!(!exists(backups, &dump(&oldest)).await, "the forgotten run's dump is gone");
    assert!(!exists(backups, oldest.media_manifest_key.as_deref().unwrap()).await, "and its manifest");
    assert!(!exists(backups, old_object.as_str()).await, "an object only it named is gone");
    assert!(exists(backups, kept_object.as_str()).await, "an object kept runs name stays");
    for run in [&middle, &newest] {
        assert!(exists(backups, &dump(run)).await);
    }
    let left: Vec<_> = fixture.backup.list(10).await.unwrap().into_iter().map(|run| run.id).collect();
    assert_eq!(left, vec![newest.id, middle.id]);

    // Pruning again finds nothing more to do.
    let again = fixture.backup.prune(policy, false).await.unwrap();
    assert!(again.plan.forget.is_empty() && again.objects_deleted.is_empty());
}

#[tokio::test]
async fn a_failed_verify_is_forgotten_but_the_last_good_run_is_kept() {
    let fixture = fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 3);
    attach(&fixture, &tenant, b"media").await;
    let good = fixture.backup.run("scheduled").await.unwrap();
    let bad = fixture.backup.run("scheduled").await.unwrap();
    age(&fixture, &good, 1);
    // The newer run's verify failed later (a flipped byte found by verify).
    backup_runs::fail(&mut fixture.env.database.connect(), bad.id, "verification failed: sha256 differs").unwrap();

    let done = fixture.backup.prune(KeepPolicy { daily: 1, weekly: 0, monthly: 0 }, false).await.unwrap();

    assert!(done.plan.keeps(good.id), "the last good run stays");
    assert_eq!(done.plan.forget, vec![bad.id]);
    assert!(done.rows_deleted.is_empty(), "a failure newer than the oldest kept run keeps its row as a record");
    let backups = fixture.backup.backups.as_ref();
    assert!(!exists(backups, bad.db_key.as_deref().unwrap()).await, "its untrusted dump is gone");
    assert!(exists(backups, good.db_key.as_deref().unwrap()).await);
}

#[test]
fn the_cli_prints_the_plan_with_dry_run_and_prunes_without() {
    const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-backup");
    let env = stockflow_testkit::ProcessEnv::new()
        .with("BACKUP_KEEP_DAILY", "1")
        .with("BACKUP_KEEP_WEEKLY", "0")
        .with("BACKUP_KEEP_MONTHLY", "0");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let output = env.run(BINARY, &["run"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        ids.push(String::from_utf8(output.stdout).unwrap().trim().to_owned());
    }
    let (older, newer) = (&ids[0], &ids[1]);
    diesel::update(runs_table::table.find(older.parse::<uuid::Uuid>().unwrap()))
        .set(runs_table::started_at.eq(diesel::dsl::sql("now() - interval '1 day'")))
        .execute(&mut env.database.connect())
        .unwrap();

    let output = env.run(BINARY, &["prune", "--dry-run"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan = String::from_utf8(output.stdout).unwrap();
    assert!(plan.contains(&format!("keep    {newer}")) && plan.contains(&format!("forget  {older}")), "{plan}");
    assert!(plan.contains("would forget 1 run(s)"), "{plan}");
    assert_eq!(backup_runs::list(&mut env.database.connect(), 10).unwrap().len(), 2, "a dry run changes nothing");

    let output = env.run(BINARY, &["prune"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8(output.stdout).unwrap().contains("did forget 1 run(s)"));
    let left: Vec<String> =
        backup_runs::list(&mut env.database.connect(), 10).unwrap().iter().map(|run| run.id.to_string()).collect();
    assert_eq!(left, vec![newer.clone()]);
}
