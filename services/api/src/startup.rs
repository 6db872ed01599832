use crate::observability::{self, Metrics};
use crate::{Settings, extract, routes};
use actix_web::{App, HttpServer, dev::Server, middleware::from_fn, web};
use futures_util::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use stockflow_queue::Publisher;
use stockflow_runtime::{BeforeClose, Connections, OutboxRelay, RunError, StartupError, serve_until_stopped};
use stockflow_telemetry::Shutdown;

/// Requests still running this long after SIGTERM are dropped, so the
/// process always exits within the 10 s a container runtime waits.
const GRACEFUL_STOP_SECS: u64 = 8;

pub struct Application {
    address: SocketAddr,
    server: Server,
    connections: Connections,
    before_close: BeforeClose,
}

impl Application {
    #[tracing::instrument(name = "api.build", skip_all, fields(bind = %settings.api.bind), err)]
    pub async fn build(settings: Settings, shutdown: Shutdown) -> Result<Self, StartupError> {
        let connections = Connections::open(&settings.database, &settings.broker, "api", shutdown)?
            .with_media_store(&settings.storage)?;
        if settings.api.run_migrations {
            let applied = connections.migrate().await?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
        }
        let readiness = web::Data::new(connections.readiness());
        let database = web::Data::new(connections.database.clone());
        let storage = connections.media_store().ok_or(StartupError::Storage {
            name: "storage",
            source: stockflow_storage::StorageError::Unavailable("no media store was opened".to_owned()),
        })?;
        let uploads = web::Data::new(crate::attachments::Uploads { settings: settings.uploads.clone(), storage });
        let publisher = Arc::new(Publisher::new(connections.broker.clone()));
        let (relay, relay_task) = OutboxRelay::start(
            connections.database.clone(),
            publisher,
            settings.outbox.sweep_interval,
            connections.shutdown.clone(),
        );
        let relay = web::Data::new(relay);
        // One registry for all workers, so a scrape sees every request.
        let metrics = web::Data::new(Metrics::new());
        let exports = web::Data::new(settings.exports);
        let graphql = web::Data::new(crate::graphql::schema(settings.api.graphql_introspection));
        let graphiql = settings.api.graphql_graphiql;
        let bind = settings.api.bind;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(observability::observe))
                .app_data(database.clone())
                .app_data(uploads.clone())
                .app_data(relay.clone())
                .app_data(exports.clone())
                .app_data(metrics.clone())
                .app_data(readiness.clone())
                .app_data(graphql.clone())
                .app_data(extract::json_config())
                .app_data(extract::query_config())
                .app_data(extract::path_config())
                .configure(|cfg| routes::configure(cfg, graphiql))
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.api.workers.get())
        .disable_signals()
        .shutdown_timeout(GRACEFUL_STOP_SECS)
        .bind(bind)
        .map_err(|source| StartupError::Bind { address: bind, source })?;
        let address = server.addrs().first().copied().unwrap_or(bind);
        tracing::info!(%address, "API listening");
        let relay_stopped: BoxFuture<'static, ()> = Box::pin(async move {
            let _ = relay_task.await;
        });
        Ok(Self { address, server: server.run(), connections, before_close: vec![relay_stopped] })
    }

    /// The bound address (port 0 in tests picks a free one).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        serve_until_stopped(self.server, self.connections, self.before_close).await
    }
}
