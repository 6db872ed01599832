// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use stockflow_testkit::TestDatabase;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn user_tables(conn: &mut PgConnection) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .get_result::<Count>(conn)
    .expect("count tables")
    .n
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let database = TestDatabase::create();
    let mut conn = database.connect();
    let total = stockflow_db::migration_names().expect("embedded migrations").len();
    assert!(total >= 4);
    assert_eq!(user_tables(&mut conn), 13, "the template is fully migrated");

    let reverted = stockflow_db::revert_all(&mut conn).expect("down");
    assert_eq!(reverted.len(), total);
    assert_eq!(user_tables(&mut conn), 0, "every down.sql removes what its up.sql made");

    let applied = stockflow_db::run_pending(&mut conn).expect("up again");
    assert_eq!(applied.len(), total);
    assert_eq!(user_tables(&mut conn), 13);
    assert!(stockflow_db::run_pending(&mut conn).expect("no-op").is_empty());
}

/// The previous schema has no `missing` export: its down.sql keeps such
/// rows, as `expired`, rather than failing or dropping them.
#[test]
fn a_missing_export_reverts_to_expired() {
    use diesel_migrations::MigrationHarness;
    let database = TestDatabase::create();
    let mut conn = database.connect();
    diesel::sql_query("INSERT INTO organizations (slug, name) VALUES ('acme', 'Acme')").execute(&mut conn).unwrap();
    diesel::sql_query(
        "INSERT INTO exports (org_id, kind, format, status) SELECT id, 'batches', 'csv', 'missing' FROM organizations",
    )
    .execute(&mut conn)
    .unwrap();
    loop {
        let reverted = conn.revert_last_migration(stockflow_db::MIGRATIONS).expect("revert one").to_string();
        if reverted.starts_with("20261130000002") || reverted.starts_with("2026-11-30-000002") {
            break;
        }
    }
    let kept = diesel::sql_query("SELECT count(*) AS n FROM exports WHERE status = 'expired'")
        .get_result::<Count>(&mut conn)
        .unwrap()
        .n;
    assert_eq!(kept, 1);
    assert!(!stockflow_db::run_pending(&mut conn).expect("up again").is_empty());
}

/// `schema.rs` must name exactly the tables and columns the migrations
/// create, in the same order, or Diesel queries fail at run time.
#[test]
fn schema_rs_matches_the_migrated_database() {
    use stockflow_db::schema::*;
    let database = TestDatabase::create();
    let mut conn = database.connect();

    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        column_name: String,
    }
    fn database_columns(conn: &mut PgConnection, table: &str) -> Vec<String> {
        diesel::sql_query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind::<Text, _>(table)
        .load::<Column>(conn)
        .expect("list columns")
        .into_iter()
        .map(|c| c.column_name)
        .collect()
    }
    /// Column names in the order Diesel selects them, read from the SQL
    /// Diesel generates for `SELECT <all columns>`.
    fn declared_columns(sql: &str, table: &str) -> Vec<String> {
        let prefix = format!("\"{table}\".\"");
        sql.split(", ")
            .filter_map(|part| {
                part.split_once(&prefix).map(|(_, rest)| rest.split('"').next().unwrap_or_default().to_owned())
            })
            .collect()
    }
    macro_rules! check {
        ($($table:ident),*) => {$({
            let query = $table::table.select($table::all_columns).limit(0);
            let sql = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
            let declared = declared_columns(&sql, stringify!($table));
            assert!(!declared.is_empty(), "could not read columns from {sql}");
            assert_eq!(database_columns(&mut conn, stringify!($table)), declared, "columns of {}", stringify!($table));
            query.execute(&mut conn).expect(stringify!($table));
        })*};
    }
    check!(
        organizations,
        users,
        api_tokens,
        products,
        batches,
        attachments,
        exports,
        schedules,
        schedule_runs,
        backup_runs,
        outbox,
        storage_migrations,
        storage_migration_objects
    );
}

/// A migration never queues its DDL for long behind other work on a table
/// (every later query would queue behind it): it gives up after
/// `MIGRATION_LOCK_TIMEOUT`, changes nothing, and applies when run again.
#[test]
fn a_migration_gives_up_on_a_busy_table_and_applies_later() {
    use diesel_migrations::MigrationHarness;
    let database = TestDatabase::create();
    let mut conn = database.connect();
    // Back to before the migration that adds a column to api_tokens.
    let mut reverted = 0;
    loop {
        let version = conn.revert_last_migration(stockflow_db::MIGRATIONS).expect("revert one").to_string();
        reverted += 1;
        if version.starts_with("20261130200001") || version.starts_with("2026-11-30-200001") {
            break;
        }
    }

    // A long report reading api_tokens: ADD COLUMN needs it to end.
    let mut reader = database.connect();
    diesel::sql_query("BEGIN").execute(&mut reader).unwrap();
    diesel::sql_query("LOCK TABLE api_tokens IN ACCESS SHARE MODE").execute(&mut reader).unwrap();

    let started = std::time::Instant::now();
    let refused = stockflow_db::run_pending(&mut conn).expect_err("the table is locked");
    let waited = started.elapsed();
    assert!(refused.to_string().contains("lock timeout"), "{refused}");
    assert!(waited >= std::time::Duration::from_secs(5), "it waited its lock timeout, {waited:?}");
    assert_eq!(stockflow_db::pending_migrations(&mut conn).unwrap().len(), reverted, "nothing was applied");
    let timeout = diesel::sql_query("SELECT setting::bigint AS n FROM pg_settings WHERE name = 'lock_timeout'")
        .get_result::<Count>(&mut conn)
        .unwrap()
        .n;
    assert_eq!(timeout, 0, "the session's own lock timeout is back to the default");

    diesel::sql_query("COMMIT").execute(&mut reader).unwrap();
    let applied = stockflow_db::run_pending(&mut conn).expect("applies once the table is free");
    assert_eq!(applied.len(), reverted);
}
