use crate::{TcpProxy, TestDatabase, amqp_url, unique_namespace};
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use futures_util::future::BoxFuture;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;
use stockflow_config::Env;
use stockflow_telemetry::Shutdown;

/// What a service's start closure hands back: the address it bound and the
/// future that runs it until the shutdown signal fires.
pub type Started = (SocketAddr, BoxFuture<'static, anyhow::Result<()>>);

/// A service library running in-process on port 0 against its own database,
/// AMQP namespace and storage root, reached through proxies the test can cut.
pub struct TestApp {
    pub address: SocketAddr,
    pub namespace: String,
    pub storage_root: tempfile::TempDir,
    pub database_proxy: TcpProxy,
    pub broker_proxy: TcpProxy,
    pub http: reqwest::Client,
    /// The environment the service read, e.g. to start another service
    /// against the same database, namespace and storage.
    pub env: Env,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    allow_unpublished_outbox: bool,
    // Last, so the database is dropped after everything that uses it.
    pub database: TestDatabase,
}

#[derive(Default)]
pub struct TestAppBuilder {
    env: Vec<(String, String)>,
    allow_unpublished_outbox: bool,
    through_pgbouncer: bool,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Status and JSON body of `/readyz`.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let response = self.get("/readyz").await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("/readyz answers JSON"))
    }

    /// Waits until `/readyz` answers `status`, or fails the test after `within`.
    pub async fn wait_for_readyz(&self, status: u16, within: Duration) -> serde_json::Value {
        crate::eventually(&format!("/readyz {status}"), within, || async {
            let (got, body) = self.readyz().await;
            (got == status).then_some(body)
        })
        .await
    }

    /// Waits until `/readyz` answers 503 and reports the check `name` as
    /// down, and returns that report. Checks run concurrently and notice a
    /// lost dependency at slightly different moments (a consumer may see its
    /// channel die before the connection check runs), so a test that cuts
    /// one dependency waits for the line it asserts, not for the first 503.
    pub async fn wait_until_down(&self, name: &str, within: Duration) -> serde_json::Value {
        crate::eventually(&format!("/readyz to report {name} down"), within, || async {
            let (got, body) = self.readyz().await;
            let down = body["checks"][name].as_str().is_some_and(|detail| detail.starts_with("down: "));
            (got == 503 && down).then_some(body)
        })
        .await
    }

    /// Stops the service the way SIGTERM would and returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_service().await
    }

    /// Stops the service but keeps its database, namespace and storage, for
    /// tests that start another service on them afterwards.
    pub async fn stop_service(&mut self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let task = self.task.take().expect("the service runs until stopped");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .map_err(|_| anyhow::anyhow!("service did not stop within 10 s"))??
    }

    fn unpublished_outbox_rows(&self) -> i64 {
        use stockflow_db::schema::outbox;
        outbox::table
            .filter(outbox::published_at.is_null())
            .count()
            .get_result(&mut self.database.connect())
            .expect("count unpublished outbox rows")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // A job left in the outbox is work the test started and never saw
        // through; a passing test must not hide it.
        let left =
            (!std::thread::panicking() && !self.allow_unpublished_outbox).then(|| self.unpublished_outbox_rows());
        crate::broker::delete_namespace(&self.namespace);
        if let Some(left) = left {
            assert_eq!(left, 0, "the test left {left} unpublished outbox job(s) behind");
        }
    }
}

impl TestAppBuilder {
    /// Sets (or overrides) one variable of the service's environment.
    pub fn env(mut self, var: &str, value: &str) -> Self {
        self.env.push((var.to_owned(), value.to_owned()));
        self
    }

    /// The service's pool reaches the database through the PgBouncer of
    /// `make services` (transaction mode) with the statement cache off, as
    /// an operator behind a pooler runs it; what needs a session takes the
    /// direct URL. `database_proxy` sits between the service and PgBouncer.
    pub fn through_pgbouncer(mut self) -> Self {
        self.through_pgbouncer = true;
        self
    }

    /// For tests that stop with jobs deliberately unpublished.
    pub fn allow_unpublished_outbox(mut self) -> Self {
        self.allow_unpublished_outbox = true;
        self
    }

    /// Starts the service: `start` receives the environment the service
    /// would read and a shutdown signal, and returns what it bound.
    pub async fn spawn<F, Fut>(self, start: F) -> TestApp
    where
        F: FnOnce(Env, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<Started>>,
    {
        let database = TestDatabase::create();
        let database_upstream = if self.through_pgbouncer {
            upstream(&database.url_via(crate::pgbouncer_port()))
        } else {
            upstream(database.url())
        };
        let database_proxy = TcpProxy::start(database_upstream).await;
        let amqp = url::Url::parse(&amqp_url()).expect("TEST_AMQP_URL is a URL");
        let broker_proxy = TcpProxy::start(upstream(amqp.as_str())).await;
        let mut amqp_via_proxy = amqp.clone();
        amqp_via_proxy.set_host(Some("127.0.0.1")).expect("AMQP URL has a host");
        amqp_via_proxy.set_port(Some(broker_proxy.port())).expect("AMQP URL takes a port");
        let namespace = unique_namespace();
        let storage_root = tempfile::tempdir().expect("create storage root");
        let root = storage_root.path().display().to_string();

        let mut env = service_env(&database.url_via(database_proxy.port()), amqp_via_proxy.as_str(), &namespace, &root);
        if self.through_pgbouncer {
            env = env.with("DATABASE_DIRECT_URL", database.url()).with("DATABASE_STATEMENT_CACHE", "false");
        }
        for (var, value) in self.env {
            env = env.with(var, value);
        }

        let shutdown = Shutdown::new();
        let (address, run) = start(env.clone(), shutdown.clone()).await.expect("service starts");
        TestApp {
            address,
            namespace,
            storage_root,
            database_proxy,
            broker_proxy,
            http: crate::http_client(),
            env,
            shutdown,
            task: Some(tokio::spawn(run)),
            allow_unpublished_outbox: self.allow_unpublished_outbox,
            database,
        }
    }
}

fn upstream(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("service URL");
    let host = url.host_str().expect("service URL has a host");
    let port = url.port_or_known_default().or(match url.scheme() {
        "amqp" => Some(5672),
        _ => Some(5432),
    });
    (host, port.unwrap_or_default()).to_socket_addrs().expect("resolve service address").next().expect("an address")
}

/// The environment a service under test reads: the given database and
/// broker, its own namespace and storage root, port 0 everywhere, quiet logs.
pub fn service_env(database_url: &str, amqp_url: &str, namespace: &str, storage_root: &str) -> Env {
    Env::from_pairs([
        ("DATABASE_URL", database_url.to_owned()),
        ("DATABASE_POOL_SIZE", "4".to_owned()),
        ("DATABASE_CONNECT_TIMEOUT_SECS", "2".to_owned()),
        ("AMQP_URL", amqp_url.to_owned()),
        ("AMQP_NAMESPACE", namespace.to_owned()),
        ("MEDIA_ROOT", format!("{storage_root}/media")),
        ("BACKUP_ROOT", format!("{storage_root}/backups")),
        ("API_BIND", "127.0.0.1:0".to_owned()),
        ("WEB_WORKERS", "2".to_owned()),
        ("WORKER_HEALTH_BIND", "127.0.0.1:0".to_owned()),
        ("SCHEDULER_HEALTH_BIND", "127.0.0.1:0".to_owned()),
        ("BACKUP_HEALTH_BIND", "127.0.0.1:0".to_owned()),
        ("LOG_LEVEL", std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".to_owned())),
        ("LOG_FORMAT", "pretty".to_owned()),
    ])
}
