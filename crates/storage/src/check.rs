use crate::Storage;
use std::sync::Arc;
use stockflow_telemetry::{Check, CheckFuture, Down};

/// Puts a storage backend on `/readyz`.
pub struct StorageCheck {
    storage: Arc<dyn Storage>,
    name: &'static str,
}

impl StorageCheck {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage, name: "storage" }
    }

    /// For a second instance, such as the backup target, that needs its own
    /// line on `/readyz`.
    pub fn named(storage: Arc<dyn Storage>, name: &'static str) -> Self {
        Self { storage, name }
    }
}

impl Check for StorageCheck {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move { self.storage.health_check().await.map_err(|error| Down::new("unreachable", error)) })
    }
}
