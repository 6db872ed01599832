//! Leadership: every replica keeps one database session of its own (not
//! from the pool) and tries the leader advisory lock on it each tick. The
//! replica whose session holds it fires schedules, through that very
//! session; the others stand by. A leader whose session breaks (the
//! database restarted, the link cut, `pg_terminate_backend`) cannot commit
//! another tick: it drops the session and competes again like a standby.

use crate::metrics::SchedulerMetrics;
use crate::tick::{self, BATCH, TickError};
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use stockflow_config::DatabaseUrl;
use stockflow_runtime::OutboxRelay;
use stockflow_telemetry::Shutdown;

/// What this replica is doing, for `/readyz` and `/metrics`.
#[derive(Clone, Default)]
pub struct Role(Arc<AtomicU8>);

const STANDBY: u8 = 1;
const LEADER: u8 = 2;

impl Role {
    pub fn name(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            LEADER => "leader",
            STANDBY => "standby",
            _ => "starting",
        }
    }

    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Relaxed) == LEADER
    }

    fn set(&self, role: u8) -> u8 {
        self.0.swap(role, Ordering::Relaxed)
    }
}

pub(crate) struct Elector {
    pub(crate) url: String,
    pub(crate) tick: Duration,
    pub(crate) lease: Duration,
    pub(crate) max_active_exports: u32,
    pub(crate) relay: OutboxRelay,
    pub(crate) metrics: Arc<SchedulerMetrics>,
    pub(crate) role: Role,
    pub(crate) shutdown: Shutdown,
}

/// The leader's session: whether it holds the lock, and the connection.
struct Session {
    conn: PgConnection,
    leading: bool,
}

impl Elector {
    /// Ticks until shutdown; the session (and with it the lock) is closed
    /// on the way out, so a standby takes over at once.
    pub(crate) async fn run(self) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut session: Option<Session> = None;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = self.shutdown.wait() => break,
            }
            let url = self.url.clone();
            let (lease, grace, max_active) = (self.lease, self.grace(), self.max_active_exports);
            let metrics = Arc::clone(&self.metrics);
            let relay = self.relay.clone();
            let step =
                tokio::task::spawn_blocking(move || step(session, &url, lease, (grace, max_active), &metrics, &relay))
                    .await;
            session = match step {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(%error, "the scheduler's tick panicked; the session is dropped");
                    None
                }
            };
            self.report(session.as_ref().is_some_and(|s| s.leading));
        }
        if let Some(session) = session {
            let _ = tokio::task::spawn_blocking(move || drop(session)).await;
        }
        self.role.set(STANDBY);
        self.metrics.set_leader(false);
    }

    /// How late a slot may be and still count as on time: a tick or two of
    /// delay is normal.
    fn grace(&self) -> chrono::Duration {
        let two_ticks = chrono::Duration::from_std(self.tick * 2).unwrap_or_default();
        two_ticks.max(chrono::Duration::seconds(5))
    }

    fn report(&self, leading: bool) {
        let before = self.role.set(if leading { LEADER } else { STANDBY });
        self.metrics.set_leader(leading);
        match (before, leading) {
            (LEADER, true) | (STANDBY, false) => {}
            (_, true) => tracing::info!("leading: this replica fires the schedules"),
            (LEADER, false) => tracing::warn!("no longer leading; standing by"),
            (_, false) => tracing::info!("standing by: another replica leads, or the database is unreachable"),
        }
    }
}

/// One step on a blocking thread: (re)connect, try the lock, and tick if
/// this session leads. Returns the session to keep, if any.
fn step(
    session: Option<Session>,
    url: &str,
    lease: Duration,
    (grace, max_active_exports): (chrono::Duration, u32),
    metrics: &SchedulerMetrics,
    relay: &OutboxRelay,
) -> Option<Session> {
    let mut session = match session {
        Some(session) => session,
        None => match connect(url, lease) {
            Ok(conn) => Session { conn, leading: false },
            Err(error) => {
                tracing::debug!(%error, "cannot open the scheduler's session");
                return None;
            }
        },
    };
    if !session.leading {
        match stockflow_db::schedules::try_lead(&mut session.conn) {
            Ok(leading) => session.leading = leading,
            Err(error) => {
                tracing::warn!(%error, "the scheduler's session failed; reconnecting");
                return None;
            }
        }
        if !session.leading {
            return Some(session);
        }
    }
    loop {
        let started = Instant::now();
        match tick::tick(&mut session.conn, grace, max_active_exports) {
            Ok(report) => {
                metrics.observe(&report, started.elapsed());
                if !report.jobs.is_empty() {
                    relay.kick();
                    tracing::debug!(jobs = report.jobs.len(), claimed = report.claimed, "schedules fired");
                }
                if report.claimed < BATCH as usize {
                    return Some(session);
                }
            }
            Err(TickError::NotLeader) => {
                tracing::warn!("the leader lock is gone from this session; standing by");
                return None;
            }
            Err(error) => {
                // Whatever failed, this session's lock can no longer be
                // trusted: close it, so the lock is free for whoever
                // reconnects first.
                tracing::warn!(%error, "a tick failed; closing the leader's session");
                return None;
            }
        }
    }
}

/// Opens the scheduler's own session. TCP keepalives and a user timeout
/// make both ends notice a dead peer within about `lease`: the server then
/// ends the session and frees the lock for a standby.
fn connect(url: &str, lease: Duration) -> Result<PgConnection, diesel::ConnectionError> {
    let secs = lease.as_secs().max(2);
    let idle = secs / 2;
    let count = (secs - idle).max(1);
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{url}{separator}keepalives=1&keepalives_idle={idle}&keepalives_interval=1&keepalives_count={count}\
         &tcp_user_timeout={}&connect_timeout={}&application_name=stockflow-scheduler",
        secs * 1000,
        secs.min(10)
    );
    let mut conn = PgConnection::establish(&url)?;
    let settings = format!(
        "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = {count}; \
         SET tcp_user_timeout = {}; SET statement_timeout = '60s'",
        secs * 1000
    );
    diesel::connection::SimpleConnection::batch_execute(&mut conn, &settings)
        .map_err(|error| diesel::ConnectionError::BadConnection(error.to_string()))?;
    // Proves the session works before it competes for the lock.
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .map_err(|error| diesel::ConnectionError::BadConnection(error.to_string()))?;
    Ok(conn)
}

/// The database URL the session uses.
pub(crate) fn session_url(url: &DatabaseUrl) -> String {
    url.expose().to_owned()
}
