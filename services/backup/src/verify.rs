//! Verify by restore: the dump goes into a scratch database through
//! pg_restore's stdin (hashed on the way), every table's count must equal
//! the snapshot's, and every manifest object is re-read and re-hashed.
//! The scratch database is dropped whatever happened.

use crate::dump::{TableCounts, count_tables};
use crate::manifest;
use crate::media::{hex, object_key};
use crate::session::Session;
use crate::tools::{ClientTarget, collect_stderr};
use crate::{BackupError, BackupSettings};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::process::Stdio;
use std::sync::Arc;
use stockflow_config::DatabaseSettings;
use stockflow_db::backup_runs::BackupRun;
use stockflow_storage::{Key, Storage};
use tokio::io::AsyncWriteExt;

pub(crate) struct Verifier<'a> {
    pub settings: &'a BackupSettings,
    pub database: &'a DatabaseSettings,
    pub backups: &'a Arc<dyn Storage>,
}

impl Verifier<'_> {
    #[tracing::instrument(skip_all, fields(run_id = %run.id), err)]
    pub(crate) async fn verify(&self, session: &mut Session, run: &BackupRun) -> Result<(), BackupError> {
        let scratch = format!("stockflow_verify_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let create = format!("CREATE DATABASE \"{scratch}\" TEMPLATE template0");
        session.run(move |conn| Ok(diesel::RunQueryDsl::execute(diesel::sql_query(create), conn)?)).await?;
        let outcome = self.restore_and_compare(&scratch, run).await;
        let drop = format!("DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)");
        let dropped = session.run(move |conn| Ok(diesel::RunQueryDsl::execute(diesel::sql_query(drop), conn)?)).await;
        outcome?;
        dropped?;
        self.check_media(run).await
    }

    async fn restore_and_compare(&self, scratch: &str, run: &BackupRun) -> Result<(), BackupError> {
        let (Some(key), Some(sha), Some(counts)) = (&run.db_key, &run.db_sha256, &run.table_counts) else {
            return Err(BackupError::Verify("the run recorded no database dump".to_owned()));
        };
        let expected: TableCounts = serde_json::from_value(counts.clone())
            .map_err(|e| BackupError::Verify(format!("unreadable table_counts: {e}")))?;
        let mut url = url::Url::parse(self.database.direct_url.expose())
            .map_err(|e| BackupError::Verify(format!("DATABASE_DIRECT_URL is not a URL: {e}")))?;
        url.set_path(&format!("/{scratch}"));
        pg_restore(self.settings, self.backups.as_ref(), key, sha, url.as_str(), &[], &|_| {}).await?;
        let mut scratch_settings = self.database.clone();
        scratch_settings.direct_url =
            <stockflow_config::DatabaseUrl as stockflow_config::FromEnvValue>::from_env_value(url.as_str())
                .ok_or_else(|| BackupError::Verify("bad scratch database URL".to_owned()))?;
        scratch_settings.url = scratch_settings.direct_url.clone();
        let mut session = Session::open(&scratch_settings).await?;
        let restored = session.run(count_tables).await?;
        compare_counts(&expected, &restored)
    }

    async fn check_media(&self, run: &BackupRun) -> Result<(), BackupError> {
        let Some(key) = &run.media_manifest_key else {
            return Err(BackupError::Verify("the run recorded no media manifest".to_owned()));
        };
        let key = Key::parse(key).map_err(|e| BackupError::Verify(e.to_string()))?;
        let mut entries = manifest::read(Arc::clone(self.backups), key);
        while let Some(entry) = entries.recv().await {
            let (media_key, entry) = entry?;
            let object = object_key(&entry.sha256)?;
            let mut body = match self.backups.get(&object, None).await {
                Ok(found) => found.body,
                Err(stockflow_storage::StorageError::NotFound(_)) => {
                    return Err(BackupError::Verify(format!("media object of {media_key} is missing")));
                }
                Err(other) => return Err(other.into()),
            };
            let mut hasher = Sha256::new();
            while let Some(chunk) = body.next().await {
                hasher.update(&chunk.map_err(|e| BackupError::Verify(format!("reading {media_key}: {e}")))?);
            }
            if hex(&hasher.finalize()) != entry.sha256 {
                return Err(BackupError::Verify(format!("media object of {media_key} does not match its sha256")));
            }
        }
        Ok(())
    }
}

/// Streams the dump at `key` into pg_restore on `target_url`, hashing it on
/// the way; a dump whose sha256 is not `sha` is reported as such, even when
/// pg_restore also failed on it.
pub(crate) async fn pg_restore(
    settings: &BackupSettings,
    backups: &dyn Storage,
    key: &str,
    sha: &[u8],
    target_url: &str,
    extra: &[&str],
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), BackupError> {
    let key = Key::parse(key).map_err(|e| BackupError::Verify(e.to_string()))?;
    let mut body = backups.get(&key, None).await?.body;
    let program = &settings.pg_restore;
    let mut command = tokio::process::Command::new(program);
    ClientTarget::new(target_url).apply(&mut command);
    let mut child = command
        .args(["--no-owner", "--exit-on-error", "--no-password"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| BackupError::Tool(format!("cannot run {program}: {error}")))?;
    let stderr = collect_stderr(child.stderr.take());
    let mut stdin = child.stdin.take();
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BackupError::Verify(format!("reading the dump: {e}")))?;
        hasher.update(&chunk);
        on_bytes(chunk.len() as u64);
        // A pg_restore that stopped early still lets the hash finish,
        // so a corrupt dump is reported as such, not as its symptom.
        if let Some(pipe) = stdin.as_mut()
            && pipe.write_all(&chunk).await.is_err()
        {
            stdin = None;
        }
    }
    drop(stdin);
    let status = child.wait().await.map_err(|e| BackupError::Verify(e.to_string()))?;
    let stderr = stderr.await.unwrap_or_default();
    let read = hasher.finalize();
    if read.as_slice() != sha {
        return Err(BackupError::Verify(format!("the dump's sha256 is {} but {} was recorded", hex(&read), hex(sha))));
    }
    if !status.success() {
        return Err(BackupError::Verify(format!("pg_restore {status}: {stderr}")));
    }
    Ok(())
}

fn compare_counts(expected: &TableCounts, restored: &TableCounts) -> Result<(), BackupError> {
    let differences: Vec<String> = expected
        .keys()
        .chain(restored.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|table| {
            let (want, got) = (expected.get(table), restored.get(table));
            (want != got).then(|| format!("{table}: {want:?} in the snapshot, {got:?} restored"))
        })
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(BackupError::Verify(format!("row counts differ: {}", differences.join("; "))))
}
