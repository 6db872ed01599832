//! The messages services send each other over the broker. Each payload type
//! names its message type (also its routing key) and version; the envelope
//! around it is the same for all. `proto/` holds the JSON Schema of each.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payload that travels in an [`Envelope`].
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `<family>.<event>`; also the routing key, so the family picks the queue.
    const TYPE: &'static str;
    /// Bumped on any change a consumer of the previous version cannot read.
    const VERSION: u32;
}

/// What every message on the broker looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<P> {
    /// Unique per message; redeliveries and retries keep it.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub message_type: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    /// Ties the message to what caused it, e.g. the request id of the
    /// API call that asked for an export.
    pub correlation_id: String,
    pub payload: P,
}

impl<P: Job> Envelope<P> {
    pub fn new(payload: P, correlation_id: impl Into<String>) -> Self {
        Self {
            id: Uuid::new_v4(),
            message_type: P::TYPE.to_owned(),
            version: P::VERSION,
            occurred_at: Utc::now(),
            correlation_id: correlation_id.into(),
            payload,
        }
    }

    /// Whether the envelope's header says it carries a `P` this build reads.
    pub fn matches_payload(&self) -> bool {
        self.message_type == P::TYPE && self.version == P::VERSION
    }
}

/// Produce the file of an export row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequested {
    pub export_id: Uuid,
    pub org_id: Uuid,
}

impl Job for ExportRequested {
    const TYPE: &'static str = "export.requested";
    const VERSION: u32 = 1;
}

/// Does nothing but travel: proves the path outbox -> broker -> worker ->
/// ack works end to end, and measures it (`make bench` scenario `jobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Free text for whoever sent it, e.g. a run id.
    pub note: String,
}

impl Job for Ping {
    const TYPE: &'static str = "maintenance.ping";
    const VERSION: u32 = 1;
}

/// Why a backup runs: its slot came, or someone asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupTrigger {
    Scheduled,
    Manual,
}

/// Dump the database to backup storage (`DB_BACKUP_CRON`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupDatabase {
    pub trigger: BackupTrigger,
}

impl Job for BackupDatabase {
    const TYPE: &'static str = "backup.database";
    const VERSION: u32 = 1;
}

/// Copy new media objects to backup storage (`MEDIA_BACKUP_CRON`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupMedia {
    pub trigger: BackupTrigger,
}

impl Job for BackupMedia {
    const TYPE: &'static str = "backup.media";
    const VERSION: u32 = 1;
}

/// Which backup run: a run id, or `latest` (the newest succeeded run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupRunRef {
    Latest,
    Id(Uuid),
}

impl std::str::FromStr for BackupRunRef {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        if raw == "latest" {
            return Ok(Self::Latest);
        }
        raw.parse().map(Self::Id).map_err(|_| format!("{raw:?} is neither a backup run id nor \"latest\""))
    }
}

impl std::fmt::Display for BackupRunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Id(id) => write!(f, "{id}"),
        }
    }
}

impl Serialize for BackupRunRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupRunRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// Restore a backup run into a scratch database and re-read its media, to
/// prove it can be restored (`POST /v1/backups/{id}/verify`, or by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupVerify {
    pub run: BackupRunRef,
}

impl Job for BackupVerify {
    const TYPE: &'static str = "backup.verify";
    const VERSION: u32 = 1;
}

/// Remove uploads that never finished: pending attachment rows and their
/// partial objects older than the worker's grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupUploads {}

impl Job for CleanupUploads {
    const TYPE: &'static str = "maintenance.cleanup_uploads";
    const VERSION: u32 = 1;
}

/// Delete the files of exports past their `expires_at` and mark them
/// `expired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireExports {}

impl Job for ExpireExports {
    const TYPE: &'static str = "maintenance.expire_exports";
    const VERSION: u32 = 1;
}

/// Compare media storage with the database both ways: objects no row
/// names (deleted past the grace period, or only reported when `dry_run`),
/// rows whose object is gone (marked `missing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileStorage {
    pub dry_run: bool,
}

impl Job for ReconcileStorage {
    const TYPE: &'static str = "maintenance.reconcile_storage";
    const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_run_is_named_by_id_or_latest() {
        let id = Uuid::new_v4();
        for (run, json) in
            [(BackupRunRef::Latest, "\"latest\"".to_owned()), (BackupRunRef::Id(id), format!("\"{id}\""))]
        {
            assert_eq!(serde_json::to_string(&run).unwrap(), json);
            assert_eq!(serde_json::from_str::<BackupRunRef>(&json).unwrap(), run);
        }
        assert!(serde_json::from_str::<BackupRunRef>("\"newest\"").is_err());
        assert!("Latest".parse::<BackupRunRef>().is_err());
    }

    #[test]
    fn the_envelope_names_its_payload_and_round_trips() {
        let envelope = Envelope::new(ExportRequested { export_id: Uuid::nil(), org_id: Uuid::nil() }, "req-1");
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["type"], "export.requested");
        assert_eq!(json["version"], 1);
        assert_eq!(json["payload"]["export_id"], Uuid::nil().to_string());
        let back: Envelope<ExportRequested> = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
        assert!(back.matches_payload());
    }

    #[test]
    fn another_type_or_version_does_not_match() {
        let mut envelope = Envelope::new(Ping { note: String::new() }, "c");
        envelope.version = 2;
        assert!(!envelope.matches_payload());
        envelope.version = 1;
        envelope.message_type = "maintenance.other".to_owned();
        assert!(!envelope.matches_payload());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let raw = serde_json::json!({"export_id": Uuid::nil(), "org_id": Uuid::nil(), "extra": 1});
        assert!(serde_json::from_value::<ExportRequested>(raw).is_err());
    }
}
