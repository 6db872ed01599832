//! Publishing with publisher confirms: a message counts as sent only when
//! the broker confirms it stored it, and `mandatory` turns "no queue takes
//! this routing key" into an error instead of a silent drop.

use crate::{Broker, Topology};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use std::time::Duration;
use stockflow_domain::{Envelope, Job};
use tokio::sync::Mutex;

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;
/// A confirm that takes longer than this means the broker is in trouble;
/// the caller keeps the message and tries again later.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker is not connected: {0}")]
    Disconnected(String),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound to routing key {0}")]
    Unroutable(String),
    #[error("the broker did not confirm within {} s", CONFIRM_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot encode the message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// A message ready to publish: where it goes, its bytes and its headers.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// The envelope id, so the broker's tools show which job this is.
    pub message_id: String,
    pub headers: FieldTable,
    /// Per-message TTL in milliseconds (retry delays).
    pub expiration_ms: Option<u64>,
}

impl Outgoing {
    /// A job for the jobs exchange, routed by its type.
    pub fn job<P: Job>(topology: &Topology, envelope: &Envelope<P>) -> Result<Self, PublishError> {
        Ok(Self::raw_job(topology, P::TYPE, envelope.id.to_string(), serde_json::to_vec(envelope)?))
    }

    /// A job whose envelope is already encoded, e.g. read from the outbox.
    pub fn raw_job(topology: &Topology, routing_key: &str, message_id: String, body: Vec<u8>) -> Self {
        Self {
            exchange: topology.jobs_exchange(),
            routing_key: routing_key.to_owned(),
            body,
            message_id,
            headers: FieldTable::default(),
            expiration_ms: None,
        }
    }
}

/// One confirm-mode channel on the supervised connection, reopened when
/// the connection comes back. Cheap to share behind an `Arc`.
pub struct Publisher {
    broker: Broker,
    channel: Mutex<Option<Channel>>,
}

impl Publisher {
    pub fn new(broker: Broker) -> Self {
        Self { broker, channel: Mutex::new(None) }
    }

    pub fn topology(&self) -> Topology {
        Topology::new(self.broker.namespace())
    }

    pub fn is_connected(&self) -> bool {
        self.broker.connection().is_some()
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, message: &Outgoing) -> Result<(), PublishError> {
        self.publish_all(std::slice::from_ref(message)).await.pop().unwrap_or(Err(PublishError::Nacked))
    }

    /// Publishes every message, then awaits each one's confirm, so a batch
    /// costs one round trip rather than one per message. The results are in
    /// the order of `messages`.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Vec<Result<(), PublishError>> {
        let mut pending = Vec::with_capacity(messages.len());
        {
            let mut slot = self.channel.lock().await;
            let channel = match self.channel(&mut slot).await {
                Ok(channel) => channel,
                Err(error) => {
                    let reason = error.to_string();
                    return messages.iter().map(|_| Err(PublishError::Disconnected(reason.clone()))).collect();
                }
            };
            for message in messages {
                let sent = channel
                    .basic_publish(
                        message.exchange.as_str().into(),
                        message.routing_key.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                        &message.body,
                        properties(message),
                    )
                    .await;
                pending.push((message, sent));
            }
        }
        let mut results = Vec::with_capacity(pending.len());
        for (message, sent) in pending {
            results.push(match sent {
                Ok(confirm) => match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Err(_) => Err(PublishError::Timeout),
                    Ok(Err(error)) => Err(error.into()),
                    Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(_)))) => Err(PublishError::Unroutable(message.routing_key.clone())),
                    Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
                },
                Err(error) => Err(error.into()),
            });
        }
        results
    }

    async fn channel<'a>(&self, slot: &'a mut Option<Channel>) -> Result<&'a Channel, PublishError> {
        if slot.as_ref().is_none_or(|channel| !channel.status().connected()) {
            let connection =
                self.broker.connection().ok_or_else(|| PublishError::Disconnected(self.broker.down_reason()))?;
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            *slot = Some(channel);
        }
        slot.as_ref().ok_or_else(|| PublishError::Disconnected("no channel".to_owned()))
    }
}

fn properties(message: &Outgoing) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(message.message_id.as_str().into())
        .with_headers(message.headers.clone());
    match message.expiration_ms {
        Some(ms) => properties.with_expiration(ms.to_string().into()),
        None => properties,
    }
}
