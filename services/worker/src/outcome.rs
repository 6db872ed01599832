//! Tells the schedule that sent a job how it ended: the run in
//! `schedule_runs` becomes `succeeded` once the job's handler is done, or
//! `failed` when the job is given up on. A job no schedule sent changes
//! nothing, so every handler is wrapped alike.

use stockflow_db::Database;
use stockflow_db::schedule_runs;
use stockflow_domain::{Envelope, Job, RunOutcome};
use stockflow_queue::{Handler, HandlerError};
use uuid::Uuid;

pub(crate) struct Reported<H> {
    handler: H,
    database: Database,
    /// What of a give-up reason the run may show: an organization reads
    /// its schedules' runs, and must not see what operators alone may.
    detail: fn(&str) -> String,
}

impl<H> Reported<H> {
    pub(crate) fn new(handler: H, database: Database, detail: fn(&str) -> String) -> Self {
        Self { handler, database, detail }
    }

    async fn record(&self, job: Uuid, outcome: RunOutcome, detail: Option<String>) -> Result<(), String> {
        let recorded = self
            .database
            .run(move |conn| {
                Ok::<_, stockflow_db::DbError>(schedule_runs::record_outcome(conn, job, outcome, detail.as_deref())?)
            })
            .await
            .map_err(|error| format!("cannot record the job's outcome: {error}"))?;
        if recorded {
            tracing::info!(%job, outcome = outcome.as_str(), "outcome recorded on the schedule's run");
        }
        Ok(())
    }
}

/// The whole reason: for system schedules, which only operators read.
pub(crate) fn whole(reason: &str) -> String {
    reason.to_owned()
}

impl<J: Job, H: Handler<J>> Handler<J> for Reported<H> {
    async fn handle(&self, envelope: Envelope<J>) -> Result<(), HandlerError> {
        let job = envelope.id;
        self.handler.handle(envelope).await?;
        // Not recorded: the job runs again (it is idempotent) and records then.
        self.record(job, RunOutcome::Succeeded, None).await.map_err(HandlerError::Retry)
    }

    async fn give_up(&self, envelope: &Envelope<J>, reason: &str) -> Result<(), String> {
        self.handler.give_up(envelope, reason).await?;
        self.record(envelope.id, RunOutcome::Failed, Some((self.detail)(reason))).await
    }
}
