#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use stockflow_storage::conformance::Fixture;
use stockflow_storage::{LocalFs, Storage};

struct LocalFixture {
    storage: Arc<LocalFs>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> LocalFixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalFs::new(dir.path().join("media")).unwrap());
    LocalFixture { storage, _dir: dir }
}

#[async_trait::async_trait]
impl Fixture for LocalFixture {
    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    async fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        temp_files(self.storage.root(), &mut found);
        found
    }

    /// Tests run as root here, so permission bits would not stop a write:
    /// the root is replaced by a plain file instead.
    async fn broken(&self) -> Arc<dyn Storage> {
        let root = self._dir.path().join("broken");
        let storage = LocalFs::new(&root).unwrap();
        std::fs::remove_dir(&root).unwrap();
        std::fs::write(&root, b"not a directory").unwrap();
        Arc::new(storage)
    }

    fn presigns(&self) -> bool {
        false
    }
}

fn temp_files(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            temp_files(&path, found);
        } else if entry.file_name().to_string_lossy().starts_with('.') {
            found.push(path.display().to_string());
        }
    }
}

stockflow_storage::storage_conformance_tests!(fixture);

/// A directory holding other objects is not an object itself. (Not in the
/// shared suite: s3s-fs, the S3 server of the tests, keeps objects as files
/// too and answers a GET of such a directory with a server error.)
#[tokio::test]
async fn a_directory_of_objects_is_not_an_object() {
    use futures_util::stream;
    use stockflow_storage::{Key, PutMode, StorageError};
    let fixture = fixture().await;
    let storage = fixture.storage();
    let body = stream::iter([Ok(bytes::Bytes::from_static(b"x"))]);
    storage.put(&Key::parse("dir/child").unwrap(), Box::pin(body), PutMode::CreateNew).await.unwrap();
    let dir = Key::parse("dir").unwrap();
    assert!(matches!(storage.get(&dir, None).await, Err(StorageError::NotFound(_))));
    assert_eq!(storage.head(&dir).await.unwrap(), None);
    storage.delete(&dir).await.expect("deleting a directory's key is deleting nothing");
    assert!(storage.head(&Key::parse("dir/child").unwrap()).await.unwrap().is_some());
}
