//! Which slots of a due schedule fire at a given moment. Pure: the clock
//! (the database's `now()`) and whether the previous run is still going
//! come in as arguments, so every rule is tested with a fixed clock.

use crate::{CatchupWindow, Jitter, MisfirePolicy, OverlapPolicy, Timing};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Most slots one schedule fires in one tick (`fire_all` after a long
/// outage); the rest follow on the next ticks.
pub const MAX_SLOTS_PER_TICK: usize = 1000;

/// A schedule as the firing rules see it.
#[derive(Debug, Clone)]
pub struct Firing<'a> {
    pub id: Uuid,
    pub timing: &'a Timing,
    pub misfire: MisfirePolicy,
    pub overlap: OverlapPolicy,
    pub catchup: CatchupWindow,
    pub jitter: Jitter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the job.
    Fire,
    /// Record the slot as skipped: the previous run has not finished.
    SkipOverlap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The slots dealt with now, oldest first.
    pub slots: Vec<(DateTime<Utc>, Decision)>,
    /// Whether slots passed that the misfire policy let go unfired (or
    /// folded into one run).
    pub misfired: bool,
    /// The first slot not dealt with; `None` when the pattern has no
    /// further slot.
    pub next_run_at: Option<DateTime<Utc>>,
}

impl Firing<'_> {
    /// Decides what happens to the slots from `next_run_at` up to `now`.
    ///
    /// A slot is on time while it is at most `grace` old, and fires. Older
    /// slots were missed: `coalesce` fires the latest of them once, `skip`
    /// none, `fire_all` each one that is within the catch-up window. A
    /// jittered slot waits until its delay has passed. With `overlap: skip`
    /// only one run may be open at a time: while `previous_open`, or after
    /// the first slot fired here, the others are recorded as skipped.
    pub fn plan(&self, next_run_at: DateTime<Utc>, now: DateTime<Utc>, previous_open: bool, grace: Duration) -> Plan {
        let due = |slot: DateTime<Utc>| slot + self.jitter.delay_of(self.id, slot) <= now;
        let mut chosen = Vec::new();
        let mut misfired = false;
        let late_before = match self.misfire {
            MisfirePolicy::FireAll => now - self.catchup.chrono(),
            // A jittered slot is late only once its delay, too, has passed.
            MisfirePolicy::Coalesce | MisfirePolicy::Skip => now - grace - self.jitter.chrono(),
        };
        let mut cursor = Some(next_run_at);
        if next_run_at < late_before {
            if let Some(latest_missed) = self.timing.last_before(late_before).filter(|slot| *slot >= next_run_at) {
                misfired = true;
                if self.misfire == MisfirePolicy::Coalesce {
                    chosen.push(latest_missed);
                }
            }
            cursor = self.timing.next_from(late_before);
        }
        while let Some(slot) = cursor {
            if slot > now || !due(slot) || chosen.len() >= MAX_SLOTS_PER_TICK {
                break;
            }
            chosen.push(slot);
            cursor = self.timing.next_after(slot);
        }
        let mut open = previous_open;
        let slots = chosen
            .into_iter()
            .map(|slot| {
                if self.overlap == OverlapPolicy::Skip && open {
                    (slot, Decision::SkipOverlap)
                } else {
                    open = true;
                    (slot, Decision::Fire)
                }
            })
            .collect();
        Plan { slots, misfired, next_run_at: cursor }
    }
}

/// The next slot after a change of pattern or zone: counted from `now`,
/// so slots the old pattern had passed are not fired in a flood. An
/// unchanged timing keeps its `next_run_at`.
pub fn rescheduled(
    old: &Timing,
    new: &Timing,
    next_run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if old == new { Some(next_run_at) } else { new.next_after(now) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn firing(timing: &Timing, misfire: MisfirePolicy, overlap: OverlapPolicy) -> Firing<'_> {
        Firing {
            id: Uuid::from_u128(1),
            timing,
            misfire,
            overlap,
            catchup: CatchupWindow::from_secs(600).unwrap(),
            jitter: Jitter::DEFAULT,
        }
    }

    const GRACE: Duration = Duration::seconds(5);

    fn fired(plan: &Plan) -> Vec<DateTime<Utc>> {
        plan.slots.iter().filter(|(_, d)| *d == Decision::Fire).map(|(slot, _)| *slot).collect()
    }

    #[test]
    fn an_on_time_slot_fires_and_the_next_one_is_scheduled() {
        let every_minute = Timing::parse("* * * * *", "UTC").unwrap();
        for policy in MisfirePolicy::ALL {
            let plan = firing(&every_minute, *policy, OverlapPolicy::Skip).plan(
                at("2026-05-01T10:00:00Z"),
                at("2026-05-01T10:00:00.300Z"),
                false,
                GRACE,
            );
            assert_eq!(fired(&plan), [at("2026-05-01T10:00:00Z")], "{policy}");
            assert_eq!(plan.next_run_at, Some(at("2026-05-01T10:01:00Z")));
            assert!(!plan.misfired);
        }
    }

    #[test]
    fn nothing_fires_before_the_slot() {
        let hourly = Timing::parse("0 * * * *", "UTC").unwrap();
        let plan = firing(&hourly, MisfirePolicy::Coalesce, OverlapPolicy::Allow).plan(
            at("2026-05-01T11:00:00Z"),
            at("2026-05-01T10:59:59Z"),
            false,
            GRACE,
        );
        assert!(plan.slots.is_empty());
        assert_eq!(plan.next_run_at, Some(at("2026-05-01T11:00:00Z")));
    }

    /// Down from 10:00:30 to 10:05:10: slots 10:01 .. 10:05 were missed.
    fn after_an_outage(policy: MisfirePolicy) -> Plan {
        let every_minute = Timing::parse("* * * * *", "UTC").unwrap();
        firing(&every_minute, policy, OverlapPolicy::Allow).plan(
            at("2026-05-01T10:01:00Z"),
            at("2026-05-01T10:05:10Z"),
            false,
            GRACE,
        )
    }

    #[test]
    fn coalesce_fires_once_for_all_missed_slots() {
        let plan = after_an_outage(MisfirePolicy::Coalesce);
        assert_eq!(fired(&plan), [at("2026-05-01T10:05:00Z")]);
        assert!(plan.misfired);
        assert_eq!(plan.next_run_at, Some(at("2026-05-01T10:06:00Z")));
    }

    #[test]
    fn skip_fires_none_of_the_missed_slots() {
        let plan = after_an_outage(MisfirePolicy::Skip);
        assert!(plan.slots.is_empty(), "{plan:?}");
        assert!(plan.misfired);
        assert_eq!(plan.next_run_at, Some(at("2026-05-01T10:06:00Z")));
    }

    #[test]
    fn fire_all_fires_every_missed_slot_in_order() {
        let plan = after_an_outage(MisfirePolicy::FireAll);
        let expected: Vec<_> = (1..=5).map(|m| at(&format!("2026-05-01T10:0{m}:00Z"))).collect();
        assert_eq!(fired(&plan), expected);
        assert!(!plan.misfired, "all within the catch-up window");
        assert_eq!(plan.next_run_at, Some(at("2026-05-01T10:06:00Z")));
    }

    #[test]
    fn fire_all_drops_what_is_older_than_the_catch_up_window() {
        let every_minute = Timing::parse("* * * * *", "UTC").unwrap();
        // Down for an hour, a window of 10 minutes: 10:50 .. 11:00 fire.
        let plan = firing(&every_minute, MisfirePolicy::FireAll, OverlapPolicy::Allow).plan(
            at("2026-05-01T10:00:00Z"),
            at("2026-05-01T11:00:30Z"),
            false,
            GRACE,
        );
        assert_eq!(fired(&plan).first(), Some(&at("2026-05-01T10:51:00Z")));
        assert_eq!(fired(&plan).last(), Some(&at("2026-05-01T11:00:00Z")));
        assert_eq!(fired(&plan).len(), 10);
        assert!(plan.misfired);
    }

    #[test]
    fn fire_all_after_a_long_outage_fires_at_most_a_tick_worth_at_once() {
        let every_second = Timing::parse("* * * * * *", "UTC").unwrap();
        let mut schedule = firing(&every_second, MisfirePolicy::FireAll, OverlapPolicy::Allow);
        schedule.catchup = CatchupWindow::from_secs(3600).unwrap();
        let plan = schedule.plan(at("2026-05-01T10:00:00Z"), at("2026-05-01T10:30:00Z"), false, GRACE);
        assert_eq!(plan.slots.len(), MAX_SLOTS_PER_TICK);
        assert_eq!(plan.next_run_at, Some(at("2026-05-01T10:16:40Z")), "the rest on the next tick");
    }

    #[test]
    fn a_slot_a_moment_late_is_on_time_not_missed() {
        let every_second = Timing::parse("* * * * * *", "UTC").unwrap();
        // A tick that came 2.5 s late sees three slots, all within grace.
        let plan = firing(&every_second, MisfirePolicy::Skip, OverlapPolicy::Allow).plan(
            at("2026-05-01T10:00:00Z"),
            at("2026-05-01T10:00:02.500Z"),
            false,
            GRACE,
        );
        assert_eq!(fired(&plan).len(), 3);
        assert!(!plan.misfired);
    }

    #[test]
    fn overlap_skip_records_slots_while_the_previous_run_is_open() {
        let every_minute = Timing::parse("* * * * *", "UTC").unwrap();
        let schedule = firing(&every_minute, MisfirePolicy::FireAll, OverlapPolicy::Skip);
        let open = schedule.plan(at("2026-05-01T10:00:00Z"), at("2026-05-01T10:00:01Z"), true, GRACE);
        assert_eq!(open.slots, [(at("2026-05-01T10:00:00Z"), Decision::SkipOverlap)]);
        assert_eq!(open.next_run_at, Some(at("2026-05-01T10:01:00Z")), "a skipped slot is dealt with");

        // Two missed slots and none open: the first fires, the second
        // would overlap it.
        let two = schedule.plan(at("2026-05-01T10:00:00Z"), at("2026-05-01T10:01:01Z"), false, GRACE);
        assert_eq!(
            two.slots,
            [(at("2026-05-01T10:00:00Z"), Decision::Fire), (at("2026-05-01T10:01:00Z"), Decision::SkipOverlap)]
        );
    }

    #[test]
    fn overlap_allow_fires_whatever_is_open() {
        let every_minute = Timing::parse("* * * * *", "UTC").unwrap();
        let schedule = firing(&every_minute, MisfirePolicy::FireAll, OverlapPolicy::Allow);
        let plan = schedule.plan(at("2026-05-01T10:00:00Z"), at("2026-05-01T10:01:01Z"), true, GRACE);
        assert_eq!(fired(&plan).len(), 2);
    }

    #[test]
    fn a_jittered_slot_waits_for_its_delay() {
        let hourly = Timing::parse("0 * * * *", "UTC").unwrap();
        let mut schedule = firing(&hourly, MisfirePolicy::Coalesce, OverlapPolicy::Allow);
        schedule.jitter = Jitter::from_secs(600).unwrap();
        let slot = at("2026-05-01T10:00:00Z");
        let delay = schedule.jitter.delay_of(schedule.id, slot);
        assert!(delay > Duration::zero(), "pick an id whose delay is not zero for this test");
        let early = schedule.plan(slot, slot + delay - Duration::milliseconds(1), false, GRACE);
        assert!(early.slots.is_empty());
        assert_eq!(early.next_run_at, Some(slot));
        let due = schedule.plan(slot, slot + delay, false, GRACE);
        assert_eq!(fired(&due), [slot], "the slot keeps its own time");
        assert!(!due.misfired, "the delay is not lateness");
    }

    /// DST in the firing rules: on the day Berlin springs forward, a daily
    /// 02:30 fires once (at 03:00 local); on the day London falls back, a
    /// daily 01:30 fires once, and a tick during the second pass of 01:30
    /// fires nothing.
    #[test]
    fn dst_days_fire_each_daily_slot_once() {
        let berlin = Timing::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let schedule = firing(&berlin, MisfirePolicy::Coalesce, OverlapPolicy::Allow);
        let next = berlin.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-29T01:00:00Z"), "03:00 CEST, right after the gap");
        let plan = schedule.plan(next, next + Duration::seconds(1), false, GRACE);
        assert_eq!(fired(&plan), [next]);
        assert_eq!(plan.next_run_at, Some(at("2026-03-30T00:30:00Z")));

        let london = Timing::parse("30 1 * * *", "Europe/London").unwrap();
        let schedule = firing(&london, MisfirePolicy::Coalesce, OverlapPolicy::Allow);
        let first_pass = at("2026-10-25T00:30:00Z"); // 01:30 BST
        assert_eq!(london.next_after(at("2026-10-24T12:00:00Z")), Some(first_pass));
        let plan = schedule.plan(first_pass, first_pass + Duration::seconds(1), false, GRACE);
        assert_eq!(fired(&plan), [first_pass]);
        let after = plan.next_run_at.unwrap();
        assert_eq!(after, at("2026-10-26T01:30:00Z"), "01:30 GMT the next day, not the second pass");
        let second_pass = at("2026-10-25T01:30:00Z"); // 01:30 GMT
        assert!(schedule.plan(after, second_pass, false, GRACE).slots.is_empty());
    }

    #[test]
    fn a_change_of_pattern_or_zone_counts_from_now() {
        let hourly = Timing::parse("0 * * * *", "UTC").unwrap();
        let now = at("2026-05-01T10:20:00Z");
        // The schedule had been due since 08:00 (paused, say).
        let stale = at("2026-05-01T08:00:00Z");
        assert_eq!(rescheduled(&hourly, &hourly, stale, now), Some(stale), "unchanged: keeps its slot");
        let quarterly = Timing::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(rescheduled(&hourly, &quarterly, stale, now), Some(at("2026-05-01T10:30:00Z")));
        let in_kolkata = Timing::parse("0 * * * *", "Asia/Kolkata").unwrap();
        assert_eq!(rescheduled(&hourly, &in_kolkata, stale, now), Some(at("2026-05-01T10:30:00Z")), "+05:30");
    }
}
