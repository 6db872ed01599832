//! Raw broker throughput, the baseline of the `jobs` benchmark: the broker
//! traffic of the outbox relay and the worker, with no database and no
//! handler in between.
//!
//! ```text
//! raw_throughput --amqp-url <url> [--messages N] [--prefetch N]
//! ```
//!
//! Declares a quorum queue of its own and publishes N persistent messages,
//! each the size of a `maintenance.ping` envelope, with `mandatory` and
//! publisher confirms, 500 at a time: the batch is published, then each of
//! its confirms awaited, as the relay does. Meanwhile a consumer on a second
//! connection (the worker is another process), prefetch N, acks every
//! message on its own. Prints one JSON line: `{"messages":..,
//! "message_bytes":..,"prefetch":..,"seconds":..}`, the seconds from the
//! first publish to the last ack. The queue is deleted at the end.

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::time::Instant;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Messages per round of confirms: the outbox relay's batch.
const BATCH: usize = 500;
const CONSUMER_TAG: &str = "raw-throughput";
const USAGE: &str = "usage: raw_throughput --amqp-url <url> [--messages N] [--prefetch N]";

struct Args {
    amqp_url: String,
    messages: usize,
    prefetch: u16,
}

fn parse_args() -> Result<Args, Error> {
    let (mut amqp_url, mut messages, mut prefetch) = (None, 20_000, 4);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        let number = |what: &str| format!("{arg} {value}: expected {what}");
        match arg.as_str() {
            "--amqp-url" => amqp_url = Some(value),
            "--messages" => messages = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| number("a count"))?,
            "--prefetch" => prefetch = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| number("1 to 65535"))?,
            _ => return Err(format!("unknown option {arg}\n{USAGE}").into()),
        }
    }
    Ok(Args { amqp_url: amqp_url.ok_or(USAGE)?, messages, prefetch })
}

/// A `maintenance.ping` envelope as the relay sends it (compact JSON, the
/// `id` a UUID, `occurred_at` to the microsecond), with message `n`'s id.
fn envelope(n: usize) -> (String, Vec<u8>) {
    let id = format!("00000000-0000-4000-8000-{n:012x}");
    let body = format!(
        r#"{{"correlation_id":"bench","id":"{id}","occurred_at":"2026-01-01T00:00:00.000000Z","payload":{{"note":"bench"}},"type":"maintenance.ping","version":1}}"#
    );
    (id, body.into_bytes())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let publishing = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let consuming = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = publishing.create_channel().await?;
    let queue = format!("raw-throughput.{}", std::process::id());
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.as_str().into(), durable, quorum).await?;
    let measured = measure(&args, &channel, &consuming, &queue).await;
    let deleted = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    let seconds = measured?;
    deleted?;
    consuming.close(200, "done".into()).await?;
    publishing.close(200, "done".into()).await?;
    let (messages, prefetch, message_bytes) = (args.messages, args.prefetch, envelope(0).1.len());
    println!(
        r#"{{"messages":{messages},"message_bytes":{message_bytes},"prefetch":{prefetch},"seconds":{seconds:.6}}}"#
    );
    Ok(())
}

/// Seconds from the first publish to the last ack.
async fn measure(args: &Args, channel: &Channel, consuming: &Connection, queue: &str) -> Result<f64, Error> {
    let consumer_channel = consuming.create_channel().await?;
    consumer_channel.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
    let mut deliveries = consumer_channel
        .basic_consume(queue.into(), CONSUMER_TAG.into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let messages = args.messages;
    let acking = tokio::spawn(async move {
        for _ in 0..messages {
            let delivery = deliveries.next().await.ok_or("the consumer was cancelled")??;
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
        Ok::<_, Error>((Instant::now(), deliveries))
    });
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mandatory = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let started = Instant::now();
    for first in (0..messages).step_by(BATCH) {
        let mut confirms = Vec::with_capacity(BATCH);
        for n in first..messages.min(first + BATCH) {
            let (id, body) = envelope(n);
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(id.into());
            confirms.push(channel.basic_publish("".into(), queue.into(), mandatory, &body, properties).await?);
        }
        for confirm in confirms {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                other => return Err(format!("the broker did not take a message: {other:?}").into()),
            }
        }
    }
    let (last_ack, deliveries) = acking.await??;
    // Cancelled before the consumer is dropped: a dropped active consumer
    // makes lapin send its own basic.cancel in the background, which races
    // the channel close below and fails the run with "channel closing".
    consumer_channel.basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default()).await?;
    drop(deliveries);
    // Gone before the queue is deleted, so the broker has no consumer to cancel.
    consumer_channel.close(200, "done".into()).await?;
    Ok(last_ack.duration_since(started).as_secs_f64())
}
