//! `/metrics` for every service, from the Prometheus project's own client
//! (prometheus-client): label escaping, counters' `_total`, units and
//! exemplars as the formats define them. A scraper that asks for OpenMetrics
//! (Prometheus does) gets it; anything else (curl, an older scraper) gets the
//! classic text format 0.0.4.
//!
//! Each service registers its own families in the `Registry` made by
//! [`registry`], which already holds `stockflow_build_info`; families use
//! prometheus-client's types directly (its label derive needs the crate).

use actix_web::http::header::{ACCEPT, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// What a service serves on `/metrics`.
pub trait MetricsSource: Send + Sync + 'static {
    fn registry(&self) -> &Registry;

    /// Brings values read at scrape time (queue depths) up to date before
    /// the registry is encoded.
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A registry alone, for a service with nothing to refresh.
impl MetricsSource for Registry {
    fn registry(&self) -> &Registry {
        self
    }
}

/// A registry naming every family `stockflow_*`, with
/// `stockflow_build_info{service,version} 1`.
pub fn registry(service: &'static str) -> Registry {
    let mut registry = Registry::with_prefix("stockflow");
    registry.register("build", "The service and its version", Info::new(BuildInfo { service, version: VERSION }));
    registry
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildInfo {
    service: &'static str,
    version: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The text exposition format 0.0.4.
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, as Prometheus's does.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let accepts = headers.get_all(ACCEPT).filter_map(|value| value.to_str().ok());
        let mut ranges = accepts.flat_map(|value| value.split(','));
        if ranges.any(|range| range.trim_start().starts_with("application/openmetrics-text")) {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Every family of `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut text = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry),
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, registry),
    };
    text
}

/// The `/metrics` response of `source` for `request`.
pub async fn respond(source: &dyn MetricsSource, request: &HttpRequest) -> HttpResponse {
    source.refresh().await;
    let format = Format::negotiate(request.headers());
    HttpResponse::Ok().content_type(format.content_type()).body(encode(source.registry(), format))
}

pub(crate) async fn serve(source: web::Data<dyn MetricsSource>, request: HttpRequest) -> HttpResponse {
    respond(source.get_ref(), &request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Route {
        route: String,
    }

    fn with_accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).expect("a header value"));
        headers
    }

    #[test]
    fn openmetrics_only_for_a_scraper_that_asks_for_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(&with_accept(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(&with_accept("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(&HeaderMap::new()), Format::Prometheus);
    }

    #[test]
    fn both_formats_carry_build_info_and_escape_label_values() {
        let mut registry = registry("worker");
        let requests = Family::<Route, Counter>::default();
        registry.register("requests", "Requests", requests.clone());
        requests.get_or_create(&Route { route: "/a\"b\\c\nd".to_owned() }).inc();

        let open = encode(&registry, Format::OpenMetrics);
        assert!(
            open.contains(&format!("stockflow_build_info{{service=\"worker\",version=\"{VERSION}\"}} 1")),
            "{open}"
        );
        assert!(open.contains(r#"stockflow_requests_total{route="/a\"b\\c\nd"} 1"#), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");

        let classic = encode(&registry, Format::Prometheus);
        assert!(classic.contains("# TYPE stockflow_requests_total counter"), "{classic}");
        assert!(classic.contains(r#"stockflow_requests_total{route="/a\"b\\c\nd"} 1"#), "{classic}");
        assert!(!classic.contains("# EOF"), "{classic}");
    }
}
