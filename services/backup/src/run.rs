//! A whole run: lock, snapshot, dump, media, then verify. The row says at
//! every moment what is known: `running`, then `succeeded` (and
//! `verified_at`) or `failed` with the reason, its partial artifacts gone.

use crate::dump::{self, DumpCommand};
use crate::error::run_label;
use crate::manifest::ManifestWriter;
use crate::media::{self, MediaTotals};
use crate::session::Session;
use crate::verify::Verifier;
use crate::{BackupError, BackupSettings, tools};
use std::sync::Arc;
use stockflow_config::DatabaseSettings;
use stockflow_db::Database;
use stockflow_db::backup_runs::{self, BackupRun, DatabaseArtifact, MediaArtifact};
use stockflow_domain::BackupRunRef;
use stockflow_storage::{Key, Storage};
use uuid::Uuid;

/// Everything a run needs; cheap to clone.
#[derive(Clone)]
pub struct Backup {
    pub database: Database,
    pub database_settings: DatabaseSettings,
    pub media: Arc<dyn Storage>,
    pub backups: Arc<dyn Storage>,
    pub settings: BackupSettings,
}

impl Backup {
    /// Runs a whole backup. `Ok` with the row as it ended (succeeded or
    /// failed, or refused when another run held the lock); `Err` only when
    /// not even a row could be written.
    #[tracing::instrument(skip_all, fields(trigger), err)]
    pub async fn run(&self, trigger: &'static str) -> Result<BackupRun, BackupError> {
        let mut session = Session::open(&self.database_settings).await?;
        let locked = session.run(|conn| Ok(backup_runs::try_lock(conn)?)).await?;
        if !locked {
            let holder = self.holder(&mut session).await?;
            tracing::warn!(holder = %run_label(holder), "a backup run is in progress; this one is refused");
            return session.run(move |conn| Ok(backup_runs::refuse(conn, trigger, holder)?)).await;
        }
        let outcome = self.locked_run(&mut session, trigger).await;
        // Closing the session would release the lock too, once the server noticed.
        let _ = session.run(|conn| Ok(backup_runs::unlock(conn)?)).await;
        outcome
    }

    /// The run holding the lock. Its holder writes its row right after
    /// taking the lock, so a request that met the lock in between waits
    /// for the row a little rather than answer "unknown".
    async fn holder(&self, session: &mut Session) -> Result<Option<Uuid>, BackupError> {
        for _ in 0..50 {
            if let Some(id) = session.run(|conn| Ok(backup_runs::running(conn)?)).await? {
                return Ok(Some(id));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    async fn locked_run(&self, session: &mut Session, trigger: &'static str) -> Result<BackupRun, BackupError> {
        let run = session
            .run(move |conn| {
                backup_runs::abandon(conn)?;
                Ok(backup_runs::start(conn, trigger)?)
            })
            .await?;
        tracing::info!(run_id = %run.id, "backup run started");
        match self.take(session, run.id).await {
            Ok(()) => self.db(move |conn| backup_runs::succeed(conn, run.id)).await?,
            Err(error) => {
                tracing::error!(run_id = %run.id, %error, "backup run failed");
                // The snapshot transaction may still be open after a failure.
                let _ = session.run(dump::end_snapshot).await;
                self.remove_artifacts(run.id).await;
                let reason = error.to_string();
                self.db(move |conn| backup_runs::fail(conn, run.id, &reason)).await?;
                return self.get(run.id).await;
            }
        }
        if self.settings.verify_after_run {
            let row = self.get(run.id).await?;
            self.verify_locked(session, &row).await?;
        }
        self.get(run.id).await
    }

    /// Dump and media, in one snapshot.
    async fn take(&self, session: &mut Session, run_id: Uuid) -> Result<(), BackupError> {
        let server = session.run(tools::server_major).await?;
        tools::check_major(&self.settings.pg_dump, server).await?;
        tools::check_major(&self.settings.pg_restore, server).await?;
        let (snapshot, counts) = session
            .run(|conn| {
                let snapshot = dump::begin_snapshot(conn)?;
                media::declare_listing(conn)?;
                Ok((snapshot, dump::count_tables(conn)?))
            })
            .await?;
        let dump_key = dump_key(run_id)?;
        let command = DumpCommand {
            program: &self.settings.pg_dump,
            compress: self.settings.compress.0,
            database_url: self.database_settings.direct_url.expose(),
        };
        let stored = dump::dump(command, &snapshot, self.backups.as_ref(), &dump_key).await?;
        let artifact = DatabaseArtifact {
            key: dump_key.as_str().to_owned(),
            bytes: i64::try_from(stored.size).unwrap_or(i64::MAX),
            sha256: stored.sha256,
            table_counts: serde_json::to_value(&counts).map_err(|e| BackupError::Dump(e.to_string()))?,
        };
        self.db(move |conn| backup_runs::record_database(conn, run_id, &artifact)).await?;

        let manifest_key = manifest_key(run_id)?;
        let mut manifest = ManifestWriter::start(Arc::clone(&self.backups), manifest_key.clone(), run_id);
        let mut totals = MediaTotals::default();
        let copied = async {
            loop {
                let batch = session.run(media::fetch).await?;
                if batch.is_empty() {
                    return Ok::<_, BackupError>(());
                }
                media::copy_batch(batch, &self.media, &self.backups, &mut manifest, &mut totals).await?;
            }
        }
        .await;
        if let Err(error) = copied {
            manifest.abort().await;
            return Err(error);
        }
        manifest.finish().await?;
        session.run(dump::end_snapshot).await?;
        let key = manifest_key.as_str().to_owned();
        self.db(move |conn| {
            let artifact = MediaArtifact {
                manifest_key: &key,
                objects: totals.objects,
                bytes: totals.bytes,
                new_bytes: totals.new_bytes,
            };
            backup_runs::record_media(conn, run_id, artifact)
        })
        .await?;
        tracing::info!(%run_id, db_bytes = stored.size, media_objects = totals.objects, media_new_bytes = totals.new_bytes, "backup stored");
        Ok(())
    }

    /// Partial artifacts of a failed run. Media objects stay: they are
    /// content-addressed, checked on the way in, and other runs share them.
    async fn remove_artifacts(&self, run_id: Uuid) {
        for key in [dump_key(run_id), manifest_key(run_id)].into_iter().flatten() {
            if let Err(error) = self.backups.delete(&key).await {
                tracing::warn!(key = key.as_str(), %error, "cannot remove a partial backup artifact");
            }
        }
    }

    /// Verifies a run (by restore), marking it verified or failed. Takes the
    /// lock, so it never overlaps a run.
    #[tracing::instrument(skip_all, err)]
    pub async fn verify(&self, selector: BackupRunRef) -> Result<BackupRun, BackupError> {
        let run = self.find(selector).await?;
        let mut session = Session::open(&self.database_settings).await?;
        if !session.run(|conn| Ok(backup_runs::try_lock(conn)?)).await? {
            let holder = self.holder(&mut session).await?;
            return Err(BackupError::Busy(run_label(holder)));
        }
        let outcome = self.verify_locked(&mut session, &run).await;
        let _ = session.run(|conn| Ok(backup_runs::unlock(conn)?)).await;
        outcome?;
        self.get(run.id).await
    }

    async fn verify_locked(&self, session: &mut Session, run: &BackupRun) -> Result<(), BackupError> {
        if run.status != backup_runs::SUCCEEDED {
            return Err(BackupError::Verify(format!("run {} is {}, not succeeded", run.id, run.status)));
        }
        let verifier = Verifier { settings: &self.settings, database: &self.database_settings, backups: &self.backups };
        let id = run.id;
        match verifier.verify(session, run).await {
            Ok(()) => {
                self.db(move |conn| backup_runs::mark_verified(conn, id, "restore")).await?;
                tracing::info!(run_id = %id, "backup verified by restore");
            }
            Err(error) => {
                tracing::error!(run_id = %id, %error, "backup verification failed; the run is marked failed");
                let reason = error.to_string();
                self.db(move |conn| backup_runs::fail(conn, id, &reason)).await?;
            }
        }
        Ok(())
    }

    pub async fn list(&self, limit: i64) -> Result<Vec<BackupRun>, BackupError> {
        self.db(move |conn| backup_runs::list(conn, limit)).await
    }

    pub async fn get(&self, id: Uuid) -> Result<BackupRun, BackupError> {
        self.db(move |conn| backup_runs::get(conn, id)).await?.ok_or_else(|| BackupError::NotFound(id.to_string()))
    }

    async fn db<T, F>(&self, work: F) -> Result<T, BackupError>
    where
        F: FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.database.run(move |conn| work(conn).map_err(BackupError::Query)).await
    }
}

pub fn dump_key(run_id: Uuid) -> Result<Key, BackupError> {
    Key::parse(&format!("backups/{run_id}/database.dump")).map_err(|e| BackupError::Dump(e.to_string()))
}

pub fn manifest_key(run_id: Uuid) -> Result<Key, BackupError> {
    Key::parse(&format!("backups/{run_id}/media.json")).map_err(|e| BackupError::Media(e.to_string()))
}
