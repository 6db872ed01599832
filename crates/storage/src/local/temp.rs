//! The temp file a put writes before it renames it into place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Names start with a dot, which no key segment may, so listings can tell
/// temp files from objects and a temp file can never shadow a key.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Removes its file when the last handle drops, unless the file was moved
/// into place. Shared (`Arc`) so that a blocking task creating the file holds
/// it too: if the put is cancelled while that task runs, the file is removed
/// when the task ends, not left behind by a removal that came too early.
pub(crate) struct TempFile {
    path: PathBuf,
    armed: AtomicBool,
}

impl TempFile {
    pub(crate) fn new_in(dir: &Path) -> Arc<Self> {
        let path = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
        Arc::new(Self { path, armed: AtomicBool::new(true) })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file is gone or has become the object: nothing left to clean up.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }
}

impl Drop for TempFile {
    /// A plain blocking unlink: this also runs when a put's future is
    /// dropped, where nothing can be awaited, and one unlink is cheap.
    fn drop(&mut self) {
        if self.armed.load(Ordering::Acquire) {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(path = %self.path.display(), %error, "cannot remove temp file"),
            }
        }
    }
}
