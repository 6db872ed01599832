//! A Prometheus registry of our own. The label sets are bounded (route
//! patterns, a fixed list of methods, status codes), so one map behind a
//! mutex is enough, and the `prometheus` crate with its protobuf and macro
//! layers would cost more build time than these lines.

use actix_web::http::{Method, StatusCode};
use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Prometheus text exposition format 0.0.4.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds in seconds, from a cache-hot read to the 10 s a request may
/// run before the graceful stop gives up on it.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Methods outside this list share the label `other`: actix accepts any
/// token as a method, and each would otherwise be a new series.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];

/// Every series the api exports. A new family (exports, say) is one more
/// field, a method to update it and a paragraph in `render`.
#[derive(Default)]
pub(crate) struct Metrics {
    http: Mutex<BTreeMap<HttpLabels, Histogram>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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

#[derive(Debug, Default)]
struct Histogram {
    /// Cumulative, as the exposition format wants them.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        for (bound, bucket) in BUCKETS.iter().zip(&mut self.buckets) {
            if value <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

impl Metrics {
    pub(crate) fn observe_request(&self, labels: HttpLabels, elapsed: Duration) {
        lock(&self.http).entry(labels).or_default().observe(elapsed.as_secs_f64());
    }

    /// Every family in the text format, series sorted by their labels.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = self.write_http(&mut out);
        out
    }

    fn write_http(&self, out: &mut String) -> fmt::Result {
        let http = lock(&self.http);
        let requests = "stockflow_http_requests_total";
        writeln!(out, "# HELP {requests} HTTP requests answered, by method, route pattern and status.")?;
        writeln!(out, "# TYPE {requests} counter")?;
        for (labels, series) in http.iter() {
            writeln!(out, "{requests}{{{}}} {}", labels.render(), series.count)?;
        }
        let duration = "stockflow_http_request_duration_seconds";
        writeln!(
            out,
            "# HELP {duration} Time until the response head was ready, by method, route pattern and status."
        )?;
        writeln!(out, "# TYPE {duration} histogram")?;
        for (labels, series) in http.iter() {
            let labels = labels.render();
            for (bound, bucket) in BUCKETS.iter().zip(series.buckets) {
                writeln!(out, "{duration}_bucket{{{labels},le=\"{bound}\"}} {bucket}")?;
            }
            writeln!(out, "{duration}_bucket{{{labels},le=\"+Inf\"}} {}", series.count)?;
            writeln!(out, "{duration}_sum{{{labels}}} {}", series.sum)?;
            writeln!(out, "{duration}_count{{{labels}}} {}", series.count)?;
        }
        Ok(())
    }
}

impl HttpLabels {
    fn render(&self) -> String {
        format!(r#"method="{}",route="{}",status="{}""#, self.method, escape(&self.route), self.status)
    }
}

/// Label values escape `\`, `"` and newlines; route patterns could hold the
/// first two in a regex segment.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', r#"\""#).replace('\n', r"\n")
}

/// A panic elsewhere while holding the lock leaves whole counters behind
/// (each update is a few additions), so the data is still good to serve.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: &str, route: &str, status: u16) -> HttpLabels {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        HttpLabels::new(&method, route.to_owned(), StatusCode::from_u16(status).expect("a status"))
    }

    #[test]
    fn renders_a_counter_and_a_cumulative_histogram_per_series() {
        let metrics = Metrics::default();
        let get = labels("GET", "/v1/products/{id}", 200);
        metrics.observe_request(get.clone(), Duration::from_millis(3));
        metrics.observe_request(get.clone(), Duration::from_millis(30));
        metrics.observe_request(get, Duration::from_secs(20));
        let text = metrics.render();

        let series = r#"method="GET",route="/v1/products/{id}",status="200""#;
        for line in [
            "# TYPE stockflow_http_requests_total counter".to_owned(),
            format!("stockflow_http_requests_total{{{series}}} 3"),
            "# TYPE stockflow_http_request_duration_seconds histogram".to_owned(),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{{series},le="0.005"}} 1"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{{series},le="0.025"}} 1"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{{series},le="0.05"}} 2"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{{series},le="10"}} 2"#),
            format!(r#"stockflow_http_request_duration_seconds_bucket{{{series},le="+Inf"}} 3"#),
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
    fn series_are_kept_apart_by_every_label_and_methods_are_bounded() {
        let metrics = Metrics::default();
        for (method, status) in [("GET", 200), ("GET", 404), ("POST", 200), ("BREW", 200), ("PROPFIND", 200)] {
            metrics.observe_request(labels(method, "/x", status), Duration::ZERO);
        }
        let counters: Vec<String> = metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("stockflow_http_requests_total{"))
            .map(str::to_owned)
            .collect();
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

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"/a\"b"#), r#"/a\\\"b"#);
        assert_eq!(escape("a\nb"), r"a\nb");
    }

    #[test]
    fn an_empty_registry_still_declares_its_families() {
        let text = Metrics::default().render();
        assert_eq!(text.lines().filter(|l| l.starts_with("# ")).count(), 4, "{text}");
    }
}
