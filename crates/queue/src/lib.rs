//! RabbitMQ for Stockflow services.

mod backoff;
mod connection;

pub use backoff::Backoff;
pub use connection::{Broker, BrokerCheck, InvalidAmqpUrl};
