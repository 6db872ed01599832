use crate::DbError;
use diesel::PgConnection;
use diesel::RunQueryDsl;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Serializes migration runs across processes: two api replicas started with
/// RUN_MIGRATIONS=true must not apply the same migration at once.
const MIGRATION_LOCK: i64 = 0x5374_6f63_6b66_6c6f; // "Stockflo"

/// Applies every pending migration; returns the versions applied.
pub fn run_pending(conn: &mut PgConnection) -> Result<Vec<String>, DbError> {
    with_migration_lock(conn, |conn| {
        let applied = conn.run_pending_migrations(MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
}

/// Every migration this build carries, oldest first.
pub fn migration_names() -> Result<Vec<String>, DbError> {
    let migrations = MigrationSource::<Pg>::migrations(&MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(migrations.iter().map(|m| m.name().to_string()).collect())
}

pub fn pending_migrations(conn: &mut PgConnection) -> Result<Vec<String>, DbError> {
    let pending = conn.pending_migrations(MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(pending.iter().map(|m| m.name().to_string()).collect())
}

/// Reverts every applied migration (tests prove each `down.sql` works).
pub fn revert_all(conn: &mut PgConnection) -> Result<Vec<String>, DbError> {
    with_migration_lock(conn, |conn| {
        let reverted = conn.revert_all_migrations(MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(reverted.iter().map(ToString::to_string).collect())
    })
}

/// How long a migration's statement waits for a table lock. DDL waits
/// behind every transaction that uses the table, and every query that
/// comes after it waits behind the DDL: unbounded, one long report would
/// stall the whole API. Past this the migration fails and changes nothing;
/// run it again when the table is quieter.
pub const MIGRATION_LOCK_TIMEOUT: &str = "5s";

fn with_migration_lock<T>(
    conn: &mut PgConnection,
    work: impl FnOnce(&mut PgConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    // Taken before the timeout is set: another migrator holds it only
    // while it works, and the server ends its session if it dies.
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(conn)?;
    let result = diesel::sql_query(format!("SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'"))
        .execute(conn)
        .map_err(DbError::from)
        .and_then(|_| work(conn));
    let reset = diesel::sql_query("RESET lock_timeout").execute(conn);
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(conn)?;
    let value = result?;
    reset?;
    Ok(value)
}
