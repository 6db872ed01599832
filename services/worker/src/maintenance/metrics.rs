//! What the maintenance jobs did, for `/metrics`. Labels are fixed
//! (`kind`: `attachment` or `export`), so the series stay bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct MaintenanceMetrics {
    pub(crate) exports_expired: Counter,
    pub(crate) uploads_removed: Counter,
    pub(crate) orphans_found: Family<Kind, Counter>,
    pub(crate) orphans_deleted: Family<Kind, Counter>,
    pub(crate) rows_missing: Family<Kind, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct Kind {
    kind: &'static str,
}

pub(crate) const ATTACHMENT: Kind = Kind { kind: "attachment" };
pub(crate) const EXPORT: Kind = Kind { kind: "export" };

impl MaintenanceMetrics {
    /// Registers every family in `registry`; a command run by hand uses
    /// [`Default`] instead, counting into nothing.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "maintenance_exports_expired",
            "Exports whose file was removed and that were marked expired",
            metrics.exports_expired.clone(),
        );
        registry.register(
            "maintenance_uploads_removed",
            "Uploads still pending after the grace period, removed with their partial objects",
            metrics.uploads_removed.clone(),
        );
        registry.register(
            "maintenance_orphans_found",
            "Objects no row names, at any age, dry runs included, by kind",
            metrics.orphans_found.clone(),
        );
        registry.register(
            "maintenance_orphans_deleted",
            "Objects no row names, older than the grace period, deleted, by kind",
            metrics.orphans_deleted.clone(),
        );
        registry.register(
            "maintenance_rows_missing",
            "Rows whose object was gone, marked missing, by kind",
            metrics.rows_missing.clone(),
        );
        metrics
    }
}
