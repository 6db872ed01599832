//! `maintenance.ping`: no work, only the trip. Shows the whole path from
//! outbox to acknowledgement moves, and is what `make bench` (`jobs`) sends.

use stockflow_domain::{Envelope, Ping};
use stockflow_queue::{Handler, HandlerError};

pub(crate) struct PingHandler;

impl Handler<Ping> for PingHandler {
    async fn handle(&self, envelope: Envelope<Ping>) -> Result<(), HandlerError> {
        tracing::debug!(note = %envelope.payload.note, "ping");
        Ok(())
    }

    async fn give_up(&self, _envelope: &Envelope<Ping>, _reason: &str) -> Result<(), String> {
        Ok(())
    }
}
