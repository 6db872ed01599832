//! `maintenance.cleanup_uploads`: an upload whose row is still `pending`
//! after the grace period died with its api process, which ran no cleanup.
//! What its put left (a temp file, an unfinished multipart upload, or a
//! whole object whose row was never marked stored) is removed, then the
//! row, so the batch can be deleted again. The grace period is what keeps
//! this off uploads still streaming: none takes that long.

use super::{BATCH, Maintenance, MaintenanceError};
use std::fmt;
use stockflow_db::attachments;
use stockflow_storage::Key;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Pending rows removed.
    pub removed: u64,
    /// Temp files and unfinished multipart uploads discarded.
    pub partials: u64,
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} stale uploads removed ({} partial objects)", self.removed, self.partials)
    }
}

impl Maintenance {
    #[tracing::instrument(name = "maintenance.cleanup_uploads", skip_all, fields(grace_minutes = self.grace.minutes()), err)]
    pub async fn cleanup_uploads(&self) -> Result<CleanupReport, MaintenanceError> {
        let mut report = CleanupReport::default();
        let grace = i32::try_from(self.grace.minutes()).unwrap_or(i32::MAX);
        loop {
            let stale = self.db(move |conn| attachments::stale_pending(conn, grace, BATCH)).await?;
            for row in &stale {
                match Key::parse(&row.storage_key) {
                    Ok(key) => {
                        report.partials += self.storage.discard_incomplete(&key).await?;
                        self.storage.delete(&key).await?;
                    }
                    Err(error) => tracing::warn!(attachment = %row.id, %error, "no object to delete"),
                }
                let id = row.id;
                let removed = self.db(move |conn| attachments::delete_pending(conn, id)).await? as u64;
                report.removed += removed;
                self.metrics.uploads_removed.inc_by(removed);
            }
            if stale.len() < BATCH as usize {
                break;
            }
        }
        tracing::info!(removed = report.removed, partials = report.partials, "stale uploads removed");
        Ok(report)
    }
}
