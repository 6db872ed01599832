//! Where objects live: media (attachments, exports) and, separately, backups,
//! so backups can sit on another disk or bucket than what they protect.

use crate::{ConfigError, Env, FromEnvValue, Secret};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The media store: `STORAGE_BACKEND` and that backend's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    pub backend: StorageBackendKind,
}

/// The backup target: `BACKUP_STORAGE_BACKEND` and that backend's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStorageSettings {
    pub backend: StorageBackendKind,
}

/// One variant per backend, carrying what that backend needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageBackendKind {
    Local { root: PathBuf },
    S3(S3Settings),
}

/// An S3 bucket or any S3-compatible store (MinIO, Ceph, R2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: BucketName,
    pub region: String,
    /// Where the services reach the store; `None` means AWS itself.
    pub endpoint: Option<HttpUrl>,
    /// The host presigned URLs name, when clients reach the store by
    /// another address than the services do (MinIO behind docker networking).
    pub public_endpoint: Option<HttpUrl>,
    pub force_path_style: bool,
    /// Bodies are uploaded in parts of this size, so a put holds at most one
    /// part in memory.
    pub part_size: PartSize,
    /// Longest wait for the first byte of an answer, counted from the start
    /// of the request, so it includes sending the body (one part at most).
    pub read_timeout: Duration,
    /// Longest time one call may take, retries included: a store that
    /// accepts connections but never answers fails a put within this.
    pub operation_timeout: Duration,
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    pub session_token: Option<Secret<String>>,
}

impl StorageSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { backend: backend_from_env(env, &MEDIA_VARS)? })
    }

    /// The media store on local disk (`MEDIA_ROOT`), whatever
    /// `STORAGE_BACKEND` says: moving media between backends needs both
    /// stores at once.
    pub fn local_from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { backend: local_from_env(env, &MEDIA_VARS)? })
    }

    /// The media store on S3 (`S3_*`, `AWS_*`), whatever `STORAGE_BACKEND` says.
    pub fn s3_from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { backend: StorageBackendKind::S3(s3_from_env(env, &MEDIA_VARS)?) })
    }
}

impl BackupStorageSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { backend: backend_from_env(env, &BACKUP_VARS)? })
    }
}

/// The variable names one storage instance reads.
struct BackendVars {
    selector: &'static str,
    root: &'static str,
    s3_prefix: &'static str,
    /// Backups may write with their own keys (`BACKUP_S3_ACCESS_KEY_ID`, ...);
    /// without them they use the standard `AWS_*` ones.
    credentials_prefix: Option<&'static str>,
}

const MEDIA_VARS: BackendVars =
    BackendVars { selector: "STORAGE_BACKEND", root: "MEDIA_ROOT", s3_prefix: "S3_", credentials_prefix: None };

const BACKUP_VARS: BackendVars = BackendVars {
    selector: "BACKUP_STORAGE_BACKEND",
    root: "BACKUP_ROOT",
    s3_prefix: "BACKUP_S3_",
    credentials_prefix: Some("BACKUP_S3_"),
};

/// What the selector variable names, before that backend's own variables
/// are read (they are required only for the backend in use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendName {
    Local,
    S3,
}

impl FromEnvValue for BackendName {
    const EXPECTED: &'static str = "local or s3";
    fn from_env_value(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "local" => Some(Self::Local),
            "s3" => Some(Self::S3),
            _ => None,
        }
    }
}

fn backend_from_env(env: &Env, names: &BackendVars) -> Result<StorageBackendKind, ConfigError> {
    match env.or(names.selector, BackendName::Local)? {
        BackendName::Local => local_from_env(env, names),
        BackendName::S3 => Ok(StorageBackendKind::S3(s3_from_env(env, names)?)),
    }
}

fn local_from_env(env: &Env, names: &BackendVars) -> Result<StorageBackendKind, ConfigError> {
    Ok(StorageBackendKind::Local { root: env.required::<AbsolutePath>(names.root)?.into() })
}

fn s3_from_env(env: &Env, names: &BackendVars) -> Result<S3Settings, ConfigError> {
    let var = |name: &str| format!("{}{name}", names.s3_prefix);
    let (key_var, secret_var, token_var) = match names.credentials_prefix {
        Some(prefix) if env.get(&format!("{prefix}ACCESS_KEY_ID")).is_some_and(|v| !v.trim().is_empty()) => {
            (format!("{prefix}ACCESS_KEY_ID"), format!("{prefix}SECRET_ACCESS_KEY"), format!("{prefix}SESSION_TOKEN"))
        }
        _ => ("AWS_ACCESS_KEY_ID".to_owned(), "AWS_SECRET_ACCESS_KEY".to_owned(), "AWS_SESSION_TOKEN".to_owned()),
    };
    Ok(S3Settings {
        bucket: env.required(&var("BUCKET"))?,
        region: env.or::<Region>(&var("REGION"), Region("us-east-1".to_owned()))?.0,
        endpoint: env.optional(&var("ENDPOINT"))?,
        public_endpoint: env.optional(&var("PUBLIC_ENDPOINT"))?,
        force_path_style: env.or(&var("FORCE_PATH_STYLE"), false)?,
        part_size: env.or(&var("PART_SIZE_BYTES"), PartSize::DEFAULT)?,
        read_timeout: seconds(env, &var("READ_TIMEOUT_SECS"), S3Settings::DEFAULT_READ_TIMEOUT)?,
        operation_timeout: seconds(env, &var("OPERATION_TIMEOUT_SECS"), S3Settings::DEFAULT_OPERATION_TIMEOUT)?,
        access_key_id: env.required::<AccessKeyId>(&key_var)?.0,
        secret_access_key: env.required::<SecretKey>(&secret_var)?.0,
        session_token: env.optional::<SecretKey>(&token_var)?.map(|token| token.0),
    })
}

impl S3Settings {
    /// Time to send an 8 MiB part at 300 KB/s and hear back.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Room for the SDK's three attempts of a call that times out reading.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);
}

fn seconds(env: &Env, var: &str, default: Duration) -> Result<Duration, ConfigError> {
    let default = NonZeroU64::new(default.as_secs()).unwrap_or(NonZeroU64::MIN);
    Ok(Duration::from_secs(env.or::<NonZeroU64>(var, default)?.get()))
}

/// An S3 bucket name as S3 accepts it: 3 to 63 lowercase letters, digits,
/// dots and hyphens, starting and ending with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketName(String);

impl BucketName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromEnvValue for BucketName {
    const EXPECTED: &'static str = "an S3 bucket name (3 to 63 lowercase letters, digits, '.' or '-')";
    fn from_env_value(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid = (3..=63).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && edge_ok(bytes.first())
            && edge_ok(bytes.last());
        valid.then(|| Self(raw.to_owned()))
    }
}

/// An `http://` or `https://` URL, such as `http://127.0.0.1:9000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromEnvValue for HttpUrl {
    const EXPECTED: &'static str = "an http:// or https:// URL such as https://s3.example.com";
    fn from_env_value(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix("https://").or_else(|| raw.strip_prefix("http://"))?;
        let host = rest.split('/').next().unwrap_or_default();
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
        (!host.is_empty() && host.chars().all(plain)).then(|| Self(raw.trim_end_matches('/').to_owned()))
    }
}

/// A multipart part size: S3 takes parts of 5 MiB to 5 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartSize(u64);

impl PartSize {
    pub const MIN: u64 = 5 * 1024 * 1024;
    pub const MAX: u64 = 5 * 1024 * 1024 * 1024;
    pub const DEFAULT: Self = Self(8 * 1024 * 1024);

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromEnvValue for PartSize {
    const EXPECTED: &'static str = "a byte count from 5242880 (5 MiB) to 5368709120 (5 GiB)";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|n| (Self::MIN..=Self::MAX).contains(n)).map(Self)
    }
}

struct Region(String);

impl FromEnvValue for Region {
    const EXPECTED: &'static str = "a region name such as us-east-1";
    fn from_env_value(raw: &str) -> Option<Self> {
        let valid = raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(raw.to_owned()))
    }
}

struct AccessKeyId(String);

impl FromEnvValue for AccessKeyId {
    const EXPECTED: &'static str = "an access key id (printable ASCII, no spaces)";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.bytes().all(|b| b.is_ascii_graphic()).then(|| Self(raw.to_owned()))
    }
}

/// Never echoed: a malformed secret gets "expected ..." without its value.
struct SecretKey(Secret<String>);

impl FromEnvValue for SecretKey {
    const EXPECTED: &'static str = "a secret (printable ASCII, no spaces)";
    const SECRET: bool = true;
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.bytes().all(|b| b.is_ascii_graphic()).then(|| Self(Secret::new(raw.to_owned())))
    }
}

/// A path that means the same whatever directory the service starts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsolutePath(PathBuf);

impl AbsolutePath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl From<AbsolutePath> for PathBuf {
    fn from(path: AbsolutePath) -> Self {
        path.0
    }
}

impl FromEnvValue for AbsolutePath {
    const EXPECTED: &'static str = "an absolute path such as /var/lib/stockflow/media";
    fn from_env_value(raw: &str) -> Option<Self> {
        let path = Path::new(raw);
        path.is_absolute().then(|| Self(path.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(root: &str) -> StorageBackendKind {
        StorageBackendKind::Local { root: PathBuf::from(root) }
    }

    #[test]
    fn local_is_the_default_backend_for_media_and_backups() {
        let env = Env::from_pairs([("MEDIA_ROOT", "/srv/media"), ("BACKUP_ROOT", "/mnt/backups")]);
        assert_eq!(StorageSettings::from_env(&env).unwrap().backend, local("/srv/media"));
        assert_eq!(BackupStorageSettings::from_env(&env).unwrap().backend, local("/mnt/backups"));
        let env = env.with("STORAGE_BACKEND", "Local").with("BACKUP_STORAGE_BACKEND", "local");
        assert_eq!(StorageSettings::from_env(&env).unwrap().backend, local("/srv/media"));
        assert_eq!(BackupStorageSettings::from_env(&env).unwrap().backend, local("/mnt/backups"));
    }

    #[test]
    fn each_bad_variable_gets_one_line() {
        let media = |pairs: &[(&str, &str)]| StorageSettings::from_env(&Env::from_pairs(pairs.to_vec())).unwrap_err();
        let backup =
            |pairs: &[(&str, &str)]| BackupStorageSettings::from_env(&Env::from_pairs(pairs.to_vec())).unwrap_err();
        let cases = [
            (
                media(&[("STORAGE_BACKEND", "gcs"), ("MEDIA_ROOT", "/srv/media")]),
                r#"STORAGE_BACKEND: expected local or s3, got "gcs""#,
            ),
            (
                media(&[]),
                "MEDIA_ROOT: required, expected an absolute path such as /var/lib/stockflow/media, but it is not set",
            ),
            (
                media(&[("MEDIA_ROOT", "var/media")]),
                r#"MEDIA_ROOT: expected an absolute path such as /var/lib/stockflow/media, got "var/media""#,
            ),
            (
                backup(&[("BACKUP_STORAGE_BACKEND", "ftp"), ("BACKUP_ROOT", "/b")]),
                r#"BACKUP_STORAGE_BACKEND: expected local or s3, got "ftp""#,
            ),
            (
                backup(&[("MEDIA_ROOT", "/srv/media")]),
                "BACKUP_ROOT: required, expected an absolute path such as /var/lib/stockflow/media, but it is not set",
            ),
            (
                backup(&[("BACKUP_ROOT", "./backups")]),
                r#"BACKUP_ROOT: expected an absolute path such as /var/lib/stockflow/media, got "./backups""#,
            ),
        ];
        for (err, line) in cases {
            assert_eq!(err.to_string(), line);
        }
    }

    fn s3_env() -> Env {
        Env::from_pairs([
            ("STORAGE_BACKEND", "s3"),
            ("S3_BUCKET", "media"),
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2-secret"),
        ])
    }

    #[test]
    fn s3_needs_only_a_bucket_and_credentials() {
        let StorageBackendKind::S3(s3) = StorageSettings::from_env(&s3_env()).unwrap().backend else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket.as_str(), "media");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!((&s3.endpoint, &s3.public_endpoint, s3.force_path_style), (&None, &None, false));
        assert_eq!(s3.part_size, PartSize::DEFAULT);
        assert_eq!(s3.read_timeout, Duration::from_secs(30));
        assert_eq!(s3.operation_timeout, Duration::from_secs(120));
        assert_eq!(s3.access_key_id, "AKIA1");
        assert_eq!(s3.secret_access_key.expose(), "hunter2-secret");
        assert!(s3.session_token.is_none());
        assert!(!format!("{s3:?}").contains("hunter2"), "the secret key leaked into Debug");
    }

    #[test]
    fn s3_reads_endpoints_path_style_and_part_size() {
        let env = s3_env()
            .with("S3_REGION", "eu-central-1")
            .with("S3_ENDPOINT", "http://minio:9000/")
            .with("S3_PUBLIC_ENDPOINT", "https://files.example.com")
            .with("S3_FORCE_PATH_STYLE", "true")
            .with("S3_PART_SIZE_BYTES", "16777216")
            .with("S3_READ_TIMEOUT_SECS", "5")
            .with("S3_OPERATION_TIMEOUT_SECS", "20")
            .with("AWS_SESSION_TOKEN", "tok");
        let StorageBackendKind::S3(s3) = StorageSettings::from_env(&env).unwrap().backend else { panic!("not s3") };
        assert_eq!(s3.region, "eu-central-1");
        assert_eq!(s3.endpoint.unwrap().as_str(), "http://minio:9000");
        assert_eq!(s3.public_endpoint.unwrap().as_str(), "https://files.example.com");
        assert!(s3.force_path_style);
        assert_eq!(s3.part_size.bytes(), 16 * 1024 * 1024);
        assert_eq!((s3.read_timeout, s3.operation_timeout), (Duration::from_secs(5), Duration::from_secs(20)));
        assert_eq!(s3.session_token.unwrap().expose(), "tok");
    }

    #[test]
    fn backups_use_their_own_s3_variables_and_keys_when_given() {
        let env = Env::from_pairs([
            ("BACKUP_STORAGE_BACKEND", "s3"),
            ("BACKUP_S3_BUCKET", "backups"),
            ("AWS_ACCESS_KEY_ID", "media-key"),
            ("AWS_SECRET_ACCESS_KEY", "media-secret"),
        ]);
        let StorageBackendKind::S3(s3) = BackupStorageSettings::from_env(&env).unwrap().backend else { panic!() };
        assert_eq!((s3.bucket.as_str(), s3.access_key_id.as_str()), ("backups", "media-key"));
        let env =
            env.with("BACKUP_S3_ACCESS_KEY_ID", "backup-key").with("BACKUP_S3_SECRET_ACCESS_KEY", "backup-secret");
        let StorageBackendKind::S3(s3) = BackupStorageSettings::from_env(&env).unwrap().backend else { panic!() };
        assert_eq!(s3.access_key_id, "backup-key");
        assert_eq!(s3.secret_access_key.expose(), "backup-secret");
    }

    #[test]
    fn either_media_backend_can_be_read_whatever_storage_backend_says() {
        let env = s3_env().with("MEDIA_ROOT", "/srv/media");
        assert_eq!(StorageSettings::local_from_env(&env).unwrap().backend, local("/srv/media"));
        let env = env.with("STORAGE_BACKEND", "local");
        let StorageBackendKind::S3(s3) = StorageSettings::s3_from_env(&env).unwrap().backend else { panic!("not s3") };
        assert_eq!((s3.bucket.as_str(), s3.access_key_id.as_str()), ("media", "AKIA1"));
        // The selector is not read at all, so even a value it refuses is fine.
        let env = env.with("STORAGE_BACKEND", "ftp");
        assert!(StorageSettings::local_from_env(&env).is_ok());
        assert!(StorageSettings::s3_from_env(&env).is_ok());
    }

    #[test]
    fn either_media_backend_names_its_own_bad_variable() {
        let err = |result: Result<StorageSettings, ConfigError>| result.unwrap_err().to_string();
        assert!(err(StorageSettings::local_from_env(&s3_env())).starts_with("MEDIA_ROOT: required"));
        let env = s3_env().with("MEDIA_ROOT", "media");
        assert!(err(StorageSettings::local_from_env(&env)).starts_with(r#"MEDIA_ROOT: expected an absolute path"#));
        let env = Env::from_pairs([("MEDIA_ROOT", "/srv/media")]);
        assert!(err(StorageSettings::s3_from_env(&env)).starts_with("S3_BUCKET: required"));
        let env = s3_env().with("S3_ENDPOINT", "minio:9000");
        assert!(err(StorageSettings::s3_from_env(&env)).starts_with("S3_ENDPOINT: expected an http://"));
        // Backup variables never stand in for the media ones.
        let env = Env::from_pairs([("BACKUP_ROOT", "/b"), ("BACKUP_S3_BUCKET", "backups")]);
        assert!(err(StorageSettings::local_from_env(&env)).starts_with("MEDIA_ROOT: "));
        assert!(err(StorageSettings::s3_from_env(&env)).starts_with("S3_BUCKET: "));
    }

    #[test]
    fn bad_s3_variables_get_one_line_and_secrets_stay_hidden() {
        let err = |env: Env| StorageSettings::from_env(&env).unwrap_err().to_string();
        assert_eq!(
            err(s3_env().without("S3_BUCKET")),
            "S3_BUCKET: required, expected an S3 bucket name (3 to 63 lowercase letters, digits, '.' or '-'), but it is not set"
        );
        assert!(err(s3_env().with("S3_BUCKET", "My_Bucket")).starts_with(r#"S3_BUCKET: expected an S3 bucket name"#));
        assert!(err(s3_env().with("S3_BUCKET", "-ab")).starts_with("S3_BUCKET: "));
        assert!(
            err(s3_env().with("S3_ENDPOINT", "minio:9000"))
                .starts_with(r#"S3_ENDPOINT: expected an http:// or https:// URL"#)
        );
        assert!(err(s3_env().with("S3_PUBLIC_ENDPOINT", "ftp://x")).starts_with("S3_PUBLIC_ENDPOINT: "));
        assert!(
            err(s3_env().with("S3_FORCE_PATH_STYLE", "maybe"))
                .starts_with("S3_FORCE_PATH_STYLE: expected true or false")
        );
        assert!(
            err(s3_env().with("S3_PART_SIZE_BYTES", "1048576"))
                .starts_with("S3_PART_SIZE_BYTES: expected a byte count")
        );
        assert!(
            err(s3_env().with("S3_READ_TIMEOUT_SECS", "0")).starts_with("S3_READ_TIMEOUT_SECS: expected a positive")
        );
        assert!(err(s3_env().with("S3_OPERATION_TIMEOUT_SECS", "1m")).starts_with("S3_OPERATION_TIMEOUT_SECS: "));
        assert!(err(s3_env().without("AWS_ACCESS_KEY_ID")).starts_with("AWS_ACCESS_KEY_ID: required"));
        assert!(err(s3_env().without("AWS_SECRET_ACCESS_KEY")).starts_with("AWS_SECRET_ACCESS_KEY: required"));
        let line = err(s3_env().with("AWS_SECRET_ACCESS_KEY", "has space"));
        assert!(line.starts_with("AWS_SECRET_ACCESS_KEY: expected") && !line.contains("has space"), "{line}");
    }
}
