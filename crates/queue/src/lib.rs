//! RabbitMQ for Stockflow services: a self-healing connection, the
//! topology, a confirming publisher and the consumer runner.

mod backoff;
mod connection;
mod consumer;
mod metrics;
mod publisher;
pub mod topology;

pub use backoff::Backoff;
pub use connection::{Broker, BrokerCheck, InvalidAmqpUrl};
pub use consumer::{Consumer, ConsumerCheck, ConsumerHandle, ConsumerSettings, Handler, HandlerError};
pub use metrics::{JobMetrics, Outcome};
pub use publisher::{Outgoing, PublishError, Publisher};
pub use topology::Topology;
