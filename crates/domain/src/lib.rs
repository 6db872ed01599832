//! Stockflow's domain: values that are parsed once at the edge and trusted
//! everywhere after. This crate does no IO and depends on no workspace crate.

mod catalog;
mod export;
mod firing;
mod jobs;
mod production;
mod rules;
mod schedule;
mod tenancy;
mod token;
mod upload;

pub use catalog::{NameSearch, ProductName, Sku, SkuPrefix, Unit};
pub use export::{BatchFilters, ExportFilters, ExportFormat, ExportKind, ExportSpec, ExportStatus, ProductFilters};
pub use firing::{Decision, Firing, MAX_SLOTS_PER_TICK, Plan, rescheduled};
pub use jobs::{
    BackupDatabase, BackupMedia, BackupRunRef, BackupTrigger, BackupVerify, CleanupUploads, Envelope, ExpireExports,
    ExportRequested, Job, Ping, ReconcileStorage,
};
pub use production::{BatchCode, BatchStatus, Notes, Quantity};
pub use rules::{JsonObject, TextRule};
pub use schedule::{
    CatchupWindow, CronExpr, Jitter, MisfirePolicy, OverlapPolicy, PauseNote, RunOutcome, RunTimeout, RunTrigger,
    ScheduleError, ScheduleName, Timezone, Timing,
};
pub use tenancy::{Email, OrgSlug, Role};
pub use token::{ApiTokenSecret, TokenDigest, TokenLifetime, TokenName};
pub use upload::{DisplayFilename, MimeType, SNIFF_BYTES, SNIFFABLE, sniff};

/// Why a raw value was rejected, phrased for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}
