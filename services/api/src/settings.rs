use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::num::NonZeroU64;
use std::num::NonZeroUsize;
use stockflow_config::{
    BrokerSettings, ConfigError, DatabaseSettings, Env, FromEnvValue, OutboxSettings, StorageBackendKind,
    StorageSettings, TelemetrySettings,
};
use stockflow_domain::MimeType;

pub const BIND_VAR: &str = "API_BIND";
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8000);

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub telemetry: TelemetrySettings,
    pub storage: StorageSettings,
    pub api: ApiSettings,
    pub uploads: UploadSettings,
    pub outbox: OutboxSettings,
    pub exports: crate::exports::ExportSettings,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub bind: SocketAddr,
    pub workers: NonZeroUsize,
    /// Apply pending migrations at start (single-container setups).
    pub run_migrations: bool,
    /// `GRAPHQL_INTROSPECTION`: whether `/graphql` answers `__schema` and
    /// `__type`; the schema is published as docs/schema.graphql anyway.
    pub graphql_introspection: bool,
    /// `GRAPHQL_GRAPHIQL`: whether a browser opening `/graphql` gets the
    /// GraphiQL page, with its scripts served by the api itself.
    pub graphql_graphiql: bool,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let storage = StorageSettings::from_env(env)?;
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env_with_pool(env, default_pool_size())?,
            broker: BrokerSettings::from_env(env)?,
            uploads: UploadSettings::from_env(env, &storage)?,
            storage,
            api: ApiSettings::from_env(env)?,
            outbox: OutboxSettings::from_env(env)?,
            exports: crate::exports::ExportSettings::from_env(env)?,
        })
    }
}

/// Attachments: how big, which types, and how downloads are delivered.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub max_upload_bytes: NonZeroU64,
    pub allowed_types: AllowedTypes,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Through the API, with Range support.
    Stream,
    /// `X-Accel-Redirect: <prefix><key>`, served by nginx from an `internal`
    /// location over MEDIA_ROOT (local storage only).
    XAccel { prefix: String },
    /// 302 to a presigned URL valid for `ttl_secs` (S3 only).
    Redirect { ttl_secs: u64 },
}

impl UploadSettings {
    pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;

    fn from_env(env: &Env, storage: &StorageSettings) -> Result<Self, ConfigError> {
        let default_max = NonZeroU64::new(Self::DEFAULT_MAX_UPLOAD_BYTES).unwrap_or(NonZeroU64::MIN);
        let local = matches!(storage.backend, StorageBackendKind::Local { .. });
        let delivery = match env.or("ATTACHMENT_DELIVERY", DeliveryName::Stream)? {
            DeliveryName::Stream => Delivery::Stream,
            DeliveryName::XAccel if local => {
                Delivery::XAccel { prefix: env.or("X_ACCEL_PREFIX", AccelPrefix::default())?.0 }
            }
            DeliveryName::Redirect if !local => {
                Delivery::Redirect { ttl_secs: env.or("PRESIGN_TTL_SECS", PresignTtl(300))?.0 }
            }
            other => {
                return Err(ConfigError::Invalid {
                    var: "ATTACHMENT_DELIVERY".to_owned(),
                    expected: "stream, or x-accel with STORAGE_BACKEND=local, or redirect with STORAGE_BACKEND=s3",
                    got: other.as_str().to_owned(),
                });
            }
        };
        Ok(Self {
            max_upload_bytes: env.or("MAX_UPLOAD_BYTES", default_max)?,
            allowed_types: env.or("ALLOWED_MIME_TYPES", AllowedTypes::default())?,
            delivery,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTypes(pub Vec<MimeType>);

impl AllowedTypes {
    pub fn allows(&self, mime: MimeType) -> bool {
        self.0.contains(&mime)
    }
}

impl Default for AllowedTypes {
    /// Everything recognisable except zip archives, which can hide anything.
    fn default() -> Self {
        Self(
            ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/csv"]
                .iter()
                .filter_map(|raw| MimeType::parse(raw).ok())
                .collect(),
        )
    }
}

impl FromEnvValue for AllowedTypes {
    const EXPECTED: &'static str = "a comma-separated list from image/png, image/jpeg, image/gif, image/webp, application/pdf, application/zip, text/plain, text/csv";
    fn from_env_value(raw: &str) -> Option<Self> {
        let types = raw.split(',').map(|item| MimeType::parse(item).ok()).collect::<Option<Vec<_>>>()?;
        (!types.is_empty()).then_some(Self(types))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeliveryName {
    Stream,
    XAccel,
    Redirect,
}

impl DeliveryName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::XAccel => "x-accel",
            Self::Redirect => "redirect",
        }
    }
}

impl FromEnvValue for DeliveryName {
    const EXPECTED: &'static str = "stream, x-accel or redirect";
    fn from_env_value(raw: &str) -> Option<Self> {
        [Self::Stream, Self::XAccel, Self::Redirect].into_iter().find(|name| name.as_str() == raw.to_ascii_lowercase())
    }
}

/// The path of nginx's `internal` location, starting and ending with `/`.
struct AccelPrefix(String);

impl Default for AccelPrefix {
    fn default() -> Self {
        Self("/_protected/media/".to_owned())
    }
}

impl FromEnvValue for AccelPrefix {
    const EXPECTED: &'static str = "a path starting and ending with '/', such as /_protected/media/";
    fn from_env_value(raw: &str) -> Option<Self> {
        let ok =
            raw.len() > 1 && raw.starts_with('/') && raw.ends_with('/') && raw.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(raw.to_owned()))
    }
}

/// Seconds, 1 to 604800 (7 days, S3's limit).
struct PresignTtl(u64);

impl FromEnvValue for PresignTtl {
    const EXPECTED: &'static str = "a number of seconds from 1 to 604800";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|secs| (1..=604_800).contains(secs)).map(Self)
    }
}

/// Two connections per CPU. The api's queries are short, and PostgreSQL
/// runs a process per connection: more connections than it has cores to
/// run them only queue inside PostgreSQL. On api-list (2 CPUs, database on
/// the same machine) 4 connections instead of 10 took the p99 from 29-32 ms
/// to 21-26 ms at the same or a higher rate. The CPUs counted are the api's;
/// where the database has more, DATABASE_POOL_SIZE says so.
fn default_pool_size() -> NonZeroU32 {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroU32::new(u32::try_from(cores.saturating_mul(2)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

impl ApiSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            bind: env.or(BIND_VAR, DEFAULT_BIND)?,
            workers: env.or("WEB_WORKERS", cores)?,
            run_migrations: env.or("RUN_MIGRATIONS", false)?,
            graphql_introspection: env.or("GRAPHQL_INTROSPECTION", true)?,
            graphql_graphiql: env.or("GRAPHQL_GRAPHIQL", false)?,
        })
    }
}

/// What the admin commands need: the database, and logs.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
}

impl AdminSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { telemetry: TelemetrySettings::from_env(env)?, database: DatabaseSettings::from_env(env)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_defaults_to_two_connections_per_cpu() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default_pool_size().get() as usize, 2 * cpus);
    }
}
