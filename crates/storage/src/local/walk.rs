//! Listing: a depth-first walk that holds one open directory per level, so
//! memory does not grow with the number of objects.

use crate::key::is_valid_segment;
use crate::local::absent;
use crate::{Key, ObjectMeta, StorageError};
use std::path::{Path, PathBuf};
use tokio::fs::ReadDir;

pub(crate) struct Walk {
    start: Option<(PathBuf, String)>,
    /// Open directories, each with its key prefix (empty or ending in `/`).
    stack: Vec<(ReadDir, String)>,
}

impl Walk {
    pub(crate) fn new(root: &Path, prefix: &str) -> Self {
        Self { start: Some((root.join(prefix), prefix.to_owned())), stack: Vec::new() }
    }

    pub(crate) async fn next(&mut self) -> Result<Option<ObjectMeta>, StorageError> {
        if let Some((dir, prefix)) = self.start.take() {
            match tokio::fs::read_dir(&dir).await {
                Ok(entries) => self.stack.push((entries, prefix)),
                Err(error) if absent(&error) => return Ok(None),
                Err(error) => return Err(list_error(error)),
            }
        }
        loop {
            let Some((entries, prefix)) = self.stack.last_mut() else { return Ok(None) };
            let Some(entry) = entries.next_entry().await.map_err(list_error)? else {
                self.stack.pop();
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|name| is_valid_segment(name)) else {
                // Temp files (and other dot files) are expected; anything
                // else was not put there through Storage.
                if !name.as_encoded_bytes().starts_with(b".") {
                    tracing::warn!(path = %entry.path().display(), "skipping a file whose name cannot be a key");
                }
                continue;
            };
            let relative = format!("{prefix}{name}");
            // Entries can vanish between the listing and the look: a
            // concurrent delete, or a temp file renamed away.
            let file_type = match entry.file_type().await {
                Ok(file_type) => file_type,
                Err(error) if absent(&error) => continue,
                Err(error) => return Err(list_error(error)),
            };
            if file_type.is_dir() {
                match tokio::fs::read_dir(entry.path()).await {
                    Ok(entries) => self.stack.push((entries, format!("{relative}/"))),
                    Err(error) if absent(&error) => {}
                    Err(error) => return Err(list_error(error)),
                }
            } else if file_type.is_file() {
                let metadata = match entry.metadata().await {
                    Ok(metadata) => metadata,
                    Err(error) if absent(&error) => continue,
                    Err(error) => return Err(list_error(error)),
                };
                match Key::parse(&relative) {
                    Ok(key) => {
                        return Ok(Some(ObjectMeta { key, size: metadata.len(), modified: metadata.modified().ok() }));
                    }
                    Err(error) => tracing::warn!(%error, "skipping a file whose path cannot be a key"),
                }
            }
            // Symlinks, sockets and the like are never objects.
        }
    }
}

fn list_error(error: std::io::Error) -> StorageError {
    StorageError::io("list", None, error)
}
