//! The connection manager behind the pool: it pings a connection before
//! handing it out only when nothing proves the connection alive.
//!
//! r2d2 with Diesel's manager sends `SELECT 1` at every checkout, which
//! doubles the round trips of a one-query request. Here each connection
//! watches its own queries: one that succeeded within [`TRUSTED_FOR`] is
//! proof enough, and one that failed because the connection itself is gone
//! gets the connection discarded when it returns to the pool, so a dead
//! connection is never handed out twice.

use diesel::PgConnection;
use diesel::connection::{CacheSize, Connection, Instrumentation, InstrumentationEvent};
use diesel::r2d2::{ConnectionManager, Error, ManageConnection};
use diesel::result::{DatabaseErrorKind, Error as QueryError};
use prometheus_client::metrics::counter::Counter;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Statements started on pooled connections, by every pool of the process.
static QUERIES: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The counter behind `stockflow_database_queries_total`: a service
/// registers it; a test reads it to count the statements of a request.
pub fn queries_counter() -> Counter {
    QUERIES.clone()
}

/// How long a successful query vouches for its connection. Past this a
/// checkout pings first: after a quiet spell the server may have restarted
/// or an idle timeout may have closed the socket.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(crate) struct Manager {
    inner: ConnectionManager<PgConnection>,
    /// `DATABASE_STATEMENT_CACHE`: off behind a transaction pooler.
    statement_cache: bool,
}

impl Manager {
    pub(crate) fn new(url: &str, statement_cache: bool) -> Self {
        Self { inner: ConnectionManager::new(with_link_checks(url)), statement_cache }
    }
}

/// libpq settings that make a pooled connection notice a peer that went
/// silent (a dropped link, a host gone without closing): keepalive probes
/// after 10 s idle, every 5 s; with `tcp_user_timeout` set, the link is
/// given up 30 s after the peer last answered, idle or with data unacknowledged. Without them
/// the system defaults apply: two hours before the first probe. A setting
/// already in DATABASE_URL's query string wins.
const LINK_CHECKS: [(&str, &str); 5] = [
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "5"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
];

pub(crate) fn with_link_checks(url: &str) -> String {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or_default();
    let given = |key: &str| query.split('&').any(|pair| pair.split('=').next() == Some(key));
    let mut url = url.to_owned();
    for (key, value) in LINK_CHECKS.iter().filter(|(key, _)| !given(key)) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{key}={value}"));
    }
    url
}

/// The server's side of [`LINK_CHECKS`], for the rest of the caller's
/// transaction: while it holds row locks that others wait on, a client
/// whose link went silent is ended by the server (its transaction rolled
/// back, its locks freed) about 30 s after the client last answered, instead of the system's two hours. `SET LOCAL`, so it holds
/// through a transaction pooler and ends with the transaction.
pub(crate) fn end_session_if_client_goes_silent(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute(
        "SET LOCAL tcp_keepalives_idle = 10; SET LOCAL tcp_keepalives_interval = 5; \
         SET LOCAL tcp_keepalives_count = 3; SET LOCAL tcp_user_timeout = 30000",
    )
}

impl ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = Error;

    fn connect(&self) -> Result<PgConnection, Error> {
        let mut conn = self.inner.connect()?;
        if !self.statement_cache {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        conn.set_instrumentation(Liveness { last_success: Instant::now(), lost: false });
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Error> {
        let vouched = liveness(conn).is_some_and(|l| !l.lost && l.last_success.elapsed() < TRUSTED_FOR);
        if vouched { Ok(()) } else { self.inner.is_valid(conn) }
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        liveness(conn).is_some_and(|l| l.lost) || self.inner.has_broken(conn)
    }
}

fn liveness(conn: &mut PgConnection) -> Option<&mut Liveness> {
    conn.instrumentation().downcast_mut::<Liveness>()
}

/// What a connection's own queries tell about it.
struct Liveness {
    /// The connect counts as the first success.
    last_success: Instant,
    lost: bool,
}

impl Instrumentation for Liveness {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            QUERIES.inc();
        }
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            match error {
                None => self.last_success = Instant::now(),
                Some(QueryError::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _,
                )) => self.lost = true,
                // Other errors may come before anything reached the server:
                // they prove nothing either way.
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_link_checks;

    #[test]
    fn link_checks_are_added_unless_the_url_sets_them() {
        assert_eq!(
            with_link_checks("postgres://u:p@db/x"),
            "postgres://u:p@db/x?keepalives=1&keepalives_idle=10&keepalives_interval=5&keepalives_count=3\
             &tcp_user_timeout=30000"
        );
        assert_eq!(
            with_link_checks("postgres://u:p@db/x?sslmode=require&keepalives_idle=60&tcp_user_timeout=5000"),
            "postgres://u:p@db/x?sslmode=require&keepalives_idle=60&tcp_user_timeout=5000&keepalives=1\
             &keepalives_interval=5&keepalives_count=3"
        );
    }
}
