//! The threads that run database work: one per pooled connection, fed in
//! arrival order from one queue.
//!
//! `spawn_blocking` was the first design. Under api-list's load it grew
//! each HTTP worker's blocking pool to about 40 threads for 10 connections
//! (a thread that just finished is not yet idle when the next job comes, so
//! tokio starts another), every hand-off risked a thread start, and r2d2's
//! wait for a connection let newcomers barge ahead of waiting threads,
//! which put the p99 above 100 ms. With as many threads as connections, a
//! job never waits for a connection, only for its turn.

//!
//! The queue is bounded: when `limit` jobs already wait, the next is refused
//! at once (the api answers 503 with Retry-After) rather than queued behind
//! work that may take seconds to drain. A flood of requests with bad tokens
//! once queued a lookup each and delayed every real request, even after it
//! stopped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Starts `count` threads taking jobs from the returned queue, which holds
/// at most `limit` waiting jobs; the threads end when every clone of the
/// queue is dropped.
pub(crate) fn start(count: u32, limit: u32) -> mpsc::SyncSender<Job> {
    let (queue, jobs) = mpsc::sync_channel::<Job>(usize::try_from(limit).unwrap_or(usize::MAX));
    let jobs = Arc::new(Mutex::new(jobs));
    for index in 0..count {
        let jobs = Arc::clone(&jobs);
        let started = std::thread::Builder::new().name(format!("db-{index}")).spawn(move || serve(&jobs));
        if let Err(error) = started {
            // Fewer threads only means fewer connections in use at once.
            tracing::error!(%error, "cannot start a database thread");
        }
    }
    queue
}

fn serve(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting: the thread that holds it
        // takes the next job, the others queue for the lock.
        let next = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panicking job drops its answer channel, which its caller sees as
        // an error; the thread lives on for the next job.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("database work panicked");
        }
    }
}
