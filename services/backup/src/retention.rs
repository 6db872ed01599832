//! Which backup runs to keep: grandfather-father-son, as restic's
//! `forget --keep-daily/--keep-weekly/--keep-monthly` counts them. Runs are
//! taken newest first; a rule keeps a run when the run falls in a day (ISO
//! week, month) that rule has not kept a run from yet and the rule still
//! has places. So `daily 7` keeps the newest run of each of the last seven
//! days that had a succeeded run, whatever the gaps between them. One run
//! may be kept by several rules. Days, weeks and months are UTC.
//!
//! Only succeeded runs are kept by the rules. The newest verified run is
//! kept whatever the rules say: a policy of zeros, or a string of runs that
//! succeeded but were never verified, must not leave nothing to restore.
//! Failed runs are always forgotten (their artifacts are not to be trusted),
//! runs still running are never touched.

use chrono::{DateTime, Datelike, Utc};
use std::collections::{BTreeSet, HashSet};
use stockflow_config::{ConfigError, Env, FromEnvValue};
use uuid::Uuid;

/// `BACKUP_KEEP_DAILY`, `BACKUP_KEEP_WEEKLY`, `BACKUP_KEEP_MONTHLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepPolicy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Default for KeepPolicy {
    fn default() -> Self {
        Self { daily: 7, weekly: 4, monthly: 6 }
    }
}

impl KeepPolicy {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = Self::default();
        Ok(Self {
            daily: env.or("BACKUP_KEEP_DAILY", KeepCount(default.daily))?.0,
            weekly: env.or("BACKUP_KEEP_WEEKLY", KeepCount(default.weekly))?.0,
            monthly: env.or("BACKUP_KEEP_MONTHLY", KeepCount(default.monthly))?.0,
        })
    }
}

/// How many runs a rule keeps; 0 switches the rule off.
struct KeepCount(u32);

impl FromEnvValue for KeepCount {
    const EXPECTED: &'static str = "a whole number from 0 to 10000";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|count| *count <= 10_000).map(Self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Succeeded { verified: bool },
    Failed,
}

/// What retention needs to know of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub state: RunState,
}

/// Why a run is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    Daily,
    Weekly,
    Monthly,
    NewestVerified,
    Running,
}

impl KeepReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::NewestVerified => "newest verified",
            Self::Running => "running",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub id: Uuid,
    pub reasons: BTreeSet<KeepReason>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Newest first.
    pub keep: Vec<Kept>,
    /// Newest first: runs whose artifacts and row are to go.
    pub forget: Vec<Uuid>,
}

impl Plan {
    pub fn keeps(&self, id: Uuid) -> bool {
        self.keep.iter().any(|kept| kept.id == id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Day(i32, u32),
    Week(i32, u32),
    Month(i32, u32),
}

struct Rule {
    reason: KeepReason,
    places: u32,
    last: Option<Bucket>,
    bucket: fn(DateTime<Utc>) -> Bucket,
}

/// The plan for `runs` (in any order) under `policy`.
pub fn plan(runs: &[RunSummary], policy: KeepPolicy) -> Plan {
    let mut runs = runs.to_vec();
    // Newest first; ids break ties so the plan never depends on input order.
    runs.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let mut rules = [
        Rule {
            reason: KeepReason::Daily,
            places: policy.daily,
            last: None,
            bucket: |at| Bucket::Day(at.year(), at.ordinal()),
        },
        Rule {
            reason: KeepReason::Weekly,
            places: policy.weekly,
            last: None,
            bucket: |at| Bucket::Week(at.iso_week().year(), at.iso_week().week()),
        },
        Rule {
            reason: KeepReason::Monthly,
            places: policy.monthly,
            last: None,
            bucket: |at| Bucket::Month(at.year(), at.month()),
        },
    ];
    let newest_verified = runs.iter().find(|run| run.state == RunState::Succeeded { verified: true }).map(|run| run.id);
    let mut plan = Plan::default();
    for run in &runs {
        let mut reasons = BTreeSet::new();
        match run.state {
            RunState::Running => {
                reasons.insert(KeepReason::Running);
            }
            RunState::Failed => {}
            RunState::Succeeded { .. } => {
                for rule in &mut rules {
                    let bucket = (rule.bucket)(run.started_at);
                    if rule.places > 0 && rule.last != Some(bucket) {
                        rule.places -= 1;
                        rule.last = Some(bucket);
                        reasons.insert(rule.reason);
                    }
                }
                if newest_verified == Some(run.id) {
                    reasons.insert(KeepReason::NewestVerified);
                }
            }
        }
        if reasons.is_empty() {
            plan.forget.push(run.id);
        } else {
            plan.keep.push(Kept { id: run.id, reasons });
        }
    }
    plan
}

/// The media objects no kept run's manifest names: what a prune may delete.
pub fn unreferenced<'a>(stored: impl IntoIterator<Item = &'a str>, referenced: &HashSet<String>) -> Vec<String> {
    let mut gone: Vec<String> =
        stored.into_iter().filter(|key| !referenced.contains(*key)).map(str::to_owned).collect();
    gone.sort_unstable();
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().expect("a valid instant")
    }

    fn run(n: u128, started_at: DateTime<Utc>, state: RunState) -> RunSummary {
        RunSummary { id: Uuid::from_u128(n), started_at, state }
    }

    const OK: RunState = RunState::Succeeded { verified: true };

    /// One verified run a day at 02:00 for 100 days, 2026-01-01 to
    /// 2026-04-10, under the default policy (7 daily, 4 weekly, 6 monthly).
    #[test]
    fn a_hundred_days_of_daily_runs_keep_what_grandfather_father_son_says() {
        let first = at(2026, 1, 1, 2);
        let runs: Vec<RunSummary> = (0..100).map(|day| run(day, first + Duration::days(day as i64), OK)).collect();
        let plan = plan(&runs, KeepPolicy::default());
        let kept: Vec<(DateTime<Utc>, Vec<&str>)> = plan
            .keep
            .iter()
            .map(|kept| {
                let run = runs.iter().find(|run| run.id == kept.id).expect("a kept run is one of the runs");
                (run.started_at, kept.reasons.iter().map(|reason| reason.as_str()).collect())
            })
            .collect();
        let expected = vec![
            // The last seven days; the newest also closes ISO week 15 and April.
            (at(2026, 4, 10, 2), vec!["daily", "weekly", "monthly", "newest verified"]),
            (at(2026, 4, 9, 2), vec!["daily"]),
            (at(2026, 4, 8, 2), vec!["daily"]),
            (at(2026, 4, 7, 2), vec!["daily"]),
            (at(2026, 4, 6, 2), vec!["daily"]),
            // Sunday 5 April ends ISO week 14.
            (at(2026, 4, 5, 2), vec!["daily", "weekly"]),
            (at(2026, 4, 4, 2), vec!["daily"]),
            (at(2026, 3, 31, 2), vec!["monthly"]),
            (at(2026, 3, 29, 2), vec!["weekly"]),
            (at(2026, 3, 22, 2), vec!["weekly"]),
            (at(2026, 2, 28, 2), vec!["monthly"]),
            (at(2026, 1, 31, 2), vec!["monthly"]),
        ];
        assert_eq!(kept, expected);
        assert_eq!(plan.forget.len(), 100 - expected.len());
        for id in &plan.forget {
            assert!(!plan.keeps(*id));
        }
    }

    #[test]
    fn several_runs_a_day_keep_the_newest_of_the_day() {
        let runs = vec![run(1, at(2026, 5, 2, 1), OK), run(2, at(2026, 5, 2, 13), OK), run(3, at(2026, 5, 2, 23), OK)];
        let plan = plan(&runs, KeepPolicy { daily: 1, weekly: 0, monthly: 0 });
        assert_eq!(plan.keep.iter().map(|kept| kept.id).collect::<Vec<_>>(), vec![Uuid::from_u128(3)]);
        assert_eq!(plan.forget, vec![Uuid::from_u128(2), Uuid::from_u128(1)]);
    }

    #[test]
    fn gaps_do_not_use_up_places() {
        // Days 1, 5 and 20: daily 3 keeps all three, however far apart.
        let runs = vec![run(1, at(2026, 5, 1, 2), OK), run(2, at(2026, 5, 5, 2), OK), run(3, at(2026, 5, 20, 2), OK)];
        let plan = plan(&runs, KeepPolicy { daily: 3, weekly: 0, monthly: 0 });
        assert_eq!(plan.keep.len(), 3);
        assert!(plan.forget.is_empty());
    }

    #[test]
    fn the_newest_verified_run_survives_any_policy() {
        let runs = vec![
            run(1, at(2026, 5, 1, 2), OK),
            // Newer, but never verified: kept by no rule, since there are none.
            run(2, at(2026, 5, 2, 2), RunState::Succeeded { verified: false }),
        ];
        let plan = plan(&runs, KeepPolicy { daily: 0, weekly: 0, monthly: 0 });
        assert_eq!(plan.keep.len(), 1);
        assert_eq!(plan.keep[0].id, Uuid::from_u128(1));
        assert_eq!(plan.keep[0].reasons, BTreeSet::from([KeepReason::NewestVerified]));
        assert_eq!(plan.forget, vec![Uuid::from_u128(2)]);
    }

    #[test]
    fn failed_runs_use_no_place_and_go_while_running_ones_stay() {
        let runs = vec![
            run(1, at(2026, 5, 1, 2), OK),
            run(2, at(2026, 5, 2, 2), RunState::Failed),
            run(3, at(2026, 5, 3, 2), RunState::Running),
        ];
        let plan = plan(&runs, KeepPolicy { daily: 1, weekly: 0, monthly: 0 });
        // The failed run's day does not take the one daily place from the run before it.
        assert_eq!(
            plan.keep.iter().map(|kept| kept.id).collect::<Vec<_>>(),
            vec![Uuid::from_u128(3), Uuid::from_u128(1)]
        );
        assert_eq!(plan.forget, vec![Uuid::from_u128(2)]);
    }

    #[test]
    fn a_failed_verify_keeps_the_last_good_run() {
        // The newest run succeeded, then its verify failed (so it is failed);
        // the run before is the last good one.
        let runs = vec![run(1, at(2026, 5, 1, 2), OK), run(2, at(2026, 5, 2, 2), RunState::Failed)];
        let plan = plan(&runs, KeepPolicy { daily: 1, weekly: 0, monthly: 0 });
        assert!(plan.keeps(Uuid::from_u128(1)));
        assert!(!plan.keeps(Uuid::from_u128(2)));
    }

    #[test]
    fn the_policy_is_read_from_the_environment_and_zero_switches_a_rule_off() {
        let env = Env::from_pairs([("BACKUP_KEEP_DAILY", "14"), ("BACKUP_KEEP_MONTHLY", "0")]);
        assert_eq!(KeepPolicy::from_env(&env).expect("valid"), KeepPolicy { daily: 14, weekly: 4, monthly: 0 });
        let bad = KeepPolicy::from_env(&Env::from_pairs([("BACKUP_KEEP_WEEKLY", "-1")])).expect_err("negative");
        assert_eq!(bad.var(), "BACKUP_KEEP_WEEKLY");
    }

    #[test]
    fn objects_no_kept_manifest_names_are_unreferenced() {
        let referenced: HashSet<String> = ["media/objects/ab/ab1".to_owned()].into();
        let stored = ["media/objects/cd/cd2", "media/objects/ab/ab1", "media/objects/00/001"];
        assert_eq!(unreferenced(stored, &referenced), vec!["media/objects/00/001", "media/objects/cd/cd2"]);
    }
}
