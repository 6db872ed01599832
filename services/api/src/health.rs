//! `/healthz` and `/readyz`, answered as the telemetry crate answers them
//! for the other services, but by handlers of this crate so the OpenAPI
//! document describes their bodies.

use actix_web::HttpResponse;
use actix_web::web;
use std::collections::BTreeMap;
use stockflow_telemetry::Readiness;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Alive {
    #[schema(example = "alive")]
    status: &'static str,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReadinessReport {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// `ok`, or `down: <reason>`, per dependency: a short fixed phrase; the
    /// error behind it is in the service's log. Checked at most once a second.
    #[schema(example = json!({"database": "ok", "broker": "ok", "storage": "ok"}))]
    checks: BTreeMap<&'static str, String>,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process runs", body = Alive)),
)]
pub(crate) async fn healthz() -> web::Json<Alive> {
    web::Json(Alive { status: "alive" })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Every dependency answers", body = ReadinessReport),
        (status = 503, description = "A dependency is down; `checks` says which", body = ReadinessReport),
    ),
)]
pub(crate) async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    let body = ReadinessReport { status: report.status, checks: report.checks.clone() };
    if report.is_ready() { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
