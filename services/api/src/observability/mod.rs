//! What every request leaves behind for operators: an `x-request-id` on the
//! response, a span that puts it on every log line of the request, one
//! access-log event, and Prometheus counters and histograms at `/metrics`.

mod metrics;
mod middleware;
mod request_id;

pub(crate) use metrics::Metrics;
pub(crate) use middleware::observe;
pub(crate) use request_id::RequestId;

use actix_web::{HttpResponse, web};

/// Like `/healthz` it needs no token: scrapers reach it on the internal
/// network, not through the public proxy.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4", body = String)),
)]
pub(crate) async fn scrape(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(metrics.render())
}
