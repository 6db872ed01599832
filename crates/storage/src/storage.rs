use crate::{Key, Prefix, StorageError};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

/// An object body. Bodies always stream, in both directions, so no backend
/// ever holds a whole file in memory.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Where objects live. Used as `Arc<dyn Storage>`, so a service does not
/// know (or care) whether its media sit on a disk or in a bucket.
#[async_trait::async_trait]
pub trait Storage: fmt::Debug + Send + Sync {
    /// A short name for logs and metrics, such as "local".
    fn backend(&self) -> &'static str;

    /// Stores `body` under `key`. Readers see either nothing (or the previous
    /// object) or the complete new one, never a part; a put that fails or
    /// whose future is dropped leaves the key as it was.
    async fn put(&self, key: &Key, body: ByteStream, mode: PutMode) -> Result<Stored, StorageError>;

    /// `meta.size` is the size of the whole object, even for a range.
    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<Object, StorageError>;

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError>;

    /// Deleting a missing key succeeds: a retried cleanup job must not fail
    /// because its first attempt got further than it knew.
    async fn delete(&self, key: &Key) -> Result<(), StorageError>;

    /// Removes what puts of `key` that never finished left behind (a temp
    /// file, an unfinished multipart upload) because their process died
    /// before its cleanup could run; returns how many it removed. Only call
    /// it while no put of `key` is running (e.g. under the lock of the row
    /// that owns the key): it would break that put.
    async fn discard_incomplete(&self, key: &Key) -> Result<u64, StorageError>;

    /// Every object under `prefix`, at any depth, in no particular order.
    /// The stream ends after its first error.
    fn list(&self, prefix: &Prefix) -> BoxStream<'static, Result<ObjectMeta, StorageError>>;

    /// A URL that lets a client download the object directly, saved as
    /// `filename`, until `ttl` passes; `None` when the backend has no such
    /// thing and the API must stream the object itself.
    async fn presign_get(&self, key: &Key, ttl: Duration, filename: &str) -> Result<Option<url::Url>, StorageError>;

    /// Ok when objects can be written right now.
    async fn health_check(&self) -> Result<(), StorageError>;

    /// Bytes puts could still write, when the backend can tell (a local
    /// disk); `None` when it cannot (a bucket).
    async fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Fails with `AlreadyExists` if the key exists: nothing is ever
    /// overwritten by a key collision or a retried job.
    CreateNew,
    Overwrite,
}

/// What a put stored, measured on the bytes as they went by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Stored {
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().fold(String::with_capacity(64), |mut hex, byte| {
            use fmt::Write;
            let _ = write!(hex, "{byte:02x}");
            hex
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: Key,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

pub struct Object {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object").field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// Bytes `start..=end_inclusive` of an object, like an HTTP `Range` header;
/// no end means "to the end of the object".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end_inclusive: Option<u64>,
}

impl ByteRange {
    pub fn starting_at(start: u64) -> Self {
        Self { start, end_inclusive: None }
    }

    pub fn inclusive(start: u64, end_inclusive: u64) -> Self {
        Self { start, end_inclusive: Some(end_inclusive) }
    }

    /// The bytes this range selects in an object of `size` bytes. An end past
    /// the object is cut to it, as HTTP does; a start past it, or an end
    /// before the start, selects nothing and is an error.
    pub fn resolve(&self, size: u64) -> Result<RangeInclusive<u64>, StorageError> {
        let last = size.checked_sub(1).ok_or(StorageError::InvalidRange { size })?;
        let end = self.end_inclusive.map_or(last, |end| end.min(last));
        if self.start > end {
            return Err(StorageError::InvalidRange { size });
        }
        Ok(self.start..=end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_http_ranges() {
        assert_eq!(ByteRange::starting_at(0).resolve(10).unwrap(), 0..=9);
        assert_eq!(ByteRange::starting_at(9).resolve(10).unwrap(), 9..=9);
        assert_eq!(ByteRange::inclusive(2, 4).resolve(10).unwrap(), 2..=4);
        assert_eq!(ByteRange::inclusive(2, 400).resolve(10).unwrap(), 2..=9);
        for bad in [ByteRange::starting_at(10), ByteRange::inclusive(5, 4), ByteRange::starting_at(u64::MAX)] {
            assert!(matches!(bad.resolve(10), Err(StorageError::InvalidRange { size: 10 })), "{bad:?}");
        }
        assert!(matches!(ByteRange::starting_at(0).resolve(0), Err(StorageError::InvalidRange { size: 0 })));
    }

    #[test]
    fn digests_print_as_lowercase_hex() {
        let mut sha256 = [0; 32];
        sha256[0] = 0xab;
        sha256[31] = 0x01;
        let hex = Stored { size: 0, sha256 }.sha256_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00") && hex.ends_with("0001"), "{hex}");
    }
}
