// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The queue in front of the database threads is bounded, and work whose
//! caller has gone is skipped: a flood of requests is refused at once and
//! leaves nothing behind to delay the requests after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use stockflow_config::{DatabaseSettings, Env};
use stockflow_db::{Database, DbError};
use stockflow_testkit::TestDatabase;

fn pool(database: &TestDatabase, queue_limit: &str) -> Database {
    let env = Env::from_pairs([
        ("DATABASE_URL", database.url()),
        ("DATABASE_POOL_SIZE", "1"),
        ("DATABASE_QUEUE_LIMIT", queue_limit),
    ]);
    Database::connect_lazy(&DatabaseSettings::from_env(&env).expect("settings"))
}

/// Occupies the one database thread until the returned sender is dropped
/// or sent to; returns once the thread has started the blocking job.
async fn occupy(db: &Database) -> (mpsc::Sender<()>, tokio::task::JoinHandle<Result<(), DbError>>) {
    let (release, released) = mpsc::channel::<()>();
    let (started, has_started) = tokio::sync::oneshot::channel();
    let db = db.clone();
    let blocker = tokio::spawn(async move {
        db.run(move |_conn| {
            let _ = started.send(());
            let _ = released.recv();
            Ok::<_, DbError>(())
        })
        .await
    });
    has_started.await.expect("the blocking job starts");
    (release, blocker)
}

/// Polls `job` once, which puts its work in the queue, and keeps it.
async fn enqueue<T>(job: &mut (impl Future<Output = T> + Unpin)) {
    tokio::select! {
        biased;
        _ = job => panic!("a job ran while the only thread was busy"),
        () = std::future::ready(()) => {}
    }
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_takes_work_again_when_drained() {
    let database = TestDatabase::create();
    let db = pool(&database, "2");
    let (release, blocker) = occupy(&db).await;
    let first = db.run(|_conn| Ok::<_, DbError>(1));
    let second = db.run(|_conn| Ok::<_, DbError>(2));
    tokio::pin!(first, second);
    enqueue(&mut first).await;
    enqueue(&mut second).await;

    match db.run(|_conn| Ok::<_, DbError>(3)).await {
        Err(DbError::Busy(limit)) => assert_eq!(limit, 2),
        other => panic!("a third job should be refused at once, got {other:?}"),
    }
    assert!(DbError::Busy(2).is_unavailable(), "a busy database is worth a retry (503)");

    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 2));
    assert_eq!(db.run(|_conn| Ok::<_, DbError>(7)).await.unwrap(), 7, "room again once drained");
}

#[tokio::test]
async fn work_whose_caller_left_before_its_turn_never_runs() {
    let database = TestDatabase::create();
    let db = pool(&database, "8");
    let (release, blocker) = occupy(&db).await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let abandoned = db.run(move |_conn| {
        flag.store(true, Ordering::SeqCst);
        Ok::<_, DbError>(())
    });
    // The caller gives up while the job waits, as a client that hangs up.
    assert!(tokio::time::timeout(Duration::from_millis(50), abandoned).await.is_err());

    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    // One thread, in order: once this answers, the abandoned job had its turn.
    db.run(|_conn| Ok::<_, DbError>(())).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst), "work nobody waits for was run");
}
