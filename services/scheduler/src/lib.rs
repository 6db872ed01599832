//! stockflow-scheduler: Fires cron-style schedules into the job queue, one leader at a time.
//!
//! Every replica writes the system schedules from its settings at start,
//! then competes for the leader lock each tick (`leader.rs`); the leader
//! fires due schedules (`tick.rs`) and the outbox relay publishes their
//! jobs. `/readyz` says whether this replica leads (`"role"`); a standby
//! is ready too.

pub mod commands;
mod leader;
mod metrics;
pub mod settings;
pub mod system;
pub mod tick;

pub use leader::Role;
pub use settings::{AdminSettings, DEFAULT_HEALTH_BIND, HEALTH_BIND_VAR, SchedulerSettings, Settings};

use std::net::SocketAddr;
use std::sync::Arc;
use stockflow_db::DbError;
use stockflow_queue::Publisher;
use stockflow_runtime::{BackgroundService, Connections, OutboxRelay, RunError, StartupError};
use stockflow_telemetry::Shutdown;

pub struct Application {
    service: BackgroundService,
    role: Role,
}

impl Application {
    #[tracing::instrument(name = "scheduler.build", skip_all, fields(health_bind = %settings.health.bind), err)]
    pub async fn build(settings: Settings, shutdown: Shutdown) -> Result<Self, StartupError> {
        let connections = Connections::open(&settings.database, &settings.broker, "scheduler", shutdown.clone())?;
        write_system_schedules(&connections, &settings.scheduler).await;
        let publisher = Arc::new(Publisher::new(connections.broker.clone()));
        let (relay, relay_task) = OutboxRelay::start(
            connections.database.clone(),
            publisher,
            settings.outbox.sweep_interval,
            shutdown.clone(),
        );
        let metrics = Arc::new(metrics::SchedulerMetrics::new(connections.database.clone()));
        let role = Role::default();
        let elector = leader::Elector {
            url: leader::session_url(&settings.database.direct_url),
            tick: settings.scheduler.tick,
            lease: settings.scheduler.lease,
            max_active_exports: settings.scheduler.max_active_exports.get(),
            relay,
            metrics: Arc::clone(&metrics),
            role: role.clone(),
            shutdown,
        };
        let elector_task = tokio::spawn(elector.run());
        let noted = role.clone();
        let readiness = connections.readiness().with_note("role", Arc::new(move || noted.name().to_owned()));
        let service = BackgroundService::start(settings.health.bind, connections, readiness, metrics)?
            .finish_before_close(async move {
                let _ = elector_task.await;
            })
            .finish_before_close(async move {
                let _ = relay_task.await;
            });
        Ok(Self { service, role })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen (port 0 in tests
    /// picks a free one).
    pub fn address(&self) -> SocketAddr {
        self.service.address()
    }

    /// Whether this replica leads right now.
    pub fn role(&self) -> Role {
        self.role.clone()
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        self.service.run_until_stopped().await
    }
}

/// Writes the system schedules at start. The database may be down then: a
/// service starts anyway (readiness says what is missing), so a failure is
/// logged and the writing retried in the background until it succeeds.
async fn write_system_schedules(connections: &Connections, settings: &SchedulerSettings) {
    let database = connections.database.clone();
    let settings = settings.clone();
    let shutdown = connections.shutdown.clone();
    let write = move || {
        let (database, settings) = (database.clone(), settings.clone());
        async move { database.run(move |conn| Ok::<_, DbError>(system::apply(conn, &settings)?)).await }
    };
    if let Err(error) = write().await {
        tracing::warn!(%error, "cannot write the system schedules yet; retrying in the background");
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(500);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.wait() => return,
                }
                match write().await {
                    Ok(()) => return tracing::info!("system schedules written"),
                    Err(error) => tracing::debug!(%error, "cannot write the system schedules yet"),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        });
    }
}
