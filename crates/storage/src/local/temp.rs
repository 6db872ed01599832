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
    /// A temp file in `dir` for the object named `file_name`. The name
    /// carries a digest of `file_name`, so what a crashed put of that object
    /// left behind can be found again ([`owner_prefix`]).
    pub(crate) fn new_in(dir: &Path, file_name: &str) -> Arc<Self> {
        let path = dir.join(format!("{}{}", owner_prefix(file_name), uuid::Uuid::new_v4().simple()));
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

/// How the names of every temp file of the object `file_name` begin.
pub(crate) fn owner_prefix(file_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(file_name.as_bytes());
    let short: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    format!("{TEMP_PREFIX}{short}-")
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
