//! Broker helpers for tests: remove a namespace's queues and exchanges when
//! its test ends, and look into queues without consuming for real.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use stockflow_config::AmqpNamespace;
use stockflow_queue::Topology;

/// Deletes everything the topology of `namespace` declared. Runs on a
/// thread of its own, so it works from `Drop` and outside any runtime.
pub fn delete_namespace(namespace: &str) {
    let Some(namespace) = AmqpNamespace::parse(namespace) else { return };
    let topology = Topology::new(&namespace);
    let url = crate::amqp_url();
    let cleanup = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cleanup runtime");
        runtime.block_on(async move {
            let Ok(connection) = Connection::connect(&url, ConnectionProperties::default()).await else { return };
            let Ok(channel) = connection.create_channel().await else { return };
            for queue in topology.queues() {
                let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
            }
            for exchange in topology.exchanges() {
                let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
            }
            let _ = connection.close(200, "test done".into()).await;
        });
    });
    let _ = cleanup.join();
}

/// Connects straight to the broker (no proxy), for tests that read queues.
pub async fn connect() -> Connection {
    Connection::connect(&crate::amqp_url(), ConnectionProperties::default()).await.expect("connect to the broker")
}
