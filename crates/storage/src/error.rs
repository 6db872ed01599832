use crate::Key;
use std::io;

/// One error type for every backend, so callers (HTTP handlers, jobs) map
/// "not found" or "already exists" the same way whatever stores the bytes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {0} not found")]
    NotFound(Key),
    #[error("object {0} already exists")]
    AlreadyExists(Key),
    #[error("range starts past the end of the object ({size} bytes)")]
    InvalidRange { size: u64 },
    #[error("storage {op}{} failed: {source}", on_key(.key.as_ref()))]
    Io {
        op: &'static str,
        key: Option<Key>,
        #[source]
        source: io::Error,
    },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The caller's body stream failed; the storage itself is fine.
    #[error("the object body could not be read: {0}")]
    Body(#[source] io::Error),
}

impl StorageError {
    pub fn io(op: &'static str, key: Option<&Key>, source: io::Error) -> Self {
        Self::Io { op, key: key.cloned(), source }
    }
}

fn on_key(key: Option<&Key>) -> String {
    key.map(|key| format!(" of {key}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_operation_and_the_key() {
        let key = Key::parse("a/b").unwrap();
        let err = StorageError::io("put", Some(&key), io::Error::other("disk full"));
        assert_eq!(err.to_string(), "storage put of a/b failed: disk full");
        let err = StorageError::io("list", None, io::Error::other("denied"));
        assert_eq!(err.to_string(), "storage list failed: denied");
    }
}
