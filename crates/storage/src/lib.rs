//! Where Stockflow keeps bytes: attachments, exports and backups. Services
//! hold an `Arc<dyn Storage>` and never learn which backend is behind it.

mod check;
#[cfg(feature = "conformance")]
pub mod conformance;
mod disposition;
mod error;
mod key;
mod local;
mod s3;
mod settings;
mod storage;

pub use check::StorageCheck;
pub use disposition::content_disposition;
pub use error::StorageError;
pub use key::{ExportExt, InvalidKey, Key, MAX_KEY_BYTES, Prefix};
pub use local::LocalFs;
pub use s3::{MAX_PRESIGN_TTL, S3};
pub use settings::{from_backup_settings, from_settings};
pub use storage::{ByteRange, ByteStream, Object, ObjectMeta, PutMode, Storage, Stored};
