use crate::{LocalFs, S3, Storage, StorageError};
use std::sync::Arc;
use stockflow_config::{BackupStorageSettings, StorageBackendKind, StorageSettings};

/// The media store the settings name. Blocking (LocalFs creates its root):
/// call it at start. S3 contacts nothing here, so a store that is down shows
/// on `/readyz` instead of stopping the service.
pub fn from_settings(settings: &StorageSettings) -> Result<Arc<dyn Storage>, StorageError> {
    open(&settings.backend)
}

/// The backup target: a second instance, so backups can live on another disk
/// or bucket than the media they protect.
pub fn from_backup_settings(settings: &BackupStorageSettings) -> Result<Arc<dyn Storage>, StorageError> {
    open(&settings.backend)
}

fn open(backend: &StorageBackendKind) -> Result<Arc<dyn Storage>, StorageError> {
    match backend {
        StorageBackendKind::Local { root } => Ok(Arc::new(LocalFs::new(root.clone())?)),
        StorageBackendKind::S3(settings) => Ok(Arc::new(S3::new(settings)?)),
    }
}
