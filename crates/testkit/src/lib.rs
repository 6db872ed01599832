// Test support: a failed setup step should fail the test with a message,
// which is what `expect` does.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Everything a Stockflow test needs to talk to real services in isolation:
//! its own database (cloned from a migrated template), its own AMQP
//! namespace and storage root, proxies that can cut a service off from
//! PostgreSQL or RabbitMQ, and `TestApp`, which runs a service library on
//! port 0 against all of that.
//!
//! Defaults match `make services`; `TEST_DATABASE_URL` and `TEST_AMQP_URL`
//! point the suite elsewhere.

mod app;
pub mod broker;
pub mod contract;
mod database;
mod group;
mod nginx;
mod process;
mod proxy;
mod s3;

pub use app::{Started, TestApp, TestAppBuilder, service_env};
pub use database::{TestDatabase, admin_database_url};
pub use group::{Leftovers, ProcessGroup};
pub use nginx::Nginx;
pub use process::{ProcessEnv, ServiceProcess, assert_config_error, free_port};
pub use proxy::TcpProxy;
pub use s3::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

use std::time::Duration;

/// Without TLS: the test server is on loopback, and a libpq connection over
/// TLS initialises OpenSSL, whose exit handler then frees its state while a
/// pool thread of the test's services may still be inside libpq: a test
/// process crashed with SIGSEGV after its test had passed.
pub const DEFAULT_DATABASE_URL: &str = "postgres://stockflow:stockflow@127.0.0.1:5432/stockflow?sslmode=disable";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The port of the PgBouncer (transaction mode) that `make services` runs in
/// front of the test PostgreSQL.
pub const DEFAULT_PGBOUNCER_PORT: u16 = 6433;

pub fn pgbouncer_port() -> u16 {
    std::env::var("TEST_PGBOUNCER_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PGBOUNCER_PORT)
}

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// The HTTP client of every test. Idle connections are dropped after 2 s,
/// before the services' own 5 s keep-alive ends them: a request sent on a
/// connection the server is closing at that moment fails with
/// `IncompleteMessage`, which reuse after a long pause made possible.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_idle_timeout(Duration::from_secs(2))
}

pub fn http_client() -> reqwest::Client {
    http_client_builder().build().expect("HTTP client")
}

/// A namespace no other test shares, so queues and exchanges never collide.
pub fn unique_namespace() -> String {
    format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// Polls `probe` until it returns `Some`, or fails the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
