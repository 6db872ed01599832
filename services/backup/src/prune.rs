//! `stockflow-backup prune`: applies the retention plan. Forgotten runs lose
//! their dump and manifest, then their row; media objects go only when no
//! kept run's manifest names them. It holds the installation's backup lock
//! throughout: a run in progress copies objects before it writes the
//! manifest naming them, and a prune in between would take them away.
//!
//! Failed runs are forgotten with their artifacts, but their rows stay
//! while they are newer than the oldest kept run: they are the record of
//! what went wrong lately.

use crate::BackupError;
use crate::error::run_label;
use crate::manifest;
use crate::media::object_key;
use crate::retention::{self, KeepPolicy, Plan, RunState, RunSummary};
use crate::run::{Backup, dump_key, manifest_key};
use crate::session::Session;
use futures_util::TryStreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use stockflow_db::backup_runs::{self, BackupRun};
use stockflow_storage::{Key, Prefix};
use uuid::Uuid;

/// What a prune did, or would do with `--dry-run`.
#[derive(Debug, Clone)]
pub struct PruneReport {
    pub dry_run: bool,
    pub plan: Plan,
    /// Every run, newest first, as the plan saw them.
    pub runs: Vec<BackupRun>,
    /// Runs whose rows go (the others of `plan.forget` keep their row).
    pub rows_deleted: Vec<Uuid>,
    /// Media objects no kept manifest names.
    pub objects_deleted: Vec<String>,
    pub object_bytes_deleted: u64,
}

fn summary(run: &BackupRun) -> RunSummary {
    let state = match run.status.as_str() {
        backup_runs::SUCCEEDED => RunState::Succeeded { verified: run.verified_at.is_some() },
        backup_runs::RUNNING => RunState::Running,
        _ => RunState::Failed,
    };
    RunSummary { id: run.id, started_at: run.started_at, state }
}

impl Backup {
    #[tracing::instrument(skip_all, fields(dry_run), err)]
    pub async fn prune(&self, policy: KeepPolicy, dry_run: bool) -> Result<PruneReport, BackupError> {
        let mut session = Session::open(&self.database_settings).await?;
        if !session.run(|conn| Ok(backup_runs::try_lock(conn)?)).await? {
            let holder = session.run(|conn| Ok(backup_runs::running(conn)?)).await?;
            return Err(BackupError::Busy(run_label(holder)));
        }
        let outcome = self.prune_locked(&mut session, policy, dry_run).await;
        let _ = session.run(|conn| Ok(backup_runs::unlock(conn)?)).await;
        outcome
    }

    async fn prune_locked(
        &self,
        session: &mut Session,
        policy: KeepPolicy,
        dry_run: bool,
    ) -> Result<PruneReport, BackupError> {
        let runs = session.run(|conn| Ok(backup_runs::all(conn)?)).await?;
        let summaries: Vec<RunSummary> = runs.iter().map(summary).collect();
        let plan = retention::plan(&summaries, policy);

        // What the kept runs need. A kept manifest that cannot be read stops
        // the prune: deleting objects without knowing who needs them could
        // take a kept run's media.
        let mut referenced = HashSet::new();
        for run in runs.iter().filter(|run| plan.keeps(run.id)) {
            let Some(key) = &run.media_manifest_key else { continue };
            let key = Key::parse(key).map_err(|e| BackupError::Media(e.to_string()))?;
            let mut entries = manifest::read(Arc::clone(&self.backups), key);
            while let Some(entry) = entries.recv().await {
                let (_, entry) = entry?;
                referenced.insert(object_key(&entry.sha256)?.as_str().to_owned());
            }
        }
        let prefix = Prefix::parse("media/objects/").map_err(|e| BackupError::Media(e.to_string()))?;
        let stored: Vec<(String, u64)> =
            self.backups.list(&prefix).map_ok(|meta| (meta.key.as_str().to_owned(), meta.size)).try_collect().await?;
        let objects_deleted = retention::unreferenced(stored.iter().map(|(key, _)| key.as_str()), &referenced);
        let gone: HashSet<&str> = objects_deleted.iter().map(String::as_str).collect();
        let object_bytes_deleted =
            stored.iter().filter(|(key, _)| gone.contains(key.as_str())).map(|(_, size)| size).sum();

        let oldest_kept = runs.iter().filter(|run| plan.keeps(run.id)).map(|run| run.started_at).min();
        let rows_deleted: Vec<Uuid> = runs
            .iter()
            .filter(|run| plan.forget.contains(&run.id))
            .filter(|run| run.status != backup_runs::FAILED || oldest_kept.is_none_or(|oldest| run.started_at < oldest))
            .map(|run| run.id)
            .collect();

        if !dry_run {
            for id in &plan.forget {
                for key in [dump_key(*id)?, manifest_key(*id)?] {
                    self.backups.delete(&key).await?;
                }
            }
            for id in rows_deleted.clone() {
                session.run(move |conn| Ok(backup_runs::delete(conn, id)?)).await?;
            }
            for key in &objects_deleted {
                let key = Key::parse(key).map_err(|e| BackupError::Media(e.to_string()))?;
                self.backups.delete(&key).await?;
            }
            tracing::info!(
                runs_forgotten = plan.forget.len(),
                rows_deleted = rows_deleted.len(),
                objects_deleted = objects_deleted.len(),
                object_bytes_deleted,
                "backups pruned"
            );
        }
        Ok(PruneReport { dry_run, plan, runs, rows_deleted, objects_deleted, object_bytes_deleted })
    }
}

impl PruneReport {
    /// The plan as lines for the operator: each run, kept (and why) or not.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let verb = if self.dry_run { "would" } else { "did" };
        for run in &self.runs {
            let started = run.started_at.format("%Y-%m-%dT%H:%M:%SZ");
            let line = match self.plan.keep.iter().find(|kept| kept.id == run.id) {
                Some(kept) => {
                    let why: Vec<&str> = kept.reasons.iter().map(|reason| reason.as_str()).collect();
                    format!("keep    {}  {started}  {:<9}  {}", run.id, run.status, why.join(", "))
                }
                None if self.rows_deleted.contains(&run.id) => {
                    format!("forget  {}  {started}  {:<9}  artifacts and row", run.id, run.status)
                }
                None => {
                    format!("forget  {}  {started}  {:<9}  artifacts (row kept: a recent failure)", run.id, run.status)
                }
            };
            lines.push(line);
        }
        lines.push(format!(
            "{verb} forget {} run(s) and delete {} media object(s), {} bytes",
            self.plan.forget.len(),
            self.objects_deleted.len(),
            self.object_bytes_deleted
        ));
        lines
    }
}
