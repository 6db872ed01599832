//! What a long copy shows while it runs. On a terminal: one line on stderr,
//! redrawn in place, with counts, rate and ETA. Otherwise (a log file, a
//! container): the same as a log line every few seconds.
//!
//! No progress-bar crate: this is one line of text, and owning it lets a log
//! line in the middle of a run clear it first instead of landing on its end.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::Instrument;

const REDRAW_EVERY: Duration = Duration::from_millis(250);
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Erases the terminal's current line and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

pub(super) struct Meter {
    state: Arc<Mutex<State>>,
    terminal: bool,
    ticker: JoinHandle<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Listing,
    /// With what is left to copy: objects and bytes.
    Copying {
        objects: u64,
        bytes: u64,
    },
}

struct State {
    phase: Phase,
    since: Instant,
    objects: u64,
    /// While copying, each byte is counted twice (written, then verified).
    bytes: u64,
    /// A progress line is on the terminal and no newline has ended it.
    drawn: bool,
}

impl Meter {
    pub(super) fn start() -> Self {
        let terminal = std::io::stderr().is_terminal();
        let state = Arc::new(Mutex::new(State {
            phase: Phase::Listing,
            since: Instant::now(),
            objects: 0,
            bytes: 0,
            drawn: false,
        }));
        let ticker = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                let mut interval = tokio::time::interval(if terminal { REDRAW_EVERY } else { LOG_EVERY });
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    let mut state = lock(&state);
                    if terminal {
                        state.draw();
                    } else {
                        state.log();
                    }
                }
            }
            // Log lines carry the command's span, like the rest of its logs.
            .instrument(tracing::Span::current())
        });
        Self { state, terminal, ticker }
    }

    pub(super) fn listed(&self, objects: u64, bytes: u64) {
        let mut state = lock(&self.state);
        state.objects += objects;
        state.bytes += bytes;
    }

    pub(super) fn copying(&self, objects: u64, bytes: u64) {
        let mut state = lock(&self.state);
        state.phase = Phase::Copying { objects, bytes };
        state.since = Instant::now();
        (state.objects, state.bytes) = (0, 0);
    }

    /// Counts bytes as they stream, so one large object moves the line
    /// while it copies. Call it for each byte twice, as it is written and
    /// as it is read back: verifying takes as long as copying, and the ETA
    /// must include it. A copy that fails halfway stays counted in part:
    /// the line shows work done, the summary what was copied.
    pub(super) fn byte_counter(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let state = Arc::clone(&self.state);
        move |bytes| lock(&state).bytes += bytes
    }

    /// One more object settled.
    pub(super) fn done(&self) {
        lock(&self.state).objects += 1;
    }

    /// Runs `log` with the progress line out of the way; the next tick
    /// draws it again.
    pub(super) fn suspend<T>(&self, log: impl FnOnce() -> T) -> T {
        let mut state = lock(&self.state);
        if state.drawn {
            eprint!("{CLEAR_LINE}");
            state.drawn = false;
        }
        log()
    }

    /// Leaves the current phase's final line on the terminal, so what is
    /// logged next starts on a line of its own.
    pub(super) fn end_phase(&self) {
        let mut state = lock(&self.state);
        if self.terminal && state.phase != Phase::Idle {
            state.draw();
            eprintln!();
            state.drawn = false;
        }
        state.phase = Phase::Idle;
    }

    pub(super) fn finish(&self) {
        self.ticker.abort();
        self.end_phase();
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn line(&self) -> Option<String> {
        let bytes = match self.phase {
            Phase::Copying { .. } => self.bytes / 2,
            Phase::Idle | Phase::Listing => self.bytes,
        };
        render(self.phase, self.objects, bytes, self.since.elapsed())
    }

    fn draw(&mut self) {
        let Some(line) = self.line() else { return };
        let mut stderr = std::io::stderr().lock();
        // Progress is a courtesy: a terminal that cannot take it must not
        // stop the copy.
        let _ = write!(stderr, "{CLEAR_LINE}{line}").and_then(|()| stderr.flush());
        self.drawn = true;
    }

    fn log(&self) {
        if let Some(line) = self.line() {
            tracing::info!(objects = self.objects, "{line}");
        }
    }
}

/// The progress line of a phase; `None` when idle.
fn render(phase: Phase, objects: u64, bytes: u64, elapsed: Duration) -> Option<String> {
    match phase {
        Phase::Idle => None,
        Phase::Listing => Some(format!("listing the source: {objects} objects, {}", human_bytes(bytes))),
        Phase::Copying { objects: total_objects, bytes: total_bytes } => {
            let seconds = elapsed.as_secs_f64();
            let rate = if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 };
            let eta = eta((objects, total_objects), (bytes, total_bytes), elapsed)
                .map_or_else(|| "--".to_owned(), human_duration);
            Some(format!(
                "copying: {objects}/{total_objects} objects, {}/{}, {}/s, ETA {eta}",
                human_bytes(bytes),
                human_bytes(total_bytes),
                human_bytes(rate as u64),
            ))
        }
    }
}

/// Time left at the rate so far, by bytes (objects when there are no bytes
/// to go by); unknown until there is a second of history to judge from.
fn eta((objects, total_objects): (u64, u64), (bytes, total_bytes): (u64, u64), elapsed: Duration) -> Option<Duration> {
    if elapsed < Duration::from_secs(1) {
        return None;
    }
    let (done, total) = if total_bytes > 0 { (bytes, total_bytes) } else { (objects, total_objects) };
    if done == 0 {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    Some(elapsed.mul_f64(left / done as f64))
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds / 60 % 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_copy_line_shows_counts_rate_and_eta() {
        let phase = Phase::Copying { objects: 100, bytes: 400 * MIB };
        let line = render(phase, 25, 100 * MIB, Duration::from_secs(10)).unwrap();
        assert_eq!(line, "copying: 25/100 objects, 100.0 MiB/400.0 MiB, 10.0 MiB/s, ETA 30s");
    }

    #[test]
    fn the_eta_waits_for_a_rate_to_judge_from() {
        let phase = Phase::Copying { objects: 10, bytes: MIB };
        assert!(render(phase, 0, 0, Duration::from_secs(5)).unwrap().ends_with("ETA --"));
        assert!(render(phase, 1, 1024, Duration::from_millis(500)).unwrap().ends_with("ETA --"));
        // Only empty objects: judged by count.
        let empty = eta((2, 10), (0, 0), Duration::from_secs(4));
        assert_eq!(empty, Some(Duration::from_secs(16)));
    }

    #[test]
    fn listing_shows_what_it_found_so_far() {
        assert_eq!(
            render(Phase::Listing, 1500, 3 * 1024 * MIB, Duration::ZERO).unwrap(),
            "listing the source: 1500 objects, 3.0 GiB"
        );
        assert_eq!(render(Phase::Idle, 1, 1, Duration::ZERO), None);
    }

    #[test]
    fn sizes_and_durations_read_like_a_person_would_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * MIB), "5.0 TiB");
        assert_eq!(human_duration(Duration::from_secs(7)), "7s");
        assert_eq!(human_duration(Duration::from_secs(151)), "2m31s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 5 * 60 + 9)), "3h05m");
    }
}
