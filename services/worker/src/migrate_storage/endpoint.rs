//! The two stores of a migration, and the descriptors that name them in the
//! progress table.

use super::MigrateError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockflow_config::{ConfigError, Env, StorageBackendKind, StorageSettings};
use stockflow_storage::{LocalFs, S3, Storage};

/// A media backend as `--from` and `--to` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Files under `MEDIA_ROOT`.
    Local,
    /// The bucket of the `S3_*` variables.
    S3,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
        }
    }

    /// This backend's variables, whatever `STORAGE_BACKEND` says: a
    /// migration needs both at once.
    pub fn settings_from_env(self, env: &Env) -> Result<StorageSettings, ConfigError> {
        match self {
            Self::Local => StorageSettings::local_from_env(env),
            Self::S3 => StorageSettings::s3_from_env(env),
        }
    }
}

/// A source and a target that differ: copying a store onto itself would
/// "verify" every object against itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direction {
    from: Backend,
    to: Backend,
}

#[derive(Debug, thiserror::Error)]
#[error("--from and --to both name {0}; a migration needs two different backends")]
pub struct SameBackend(&'static str);

impl Direction {
    pub fn new(from: Backend, to: Backend) -> Result<Self, SameBackend> {
        if from == to {
            return Err(SameBackend(from.as_str()));
        }
        Ok(Self { from, to })
    }

    pub fn from(self) -> Backend {
        self.from
    }

    pub fn to(self) -> Backend {
        self.to
    }
}

/// Names a store in the progress table, so progress belongs to the pair of
/// stores actually copied, not to a backend name: `local:<root>` (the root
/// as configured, without `.` segments or a trailing `/`) or
/// `s3:<bucket>@<endpoint>` (`aws` when no endpoint is set: AWS bucket
/// names are global).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor(String);

impl Descriptor {
    pub fn of(settings: &StorageSettings) -> Self {
        match &settings.backend {
            StorageBackendKind::Local { root } => Self(format!("local:{}", normalized(root).display())),
            StorageBackendKind::S3(s3) => {
                let endpoint = s3.endpoint.as_ref().map_or("aws", |endpoint| endpoint.as_str());
                Self(format!("s3:{}@{endpoint}", s3.bucket.as_str()))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lexical only: resolving symlinks would need the directory to exist,
/// and a dry run must not create it.
fn normalized(root: &Path) -> PathBuf {
    root.components().collect()
}

/// A store and its descriptor.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub descriptor: Descriptor,
    pub store: Arc<dyn Storage>,
}

impl Endpoint {
    pub fn new(descriptor: Descriptor, store: Arc<dyn Storage>) -> Self {
        Self { descriptor, store }
    }

    /// The store to copy from. A local root that does not exist is an error
    /// rather than created empty: it is far more likely a wrong `MEDIA_ROOT`
    /// than a store with nothing in it.
    pub fn open_source(settings: &StorageSettings) -> Result<Self, MigrateError> {
        let descriptor = Descriptor::of(settings);
        if let StorageBackendKind::Local { root } = &settings.backend
            && !root.is_dir()
        {
            return Err(MigrateError::NoSourceRoot(descriptor));
        }
        Self::open(settings, descriptor)
    }

    /// The store to copy to; a local root is created if missing.
    pub fn open_target(settings: &StorageSettings) -> Result<Self, MigrateError> {
        Self::open(settings, Descriptor::of(settings))
    }

    fn open(settings: &StorageSettings, descriptor: Descriptor) -> Result<Self, MigrateError> {
        let store: Result<Arc<dyn Storage>, _> = match &settings.backend {
            StorageBackendKind::Local { root } => LocalFs::new(root.clone()).map(|fs| Arc::new(fs) as _),
            StorageBackendKind::S3(s3) => S3::new(s3).map(|s3| Arc::new(s3) as _),
        };
        match store {
            Ok(store) => Ok(Self { descriptor, store }),
            Err(error) => Err(MigrateError::Open { descriptor, error }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_needs_two_different_backends() {
        assert!(Direction::new(Backend::Local, Backend::S3).is_ok());
        assert!(Direction::new(Backend::S3, Backend::Local).is_ok());
        let err = Direction::new(Backend::Local, Backend::Local).unwrap_err();
        assert_eq!(err.to_string(), "--from and --to both name local; a migration needs two different backends");
    }

    #[test]
    fn descriptors_name_the_root_or_the_bucket_and_endpoint() {
        let env = Env::from_pairs([
            ("MEDIA_ROOT", "/srv/./media/"),
            ("S3_BUCKET", "media"),
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        let local = Backend::Local.settings_from_env(&env).unwrap();
        assert_eq!(Descriptor::of(&local).as_str(), "local:/srv/media");
        let aws = Backend::S3.settings_from_env(&env).unwrap();
        assert_eq!(Descriptor::of(&aws).as_str(), "s3:media@aws");
        let minio = Backend::S3.settings_from_env(&env.with("S3_ENDPOINT", "http://minio:9000/")).unwrap();
        assert_eq!(Descriptor::of(&minio).as_str(), "s3:media@http://minio:9000");
    }
}
