//! One middleware around the whole app, so the 404s of the default service
//! and the problems of extractors are tagged, logged and counted exactly as
//! handler responses are.

use super::metrics::{HttpLabels, Metrics};
use super::request_id::{HEADER, RequestId};
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderName;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use std::time::Instant;
use tracing::Instrument;

/// The route label of paths no route serves: a raw path as a label would
/// let any scanner create series without bound.
const UNMATCHED: &str = "unmatched";

pub(crate) async fn observe<B: MessageBody>(
    metrics: web::Data<Metrics>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let started = Instant::now();
    let id = RequestId::from_header(req.headers().get(HEADER));
    req.extensions_mut().insert(id.clone());
    let route = req.match_pattern().unwrap_or_else(|| UNMATCHED.to_owned());
    let method = req.method().clone();
    let path = req.path().to_owned();
    // Error level because a span exists only when its level passes the
    // filter, and the id must reach a handler's warnings under LOG_LEVEL=warn.
    let span = tracing::error_span!("http.request", request_id = %id, %method, route = %route);

    let outcome = span.in_scope(|| next.call(req)).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let (status, bytes) = match &outcome {
        Ok(response) => (response.status(), known_size(response.response().body().size())),
        // Only a middleware inside this one returns an error; the dispatcher
        // renders it after us, so it goes out without the header.
        Err(error) => (error.as_response_error().status_code(), None),
    };
    span.in_scope(|| {
        tracing::info!(
            target: "stockflow_api::access",
            %method,
            route = %route,
            %path,
            status = status.as_u16(),
            // Whole microseconds: float noise in a log line helps no one.
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            request_id = %id,
            bytes,
            "request",
        );
    });
    metrics.observe_request(HttpLabels::new(&method, route, status), elapsed);

    let mut response = outcome?;
    if let Some(value) = id.header_value() {
        response.headers_mut().insert(HeaderName::from_static(HEADER), value);
    }
    Ok(response)
}

fn known_size(size: BodySize) -> Option<u64> {
    match size {
        BodySize::Sized(bytes) => Some(bytes),
        BodySize::None | BodySize::Stream => None,
    }
}
