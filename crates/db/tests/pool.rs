// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The pool skips its checkout ping for connections that just worked; these
//! check that a connection the server dropped is still never served twice.

use diesel::prelude::*;
use diesel::sql_types::Integer;
use std::time::{Duration, Instant};
use stockflow_config::{DatabaseSettings, Env};
use stockflow_db::Database;
use stockflow_testkit::TestDatabase;

#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

fn one_connection_pool(database: &TestDatabase) -> Database {
    let env = Env::from_pairs([("DATABASE_URL", database.url()), ("DATABASE_POOL_SIZE", "1")]);
    Database::connect_lazy(&DatabaseSettings::from_env(&env).expect("settings"))
}

fn backend_pid(pool: &Database) -> QueryResult<i32> {
    let mut conn = pool.get().expect("a connection");
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Backend>(&mut conn)?.pid)
}

/// Ends the server side of a connection, as a server restart or an idle
/// timeout would, and waits until the server has let it go.
fn terminate(database: &TestDatabase, pid: i32) {
    let mut admin = database.connect();
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<Integer, _>(pid)
        .execute(&mut admin)
        .expect("terminate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE pid = $1")
        .bind::<Integer, _>(pid)
        .load::<Backend>(&mut admin)
        .expect("pg_stat_activity")
        .len()
        == 1
    {
        assert!(Instant::now() < deadline, "backend {pid} did not go away");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_connection_the_server_dropped_is_served_at_most_once() {
    let database = TestDatabase::create();
    let pool = one_connection_pool(&database);
    let dead = backend_pid(&pool).expect("first query");
    terminate(&database, dead);

    // Used a moment ago, the connection is handed out without a ping, so
    // this query may meet the closed socket; if it does, the connection is
    // dropped on return instead of going back to the pool.
    match backend_pid(&pool) {
        Ok(pid) => assert_ne!(pid, dead, "a terminated backend cannot answer"),
        Err(error) => assert!(
            matches!(
                error,
                diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ClosedConnection, _)
            ),
            "the failure names the lost connection: {error:?}"
        ),
    }
    let next = backend_pid(&pool).expect("the next checkout gets a live connection");
    assert_ne!(next, dead);
}

#[test]
fn a_connection_idle_for_a_while_is_checked_before_it_is_served() {
    let database = TestDatabase::create();
    let pool = one_connection_pool(&database);
    let dead = backend_pid(&pool).expect("first query");
    terminate(&database, dead);
    std::thread::sleep(Duration::from_millis(1_200));

    let pid = backend_pid(&pool).expect("the ping finds the dead connection and the pool replaces it");
    assert_ne!(pid, dead);
}

#[tokio::test]
async fn work_that_panics_answers_an_error_and_its_thread_serves_the_next() {
    let database = TestDatabase::create();
    // One connection, so one database thread: if the panic took it down,
    // nothing would run the next work.
    let pool = one_connection_pool(&database);
    let panicked = pool.run(|_conn| -> Result<(), stockflow_db::DbError> { panic!("a bug in some query code") }).await;
    assert!(matches!(panicked, Err(stockflow_db::DbError::Panicked)), "{panicked:?}");

    let pid = pool
        .run(|conn| {
            let backend = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Backend>(conn)?;
            Ok::<_, stockflow_db::DbError>(backend.pid)
        })
        .await;
    assert!(pid.is_ok(), "the next work runs: {pid:?}");
}

/// The pool's sockets carry keepalive timers of seconds, not the system's
/// two hours: read from the kernel's own table (/proc/net/tcp, timer 2 =
/// keepalive, its expiry in hundredths of a second), for this process's
/// sockets to the database.
#[test]
fn pooled_connections_probe_an_idle_link_within_seconds() {
    let database = TestDatabase::create();
    let pool = one_connection_pool(&database);
    backend_pid(&pool).expect("a query");
    let authority = database.url().split('@').next_back().unwrap().split('/').next().unwrap();
    let port: u16 = authority.rsplit_once(':').map_or(5432, |(_, port)| port.parse().unwrap());
    let ours: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let timers: Vec<(u32, u64)> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = u16::from_str_radix(fields[2].rsplit(':').next()?, 16).ok()?;
            let (timer, expiry) = fields[5].split_once(':')?;
            (remote_port == port && fields[3] == "01" && ours.iter().any(|inode| inode == fields[9]))
                .then(|| Some((timer.parse().ok()?, u64::from_str_radix(expiry, 16).ok()?)))
                .flatten()
        })
        .collect();
    assert!(!timers.is_empty(), "no established socket of this process to port {port}");
    // The pooled connection: a keepalive timer due within its 10 s idle.
    assert!(timers.iter().any(|&(timer, expiry)| timer == 2 && expiry <= 1_000), "{timers:?}");
}
