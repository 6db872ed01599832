// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Backup runs against a real PostgreSQL: the life of a run, the one-run
//! lock, and what the table's CHECKs let through.

use stockflow_db::backup_runs::{self, DatabaseArtifact, MediaArtifact};
use stockflow_testkit::TestDatabase;

#[test]
fn a_run_records_its_artifacts_and_is_verified_once_succeeded() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let run = backup_runs::start(&mut conn, "manual").unwrap();
    assert_eq!(run.status, backup_runs::RUNNING);
    assert_eq!(backup_runs::running(&mut conn).unwrap(), Some(run.id));
    let artifact = DatabaseArtifact {
        key: format!("backups/{}/database.dump", run.id),
        bytes: 1234,
        sha256: [7; 32],
        table_counts: serde_json::json!({"batches": 3}),
    };
    backup_runs::record_database(&mut conn, run.id, &artifact).unwrap();
    let media = MediaArtifact { manifest_key: "backups/x/media.json", objects: 2, bytes: 20, new_bytes: 0 };
    backup_runs::record_media(&mut conn, run.id, media).unwrap();
    // Verification only counts for succeeded runs.
    assert!(!backup_runs::mark_verified(&mut conn, run.id, "restore").unwrap());
    backup_runs::succeed(&mut conn, run.id).unwrap();
    assert!(backup_runs::mark_verified(&mut conn, run.id, "restore").unwrap());

    let row = backup_runs::get(&mut conn, run.id).unwrap().unwrap();
    assert_eq!(row.status, backup_runs::SUCCEEDED);
    assert_eq!(row.db_sha256.as_deref(), Some([7u8; 32].as_slice()));
    assert_eq!(row.table_counts, Some(serde_json::json!({"batches": 3})));
    assert_eq!((row.media_objects, row.media_bytes, row.media_new_bytes), (Some(2), Some(20), Some(0)));
    assert_eq!(row.verify_method.as_deref(), Some("restore"));
    assert!(row.verified_at.is_some() && row.finished_at.is_some());
    assert_eq!(backup_runs::latest_succeeded(&mut conn).unwrap().map(|r| r.id), Some(run.id));

    // A verify that fails later withdraws the verification.
    backup_runs::fail(&mut conn, run.id, "dump sha256 mismatch").unwrap();
    let row = backup_runs::get(&mut conn, run.id).unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.verified_at), (backup_runs::FAILED, None));
    assert_eq!(row.error.as_deref(), Some("dump sha256 mismatch"));
    assert_eq!(backup_runs::latest_succeeded(&mut conn).unwrap(), None);
}

#[test]
fn one_session_holds_the_lock_and_a_second_request_is_recorded() {
    let db = TestDatabase::create();
    let (mut first, mut second) = (db.connect(), db.connect());
    assert!(backup_runs::try_lock(&mut first).unwrap());
    let run = backup_runs::start(&mut first, "scheduled").unwrap();
    assert!(!backup_runs::try_lock(&mut second).unwrap());
    let holder = backup_runs::running(&mut second).unwrap();
    let refused = backup_runs::refuse(&mut second, "manual", holder).unwrap();
    assert_eq!(refused.status, backup_runs::FAILED);
    assert_eq!(refused.error.unwrap(), format!("another backup run was in progress: {}", run.id));

    backup_runs::unlock(&mut first).unwrap();
    assert!(backup_runs::try_lock(&mut second).unwrap());
    // Under the lock, a run still `running` was left by a dead process.
    assert_eq!(backup_runs::abandon(&mut second).unwrap(), 1);
    let listed: Vec<_> = backup_runs::list(&mut second, 10).unwrap().into_iter().map(|r| r.status).collect();
    assert_eq!(listed, [backup_runs::FAILED, backup_runs::FAILED]);
}
