//! `/healthz` answers while the process runs; `/readyz` answers 200 only
//! while every dependency check passes, and names what is down otherwise.
//!
//! `/readyz` says which dependency is down and a short, stable reason; the
//! error itself (which may name hosts, users, buckets or paths) goes to the
//! log. A report is kept for a second, so a probe that polls fast, or a
//! client that floods the endpoint, costs the dependencies at most one round
//! of checks per second.

use crate::metrics::MetricsSource;
use actix_web::{HttpResponse, web};
use futures_util::future::{BoxFuture, join_all};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub type CheckFuture<'a> = BoxFuture<'a, Result<(), Down>>;

/// One dependency a service needs to do its work.
pub trait Check: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Ok when the dependency answers; `Down` says what went wrong.
    fn check(&self) -> CheckFuture<'_>;
}

/// Why a check failed: `reason` is shown on `/readyz` (a fixed phrase such
/// as "unreachable"), `detail` is the error itself, for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub reason: &'static str,
    pub detail: String,
}

impl Down {
    pub fn new(reason: &'static str, detail: impl Display) -> Self {
        Self { reason, detail: detail.to_string() }
    }
}

/// A check that takes longer than this counts as down: a hung database must
/// not hang the probe that is meant to detect it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one round of checks answers every `/readyz` call. A report that
/// is not ready is kept only briefly, so a service that just became ready
/// (or recovered) says so at once.
const REPORT_TTL: Duration = Duration::from_secs(1);
const NOT_READY_TTL: Duration = Duration::from_millis(100);

/// A fact a service states on `/readyz` beside its checks, which does not
/// decide readiness (the scheduler's `role`: leader or standby).
pub type Note = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn Check>>,
    notes: Vec<(&'static str, Note)>,
    /// The last report and when it was made; the lock also makes concurrent
    /// callers share one round of checks.
    last: Arc<tokio::sync::Mutex<Option<Kept>>>,
}

/// A report and when it was made.
type Kept = (Instant, Arc<ReadinessReport>);

#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    pub status: &'static str,
    /// "ok", or "down: <reason>", per dependency.
    pub checks: BTreeMap<&'static str, String>,
    /// The service's notes, as top-level fields.
    #[serde(flatten)]
    pub notes: BTreeMap<&'static str, String>,
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

    /// Adds a top-level field `name` to every report, read when the report
    /// is made.
    pub fn with_note(mut self, name: &'static str, note: Note) -> Self {
        self.notes.push((name, note));
        self
    }

    /// The report of the last second, or a new one: every check runs
    /// concurrently, each bounded by a timeout. A report that is not ready
    /// is logged once, with each failure's detail.
    pub async fn report(&self) -> Arc<ReadinessReport> {
        let mut last = self.last.lock().await;
        if let Some((made, report)) = last.as_ref()
            && made.elapsed() < if report.is_ready() { REPORT_TTL } else { NOT_READY_TTL }
        {
            return Arc::clone(report);
        }
        let report = Arc::new(self.run_checks().await);
        *last = Some((Instant::now(), Arc::clone(&report)));
        report
    }

    async fn run_checks(&self) -> ReadinessReport {
        let results = join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Down::new("no answer within 3s", "the check timed out")),
            };
            (check.name(), outcome)
        }))
        .await;
        let mut checks = BTreeMap::new();
        for (name, outcome) in results {
            let line = match outcome {
                Ok(()) => "ok".to_owned(),
                Err(down) => {
                    tracing::warn!(check = name, reason = down.reason, detail = %down.detail, "not ready");
                    format!("down: {}", down.reason)
                }
            };
            checks.insert(name, line);
        }
        let ready = checks.values().all(|line| line == "ok");
        let notes = self.notes.iter().map(|(name, note)| (*name, note())).collect();
        ReadinessReport { status: if ready { "ready" } else { "not_ready" }, checks, notes }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    if report.is_ready() {
        HttpResponse::Ok().json(&*report)
    } else {
        HttpResponse::ServiceUnavailable().json(&*report)
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

/// Serves `/healthz`, `/readyz` and `/metrics`, for services with no HTTP
/// API of their own. Returns the bound address (port 0 picks a free port)
/// and the server, which stops gracefully when told to.
pub fn serve_health(
    bind: SocketAddr,
    readiness: Readiness,
    metrics: Arc<dyn MetricsSource>,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .configure(health_routes(readiness.clone()))
            .app_data(web::Data::from(Arc::clone(&metrics)))
            .route("/metrics", web::get().to(crate::metrics::serve))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(bind)?;
    let address =
        server.addrs().first().copied().ok_or_else(|| std::io::Error::other("health server bound no address"))?;
    Ok((address, server.run()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fixed(&'static str, Result<(), &'static str>);
    impl Check for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self) -> CheckFuture<'_> {
            let result = self.1.map_err(|detail| Down::new("refused", detail));
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

    #[derive(Clone, Default)]
    struct Counted(Arc<AtomicUsize>);
    impl Check for Counted {
        fn name(&self) -> &'static str {
            "counted"
        }
        fn check(&self) -> CheckFuture<'_> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn ready_only_when_every_check_passes() {
        let report = Readiness::new().with(Fixed("database", Ok(()))).with(Fixed("broker", Ok(()))).report().await;
        assert!(report.is_ready());

        let report = Readiness::new()
            .with(Fixed("database", Ok(())))
            .with(Fixed("broker", Err("connect to 10.0.0.7:5672 as stockflow: refused")))
            .report()
            .await;
        assert!(!report.is_ready());
        assert_eq!(report.checks["broker"], "down: refused", "the reason only; the detail is for the log");
        assert_eq!(report.checks["database"], "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_counts_as_down() {
        let report = Readiness::new().with(Hangs).report().await;
        assert_eq!(report.checks["hangs"], "down: no answer within 3s");
    }

    #[tokio::test(start_paused = true)]
    async fn one_round_of_checks_answers_every_call_for_a_second() {
        let counted = Counted::default();
        let readiness = Readiness::new().with(counted.clone());
        let reports = join_all((0..20).map(|_| readiness.report())).await;
        assert!(reports.iter().all(|report| report.is_ready()));
        tokio::time::advance(REPORT_TTL / 2).await;
        readiness.clone().report().await;
        assert_eq!(counted.0.load(Ordering::SeqCst), 1, "21 calls within the second, one round of checks");
        tokio::time::advance(REPORT_TTL).await;
        readiness.report().await;
        assert_eq!(counted.0.load(Ordering::SeqCst), 2, "a new round once the report is a second old");
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_that_is_not_ready_is_kept_only_briefly() {
        let readiness = Readiness::new().with(Fixed("broker", Err("refused")));
        let first = readiness.report().await;
        assert!(Arc::ptr_eq(&first, &readiness.report().await), "kept within the moment");
        tokio::time::advance(NOT_READY_TTL).await;
        assert!(!Arc::ptr_eq(&first, &readiness.report().await), "checked again soon after");
    }
}
