//! Job metrics for `/metrics`: what each consumer took, finished, retried
//! and gave up on, by message type, plus how long handling took. Label
//! values are message types this build knows, or `unknown`, so the series
//! stay bounded.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds in seconds: a ping takes milliseconds, an export of
/// millions of rows minutes.
const BUCKETS: [f64; 12] = [0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

#[derive(Default)]
pub struct JobMetrics {
    by_type: Mutex<BTreeMap<&'static str, TypeStats>>,
}

#[derive(Default)]
struct TypeStats {
    consumed: u64,
    succeeded: u64,
    retried: u64,
    dead_lettered: u64,
    /// Cumulative bucket counts of handling time, every outcome included.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// A counter family: name, help text and the field it reads.
type Counter = (&'static str, &'static str, fn(&TypeStats) -> u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Retried,
    DeadLettered,
}

impl JobMetrics {
    pub fn consumed(&self, message_type: &'static str) {
        self.update(message_type, |stats| stats.consumed += 1);
    }

    pub fn finished(&self, message_type: &'static str, outcome: Outcome, took: Duration) {
        self.update(message_type, |stats| {
            match outcome {
                Outcome::Succeeded => stats.succeeded += 1,
                Outcome::Retried => stats.retried += 1,
                Outcome::DeadLettered => stats.dead_lettered += 1,
            }
            let seconds = took.as_secs_f64();
            for (bound, bucket) in BUCKETS.iter().zip(&mut stats.buckets) {
                if seconds <= *bound {
                    *bucket += 1;
                }
            }
            stats.count += 1;
            stats.sum += seconds;
        });
    }

    fn update(&self, message_type: &'static str, change: impl FnOnce(&mut TypeStats)) {
        let mut by_type = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        change(by_type.entry(message_type).or_default());
    }

    /// Appends every family in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = self.write(out);
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        let by_type = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        let counters: [Counter; 4] = [
            ("stockflow_jobs_consumed_total", "Messages taken from a queue, by type.", |s| s.consumed),
            ("stockflow_jobs_succeeded_total", "Jobs done and acknowledged, by type.", |s| s.succeeded),
            ("stockflow_jobs_retried_total", "Jobs that failed and were scheduled again, by type.", |s| s.retried),
            ("stockflow_jobs_dead_lettered_total", "Jobs given up on and dead-lettered, by type.", |s| s.dead_lettered),
        ];
        for (name, help, value) in counters {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} counter")?;
            for (message_type, stats) in by_type.iter() {
                writeln!(out, "{name}{{type=\"{message_type}\"}} {}", value(stats))?;
            }
        }
        let name = "stockflow_job_duration_seconds";
        writeln!(out, "# HELP {name} Time from taking a message to settling it, by type (exports: the whole export).")?;
        writeln!(out, "# TYPE {name} histogram")?;
        for (message_type, stats) in by_type.iter() {
            for (bound, count) in BUCKETS.iter().zip(stats.buckets) {
                writeln!(out, "{name}_bucket{{type=\"{message_type}\",le=\"{bound}\"}} {count}")?;
            }
            writeln!(out, "{name}_bucket{{type=\"{message_type}\",le=\"+Inf\"}} {}", stats.count)?;
            writeln!(out, "{name}_sum{{type=\"{message_type}\"}} {}", stats.sum)?;
            writeln!(out, "{name}_count{{type=\"{message_type}\"}} {}", stats.count)?;
        }
        Ok(())
    }
}

/// Appends `stockflow_queue_ready_messages` for the given queue depths.
pub fn render_queue_depths(depths: &[(String, u32)], out: &mut String) {
    let name = "stockflow_queue_ready_messages";
    let _ = writeln!(out, "# HELP {name} Messages waiting in a queue, ready for a consumer.");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (queue, count) in depths {
        let _ = writeln!(out, "{name}{{queue=\"{queue}\"}} {count}");
    }
}

/// Ready messages per queue of the namespace, by passive declares (which
/// change nothing). Empty while the broker is down: the gauge then goes
/// missing rather than reading zero.
pub async fn queue_depths(broker: &crate::Broker) -> Vec<(String, u32)> {
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

    #[test]
    fn counts_and_durations_render_per_type() {
        let metrics = JobMetrics::default();
        metrics.consumed("export.requested");
        metrics.consumed("export.requested");
        metrics.finished("export.requested", Outcome::Succeeded, Duration::from_millis(300));
        metrics.finished("export.requested", Outcome::Retried, Duration::from_secs(3));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("stockflow_jobs_consumed_total{type=\"export.requested\"} 2"), "{out}");
        assert!(out.contains("stockflow_jobs_succeeded_total{type=\"export.requested\"} 1"), "{out}");
        assert!(out.contains("stockflow_jobs_retried_total{type=\"export.requested\"} 1"), "{out}");
        assert!(out.contains("stockflow_jobs_dead_lettered_total{type=\"export.requested\"} 0"), "{out}");
        assert!(out.contains("stockflow_job_duration_seconds_bucket{type=\"export.requested\",le=\"0.5\"} 1"), "{out}");
        assert!(out.contains("stockflow_job_duration_seconds_bucket{type=\"export.requested\",le=\"5\"} 2"), "{out}");
        assert!(out.contains("stockflow_job_duration_seconds_count{type=\"export.requested\"} 2"), "{out}");
    }
}
