//! `stockflow-backup restore`: a run's dump into a database (the service's
//! own, or `--target-database-url`), optionally its media back into media
//! storage, every checksum checked before the bytes are used, and a
//! row-count comparison with the snapshot at the end. Each long step shows
//! its progress: bars on a terminal, a log line every few seconds
//! otherwise.

use crate::dump::{TableCounts, count_tables};
use crate::manifest;
use crate::media::{hex, object_key};
use crate::session::Session;
use crate::verify::pg_restore;
use crate::{Backup, BackupError, tools};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use stockflow_db::backup_runs::{self, BackupRun};
use stockflow_domain::BackupRunRef;
use stockflow_storage::{Key, PutMode};
use stockflow_telemetry::progress::{Progress, Unit};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore into this database instead of `DATABASE_URL`'s.
    pub target_database_url: Option<String>,
    /// Copy the run's media objects back into media storage.
    pub media: bool,
    /// Restore over existing tables (pg_restore `--clean --if-exists`)
    /// instead of refusing a target that is not empty.
    pub force_clean: bool,
}

/// One table's rows: in the snapshot, and in the target after the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub table: String,
    pub snapshot: Option<i64>,
    pub restored: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub run: BackupRun,
    pub tables: Vec<TableRows>,
    /// Media objects written back, and those already in place.
    pub media_copied: u64,
    pub media_present: u64,
}

impl RestoreReport {
    pub fn counts_match(&self) -> bool {
        self.tables.iter().all(|row| row.snapshot == row.restored)
    }
}

impl Backup {
    #[tracing::instrument(skip_all, fields(%selector, media = options.media, force_clean = options.force_clean), err)]
    pub async fn restore(
        &self,
        selector: BackupRunRef,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, BackupError> {
        let run = self.find(selector).await?;
        if run.status != backup_runs::SUCCEEDED {
            return Err(BackupError::Restore(format!(
                "run {} is {}: only a succeeded run restores",
                run.id, run.status
            )));
        }
        let (Some(key), Some(sha), Some(counts)) = (&run.db_key, &run.db_sha256, &run.table_counts) else {
            return Err(BackupError::Restore("the run recorded no database dump".to_owned()));
        };
        let expected: TableCounts = serde_json::from_value(counts.clone())
            .map_err(|e| BackupError::Restore(format!("unreadable table_counts: {e}")))?;
        let mut target = self.database_settings.clone();
        if let Some(url) = &options.target_database_url {
            target.direct_url = <stockflow_config::DatabaseUrl as stockflow_config::FromEnvValue>::from_env_value(url)
                .ok_or_else(|| BackupError::Restore("--target-database-url is not a PostgreSQL URL".to_owned()))?;
            target.url = target.direct_url.clone();
        }

        // Preflight: tools, an empty target, and a dump that is what was stored.
        let mut session = Session::open(&target).await?;
        let server = session.run(tools::server_major).await?;
        tools::check_major(&self.settings.pg_restore, server).await?;
        let tables = session.run(|conn| Ok(public_tables(conn)?)).await?;
        if tables > 0 && !options.force_clean {
            return Err(BackupError::Restore(format!(
                "the target database has {tables} tables: restore into an empty database, or pass --force-clean"
            )));
        }
        let progress = Progress::new();
        let dump_bytes = run.db_bytes.and_then(|bytes| u64::try_from(bytes).ok());
        let checking = progress.task("checking the dump", Unit::Bytes, dump_bytes);
        if options.media {
            self.check_media_space(&run).await?;
        }
        self.check_dump(key, sha, &checking.counter()).await?;
        checking.finish();
        progress.suspend(|| tracing::info!(run_id = %run.id, "dump checked; restoring"));

        let extra: &[&str] = if options.force_clean { &["--clean", "--if-exists"] } else { &[] };
        let restoring = progress.task("restoring the dump", Unit::Bytes, dump_bytes);
        pg_restore(
            &self.settings,
            self.backups.as_ref(),
            key,
            sha,
            target.direct_url.expose(),
            extra,
            &restoring.counter(),
        )
        .await?;
        restoring.finish();
        let restored = session.run(count_tables).await?;
        let mut names: Vec<&String> = expected.keys().chain(restored.keys()).collect();
        names.sort();
        names.dedup();
        let tables = names
            .into_iter()
            .map(|table| TableRows {
                table: table.clone(),
                snapshot: expected.get(table).copied(),
                restored: restored.get(table).copied(),
            })
            .collect();
        let mut report = RestoreReport { run, tables, media_copied: 0, media_present: 0 };
        if options.media {
            let objects = report.run.media_objects.and_then(|n| u64::try_from(n).ok());
            let media = progress.task("restoring media", Unit::Items("objects"), objects);
            self.restore_media(&mut report, &media.counter()).await?;
            media.finish();
        }
        Ok(report)
    }

    /// The run a selector names; `latest` is the newest succeeded run.
    pub(crate) async fn find(&self, selector: BackupRunRef) -> Result<BackupRun, BackupError> {
        self.database
            .run(move |conn| {
                match selector {
                    BackupRunRef::Latest => backup_runs::latest_succeeded(conn),
                    BackupRunRef::Id(id) => backup_runs::get(conn, id),
                }
                .map_err(BackupError::Query)
            })
            .await?
            .ok_or_else(|| BackupError::NotFound(selector.to_string()))
    }

    /// Media storage must have room for the run's media, where it can
    /// tell (a local disk; a bucket cannot). Counts every object, even those
    /// already in place: an estimate on the safe side. The target
    /// database's disk is the server's, out of sight from here.
    async fn check_media_space(&self, run: &BackupRun) -> Result<(), BackupError> {
        let needed = run.media_bytes.and_then(|bytes| u64::try_from(bytes).ok()).unwrap_or(0);
        match self.media.available_bytes().await? {
            Some(free) if free < needed => Err(BackupError::Restore(format!(
                "media storage has {free} bytes free and the run's media take {needed}; nothing was restored"
            ))),
            _ => Ok(()),
        }
    }

    /// Reads the whole dump once before anything is written to the target.
    async fn check_dump(&self, key: &str, sha: &[u8], on_bytes: &(dyn Fn(u64) + Sync)) -> Result<(), BackupError> {
        let key = Key::parse(key).map_err(|e| BackupError::Restore(e.to_string()))?;
        let mut body = self.backups.get(&key, None).await?.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BackupError::Restore(format!("reading the dump: {e}")))?;
            on_bytes(chunk.len() as u64);
            hasher.update(&chunk);
        }
        let read = hasher.finalize();
        if read.as_slice() != sha {
            return Err(BackupError::Restore(format!(
                "the dump's sha256 is {} but {} was recorded; nothing was restored",
                hex(&read),
                hex(sha)
            )));
        }
        Ok(())
    }

    async fn restore_media(
        &self,
        report: &mut RestoreReport,
        on_object: &(dyn Fn(u64) + Sync),
    ) -> Result<(), BackupError> {
        let Some(key) = &report.run.media_manifest_key else {
            return Err(BackupError::Restore("the run recorded no media manifest".to_owned()));
        };
        let key = Key::parse(key).map_err(|e| BackupError::Restore(e.to_string()))?;
        let mut entries = manifest::read(Arc::clone(&self.backups), key);
        while let Some(entry) = entries.recv().await {
            let (media_key, entry) = entry?;
            on_object(1);
            let target = Key::parse(&media_key).map_err(|e| BackupError::Restore(e.to_string()))?;
            if self.media.head(&target).await?.is_some_and(|meta| meta.size == entry.size) {
                report.media_present += 1;
                continue;
            }
            let object = self.backups.get(&object_key(&entry.sha256)?, None).await?;
            let stored = self.media.put(&target, object.body, PutMode::Overwrite).await?;
            if hex(&stored.sha256) != entry.sha256 {
                self.media.delete(&target).await?;
                return Err(BackupError::Restore(format!("media object of {media_key} does not match its sha256")));
            }
            report.media_copied += 1;
        }
        Ok(())
    }
}

/// Tables of the public schema, to tell an empty target from a used one.
fn public_tables(conn: &mut PgConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
    )
    .get_result(conn)?;
    Ok(count.n)
}
