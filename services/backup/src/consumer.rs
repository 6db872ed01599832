//! `<ns>.backups`: backup.database, backup.media and backup.verify.
//!
//! backup.database and backup.media each run a whole run (dump, media,
//! verify): a dump without the media it references, or media without the
//! rows naming them, cannot be restored into a working installation, and
//! both share one snapshot only inside one run. The scheduler's two
//! schedules thus both take full runs; media copies are incremental, so the
//! second costs little more than the dump.
//!
//! A failed run is acked: its row records the failure, and retrying a
//! deterministic failure (a pg_dump of the wrong version) would only repeat
//! it. Only a database that cannot be reached is retried.

use crate::{BackupError, run::Backup};
use stockflow_domain::{BackupDatabase, BackupMedia, BackupTrigger, BackupVerify, Envelope};
use stockflow_queue::{Handler, HandlerError};

#[derive(Clone)]
pub(crate) struct RunHandler {
    pub backup: Backup,
    /// Metrics and alerts of every run and verify that ends.
    pub watch: std::sync::Arc<crate::watch::Watch>,
}

fn trigger(trigger: BackupTrigger) -> &'static str {
    match trigger {
        BackupTrigger::Scheduled => "scheduled",
        BackupTrigger::Manual => "manual",
    }
}

fn answer(outcome: Result<(), BackupError>) -> Result<(), HandlerError> {
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if error.is_unavailable() => Err(HandlerError::Retry(error.to_string())),
        Err(error) => Err(HandlerError::Fail(error.to_string())),
    }
}

impl RunHandler {
    async fn run(&self, trigger: &'static str) -> Result<(), HandlerError> {
        let started = std::time::Instant::now();
        let outcome = self.backup.run(trigger).await;
        if let Ok(run) = &outcome {
            tracing::info!(run_id = %run.id, status = %run.status, error = ?run.error, "backup run ended");
            self.watch.ended("run", run, started.elapsed()).await;
        }
        answer(outcome.map(|_| ()))
    }
}

impl Handler<BackupDatabase> for RunHandler {
    async fn handle(&self, envelope: Envelope<BackupDatabase>) -> Result<(), HandlerError> {
        self.run(trigger(envelope.payload.trigger)).await
    }

    async fn give_up(&self, _envelope: &Envelope<BackupDatabase>, _reason: &str) -> Result<(), String> {
        Ok(())
    }
}

impl Handler<BackupMedia> for RunHandler {
    async fn handle(&self, envelope: Envelope<BackupMedia>) -> Result<(), HandlerError> {
        self.run(trigger(envelope.payload.trigger)).await
    }

    async fn give_up(&self, _envelope: &Envelope<BackupMedia>, _reason: &str) -> Result<(), String> {
        Ok(())
    }
}

impl Handler<BackupVerify> for RunHandler {
    async fn handle(&self, envelope: Envelope<BackupVerify>) -> Result<(), HandlerError> {
        let started = std::time::Instant::now();
        let outcome = self.backup.verify(envelope.payload.run).await;
        if let Ok(run) = &outcome {
            tracing::info!(run_id = %run.id, status = %run.status, error = ?run.error, "backup verify ended");
            self.watch.ended("verify", run, started.elapsed()).await;
        }
        let outcome = outcome.map(|_| ());
        match outcome {
            // Verify waits for a run in progress rather than being lost.
            Err(BackupError::Busy(holder)) => {
                Err(HandlerError::Retry(format!("a backup run is in progress: {holder}")))
            }
            other => answer(other),
        }
    }

    async fn give_up(&self, _envelope: &Envelope<BackupVerify>, _reason: &str) -> Result<(), String> {
        Ok(())
    }
}
