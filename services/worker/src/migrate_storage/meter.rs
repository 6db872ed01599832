//! What `migrate-storage` shows while it runs, on the shared progress bars
//! (`stockflow_telemetry::progress`: indicatif on a terminal, log lines
//! otherwise). The listing counts the objects and bytes it finds. The copy
//! has two bars: bytes written to the target, and bytes read back and
//! verified, whose ETA is the run's; the second also counts the objects
//! settled.

use indicatif::BinaryBytes;
use std::sync::{Mutex, MutexGuard, PoisonError};
use stockflow_telemetry::progress::{Progress, Task, Unit};

pub(super) struct Meter {
    progress: Progress,
    phase: Mutex<Phase>,
}

enum Phase {
    Idle,
    Listing { found: Task, bytes: u64 },
    Copying { written: Task, verified: Task, settled: u64, objects: u64 },
}

impl Meter {
    /// Starts with the listing.
    pub(super) fn start() -> Self {
        let progress = Progress::new();
        let found = progress.task("listing the source", Unit::Items("objects"), None);
        Self { progress, phase: Mutex::new(Phase::Listing { found, bytes: 0 }) }
    }

    pub(super) fn listed(&self, objects: u64, more_bytes: u64) {
        if let Phase::Listing { found, bytes } = &mut *self.phase() {
            *bytes += more_bytes;
            found.inc(objects);
            found.set_message(BinaryBytes(*bytes).to_string());
        }
    }

    /// Starts the copy of `objects` objects, `bytes` bytes in all.
    pub(super) fn copying(&self, objects: u64, bytes: u64) {
        self.end_phase();
        let written = self.progress.task("copying", Unit::Bytes, Some(bytes));
        let verified = self.progress.task("verifying", Unit::Bytes, Some(bytes));
        verified.set_message(format!("0/{objects} objects"));
        *self.phase() = Phase::Copying { written, verified, settled: 0, objects };
    }

    /// Counters for the bytes of one object as they stream: written to the
    /// target, then read back. A copy that fails halfway stays counted in
    /// part: the bars show work done, the summary what was copied.
    pub(super) fn byte_counters(&self) -> (Counter, Counter) {
        match &*self.phase() {
            Phase::Copying { written, verified, .. } => (Box::new(written.counter()), Box::new(verified.counter())),
            Phase::Idle | Phase::Listing { .. } => (Box::new(|_| {}), Box::new(|_| {})),
        }
    }

    /// One more object settled.
    pub(super) fn done(&self) {
        if let Phase::Copying { verified, settled, objects, .. } = &mut *self.phase() {
            *settled += 1;
            verified.set_message(format!("{settled}/{objects} objects"));
        }
    }

    /// Runs `log` with the bars out of the way.
    pub(super) fn suspend<T>(&self, log: impl FnOnce() -> T) -> T {
        self.progress.suspend(log)
    }

    /// Leaves the current phase's final figures (on the terminal, or as a
    /// last log line), so what is logged next starts on a line of its own.
    pub(super) fn end_phase(&self) {
        match std::mem::replace(&mut *self.phase(), Phase::Idle) {
            Phase::Idle => {}
            Phase::Listing { found, .. } => found.finish(),
            Phase::Copying { written, verified, .. } => {
                written.finish();
                verified.finish();
            }
        }
    }

    pub(super) fn finish(&self) {
        self.end_phase();
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) type Counter = Box<dyn Fn(u64) + Send + Sync + 'static>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bars_follow_the_phases() {
        let meter = Meter::start();
        meter.listed(2, 3 * 1024);
        meter.listed(1, 1024);
        match &*meter.phase() {
            Phase::Listing { found, bytes } => assert_eq!((found.position(), *bytes), (3, 4 * 1024)),
            _ => panic!("listing first"),
        }
        meter.copying(3, 4 * 1024);
        let (written, verified) = meter.byte_counters();
        written(1024);
        verified(512);
        meter.done();
        match &*meter.phase() {
            Phase::Copying { written, verified, settled, objects } => {
                assert_eq!((written.position(), verified.position(), *settled, *objects), (1024, 512, 1, 3));
            }
            _ => panic!("copying next"),
        }
        meter.finish();
        assert!(matches!(&*meter.phase(), Phase::Idle));
    }
}
