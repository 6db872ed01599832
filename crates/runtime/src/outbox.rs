//! The outbox relay: publishes jobs the service wrote to `outbox`, at once
//! when told a transaction committed one, and on a timer for whatever is
//! left (the broker was down, the process died right after a commit).
//! Several relays may run against one database: each locks the rows it
//! publishes with `FOR UPDATE SKIP LOCKED`.

use chrono::Utc;
use diesel::Connection;
use std::sync::Arc;
use std::time::Duration;
use stockflow_db::{Database, DbError, outbox};
use stockflow_queue::{Outgoing, Publisher};
use stockflow_telemetry::Shutdown;
use tokio::sync::Notify;

/// Jobs published per transaction.
const BATCH: i64 = 500;
/// Published rows are kept this long for inspection, then deleted.
const KEEP_PUBLISHED: chrono::Duration = chrono::Duration::days(7);

#[derive(Clone)]
pub struct OutboxRelay {
    kick: Arc<Notify>,
}

impl OutboxRelay {
    /// Starts the relay; it sweeps every `interval` and stops with `shutdown`.
    pub fn start(
        database: Database,
        publisher: Arc<Publisher>,
        interval: Duration,
        shutdown: Shutdown,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let kick = Arc::new(Notify::new());
        let task = tokio::spawn(run(database, publisher, interval, Arc::clone(&kick), shutdown));
        (Self { kick }, task)
    }

    /// Says a transaction just committed jobs: publish them now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

async fn run(database: Database, publisher: Arc<Publisher>, interval: Duration, kick: Arc<Notify>, shutdown: Shutdown) {
    let mut sweep = tokio::time::interval(interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let swept = tokio::select! {
            () = kick.notified() => false,
            _ = sweep.tick() => true,
            () = shutdown.wait() => break,
        };
        if !publisher.is_connected() {
            // Nothing can be published; the sweep after the broker returns will.
            continue;
        }
        loop {
            match relay_batch(&database, &publisher).await {
                Ok(published) if published == BATCH as usize => {}
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "outbox relay failed; the next sweep retries");
                    break;
                }
            }
        }
        if swept {
            let before = Utc::now() - KEEP_PUBLISHED;
            if let Err(error) =
                database.run(move |conn| Ok::<_, DbError>(outbox::delete_published_before(conn, before)?)).await
            {
                tracing::warn!(%error, "cannot delete old outbox rows");
            }
        }
    }
}

/// Publishes up to one batch in one transaction; returns how many rows it
/// claimed. A job published but not yet marked (the process dies between
/// confirm and commit) is published again later: consumers are idempotent.
async fn relay_batch(database: &Database, publisher: &Arc<Publisher>) -> Result<usize, DbError> {
    let publisher = Arc::clone(publisher);
    let runtime = tokio::runtime::Handle::current();
    database
        .run(move |conn| {
            conn.transaction(|conn| {
                let claimed = outbox::claim_unpublished(conn, BATCH)?;
                if claimed.is_empty() {
                    return Ok(0);
                }
                let topology = publisher.topology();
                // A JSON value read from jsonb always encodes again.
                let messages: Vec<Outgoing> = claimed
                    .iter()
                    .map(|row| Outgoing::raw_job(&topology, &row.routing_key, row.id.to_string(), row.message.to_string().into_bytes()))
                    .collect();
                // This closure runs on a blocking thread, where waiting on
                // the runtime is allowed; the row locks last until commit.
                let results = runtime.block_on(publisher.publish_all(&messages));
                let mut published = Vec::with_capacity(claimed.len());
                for (row, result) in claimed.iter().zip(results) {
                    match result {
                        Ok(()) => published.push(row.id),
                        Err(error) => {
                            tracing::warn!(id = %row.id, routing_key = %row.routing_key, %error, "cannot publish a job");
                            outbox::record_failure(conn, row.id, &error.to_string())?;
                        }
                    }
                }
                outbox::mark_published(conn, &published)?;
                tracing::debug!(published = published.len(), claimed = claimed.len(), "outbox relayed");
                Ok::<_, diesel::result::Error>(claimed.len())
            })
            .map_err(DbError::from)
        })
        .await
}
