//! One AMQP connection per service, kept alive by a supervisor task: it
//! reconnects with backoff whenever the broker goes away, so a service never
//! needs a restart after a broker restart, and readiness reflects the link.

use crate::{Backoff, Topology};
use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event, uri::AMQPUri};
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{AmqpNamespace, BrokerSettings};
use stockflow_telemetry::{Check, CheckFuture, Down, Shutdown};
use tokio::sync::watch;

/// The bound of one whole connect attempt: TCP, the AMQP handshake and the
/// topology's declarations. A broker that accepts the TCP connection and
/// then says nothing (a link dropping packets) must not hold it forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound of closing the connection at shutdown, so a dead link cannot
/// hold a stopping service past its grace time.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_BASE: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The configuration layer already validates AMQP_URL with the same parser,
/// so this only fires if a caller builds settings by hand.
#[derive(Debug, thiserror::Error)]
#[error("AMQP_URL is not a valid AMQP URL: {0}")]
pub struct InvalidAmqpUrl(String);

#[derive(Clone)]
enum Link {
    Up(Arc<Connection>),
    /// Why there is no connection: the reason `/readyz` shows, and the
    /// error behind it.
    Down(Down),
}

/// Handle to the supervised connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    link: watch::Receiver<Link>,
    namespace: AmqpNamespace,
    supervisor: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Closes the connection. Separate from the service's shutdown signal:
    /// consumers still settle the messages in hand after shutdown fires.
    closing: Shutdown,
}

impl Broker {
    /// Starts connecting in the background and returns at once; until the
    /// first connection succeeds the broker reports itself down.
    pub fn start(settings: &BrokerSettings, service: &'static str) -> Result<Self, InvalidAmqpUrl> {
        let nodes = settings
            .url
            .nodes()
            .map(|node| {
                let mut uri: AMQPUri = node.parse().map_err(InvalidAmqpUrl)?;
                // Heartbeats detect a connection that died silently (no FIN, no RST).
                uri.query.heartbeat = uri.query.heartbeat.or(Some(settings.heartbeat.get()));
                uri.query.connection_timeout =
                    uri.query.connection_timeout.or(Some(u64::try_from(CONNECT_TIMEOUT.as_millis()).unwrap_or(5000)));
                Ok(uri)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, link) = watch::channel(Link::Down(Down::new("not connected yet", "")));
        let topology = Topology::new(&settings.namespace);
        let closing = Shutdown::new();
        let supervisor = tokio::spawn(supervise(nodes, service, topology, tx, closing.clone()));
        Ok(Self {
            link,
            namespace: settings.namespace.clone(),
            supervisor: Arc::new(tokio::sync::Mutex::new(Some(supervisor))),
            closing,
        })
    }

    pub fn namespace(&self) -> &AmqpNamespace {
        &self.namespace
    }

    /// Waits for a live connection; never returns while the broker is down.
    pub async fn connected(&self) -> Arc<Connection> {
        let mut link = self.link.clone();
        loop {
            if let Some(connection) = self.connection() {
                return connection;
            }
            if link.changed().await.is_err() {
                // The supervisor is gone (shutdown): no connection will come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Why there is no connection, for error messages.
    pub fn down_reason(&self) -> String {
        match self.status() {
            Ok(()) => "connected".to_owned(),
            Err(down) if down.detail.is_empty() => down.reason.to_owned(),
            Err(down) => format!("{}: {}", down.reason, down.detail),
        }
    }

    /// The live connection, if there is one right now.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        match &*self.link.borrow() {
            Link::Up(conn) if conn.status().connected() => Some(conn.clone()),
            _ => None,
        }
    }

    pub fn check(&self) -> BrokerCheck {
        BrokerCheck { broker: self.clone() }
    }

    /// Closes the connection for good and waits until it is closed.
    pub async fn closed(&self) {
        self.closing.trigger();
        if let Some(task) = self.supervisor.lock().await.take() {
            let _ = task.await;
        }
    }

    fn status(&self) -> Result<(), Down> {
        match &*self.link.borrow() {
            Link::Up(conn) if conn.status().connected() => Ok(()),
            Link::Up(_) => Err(Down::new("connection is closing", "")),
            Link::Down(down) => Err(down.clone()),
        }
    }
}

pub struct BrokerCheck {
    broker: Broker,
}

impl Check for BrokerCheck {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn check(&self) -> CheckFuture<'_> {
        let status = self.broker.status();
        Box::pin(async move { status })
    }
}

/// Keeps one connection up. With several nodes (a cluster), each failed
/// attempt and each lost connection moves on to the next node in turn, so
/// a node that is down costs one attempt, not every retry.
async fn supervise(
    nodes: Vec<AMQPUri>,
    service: &'static str,
    topology: Topology,
    link: watch::Sender<Link>,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_MAX);
    let properties = || ConnectionProperties::default().with_connection_name(format!("stockflow-{service}").into());
    let mut turn = 0;
    while !shutdown.is_triggered() {
        let Some(uri) = nodes.get(turn % nodes.len().max(1)) else { break };
        turn = turn.wrapping_add(1);
        let node = format!("{}:{}", uri.authority.host, uri.authority.port);
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect(uri, properties(), &topology)) => {
                attempt.unwrap_or_else(|_| Err(format!(
                    "no answer within {} s (connect, handshake and declarations)",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
            () = shutdown.wait() => break,
        };
        match attempt {
            Ok(conn) => {
                tracing::info!(%node, "connected to the broker");
                backoff.reset();
                let conn = Arc::new(conn);
                let mut events = conn.events_listener();
                link.send_replace(Link::Up(conn.clone()));
                let lost = tokio::select! {
                    reason = next_error(&mut events) => reason,
                    () = shutdown.wait() => {
                        link.send_replace(Link::Down(Down::new("shutting down", "")));
                        let close = conn.close(200, "service stopping".into());
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
                        break;
                    }
                };
                tracing::warn!(%node, reason = %lost, "lost the broker connection; reconnecting");
                link.send_replace(Link::Down(Down::new("connection lost", lost)));
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%node, %error, retry_in_ms = delay.as_millis(), "cannot connect to the broker");
                link.send_replace(Link::Down(Down::new("cannot connect", error)));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.wait() => break,
                }
            }
        }
    }
}

/// Connects and declares the topology, so a service only reports the broker
/// up once its exchanges and queues exist.
async fn connect(uri: &AMQPUri, properties: ConnectionProperties, topology: &Topology) -> Result<Connection, String> {
    let connection = Connection::connect_uri(uri.clone(), properties).await.map_err(|error| error.to_string())?;
    let declared = async {
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        channel.close(200, "topology declared".into()).await
    }
    .await;
    match declared {
        Ok(()) => Ok(connection),
        Err(error) => {
            let _ = connection.close(200, "cannot declare the topology".into()).await;
            Err(format!("cannot declare the topology: {error}"))
        }
    }
}

async fn next_error(events: &mut (impl futures_util::Stream<Item = Event> + Unpin)) -> String {
    while let Some(event) = events.next().await {
        match event {
            Event::Error(error) => return error.to_string(),
            Event::ConnectionBlocked(reason) => tracing::warn!(%reason, "the broker blocked publishing"),
            Event::ConnectionUnblocked => tracing::info!("the broker unblocked publishing"),
            _ => {}
        }
    }
    "connection event stream ended".to_owned()
}
