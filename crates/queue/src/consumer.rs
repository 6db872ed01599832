//! The consumer runner: takes messages from one queue, hands each to the
//! handler of its type, and settles it only after the handler's effect is
//! committed. Failures retry through the delay queues with backoff and, on
//! the last attempt, are dead-lettered with their reason. The runner
//! reconnects by itself and, on shutdown, stops taking messages and lets
//! the ones in hand finish.

use crate::metrics::{JobMetrics, Outcome};
use crate::publisher::{Outgoing, Publisher};
use crate::topology::{ATTEMPT_HEADER, ERROR_HEADER, Family, RETRY_TIER_HEADER, RETRY_TIERS, SOURCE_QUEUE_HEADER};
use crate::{Backoff, Broker, Topology};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection};
use rand::Rng;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_domain::{Envelope, Job};
use stockflow_telemetry::{Check, CheckFuture, Down, Shutdown};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a stopping consumer lets the messages in hand finish; the rest
/// are requeued by the broker when the channel closes. Below the 10 s a
/// container runtime allows.
const DRAIN: Duration = Duration::from_secs(7);
/// The bound of each word to the broker at shutdown (cancel, channel
/// close): over a silent link they would wait forever. With DRAIN and the
/// connection's close, a stop takes at most 9 s, within the 10 s that
/// `make stop` and container runtimes give before SIGKILL.
const SHUTDOWN_STEP: Duration = Duration::from_millis(500);
const RESUBSCRIBE_BASE: Duration = Duration::from_millis(200);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);
/// Longest reason kept in a dead letter's header.
const MAX_REASON_BYTES: usize = 1000;

/// Why a handler did not finish a job.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (database or storage down): retried with backoff.
    #[error("{0}")]
    Retry(String),
    /// Will never work (the job asks for something impossible): given up on
    /// at once.
    #[error("{0}")]
    Fail(String),
}

/// Does one kind of job. Must be idempotent: redelivery is normal.
pub trait Handler<J: Job>: Send + Sync + 'static {
    fn handle(&self, envelope: Envelope<J>) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called once when the job is given up on, before it is dead-lettered:
    /// record the failure on the domain row. An error leaves the message in
    /// the queue, to be given up on again later.
    fn give_up(&self, envelope: &Envelope<J>, reason: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Retry policy and flow control of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Messages in hand at once (`WORKER_CONCURRENCY`).
    pub prefetch: u16,
    /// Attempts before a failing job is dead-lettered (`JOB_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Delay before the first retry; each further one waits 4 times longer.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl ConsumerSettings {
    /// The delay after failed attempt `attempt` (1-based): exponential with
    /// "equal jitter", a random point in the upper half, so retries of jobs
    /// that failed together spread out but never come back at once.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let ceiling = self.retry_base.saturating_mul(4u32.saturating_pow(exponent)).min(self.retry_max);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX).max(2);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// The handlers of one queue, by message type.
pub struct Consumer {
    family: Family,
    routes: Vec<Arc<dyn Route>>,
}

impl Consumer {
    pub fn new(family: Family) -> Self {
        Self { family, routes: Vec::new() }
    }

    /// Sends messages of type `J::TYPE` to `handler`.
    pub fn route<J: Job, H: Handler<J>>(mut self, handler: H) -> Self {
        self.routes.push(Arc::new(Typed { handler, job: PhantomData::<fn() -> J> }));
        self
    }

    /// Starts consuming in the background; the runner stops when `shutdown`
    /// fires, after draining (see [`ConsumerHandle::stopped`]).
    pub fn start(
        self,
        broker: Broker,
        publisher: Arc<Publisher>,
        metrics: Arc<JobMetrics>,
        settings: ConsumerSettings,
        shutdown: Shutdown,
    ) -> ConsumerHandle {
        let (status_tx, status) = watch::channel(Err(Down::new("not consuming yet", "")));
        let context = Arc::new(Context {
            topology: Topology::new(broker.namespace()),
            family: self.family,
            routes: self.routes,
            publisher,
            metrics,
            settings,
        });
        let task = tokio::spawn(run(context, broker, status_tx, shutdown));
        ConsumerHandle { name: self.family.readiness, status, task }
    }
}

pub struct ConsumerHandle {
    name: &'static str,
    status: watch::Receiver<Result<(), Down>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsumerHandle {
    /// A `/readyz` line: down while the consumer is not subscribed.
    pub fn check(&self) -> ConsumerCheck {
        ConsumerCheck { name: self.name, status: self.status.clone() }
    }

    /// Resolves when the runner has stopped and drained.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

pub struct ConsumerCheck {
    name: &'static str,
    status: watch::Receiver<Result<(), Down>>,
}

impl Check for ConsumerCheck {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        let status = self.status.borrow().clone();
        Box::pin(async move { status })
    }
}

struct Context {
    topology: Topology,
    family: Family,
    routes: Vec<Arc<dyn Route>>,
    publisher: Arc<Publisher>,
    metrics: Arc<JobMetrics>,
    settings: ConsumerSettings,
}

async fn run(context: Arc<Context>, broker: Broker, status: watch::Sender<Result<(), Down>>, shutdown: Shutdown) {
    let queue = context.topology.queue(context.family);
    let tag = format!("{queue}.{}", uuid::Uuid::new_v4().simple());
    let mut backoff = Backoff::new(RESUBSCRIBE_BASE, RESUBSCRIBE_MAX);
    let mut in_flight = JoinSet::new();
    // Kept after the loop: messages in hand are settled on this channel.
    let mut last_channel: Option<Channel> = None;
    'subscribe: while !shutdown.is_triggered() {
        let connection = tokio::select! {
            connection = broker.connected() => connection,
            () = shutdown.wait() => break,
        };
        let (channel, mut deliveries) = match subscribe(&connection, &queue, &tag, context.settings.prefetch).await {
            Ok(subscribed) => subscribed,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%queue, %error, retry_in_ms = delay.as_millis(), "cannot consume");
                let _ = status.send_replace(Err(Down::new("cannot consume", format!("{queue}: {error}"))));
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = shutdown.wait() => break,
                }
            }
        };
        tracing::info!(%queue, prefetch = context.settings.prefetch, "consuming");
        backoff.reset();
        let _ = status.send_replace(Ok(()));
        last_channel = Some(channel.clone());
        let lost = loop {
            tokio::select! {
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        in_flight.spawn(settle(Arc::clone(&context), delivery));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%queue, %error, "consumer failed; subscribing again");
                        break error.to_string();
                    }
                    None => {
                        tracing::warn!(%queue, "consumer was cancelled or its channel closed; subscribing again");
                        break "cancelled, or its channel closed".to_owned();
                    }
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = shutdown.wait() => {
                    // No new deliveries; those already in the client's buffer
                    // stay unacked and return to the queue with the channel.
                    let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
                    let _ = tokio::time::timeout(SHUTDOWN_STEP, cancel).await;
                    break 'subscribe;
                }
            }
        };
        let _ = status.send_replace(Err(lost_subscription(&queue, &connection, &lost)));
    }
    let _ = status.send_replace(Err(Down::new("stopping", "")));
    let drained = tokio::time::timeout(DRAIN, async { while in_flight.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(%queue, left = in_flight.len(), "jobs still running at shutdown; the broker will redeliver them");
        in_flight.abort_all();
    }
    if let Some(channel) = last_channel {
        let _ = tokio::time::timeout(SHUTDOWN_STEP, channel.close(200, "consumer stopping".into())).await;
    }
    tracing::info!(%queue, "consumer stopped");
}

/// What `/readyz` says of a consumer that lost its subscription. When the
/// connection died, that is the news: the consumer's line says the broker
/// connection was lost rather than hinting at a problem of its own, and it
/// resubscribes on the next connection.
fn lost_subscription(queue: &str, connection: &Connection, reason: &str) -> Down {
    let detail = format!("{queue}: {reason}");
    if connection.status().connected() {
        Down::new("subscription lost; subscribing again", detail)
    } else {
        Down::new("the broker connection was lost; resubscribing when it is back", detail)
    }
}

async fn subscribe(
    connection: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> lapin::Result<(Channel, lapin::Consumer)> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let consumer =
        channel.basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    Ok((channel, consumer))
}

/// Handles one delivery and settles it: ack after success, after a retry
/// is scheduled, or after a dead letter is confirmed; nack (requeue) when
/// none of those could be done, so the message is never lost.
async fn settle(context: Arc<Context>, delivery: Delivery) {
    let started = Instant::now();
    let attempt = header_u32(&delivery, ATTEMPT_HEADER).unwrap_or(1).max(1);
    let (route, envelope) = match parse(&context.routes, &delivery.data) {
        Ok(parsed) => parsed,
        Err(reason) => {
            context.metrics.consumed("unknown");
            tracing::warn!(%reason, routing_key = %delivery.routing_key, "unreadable message; dead-lettering it");
            let outcome = dead_letter(&context, &delivery, attempt, &reason).await.map(|()| Outcome::DeadLettered);
            finish(&context, "unknown", delivery, outcome, started).await;
            return;
        }
    };
    let message_type = route.message_type();
    context.metrics.consumed(message_type);
    let span = tracing::info_span!("job", r#type = message_type, id = %envelope.id, attempt, correlation_id = %envelope.correlation_id);
    let outcome = async {
        match route.handle(envelope.value.clone()).await {
            Ok(()) => Ok(Outcome::Succeeded),
            Err(HandlerError::Retry(reason)) if attempt < context.settings.max_attempts => {
                tracing::warn!(%reason, "job failed; retrying later");
                retry(&context, &delivery, attempt).await.map(|()| Outcome::Retried)
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(%reason, "job failed for good; dead-lettering it");
                route.give_up(envelope.value, &reason).await?;
                dead_letter(&context, &delivery, attempt, &reason).await.map(|()| Outcome::DeadLettered)
            }
        }
    };
    let outcome = tracing::Instrument::instrument(outcome, span).await;
    finish(&context, message_type, delivery, outcome, started).await;
}

async fn finish(
    context: &Context,
    message_type: &'static str,
    delivery: Delivery,
    outcome: Result<Outcome, String>,
    started: Instant,
) {
    match outcome {
        Ok(outcome) => match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => context.metrics.finished(message_type, outcome, started.elapsed()),
            // Counted when the redelivery is settled instead.
            Err(error) => tracing::warn!(%error, "cannot ack; the broker will redeliver the message"),
        },
        Err(error) => {
            tracing::warn!(%error, "cannot settle the message; returning it to the queue");
            let requeue = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
            let _ = delivery.acker.nack(requeue).await;
        }
    }
}

async fn retry(context: &Context, delivery: &Delivery, attempt: u32) -> Result<(), String> {
    let delay = context.settings.retry_delay(attempt);
    let mut headers = headers_of(delivery);
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(i64::from(attempt + 1)));
    headers.insert(RETRY_TIER_HEADER.into(), AMQPValue::LongLongInt(i64::from(attempt.min(RETRY_TIERS))));
    let message = Outgoing {
        exchange: context.topology.retry_exchange(),
        routing_key: delivery.routing_key.to_string(),
        body: delivery.data.clone(),
        message_id: message_id(delivery),
        headers,
        expiration_ms: Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
    };
    context.publisher.publish(&message).await.map_err(|error| format!("cannot schedule the retry: {error}"))
}

async fn dead_letter(context: &Context, delivery: &Delivery, attempt: u32, reason: &str) -> Result<(), String> {
    let mut headers = headers_of(delivery);
    headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(LongString::from(truncate(reason, MAX_REASON_BYTES))));
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    headers.insert(SOURCE_QUEUE_HEADER.into(), AMQPValue::LongString(context.topology.queue(context.family).into()));
    let message = Outgoing {
        exchange: context.topology.dead_letter_exchange(),
        routing_key: delivery.routing_key.to_string(),
        body: delivery.data.clone(),
        message_id: message_id(delivery),
        headers,
        expiration_ms: None,
    };
    context.publisher.publish(&message).await.map_err(|error| format!("cannot dead-letter: {error}"))
}

fn headers_of(delivery: &Delivery) -> FieldTable {
    delivery.properties.headers().clone().unwrap_or_default()
}

fn message_id(delivery: &Delivery) -> String {
    delivery.properties.message_id().as_ref().map(ToString::to_string).unwrap_or_default()
}

fn header_u32(delivery: &Delivery, name: &str) -> Option<u32> {
    let value = delivery.properties.headers().as_ref()?.inner().get(name)?;
    let number = match value {
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        _ => return None,
    };
    u32::try_from(number).ok()
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An envelope read far enough to pick its handler.
struct Raw {
    id: String,
    correlation_id: String,
    value: serde_json::Value,
}

fn parse<'a>(routes: &'a [Arc<dyn Route>], body: &[u8]) -> Result<(&'a Arc<dyn Route>, Raw), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let message_type = value.get("type").and_then(serde_json::Value::as_str).ok_or("the envelope has no type")?;
    let route = routes
        .iter()
        .find(|route| route.message_type() == message_type)
        .ok_or_else(|| format!("no handler here for message type {message_type:?}"))?;
    route.check(&value)?;
    let text = |field: &str| value.get(field).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let raw = Raw { id: text("id"), correlation_id: text("correlation_id"), value: value.clone() };
    Ok((route, raw))
}

/// A handler with its job type erased, so one queue can carry several.
trait Route: Send + Sync {
    fn message_type(&self) -> &'static str;
    /// Whether the envelope parses as this route's job, at its version.
    fn check(&self, envelope: &serde_json::Value) -> Result<(), String>;
    fn handle(&self, envelope: serde_json::Value) -> BoxFuture<'_, Result<(), HandlerError>>;
    fn give_up<'a>(&'a self, envelope: serde_json::Value, reason: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

struct Typed<J, H> {
    handler: H,
    job: PhantomData<fn() -> J>,
}

impl<J: Job, H: Handler<J>> Typed<J, H> {
    fn envelope(envelope: serde_json::Value) -> Result<Envelope<J>, String> {
        let envelope: Envelope<J> = serde_json::from_value(envelope)
            .map_err(|error| format!("the message does not match {} v{}: {error}", J::TYPE, J::VERSION))?;
        if envelope.matches_payload() {
            Ok(envelope)
        } else {
            Err(format!(
                "version {} of {} is not supported (this build reads {})",
                envelope.version,
                J::TYPE,
                J::VERSION
            ))
        }
    }
}

impl<J: Job, H: Handler<J>> Route for Typed<J, H> {
    fn message_type(&self) -> &'static str {
        J::TYPE
    }

    fn check(&self, envelope: &serde_json::Value) -> Result<(), String> {
        Self::envelope(envelope.clone()).map(drop)
    }

    fn handle(&self, envelope: serde_json::Value) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let envelope = Self::envelope(envelope).map_err(HandlerError::Fail)?;
            self.handler.handle(envelope).await
        })
    }

    fn give_up<'a>(&'a self, envelope: serde_json::Value, reason: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let envelope = Self::envelope(envelope)?;
            self.handler.give_up(&envelope, reason).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ConsumerSettings {
        ConsumerSettings {
            prefetch: 1,
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
        }
    }

    #[test]
    fn retry_delays_grow_fourfold_with_jitter_up_to_the_cap() {
        let settings = settings();
        for (attempt, ceiling) in [(1, 100), (2, 400), (3, 1600), (4, 2000), (9, 2000)] {
            for _ in 0..50 {
                let delay = settings.retry_delay(attempt).as_millis();
                assert!((ceiling / 2..=ceiling).contains(&delay), "attempt {attempt}: {delay} ms");
            }
        }
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
