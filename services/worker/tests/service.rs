// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;
use stockflow_testkit::{TestApp, contract};
use stockflow_worker::{Application, HEALTH_BIND_VAR, Settings};

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-worker");

async fn spawn_app() -> TestApp {
    TestApp::builder()
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

#[tokio::test]
async fn readiness_follows_database_and_broker() {
    contract::readiness_follows_dependencies(&spawn_app().await).await;
}

#[tokio::test]
async fn readiness_follows_the_media_store() {
    contract::readiness_follows_storage(&spawn_app().await, "storage", "media").await;
}

#[tokio::test]
async fn stops_cleanly_when_told() {
    let app = spawn_app().await;
    contract::healthy_and_ready(&app).await;
    app.stop().await.expect("a clean stop");
}

#[test]
fn bad_configuration_stops_with_exit_code_2() {
    contract::config_errors(
        BINARY,
        &[
            (HEALTH_BIND_VAR, Some("port-8001")),
            ("STORAGE_BACKEND", Some("ftp")),
            ("MEDIA_ROOT", Some("var/media")),
            ("WORKER_CONCURRENCY", Some("0")),
            ("JOB_MAX_ATTEMPTS", Some("many")),
            ("EXPORT_RETENTION_DAYS", Some("-1")),
            ("EXPORT_LOOKAHEAD", Some("1001")),
            ("MAINTENANCE_GRACE_MINUTES", Some("0")),
        ],
    );
}

#[tokio::test]
async fn sigterm_stops_the_process_within_10s() {
    contract::stops_on_sigterm(BINARY, HEALTH_BIND_VAR).await;
}

#[tokio::test]
async fn a_consumer_cut_off_with_its_connection_says_the_broker_is_gone() {
    let app = spawn_app().await;
    contract::healthy_and_ready(&app).await;
    app.broker_proxy.sever();
    let body = app.wait_until_down("consumer_exports", std::time::Duration::from_secs(10)).await;
    let detail = body["checks"]["consumer_exports"].as_str().unwrap();
    assert!(detail.contains("the broker connection was lost"), "{body}");
}

/// A link that drops packets without closing: SIGTERM still ends the
/// worker within the 10 s that `make stop` and container runtimes give.
#[tokio::test]
async fn a_silent_broker_link_does_not_hold_shutdown_past_its_grace() {
    let app = spawn_app().await;
    contract::healthy_and_ready(&app).await;
    app.broker_proxy.freeze();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), app.stop()).await;
    stopped.expect("stopped within 10 s over a silent broker link").expect("a clean stop");
}

/// The test broker's address, and its URL with another port (a proxy's).
fn test_broker() -> (std::net::SocketAddr, impl Fn(u16) -> String) {
    let url = url::Url::parse(&stockflow_testkit::amqp_url()).unwrap();
    let upstream = url.socket_addrs(|| Some(5672)).unwrap()[0];
    let via = move |port: u16| {
        let mut url = url.clone();
        url.set_port(Some(port)).unwrap();
        url.to_string()
    };
    (upstream, via)
}

/// A supervised broker connection as a service has one, on a namespace of
/// its own; `extra` adds settings.
struct Client {
    broker: stockflow_queue::Broker,
    namespace: String,
}

impl Client {
    fn start(amqp_url: String, extra: &[(&str, &str)]) -> Self {
        let namespace = stockflow_testkit::unique_namespace();
        let mut env =
            stockflow_config::Env::from_pairs([("AMQP_URL", amqp_url), ("AMQP_NAMESPACE", namespace.clone())]);
        for (var, value) in extra {
            env = env.with(*var, *value);
        }
        let settings = stockflow_config::BrokerSettings::from_env(&env).unwrap();
        Self { broker: stockflow_queue::Broker::start(&settings, "worker").unwrap(), namespace }
    }

    async fn connected(&self, what: &str) {
        tokio::time::timeout(WITHIN, self.broker.connected()).await.unwrap_or_else(|_| panic!("{what}"));
    }

    async fn lost(&self, what: &str, within: Duration) {
        stockflow_testkit::eventually(what, within, || async { self.broker.connection().is_none().then_some(()) })
            .await;
    }

    async fn close(self) {
        self.broker.closed().await;
        stockflow_testkit::broker::delete_namespace(&self.namespace);
    }
}

const WITHIN: Duration = Duration::from_secs(15);

/// A broker that takes the TCP connection and then says nothing: each
/// attempt ends after its bound with a reason, and the link comes up once
/// the broker answers again.
#[tokio::test]
async fn a_connect_to_a_silent_broker_times_out_and_is_retried() {
    let (upstream, via) = test_broker();
    let proxy = stockflow_testkit::TcpProxy::start(upstream).await;
    proxy.freeze();
    let client = Client::start(via(proxy.port()), &[]);
    stockflow_testkit::eventually("the connect attempt to give up", WITHIN, || async {
        client.broker.down_reason().contains("no answer within 5 s").then_some(())
    })
    .await;
    proxy.restore();
    client.connected("connected once the broker answers").await;
    client.close().await;
}

/// AMQP_URL naming the nodes of a cluster: a node that is down is passed
/// over, and a lost connection moves on to the next node that answers.
#[tokio::test]
async fn a_cluster_url_moves_past_a_node_that_is_down() {
    let (upstream, via) = test_broker();
    let first = stockflow_testkit::TcpProxy::start(upstream).await;
    let second = stockflow_testkit::TcpProxy::start(upstream).await;
    first.sever();
    let client = Client::start(format!("{},{}", via(first.port()), via(second.port())), &[]);
    client.connected("connected through the second node").await;

    // The second node goes away, then the first comes back: the next
    // connection can only run through the first.
    second.sever();
    client.lost("the lost connection to be noticed", WITHIN).await;
    first.restore();
    client.connected("connected through the first node").await;
    client.close().await;
}

/// AMQP_HEARTBEAT_SECS is what notices a link that went silent: at 1 s
/// the loss shows within a few seconds (the default 10 s takes over 20).
#[tokio::test]
async fn a_silent_link_is_reported_lost_after_missed_heartbeats() {
    let (upstream, via) = test_broker();
    let proxy = stockflow_testkit::TcpProxy::start(upstream).await;
    let client = Client::start(via(proxy.port()), &[("AMQP_HEARTBEAT_SECS", "1")]);
    client.connected("connected").await;
    proxy.freeze();
    let started = std::time::Instant::now();
    client.lost("missed heartbeats to end the link", Duration::from_secs(10)).await;
    eprintln!("silent link reported lost after {:.1} s (heartbeat 1 s)", started.elapsed().as_secs_f64());
    client.close().await;
}
