//! What every request leaves behind for operators: an `x-request-id` on the
//! response, a span that puts it on every log line of the request, one
//! access-log event, and Prometheus counters and histograms at `/metrics`.

mod metrics;
mod middleware;
mod request_id;

pub(crate) use metrics::Metrics;
pub(crate) use middleware::observe;
pub(crate) use request_id::RequestId;

use actix_web::{HttpRequest, HttpResponse, web};

/// Like `/healthz` it needs no token: scrapers reach it on the internal
/// network, not through the public proxy. OpenMetrics when the scraper's
/// `Accept` names it (Prometheus does), the text format 0.0.4 otherwise.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "Every series of the api", content(
        (String = "text/plain; version=0.0.4; charset=utf-8"),
        (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    ))),
)]
pub(crate) async fn scrape(metrics: web::Data<Metrics>, request: HttpRequest) -> HttpResponse {
    stockflow_telemetry::metrics::respond(metrics.get_ref(), &request).await
}
