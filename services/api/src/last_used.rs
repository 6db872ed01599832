//! `last_used_at` without a write per request: each process records a use
//! of a token at most once per interval, off the request's path, and the
//! UPDATE's own condition keeps several processes to one write per interval.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use stockflow_db::{Database, api_tokens};
use uuid::Uuid;

/// How stale `last_used_at` may be: fresh enough to spot unused tokens,
/// coarse enough that a busy token costs one write a minute.
pub(crate) const INTERVAL: Duration = Duration::from_secs(60);
/// Past this many remembered tokens, forget the ones not seen for an interval.
const PRUNE_ABOVE: usize = 10_000;

fn recent() -> &'static Mutex<HashMap<Uuid, Instant>> {
    static RECENT: OnceLock<Mutex<HashMap<Uuid, Instant>>> = OnceLock::new();
    RECENT.get_or_init(Mutex::default)
}

/// Whether this process should record a use of `token` now.
fn due(token: Uuid, now: Instant) -> bool {
    let Ok(mut recent) = recent().lock() else { return false };
    if recent.get(&token).is_some_and(|at| now.duration_since(*at) < INTERVAL) {
        return false;
    }
    if recent.len() >= PRUNE_ABOVE {
        recent.retain(|_, at| now.duration_since(*at) < INTERVAL);
    }
    recent.insert(token, now);
    true
}

/// Records the use in the background: the request never waits for it, and
/// a failure only leaves `last_used_at` a little older.
pub(crate) fn record(database: &Database, token: Uuid) {
    if !due(token, Instant::now()) {
        return;
    }
    let database = database.clone();
    let every = chrono::Duration::from_std(INTERVAL).unwrap_or(chrono::Duration::MAX);
    tokio::spawn(async move {
        let touched = database
            .run(move |conn| {
                api_tokens::touch_last_used(conn, token, chrono::Utc::now(), every).map_err(stockflow_db::DbError::from)
            })
            .await;
        if let Err(error) = touched {
            tracing::warn!(%token, %error, "cannot record the token's last use");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_due_once_per_interval() {
        let token = Uuid::new_v4();
        let start = Instant::now();
        assert!(due(token, start));
        assert!(!due(token, start + Duration::from_secs(1)));
        assert!(!due(token, start + INTERVAL - Duration::from_millis(1)));
        assert!(due(token, start + INTERVAL));
        assert!(due(Uuid::new_v4(), start), "other tokens are independent");
    }
}
