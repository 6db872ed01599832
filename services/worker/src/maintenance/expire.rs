//! `maintenance.expire_exports`: succeeded exports past their `expires_at`
//! lose their file, then become `expired`. The file goes first: a run that
//! dies in between leaves a succeeded row past expiry (which the api
//! already answers 410 for), and the next run deletes nothing twice.

use super::{BATCH, Maintenance, MaintenanceError};
use std::fmt;
use stockflow_db::exports;
use stockflow_storage::Key;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    pub expired: u64,
}

impl fmt::Display for ExpiryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} exports expired", self.expired)
    }
}

impl Maintenance {
    #[tracing::instrument(name = "maintenance.expire_exports", skip_all, err)]
    pub async fn expire_exports(&self) -> Result<ExpiryReport, MaintenanceError> {
        let mut report = ExpiryReport::default();
        loop {
            let due = self.db(|conn| exports::due_for_expiry(conn, BATCH)).await?;
            for export in &due {
                match export.storage_key.as_deref().map(Key::parse) {
                    // Deleting a key that is already gone succeeds.
                    Some(Ok(key)) => self.storage.delete(&key).await?,
                    Some(Err(error)) => tracing::warn!(export = %export.id, %error, "no file to delete"),
                    None => {}
                }
            }
            let ids: Vec<_> = due.iter().map(|export| export.id).collect();
            let expired = self.db(move |conn| exports::mark_expired(conn, &ids)).await? as u64;
            report.expired += expired;
            self.metrics.exports_expired.inc_by(expired);
            if due.len() < BATCH as usize {
                break;
            }
        }
        tracing::info!(expired = report.expired, "exports expired");
        Ok(report)
    }
}
