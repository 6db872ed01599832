//! What the command prints on stdout when it ends: the objects missing at
//! the source, if any, then one summary line of `name=value` pairs that a
//! person can read and a script can split.

use super::copy::Tally;
use super::{MigrateError, REPORT_SAMPLE, count};
use std::fmt;
use std::time::Duration;
use stockflow_db::storage_migrations::{ListingTotals, MissingReferences};

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub dry_run: bool,
    /// The database references objects the source lacks and
    /// `--skip-missing` was not given: nothing was, or would be, copied.
    pub refused: bool,
    /// Stopped by a signal before every object was settled.
    pub interrupted: bool,
    /// Objects copied by this run; in a dry run, those a run would copy.
    pub copied: u64,
    /// The bytes of `copied`.
    pub bytes: u64,
    /// Objects an earlier run of the same pair already copied.
    pub skipped: u64,
    /// Objects the database references that the source lacks, and objects
    /// gone from the source between the listing and their copy.
    pub missing: u64,
    pub failed: u64,
    /// The first missing keys.
    pub missing_sample: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub(super) fn dry_run(
        totals: &ListingTotals,
        missing: MissingReferences,
        skip_missing: bool,
        elapsed: Duration,
    ) -> Self {
        Self {
            dry_run: true,
            refused: missing.total > 0 && !skip_missing,
            copied: count(totals.pending),
            bytes: count(totals.pending_bytes),
            ..Self::before_copying(totals, missing, elapsed)
        }
    }

    pub(super) fn refused(totals: &ListingTotals, missing: MissingReferences, elapsed: Duration) -> Self {
        Self { refused: true, ..Self::before_copying(totals, missing, elapsed) }
    }

    pub(super) fn copied(
        totals: &ListingTotals,
        missing: MissingReferences,
        tally: Tally,
        interrupted: bool,
        elapsed: Duration,
    ) -> Self {
        let mut report = Self::before_copying(totals, missing, elapsed);
        report.missing += tally.vanished;
        let room = REPORT_SAMPLE.saturating_sub(report.missing_sample.len());
        report.missing_sample.extend(tally.vanished_sample.into_iter().take(room));
        Self { interrupted, copied: tally.copied, bytes: tally.bytes, failed: tally.failed, ..report }
    }

    fn before_copying(totals: &ListingTotals, missing: MissingReferences, elapsed: Duration) -> Self {
        Self {
            dry_run: false,
            refused: false,
            interrupted: false,
            copied: 0,
            bytes: 0,
            skipped: count(totals.copied),
            missing: missing.total,
            failed: 0,
            missing_sample: missing.sample,
            elapsed,
        }
    }

    /// How the command should end: an error when it copied nothing because
    /// of missing objects (or, in a dry run, would not), when an object
    /// failed, or when it was interrupted.
    pub fn into_result(self) -> Result<(), MigrateError> {
        if self.refused {
            Err(MigrateError::MissingAtSource(self.missing))
        } else if self.failed > 0 {
            Err(MigrateError::Failed(self.failed))
        } else if self.interrupted {
            Err(MigrateError::Interrupted)
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing > 0 {
            writeln!(f, "missing at the source: {} objects", self.missing)?;
            for key in &self.missing_sample {
                writeln!(f, "  {key}")?;
            }
            let unnamed = self.missing.saturating_sub(self.missing_sample.len() as u64);
            if unnamed > 0 {
                writeln!(f, "  ... and {unnamed} more")?;
            }
        }
        let seconds = self.elapsed.as_secs_f64();
        let Self { copied, bytes, skipped, missing, failed, .. } = self;
        if self.dry_run {
            writeln!(
                f,
                "dry-run: to_copy={copied} bytes={bytes} skipped={skipped} missing={missing} seconds={seconds:.1}"
            )
        } else {
            writeln!(
                f,
                "copied={copied} skipped={skipped} missing={missing} failed={failed} bytes={bytes} seconds={seconds:.1}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals() -> ListingTotals {
        ListingTotals { pending: 7, pending_bytes: 700, copied: 3 }
    }

    fn missing(total: u64) -> MissingReferences {
        let sample = (0..total.min(REPORT_SAMPLE as u64)).map(|n| format!("org/attachments/{n:02}")).collect();
        MissingReferences { total, sample }
    }

    #[test]
    fn a_complete_run_prints_only_its_summary_and_succeeds() {
        let tally = Tally { copied: 7, bytes: 700, ..Tally::default() };
        let report = Report::copied(&totals(), missing(0), tally, false, Duration::from_millis(2345));
        assert_eq!(report.to_string(), "copied=7 skipped=3 missing=0 failed=0 bytes=700 seconds=2.3\n");
        assert!(report.into_result().is_ok());
    }

    #[test]
    fn missing_objects_are_counted_and_the_first_twenty_named() {
        let tally = Tally { copied: 6, bytes: 600, vanished: 1, vanished_sample: vec!["gone".into()], failed: 0 };
        let report = Report::copied(&totals(), missing(25), tally, false, Duration::ZERO);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "missing at the source: 26 objects");
        assert_eq!(lines[1], "  org/attachments/00");
        assert_eq!(lines.len(), 1 + 20 + 1 + 1, "{text}");
        assert_eq!(lines[21], "  ... and 6 more");
        assert_eq!(lines[22], "copied=6 skipped=3 missing=26 failed=0 bytes=600 seconds=0.0");
        assert!(report.into_result().is_ok(), "--skip-missing copied the rest: a success");
    }

    #[test]
    fn refusals_failures_and_interruptions_fail_the_command() {
        let refused = Report::refused(&totals(), missing(2), Duration::ZERO);
        assert!(refused.to_string().ends_with("copied=0 skipped=3 missing=2 failed=0 bytes=0 seconds=0.0\n"));
        assert!(matches!(refused.into_result(), Err(MigrateError::MissingAtSource(2))));
        let failed = Tally { copied: 5, failed: 2, ..Tally::default() };
        let report = Report::copied(&totals(), missing(0), failed, false, Duration::ZERO);
        assert!(matches!(report.into_result(), Err(MigrateError::Failed(2))));
        let cut = Tally { copied: 2, ..Tally::default() };
        let report = Report::copied(&totals(), missing(0), cut, true, Duration::ZERO);
        assert!(matches!(report.into_result(), Err(MigrateError::Interrupted)));
    }

    #[test]
    fn a_dry_run_says_what_a_run_would_do() {
        let report = Report::dry_run(&totals(), missing(0), false, Duration::ZERO);
        assert_eq!(report.to_string(), "dry-run: to_copy=7 bytes=700 skipped=3 missing=0 seconds=0.0\n");
        assert!(report.into_result().is_ok());
        let refused = Report::dry_run(&totals(), missing(1), false, Duration::ZERO);
        assert!(matches!(refused.into_result(), Err(MigrateError::MissingAtSource(1))));
        assert!(Report::dry_run(&totals(), missing(1), true, Duration::ZERO).into_result().is_ok());
    }
}
