//! What a long command shows while it runs (copying media between stores,
//! reconciling storage, restoring a backup). On a terminal: indicatif's
//! bars on stderr, redrawn in place. Elsewhere (a log file, a container):
//! the same figures as a log line every few seconds, from bars drawn to
//! indicatif's hidden target. Log lines in the middle of a run go through
//! [`Progress::suspend`], which takes the bars out of the way first.

use indicatif::{
    BinaryBytes, HumanCount, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};
use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::Instrument;

const LOG_EVERY: Duration = Duration::from_secs(5);

/// The bars of one command.
pub struct Progress {
    bars: MultiProgress,
    terminal: bool,
}

/// What a task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Things, named in the plural: "objects", "rows".
    Items(&'static str),
}

/// One bar: a count towards a total, or a count alone while the total is
/// not known yet (a listing).
pub struct Task {
    bar: ProgressBar,
    unit: Unit,
    logger: Option<JoinHandle<()>>,
}

impl Progress {
    /// Bars on stderr when it is a terminal; log lines otherwise.
    pub fn new() -> Self {
        Self::to(std::io::stderr().is_terminal())
    }

    fn to(terminal: bool) -> Self {
        let target = if terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Self { bars: MultiProgress::with_draw_target(target), terminal }
    }

    /// A new bar named `what` ("copying"), counting `unit` towards `total`
    /// when known. Off a terminal, its line is logged every few seconds
    /// (in the caller's span) until it is finished.
    pub fn task(&self, what: &'static str, unit: Unit, total: Option<u64>) -> Task {
        let bar = self.bars.add(ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden()));
        bar.set_style(style(unit, total.is_some()));
        bar.set_prefix(what);
        let logger = (!self.terminal).then(|| {
            let bar = bar.clone();
            tokio::spawn(
                async move {
                    let mut every = tokio::time::interval(LOG_EVERY);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    every.tick().await;
                    loop {
                        every.tick().await;
                        tracing::info!("{}", line(&bar, unit));
                    }
                }
                .instrument(tracing::Span::current()),
            )
        });
        if self.terminal {
            bar.enable_steady_tick(Duration::from_millis(250));
        }
        Task { bar, unit, logger }
    }

    /// Runs `log` with the bars out of the way; they are drawn again after.
    pub fn suspend<T>(&self, log: impl FnOnce() -> T) -> T {
        self.bars.suspend(log)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Task {
    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    /// A counter to hand to code that streams: each call adds its argument.
    pub fn counter(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let bar = self.bar.clone();
        move |delta| bar.inc(delta)
    }

    /// A note after the figures, e.g. "12/40 objects".
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Leaves the task's last figures: on the terminal as its final line,
    /// otherwise as one more log line.
    pub fn finish(&self) {
        if let Some(logger) = &self.logger {
            logger.abort();
            tracing::info!("{}", line(&self.bar, self.unit));
        }
        self.bar.finish();
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(logger) = &self.logger {
            logger.abort();
        }
    }
}

fn style(unit: Unit, bounded: bool) -> ProgressStyle {
    // The templates are fixed (a test parses each); a default bar beats none.
    ProgressStyle::with_template(&template(unit, bounded)).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn template(unit: Unit, bounded: bool) -> Cow<'static, str> {
    match (unit, bounded) {
        (Unit::Bytes, true) => {
            "{prefix} [{wide_bar}] {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, ETA {eta} {msg}".into()
        }
        (Unit::Bytes, false) => "{spinner} {prefix}: {binary_bytes} {msg}".into(),
        (Unit::Items(name), true) => {
            format!("{{prefix}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {name}, {{per_sec}}, ETA {{eta}} {{msg}}")
                .into()
        }
        (Unit::Items(name), false) => format!("{{spinner}} {{prefix}}: {{human_pos}} {name} {{msg}}").into(),
    }
}

/// A task's figures as one log line.
fn line(bar: &ProgressBar, unit: Unit) -> String {
    let count = |n: u64| match unit {
        Unit::Bytes => BinaryBytes(n).to_string(),
        Unit::Items(_) => HumanCount(n).to_string(),
    };
    let name = match unit {
        Unit::Bytes => "",
        Unit::Items(name) => name,
    };
    let mut line = format!("{}: {}", bar.prefix(), count(bar.position()));
    if let Some(total) = bar.length() {
        let rate = bar.per_sec() as u64;
        line.push_str(&format!("/{} {name}, {}/s, ETA {}", count(total), count(rate), HumanDuration(bar.eta())));
    } else if !name.is_empty() {
        line.push_str(&format!(" {name}"));
    }
    let message = bar.message();
    if !message.is_empty() {
        line.push_str(&format!(", {message}"));
    }
    line.replace("  ", " ").replace(" ,", ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for unit in [Unit::Bytes, Unit::Items("objects")] {
            for bounded in [true, false] {
                let template = template(unit, bounded);
                assert!(ProgressStyle::with_template(&template).is_ok(), "{template}");
            }
        }
    }

    #[tokio::test]
    async fn off_a_terminal_a_task_reads_as_one_line() {
        let progress = Progress::to(false);
        let copying = progress.task("copying", Unit::Bytes, Some(400 * 1024 * 1024));
        copying.counter()(100 * 1024 * 1024);
        copying.set_message("25/100 objects");
        let text = line(&copying.bar, Unit::Bytes);
        assert!(text.starts_with("copying: 100.00 MiB/400.00 MiB, "), "{text}");
        assert!(text.contains("/s, ETA ") && text.ends_with(", 25/100 objects"), "{text}");

        let listing = progress.task("listing the source", Unit::Items("objects"), None);
        listing.inc(1500);
        assert_eq!(line(&listing.bar, Unit::Items("objects")), "listing the source: 1,500 objects");
        assert!(progress.bars.is_hidden(), "nothing is drawn off a terminal");
    }
}
