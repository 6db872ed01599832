//! `maintenance.reconcile_storage` and `stockflow-worker reconcile`: each
//! organization's attachment and export prefixes are listed and compared
//! with its rows, both ways.
//!
//! - An object no row names, older than the grace period, is deleted (only
//!   counted on a dry run). Younger ones may belong to an upload or an
//!   export under way, whose row is written before the object (uploads)
//!   or in the transaction that wrote it (exports), so they are left.
//! - A stored attachment or succeeded export whose object is not listed is
//!   looked up once more (it may have been written after the listing) and,
//!   still absent, marked `missing`.
//!
//! One organization's keys are in memory at a time. Objects under the
//! prefix of an organization that no longer exists are not visited.

use super::metrics::{ATTACHMENT, EXPORT, Kind};
use super::{Maintenance, MaintenanceError};
use diesel::prelude::*;
use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;
use stockflow_db::{attachments, exports, organizations};
use stockflow_domain::{ExportFormat, ExportStatus};
use stockflow_storage::{ExportExt, Key, Prefix};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub dry_run: bool,
    /// Objects listed under the prefixes visited.
    pub objects: u64,
    /// Objects no row names, at any age.
    pub orphans: u64,
    /// Of those, the ones past the grace period: deleted, unless a dry run.
    pub orphans_past_grace: u64,
    pub orphans_deleted: u64,
    /// Rows whose object is gone: marked missing, unless a dry run.
    pub attachments_missing: u64,
    pub exports_missing: u64,
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (delete, mark) = if self.dry_run { ("would delete", "would mark") } else { ("deleted", "marked") };
        writeln!(f, "objects listed:              {}", self.objects)?;
        writeln!(f, "objects no row names:        {}", self.orphans)?;
        writeln!(f, "  past the grace period:     {} ({delete} {})", self.orphans_past_grace, self.deleted_or_due())?;
        writeln!(f, "attachments without object: {} ({mark} missing)", self.attachments_missing)?;
        writeln!(f, "exports without file:        {} ({mark} missing)", self.exports_missing)?;
        if self.dry_run {
            writeln!(f, "dry run: nothing was changed")?;
        }
        Ok(())
    }
}

impl ReconcileReport {
    fn deleted_or_due(&self) -> u64 {
        if self.dry_run { self.orphans_past_grace } else { self.orphans_deleted }
    }
}

/// The objects of one prefix, by key, with when each was last written.
type Listing = HashMap<String, Option<SystemTime>>;

impl Maintenance {
    /// `listed` is told how many objects each listing step found (the
    /// command's progress line).
    #[tracing::instrument(name = "maintenance.reconcile_storage", skip_all, fields(dry_run, grace_minutes = self.grace.minutes()), err)]
    pub async fn reconcile(
        &self,
        dry_run: bool,
        listed: impl Fn(u64) + Send + Sync,
    ) -> Result<ReconcileReport, MaintenanceError> {
        let mut report = ReconcileReport { dry_run, ..ReconcileReport::default() };
        // The database's clock, as for the other sweeps; object times come
        // from the store, whose clock is assumed close enough at this scale.
        let now: chrono::DateTime<chrono::Utc> = self
            .db(|conn| diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()")).get_result(conn))
            .await?;
        let cutoff = SystemTime::from(now) - self.grace.duration();
        let orgs = self.db(organizations::ids).await?;
        for org in orgs {
            self.reconcile_attachments(org, cutoff, &mut report, &listed).await?;
            self.reconcile_exports(org, cutoff, &mut report, &listed).await?;
        }
        tracing::info!(
            dry_run,
            objects = report.objects,
            orphans = report.orphans,
            orphans_past_grace = report.orphans_past_grace,
            orphans_deleted = report.orphans_deleted,
            attachments_missing = report.attachments_missing,
            exports_missing = report.exports_missing,
            "storage reconciled"
        );
        Ok(report)
    }

    async fn reconcile_attachments(
        &self,
        org: Uuid,
        cutoff: SystemTime,
        report: &mut ReconcileReport,
        listed: &(impl Fn(u64) + Send + Sync),
    ) -> Result<(), MaintenanceError> {
        let mut objects = self.list(&Prefix::attachments(org), report, listed).await?;
        let rows = self.db(move |conn| attachments::keys_of(conn, org)).await?;
        let mut unlisted = Vec::new();
        for (id, key, state) in rows {
            if objects.remove(&key).is_none() && state == "stored" {
                unlisted.push((id, key));
            }
        }
        let gone = self.still_absent(unlisted).await?;
        report.attachments_missing += gone.len() as u64;
        if !report.dry_run && !gone.is_empty() {
            let marked = self.db(move |conn| attachments::mark_missing(conn, &gone)).await? as u64;
            self.metrics.rows_missing.get_or_create(&ATTACHMENT).inc_by(marked);
        }
        self.orphans(objects, cutoff, ATTACHMENT, report).await
    }

    async fn reconcile_exports(
        &self,
        org: Uuid,
        cutoff: SystemTime,
        report: &mut ReconcileReport,
        listed: &(impl Fn(u64) + Send + Sync),
    ) -> Result<(), MaintenanceError> {
        let mut objects = self.list(&Prefix::exports(org), report, listed).await?;
        let files = self.db(move |conn| exports::files_of(conn, org)).await?;
        let mut unlisted = Vec::new();
        for file in files {
            let status = ExportStatus::parse(&file.status).unwrap_or(ExportStatus::Failed);
            if status == ExportStatus::Succeeded {
                let Some(key) = file.storage_key else { continue };
                // Past expiry, the expiry sweep removes it either way.
                if objects.remove(&key).is_none() && !file.past_expiry {
                    unlisted.push((file.id, key));
                }
            } else {
                // Queued or running: the file a run is writing has no row
                // key yet, but it is this one.
                let ext = match ExportFormat::parse(&file.format) {
                    Ok(ExportFormat::Jsonl) => ExportExt::Jsonl,
                    _ => ExportExt::Csv,
                };
                objects.remove(Key::export(org, file.id, ext).as_str());
            }
        }
        let gone = self.still_absent(unlisted).await?;
        report.exports_missing += gone.len() as u64;
        if !report.dry_run && !gone.is_empty() {
            let marked = self.db(move |conn| exports::mark_missing(conn, &gone)).await? as u64;
            self.metrics.rows_missing.get_or_create(&EXPORT).inc_by(marked);
        }
        self.orphans(objects, cutoff, EXPORT, report).await
    }

    async fn list(
        &self,
        prefix: &Prefix,
        report: &mut ReconcileReport,
        listed: &(impl Fn(u64) + Send + Sync),
    ) -> Result<Listing, MaintenanceError> {
        let mut objects = Listing::new();
        let mut stream = self.storage.list(prefix);
        while let Some(meta) = stream.try_next().await? {
            objects.insert(meta.key.as_str().to_owned(), meta.modified);
            report.objects += 1;
            listed(1);
        }
        Ok(objects)
    }

    /// The ids of rows whose object a second look still does not find: the
    /// listing may predate an object written since.
    async fn still_absent(&self, unlisted: Vec<(Uuid, String)>) -> Result<Vec<Uuid>, MaintenanceError> {
        let mut gone = Vec::new();
        for (id, key) in unlisted {
            let absent = match Key::parse(&key) {
                Ok(key) => self.storage.head(&key).await?.is_none(),
                Err(_) => true,
            };
            if absent {
                tracing::warn!(row = %id, %key, "the object of a row is gone");
                gone.push(id);
            }
        }
        Ok(gone)
    }

    /// Objects left in `objects` once every row took its own out.
    async fn orphans(
        &self,
        objects: Listing,
        cutoff: SystemTime,
        kind: Kind,
        report: &mut ReconcileReport,
    ) -> Result<(), MaintenanceError> {
        for (key, modified) in objects {
            report.orphans += 1;
            self.metrics.orphans_found.get_or_create(&kind).inc();
            // An object without a time is treated as young: never deleted.
            if modified.is_none_or(|at| at > cutoff) {
                continue;
            }
            report.orphans_past_grace += 1;
            if report.dry_run {
                tracing::info!(%key, "an object no row names (dry run: kept)");
                continue;
            }
            let Ok(key) = Key::parse(&key) else { continue };
            self.storage.delete(&key).await?;
            tracing::info!(%key, "deleted an object no row names");
            report.orphans_deleted += 1;
            self.metrics.orphans_deleted.get_or_create(&kind).inc();
        }
        Ok(())
    }
}
