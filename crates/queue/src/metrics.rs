//! Job metrics for `/metrics`: what each consumer took, finished, retried
//! and gave up on, by message type, plus how long handling took, and how
//! many messages wait in each queue. Label values are message types this
//! build knows, or `unknown`, and the namespace's queues, so the series
//! stay bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// Upper bounds in seconds: a ping takes milliseconds, an export of
/// millions of rows minutes.
const BUCKETS: [f64; 12] = [0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

pub struct JobMetrics {
    consumed: Family<JobType, Counter>,
    succeeded: Family<JobType, Counter>,
    retried: Family<JobType, Counter>,
    dead_lettered: Family<JobType, Counter>,
    /// Handling time, every outcome included.
    durations: Family<JobType, Histogram>,
    ready: Family<QueueName, Gauge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobType {
    r#type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueName {
    queue: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Retried,
    DeadLettered,
}

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl JobMetrics {
    /// Registers every family in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            consumed: Family::default(),
            succeeded: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            ready: Family::default(),
        };
        registry.register("jobs_consumed", "Messages taken from a queue, by type", metrics.consumed.clone());
        registry.register("jobs_succeeded", "Jobs done and acknowledged, by type", metrics.succeeded.clone());
        registry.register(
            "jobs_retried",
            "Jobs that failed and were scheduled again, by type",
            metrics.retried.clone(),
        );
        registry.register(
            "jobs_dead_lettered",
            "Jobs given up on and dead-lettered, by type",
            metrics.dead_lettered.clone(),
        );
        registry.register_with_unit(
            "job_duration",
            "Time from taking a message to settling it, by type (exports: the whole export)",
            Unit::Seconds,
            metrics.durations.clone(),
        );
        registry.register(
            "queue_ready_messages",
            "Messages waiting in a queue, ready for a consumer; missing while the broker is down",
            metrics.ready.clone(),
        );
        metrics
    }

    pub fn consumed(&self, message_type: &'static str) {
        self.consumed.get_or_create(&JobType { r#type: message_type }).inc();
    }

    pub fn finished(&self, message_type: &'static str, outcome: Outcome, took: Duration) {
        let labels = JobType { r#type: message_type };
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Retried => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
        };
        counter.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Reads the namespace's queue depths from the broker (at scrape time).
    /// While the broker is down the gauges go missing rather than read zero.
    pub async fn refresh_queue_depths(&self, broker: &crate::Broker) {
        let depths = queue_depths(broker).await;
        self.ready.clear();
        for (queue, count) in depths {
            self.ready.get_or_create(&QueueName { queue }).set(i64::from(count));
        }
    }
}

/// Ready messages per queue of the namespace, by passive declares (which
/// change nothing). Empty while the broker is down: the gauge then goes
/// missing rather than reading zero.
async fn queue_depths(broker: &crate::Broker) -> Vec<(String, u32)> {
    use lapin::options::QueueDeclareOptions;
    let Some(connection) = broker.connection() else { return Vec::new() };
    let Ok(channel) = connection.create_channel().await else { return Vec::new() };
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let mut depths = Vec::new();
    for queue in crate::Topology::new(broker.namespace()).queues() {
        match channel.queue_declare(queue.as_str().into(), passive, lapin::types::FieldTable::default()).await {
            Ok(declared) => depths.push((queue, declared.message_count())),
            Err(error) => {
                tracing::debug!(%queue, %error, "cannot read the queue depth");
                return depths;
            }
        }
    }
    let _ = channel.close(200, "depths read".into()).await;
    depths
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_telemetry::metrics::{Format, encode};

    #[test]
    fn counts_and_durations_render_per_type() {
        let mut registry = Registry::with_prefix("stockflow");
        let metrics = JobMetrics::register(&mut registry);
        metrics.consumed("export.requested");
        metrics.consumed("export.requested");
        metrics.finished("export.requested", Outcome::Succeeded, Duration::from_millis(300));
        metrics.finished("export.requested", Outcome::Retried, Duration::from_secs(3));
        let out = encode(&registry, Format::Prometheus);
        assert!(out.contains("# HELP stockflow_jobs_consumed_total Messages taken from a queue, by type.\n"), "{out}");
        assert!(out.contains("stockflow_jobs_consumed_total{type=\"export.requested\"} 2"), "{out}");
        assert!(out.contains("stockflow_jobs_succeeded_total{type=\"export.requested\"} 1"), "{out}");
        assert!(out.contains("stockflow_jobs_retried_total{type=\"export.requested\"} 1"), "{out}");
        assert!(!out.contains("stockflow_jobs_dead_lettered_total{"), "no series before the first: {out}");
        assert!(out.contains("stockflow_job_duration_seconds_bucket{type=\"export.requested\",le=\"0.5\"} 1"), "{out}");
        assert!(out.contains("stockflow_job_duration_seconds_bucket{type=\"export.requested\",le=\"5\"} 2"), "{out}");
        assert!(out.contains("stockflow_job_duration_seconds_count{type=\"export.requested\"} 2"), "{out}");
    }
}
