//! What every service needs to be observable and stoppable: log setup,
//! readiness checks with `/healthz` and `/readyz`, and a shutdown signal.

mod health;
mod logging;
mod shutdown;

pub use health::{
    Check, CheckFuture, Down, METRICS_CONTENT_TYPE, MetricsSource, Readiness, ReadinessReport, health_routes,
    serve_health,
};
pub use logging::{init, init_stderr};
pub use shutdown::Shutdown;
