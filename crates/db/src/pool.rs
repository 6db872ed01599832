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
use std::time::{Duration, Instant};

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
        Self { inner: ConnectionManager::new(url), statement_cache }
    }
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
