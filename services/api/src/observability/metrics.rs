//! The api's series, in a prometheus-client registry. The label sets are
//! bounded: route patterns, a fixed list of methods, status codes.

use actix_web::http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;
use stockflow_telemetry::MetricsSource;

/// Upper bounds in seconds, from a cache-hot read to the 10 s a request may
/// run before the graceful stop gives up on it.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Methods outside this list share the label `other`: actix accepts any
/// token as a method, and each would otherwise be a new series.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];

/// Every series the api exports, and the registry that serves them.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    durations: Family<HttpLabels, Histogram>,
    graphql_operations: Family<GraphqlLabels, Counter>,
    graphql_durations: Family<GraphqlLabels, Histogram>,
    /// Operation names are the clients' to choose: the first
    /// [`MAX_OPERATION_NAMES`] get series of their own, later ones `other`.
    operation_names: std::sync::Mutex<std::collections::HashSet<String>>,
}

const MAX_OPERATION_NAMES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct GraphqlLabels {
    operation: String,
    /// `ok`, or the `extensions.code` of the first error.
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

impl HttpLabels {
    /// `route` is the matched pattern (`/v1/products/{id}`), never the path.
    pub(crate) fn new(method: &Method, route: String, status: StatusCode) -> Self {
        let method = METHODS.into_iter().find(|known| *known == method.as_str()).unwrap_or("other");
        Self { method, route, status: status.as_u16() }
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = stockflow_telemetry::metrics::registry("api");
        let requests = Family::<HttpLabels, Counter>::default();
        let durations = Family::<HttpLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time until the response head was ready, by method, route pattern and status",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "database_queries",
            "Statements sent to PostgreSQL on the pool's connections",
            stockflow_db::queries_counter(),
        );
        let graphql_operations = Family::<GraphqlLabels, Counter>::default();
        let graphql_durations =
            Family::<GraphqlLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "graphql_operations",
            "GraphQL operations answered, by operation name (anonymous, or other past 200 names) and outcome \
             (ok, or the first error's extensions.code)",
            graphql_operations.clone(),
        );
        registry.register_with_unit(
            "graphql_operation_duration",
            "Time to execute a GraphQL operation, by operation name and outcome",
            Unit::Seconds,
            graphql_durations.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            graphql_operations,
            graphql_durations,
            operation_names: Default::default(),
        }
    }

    /// `operation` is a name the parsed document holds, or None.
    pub(crate) fn observe_graphql(&self, operation: Option<&str>, outcome: &str, elapsed: Duration) {
        let operation = match operation {
            None => "anonymous".to_owned(),
            Some(name) => {
                let mut names = self.operation_names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if names.contains(name) || (names.len() < MAX_OPERATION_NAMES && names.insert(name.to_owned())) {
                    name.to_owned()
                } else {
                    "other".to_owned()
                }
            }
        };
        let labels = GraphqlLabels { operation, outcome: outcome.to_owned() };
        self.graphql_durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.graphql_operations.get_or_create(&labels).inc();
    }

    pub(crate) fn observe_request(&self, labels: HttpLabels, elapsed: Duration) {
        self.durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }
}

impl MetricsSource for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_telemetry::metrics::{Format, encode};

    fn labels(method: &str, route: &str, status: u16) -> HttpLabels {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        HttpLabels::new(&method, route.to_owned(), StatusCode::from_u16(status).expect("a status"))
    }

    #[test]
    fn renders_a_counter_and_a_cumulative_histogram_per_series() {
        let metrics = Metrics::new();
        let get = labels("GET", "/v1/products/{id}", 200);
        metrics.observe_request(get.clone(), Duration::from_millis(3));
        metrics.observe_request(get.clone(), Duration::from_millis(30));
        metrics.observe_request(get, Duration::from_secs(20));
        let text = encode(&metrics.registry, Format::OpenMetrics);

        let series = r#"method="GET",route="/v1/products/{id}",status="200""#;
        for line in [
            "# TYPE stockflow_http_requests counter".to_owned(),
            format!("stockflow_http_requests_total{{{series}}} 3"),
            "# TYPE stockflow_http_request_duration_seconds histogram".to_owned(),
            "# UNIT stockflow_http_request_duration_seconds seconds".to_owned(),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{le="0.005",{series}}} 1"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{le="0.025",{series}}} 1"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{le="0.05",{series}}} 2"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{le="10.0",{series}}} 2"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{le="+Inf",{series}}} 3"#),
            format!("stockflow_http_request_duration_seconds_count{{{series}}} 3"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.contains("_bucket{")).count(), BUCKETS.len() + 1);
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("stockflow_http_request_duration_seconds_sum{{{series}}} ")));
        let sum: f64 = sum.expect("a _sum line").parse().expect("a number");
        assert!((sum - 20.033).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn graphql_operation_names_are_bounded() {
        let metrics = Metrics::new();
        for n in 0..MAX_OPERATION_NAMES + 5 {
            metrics.observe_graphql(Some(&format!("Op{n}")), "ok", Duration::ZERO);
        }
        metrics.observe_graphql(Some("Op0"), "query_too_complex", Duration::ZERO);
        metrics.observe_graphql(None, "ok", Duration::ZERO);
        let text = encode(&metrics.registry, Format::Prometheus);
        let counter = |labels: &str| format!("stockflow_graphql_operations_total{{{labels}}}");
        for (labels, count) in [
            (r#"operation="Op0",outcome="ok""#, 1),
            (r#"operation="Op0",outcome="query_too_complex""#, 1),
            (r#"operation="other",outcome="ok""#, 5),
            (r#"operation="anonymous",outcome="ok""#, 1),
        ] {
            let line = format!("{} {count}", counter(labels));
            assert!(text.lines().any(|l| l == line), "missing {line:?}");
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("stockflow_graphql_operations_total{")).count(), 203);
    }

    #[test]
    fn series_are_kept_apart_by_every_label_and_methods_are_bounded() {
        let metrics = Metrics::new();
        for (method, status) in [("GET", 200), ("GET", 404), ("POST", 200), ("BREW", 200), ("PROPFIND", 200)] {
            metrics.observe_request(labels(method, "/x", status), Duration::ZERO);
        }
        let mut counters: Vec<String> = encode(&metrics.registry, Format::Prometheus)
            .lines()
            .filter(|l| l.starts_with("stockflow_http_requests_total{"))
            .map(str::to_owned)
            .collect();
        counters.sort();
        assert_eq!(
            counters,
            [
                r#"stockflow_http_requests_total{method="GET",route="/x",status="200"} 1"#,
                r#"stockflow_http_requests_total{method="GET",route="/x",status="404"} 1"#,
                r#"stockflow_http_requests_total{method="POST",route="/x",status="200"} 1"#,
                r#"stockflow_http_requests_total{method="other",route="/x",status="200"} 2"#,
            ]
        );
    }
}
