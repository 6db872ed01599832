//! Objects as files under one root directory: `<root>/<key>`.

mod temp;
mod walk;
mod writer;

use crate::{ByteRange, ByteStream, Key, Object, ObjectMeta, Prefix, PutMode, Storage, StorageError, Stored};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::fs::Permissions;
use std::io::{self, ErrorKind, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use temp::TempFile;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use writer::Writer;

/// Group-readable, so a backup or web-server group can read media without
/// owning it; nothing for others.
const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct LocalFs {
    root: PathBuf,
}

impl LocalFs {
    /// Creates the root (0750) if it is missing, so a fresh install needs no
    /// manual step. Blocking: it runs once, at start.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&root)
            .map_err(|error| StorageError::Unavailable(format!("cannot create root {}: {error}", root.display())))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        // Safe by construction: a key is relative and has no `..` segment.
        self.root.join(key.as_str())
    }
}

#[async_trait::async_trait]
impl Storage for LocalFs {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn put(&self, key: &Key, mut body: ByteStream, mode: PutMode) -> Result<Stored, StorageError> {
        let fail = |source: io::Error| StorageError::io("put", Some(key), source);
        let target = self.path_of(key);
        // Only an early answer, to spare streaming a body for nothing: the
        // hard link below is what decides.
        if mode == PutMode::CreateNew && matches!(tokio::fs::try_exists(&target).await, Ok(true)) {
            return Err(StorageError::AlreadyExists(key.clone()));
        }
        let dir = target.parent().map_or_else(|| self.root.clone(), Path::to_path_buf);
        let (root, owned_key) = (self.root.clone(), key.clone());
        blocking(move || create_parents(&root, &owned_key)).await.map_err(fail)?;

        let temp = TempFile::new_in(&dir, &file_name(&target));
        let file = blocking({
            let temp = Arc::clone(&temp);
            move || create_temp(&temp)
        })
        .await
        .map_err(fail)?;
        let writer = Writer::start(file, Arc::clone(&temp));
        let mut size = 0_u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            size += chunk.len() as u64;
            if writer.write(chunk).await.is_err() {
                // The writer stopped on an error, which finish() returns.
                break;
            }
        }
        let sha256 = writer.finish().await.map_err(fail)?;

        match mode {
            PutMode::Overwrite => {
                tokio::fs::rename(temp.path(), &target).await.map_err(fail)?;
                temp.disarm();
            }
            PutMode::CreateNew => {
                // Unlike rename, link refuses an existing target, atomically.
                match tokio::fs::hard_link(temp.path(), &target).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                        return Err(StorageError::AlreadyExists(key.clone()));
                    }
                    Err(error) => return Err(fail(error)),
                }
                if tokio::fs::remove_file(temp.path()).await.is_ok() {
                    temp.disarm();
                }
            }
        }
        blocking(move || sync_dir(&dir)).await.map_err(fail)?;
        Ok(Stored { size, sha256 })
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<Object, StorageError> {
        let fail = |source: io::Error| StorageError::io("get", Some(key), source);
        let mut file = match tokio::fs::File::open(self.path_of(key)).await {
            Ok(file) => file,
            Err(error) if absent(&error) => return Err(StorageError::NotFound(key.clone())),
            Err(error) => return Err(fail(error)),
        };
        let metadata = file.metadata().await.map_err(fail)?;
        if !metadata.is_file() {
            return Err(StorageError::NotFound(key.clone()));
        }
        let size = metadata.len();
        let (start, len) = match range {
            None => (0, size),
            Some(range) => {
                let range = range.resolve(size)?;
                (*range.start(), range.end() - range.start() + 1)
            }
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await.map_err(fail)?;
        }
        let body = ReaderStream::with_capacity(file.take(len), READ_CHUNK_BYTES).boxed();
        Ok(Object { meta: ObjectMeta { key: key.clone(), size, modified: metadata.modified().ok() }, body })
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(metadata) if metadata.is_file() => {
                Ok(Some(ObjectMeta { key: key.clone(), size: metadata.len(), modified: metadata.modified().ok() }))
            }
            Ok(_) => Ok(None),
            Err(error) if absent(&error) => Ok(None),
            Err(error) => Err(StorageError::io("head", Some(key), error)),
        }
    }

    async fn discard_incomplete(&self, key: &Key) -> Result<u64, StorageError> {
        let target = self.path_of(key);
        blocking(move || discard_temp_files(&target))
            .await
            .map_err(|source| StorageError::io("discard", Some(key), source))
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            // A directory at the key's path means `key/...` objects exist,
            // not that `key` does.
            Err(error) if absent(&error) || error.kind() == ErrorKind::IsADirectory => Ok(()),
            Err(error) => Err(StorageError::io("delete", Some(key), error)),
        }
    }

    fn list(&self, prefix: &Prefix) -> BoxStream<'static, Result<ObjectMeta, StorageError>> {
        let walk = walk::Walk::new(&self.root, prefix.as_str());
        stream::try_unfold(walk, |mut walk| async move { Ok(walk.next().await?.map(|meta| (meta, walk))) }).boxed()
    }

    async fn presign_get(&self, _: &Key, _: Duration, _: &str) -> Result<Option<url::Url>, StorageError> {
        Ok(None)
    }

    async fn health_check(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || probe(&root))
            .await
            .map_err(|error| StorageError::Unavailable(error.to_string()))?
    }

    async fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        let root = self.root.clone();
        let stats = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&root))
            .await
            .map_err(|error| StorageError::Unavailable(error.to_string()))?
            .map_err(|errno| StorageError::io("statvfs", None, errno.into()))?;
        Ok(Some(stats.f_bavail.saturating_mul(stats.f_frsize)))
    }
}

/// Missing, or a path through a file: either way there is no object there.
pub(crate) fn absent(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io::Error::other)?
}

/// Creates the key's missing directories one level at a time, so each gets
/// exactly 0750 whatever the umask, and each new entry is fsynced into its
/// parent (a file in a directory that vanishes on power loss is lost too).
fn create_parents(root: &Path, key: &Key) -> io::Result<()> {
    let Some((dirs, _)) = key.as_str().rsplit_once('/') else { return Ok(()) };
    if std::fs::metadata(root.join(dirs)).is_ok_and(|metadata| metadata.is_dir()) {
        return Ok(());
    }
    let mut dir = root.to_path_buf();
    for segment in dirs.split('/') {
        let parent = dir.clone();
        dir.push(segment);
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, Permissions::from_mode(DIR_MODE))?;
                sync_dir(&parent)?;
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn create_temp(temp: &TempFile) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(temp.path())?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The root is a directory where a file can be created, made durable and
/// removed: what every put needs.
fn file_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Removes the temp files of `target`'s object from its directory.
fn discard_temp_files(target: &Path) -> io::Result<u64> {
    let Some(dir) = target.parent() else { return Ok(0) };
    let prefix = temp::owner_prefix(&file_name(target));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(removed)
}

fn probe(root: &Path) -> Result<(), StorageError> {
    let down =
        |what: &str, error: io::Error| StorageError::Unavailable(format!("root {}: {what}: {error}", root.display()));
    let metadata = std::fs::metadata(root).map_err(|error| down("cannot stat", error))?;
    if !metadata.is_dir() {
        return Err(StorageError::Unavailable(format!("root {} is not a directory", root.display())));
    }
    let temp = TempFile::new_in(root, "health-probe");
    let mut file = create_temp(&temp).map_err(|error| down("cannot create a file", error))?;
    file.write_all(b"probe").and_then(|()| file.sync_all()).map_err(|error| down("cannot write a file", error))?;
    drop(file);
    std::fs::remove_file(temp.path()).map_err(|error| down("cannot remove a file", error))?;
    temp.disarm();
    Ok(())
}
