//! `/healthz` answers while the process runs; `/readyz` answers 200 only
//! while every dependency check passes, and names what is down otherwise.

use actix_web::{HttpResponse, web};
use futures_util::future::{BoxFuture, join_all};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub type CheckFuture<'a> = BoxFuture<'a, Result<(), String>>;

/// One dependency a service needs to do its work.
pub trait Check: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Ok when the dependency answers; Err says what went wrong.
    fn check(&self) -> CheckFuture<'_>;
}

/// A check that takes longer than this counts as down: a hung database must
/// not hang the probe that is meant to detect it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn Check>>,
}

#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    pub status: &'static str,
    /// "ok", or "down: <reason>", per dependency.
    pub checks: BTreeMap<&'static str, String>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, check: impl Check) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Runs every check concurrently, each bounded by a timeout.
    pub async fn report(&self) -> ReadinessReport {
        let results = join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(reason)) => format!("down: {reason}"),
                Err(_) => format!("down: no answer within {}s", CHECK_TIMEOUT.as_secs()),
            };
            (check.name(), outcome)
        }))
        .await;
        let ready = results.iter().all(|(_, outcome)| outcome == "ok");
        ReadinessReport { status: if ready { "ready" } else { "not_ready" }, checks: results.into_iter().collect() }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    if report.is_ready() {
        HttpResponse::Ok().json(report)
    } else {
        tracing::warn!(checks = ?report.checks, "not ready");
        HttpResponse::ServiceUnavailable().json(report)
    }
}

/// Registers `/healthz` and `/readyz`; the API mounts them in its own app.
pub fn health_routes(readiness: Readiness) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(readiness))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz));
    }
}

/// Whatever a service exposes on `/metrics`, in the Prometheus text format.
pub trait MetricsSource: Send + Sync + 'static {
    fn render(&self) -> BoxFuture<'_, String>;
}

/// Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/healthz`, `/readyz` and, when given, `/metrics`, for services
/// with no HTTP API of their own. Returns the bound address (port 0 picks a
/// free port) and the server, which stops gracefully when told to.
pub fn serve_health(
    bind: SocketAddr,
    readiness: Readiness,
    metrics: Option<Arc<dyn MetricsSource>>,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let server = actix_web::HttpServer::new(move || {
        let app = actix_web::App::new().configure(health_routes(readiness.clone()));
        match metrics.clone() {
            Some(source) => app.app_data(web::Data::from(source)).route("/metrics", web::get().to(render_metrics)),
            None => app,
        }
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(bind)?;
    let address =
        server.addrs().first().copied().ok_or_else(|| std::io::Error::other("health server bound no address"))?;
    Ok((address, server.run()))
}

async fn render_metrics(source: web::Data<dyn MetricsSource>) -> HttpResponse {
    HttpResponse::Ok().content_type(METRICS_CONTENT_TYPE).body(source.render().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<(), &'static str>);
    impl Check for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self) -> CheckFuture<'_> {
            let result = self.1.map_err(str::to_owned);
            Box::pin(async move { result })
        }
    }

    struct Hangs;
    impl Check for Hangs {
        fn name(&self) -> &'static str {
            "hangs"
        }
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn ready_only_when_every_check_passes() {
        let report = Readiness::new().with(Fixed("database", Ok(()))).with(Fixed("broker", Ok(()))).report().await;
        assert!(report.is_ready());

        let report =
            Readiness::new().with(Fixed("database", Ok(()))).with(Fixed("broker", Err("refused"))).report().await;
        assert!(!report.is_ready());
        assert_eq!(report.checks["broker"], "down: refused");
        assert_eq!(report.checks["database"], "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_counts_as_down() {
        let report = Readiness::new().with(Hangs).report().await;
        assert_eq!(report.checks["hangs"], "down: no answer within 3s");
    }
}
