//! PostgreSQL access: the Diesel schema, one module per table, the
//! connection pool and the embedded migrations.

pub mod api_tokens;
pub mod attachments;
pub mod backup_runs;
pub mod batches;
mod database;
mod decimal;
pub mod exports;
mod json;
mod migrations;
pub mod org_schedules;
pub mod organizations;
pub mod outbox;
pub mod page;
mod pool;
pub mod products;
pub mod schedule_exports;
pub mod schedule_runs;
pub mod schedules;
pub mod schema;
pub mod storage_migrations;
mod threads;
pub mod users;

pub use database::{Database, DbError};
pub use decimal::DecimalText;
pub use json::JsonText;
pub use migrations::{
    MIGRATION_LOCK_TIMEOUT, MIGRATIONS, migration_names, pending_migrations, revert_all, run_pending,
};
pub use pool::queries_counter;

pub use diesel::PgConnection;
