//! What every service needs to be observable and stoppable: log setup,
//! readiness checks with `/healthz` and `/readyz`, `/metrics`, progress of
//! long commands, and a shutdown signal.

mod health;
mod logging;
pub mod metrics;
pub mod progress;
mod shutdown;

pub use health::{Check, CheckFuture, Down, Note, Readiness, ReadinessReport, health_routes, serve_health};
pub use logging::{init, init_stderr};
pub use metrics::MetricsSource;
pub use shutdown::Shutdown;
