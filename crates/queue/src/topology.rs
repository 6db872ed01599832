//! The exchanges and queues of one namespace, declared idempotently by every
//! service on every (re)connection, so a broker that lost its definitions
//! gets them back without an operator. `proto/topology.md` draws the same.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use stockflow_config::AmqpNamespace;

/// A job family: its queue `<ns>.<queue>` takes the routing keys `<prefix>.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub queue: &'static str,
    pub prefix: &'static str,
    /// The line of `/readyz` that says whether this queue is being consumed.
    pub readiness: &'static str,
}

pub const EXPORTS: Family = Family { queue: "exports", prefix: "export", readiness: "consumer_exports" };
pub const BACKUPS: Family = Family { queue: "backups", prefix: "backup", readiness: "consumer_backups" };
pub const MAINTENANCE: Family =
    Family { queue: "maintenance", prefix: "maintenance", readiness: "consumer_maintenance" };
pub const FAMILIES: [Family; 3] = [EXPORTS, BACKUPS, MAINTENANCE];

/// How often the broker itself redelivers a message before it dead-letters
/// it: only a consumer that dies while holding it (a crash loop) gets there,
/// since handler errors go through the retry queues instead.
pub const DELIVERY_LIMIT: i64 = 10;

/// Retry delay tiers; attempt n waits in tier min(n, RETRY_TIERS). One queue
/// per tier keeps messages of similar delay together, since a queue expires
/// messages from its head only.
pub const RETRY_TIERS: u32 = 6;

/// The header that routes a retried message to its delay queue. No `x-`
/// prefix: headers exchanges ignore `x-` headers when matching.
pub const RETRY_TIER_HEADER: &str = "stockflow-retry-tier";
/// The delivery attempt a message is on (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-stockflow-attempt";
/// Why a message was dead-lettered.
pub const ERROR_HEADER: &str = "x-stockflow-error";
/// The queue a dead-lettered message was consumed from.
pub const SOURCE_QUEUE_HEADER: &str = "x-stockflow-queue";

/// Names of one namespace's exchanges and queues.
#[derive(Debug, Clone)]
pub struct Topology {
    ns: String,
}

impl Topology {
    pub fn new(namespace: &AmqpNamespace) -> Self {
        Self { ns: namespace.as_str().to_owned() }
    }

    /// The topic exchange every job is published to.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.ns)
    }

    /// Fanout exchange for messages that will not be processed.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.ns)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.ns)
    }

    /// Headers exchange that routes a retry to its delay queue.
    ///
    /// `<ns>.delay`, not the `<ns>.retry` of earlier releases: those delay
    /// queues were classic queues, which live on one node of a cluster, and
    /// while that node was down no service could declare its topology, so
    /// none could connect. These are quorum queues; the old exchange and
    /// queues are left alone (nothing routes to them any more, and what they
    /// hold expires back to the jobs exchange) and may be deleted.
    pub fn retry_exchange(&self) -> String {
        format!("{}.delay", self.ns)
    }

    pub fn retry_queue(&self, tier: u32) -> String {
        format!("{}.delay.{tier}", self.ns)
    }

    pub fn queue(&self, family: Family) -> String {
        format!("{}.{}", self.ns, family.queue)
    }

    /// Every queue of the namespace, e.g. for tests that clean up.
    pub fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = FAMILIES.iter().map(|family| self.queue(*family)).collect();
        queues.push(self.dead_queue());
        queues.extend((1..=RETRY_TIERS).map(|tier| self.retry_queue(tier)));
        queues
    }

    pub fn exchanges(&self) -> Vec<String> {
        vec![self.jobs_exchange(), self.dead_letter_exchange(), self.retry_exchange()]
    }

    /// Declares everything; a no-op when it all exists with these settings,
    /// and a channel error (PRECONDITION_FAILED) when something of the same
    /// name exists with others, which the caller reports.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        let durable_queue = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let jobs = self.jobs_exchange();
        let dlx = self.dead_letter_exchange();
        let retry = self.retry_exchange();
        channel.exchange_declare(name(&jobs), ExchangeKind::Topic, durable_exchange, FieldTable::default()).await?;
        channel.exchange_declare(name(&dlx), ExchangeKind::Fanout, durable_exchange, FieldTable::default()).await?;
        channel.exchange_declare(name(&retry), ExchangeKind::Headers, durable_exchange, FieldTable::default()).await?;

        let dead = self.dead_queue();
        channel.queue_declare(name(&dead), durable_queue, quorum()).await?;
        channel
            .queue_bind(name(&dead), name(&dlx), name(""), QueueBindOptions::default(), FieldTable::default())
            .await?;

        for family in FAMILIES {
            let queue = self.queue(family);
            let mut arguments = quorum();
            arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
            arguments.insert("x-dead-letter-exchange".into(), string(&dlx));
            channel.queue_declare(name(&queue), durable_queue, arguments).await?;
            let binding = format!("{}.*", family.prefix);
            channel
                .queue_bind(
                    name(&queue),
                    name(&jobs),
                    name(&binding),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }

        for tier in 1..=RETRY_TIERS {
            let queue = self.retry_queue(tier);
            // Expired messages go back to the jobs exchange under their own
            // routing key, so they return to the queue they came from; at
            // least once, so a retry is not lost when the jobs exchange's
            // queues cannot take it at that moment.
            let mut arguments = quorum();
            arguments.insert("x-dead-letter-exchange".into(), string(&jobs));
            arguments.insert("x-dead-letter-strategy".into(), string("at-least-once"));
            arguments.insert("x-overflow".into(), string("reject-publish"));
            channel.queue_declare(name(&queue), durable_queue, arguments).await?;
            let mut binding = FieldTable::default();
            binding.insert("x-match".into(), string("all"));
            binding.insert(RETRY_TIER_HEADER.into(), AMQPValue::LongLongInt(i64::from(tier)));
            channel.queue_bind(name(&queue), name(&retry), name(""), QueueBindOptions::default(), binding).await?;
        }
        Ok(())
    }
}

fn name(value: &str) -> ShortString {
    value.into()
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments
}

/// The family whose queue takes a routing key, if any.
pub fn family_of(routing_key: &str) -> Option<Family> {
    let (prefix, _) = routing_key.split_once('.')?;
    FAMILIES.into_iter().find(|family| family.prefix == prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_by_the_namespace() {
        let topology = Topology::new(&AmqpNamespace::parse("t1").unwrap());
        assert_eq!(topology.jobs_exchange(), "t1.jobs");
        assert_eq!(topology.queue(EXPORTS), "t1.exports");
        assert_eq!(topology.retry_queue(2), "t1.delay.2");
        assert_eq!(topology.queues().len(), 4 + RETRY_TIERS as usize);
        assert!(topology.queues().iter().chain(&topology.exchanges()).all(|name| name.starts_with("t1.")));
    }

    #[test]
    fn routing_keys_find_their_family() {
        assert_eq!(family_of("export.requested"), Some(EXPORTS));
        assert_eq!(family_of("maintenance.ping"), Some(MAINTENANCE));
        assert_eq!(family_of("unknown.thing"), None);
        assert_eq!(family_of("export"), None);
    }
}
