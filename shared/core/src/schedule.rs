//! Schedule slots.
//!
//! A policy's cron expression, read in its IANA time zone, fires at instants;
//! each firing opens a *slot* that lasts until the next firing. A volume is due
//! when it has no pending or completed managed snapshot for the slot that
//! contains "now". The slot is named by its UTC start (`lifecycle:slot`), so a
//! tick that comes late, twice, or after missed ticks finds the same slot and
//! never creates two snapshots for it.
//!
//! Cron evaluation is croner's (DST handling per the Open Cron Pattern
//! Specification, as Vixie cron): a fixed-time job whose time falls into a
//! spring-forward gap fires right after the gap, and fires once in a fall-back
//! overlap; wildcard-hour jobs fire for each real hour.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::CronParser;
use croner::Cron;

#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Cron(String),
    #[error("{0}")]
    TimeZone(String),
}

/// The nicknames the policy document allows besides 5-field expressions.
const NICKNAMES: [&str; 4] = ["@hourly", "@daily", "@weekly", "@monthly"];

impl Schedule {
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let timezone: Tz = timezone.parse().map_err(|_| {
            ScheduleError::TimeZone(format!("`{timezone}` is not an IANA time zone name"))
        })?;
        let trimmed = expression.trim();
        let bad = |why: String| {
            ScheduleError::Cron(format!(
                "`{expression}` is not a 5-field cron expression or one of {}: {why}",
                NICKNAMES.join(", ")
            ))
        };
        if trimmed.starts_with('@') {
            if !NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(trimmed)) {
                return Err(bad("unknown nickname".into()));
            }
        } else if trimmed.split_whitespace().count() != 5 {
            return Err(bad(
                "it needs exactly 5 fields (minute hour day month weekday)".into(),
            ));
        }
        // croner's default parser: seconds and years disallowed, day-of-month
        // and day-of-week OR-ed as in Vixie cron.
        let cron = CronParser::new()
            .parse(trimmed)
            .map_err(|e| bad(e.to_string()))?;
        let schedule = Self {
            expression: expression.to_string(),
            cron,
            timezone,
        };
        // A pattern such as `0 0 30 2 *` parses but never fires. Catch it now,
        // not at 3 a.m.: it must fire at least once within five years of 2026
        // (which covers the leap day).
        let reference = DateTime::<Utc>::from_timestamp(1_767_225_600, 0) // 2026-01-01T00:00Z
            .map(|t| t.with_timezone(&timezone))
            .ok_or_else(|| bad("no reference time".into()))?;
        match schedule.cron.find_next_occurrence(&reference, true) {
            Ok(t)
                if (t.with_timezone(&Utc) - reference.with_timezone(&Utc)).num_days() < 5 * 366 =>
            {
                Ok(schedule)
            }
            _ => Err(bad("it never fires".into())),
        }
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The start of the slot that contains `now`: the latest firing at or before it.
    /// `None` only for a schedule that never fired before `now` (validation
    /// makes that impossible for any date after 2026).
    pub fn slot_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first firing strictly after `t`: the start of the next slot.
    pub fn next_slot_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// One schedule a policy had, as the stack's ledger records it when
/// create-snapshots first runs with it (docs/policies-and-tags.md,
/// "Changing a schedule"). Only the stack writes these records, so a slot on
/// one of them, while it was in effect, is proof a tag cannot give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub policy: String,
    pub expression: String,
    pub time_zone: String,
    /// When create-snapshots first ran with it.
    pub from: DateTime<Utc>,
}

/// The schedules each policy had before, from the ledger's records: each
/// in effect from the start of its slot that contains its record's time
/// (create-snapshots takes that slot in the run that records it) until the
/// next record's time; the first from the beginning (the history before
/// the records was made under it). The latest record, when it is not the
/// policy's current schedule (a change not recorded yet), ends when the
/// records were read: its slots to come are nobody's.
#[derive(Debug, Clone, Default)]
pub struct PastSchedules {
    by_policy: std::collections::BTreeMap<String, Vec<Past>>,
    /// When the records were read.
    read_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Past {
    /// `None`: from the beginning.
    from: Option<DateTime<Utc>>,
    /// `None`: still the latest record.
    until: Option<DateTime<Utc>>,
    expression: String,
    time_zone: String,
    schedule: Schedule,
}

impl PastSchedules {
    /// A record that does not parse (a ledger written by hand) is left out.
    pub fn from_records(mut records: Vec<ScheduleRecord>, read_at: DateTime<Utc>) -> Self {
        records.sort_by(|a, b| (&a.policy, a.from).cmp(&(&b.policy, b.from)));
        let mut by_policy: std::collections::BTreeMap<String, Vec<Past>> = Default::default();
        for r in records {
            let Ok(schedule) = Schedule::parse(&r.expression, &r.time_zone) else {
                continue;
            };
            let list = by_policy.entry(r.policy).or_default();
            if let Some(last) = list.last_mut() {
                last.until = Some(r.from);
            }
            let from = (!list.is_empty()).then(|| schedule.slot_at(r.from).unwrap_or(r.from));
            list.push(Past {
                from,
                until: None,
                expression: r.expression,
                time_zone: r.time_zone,
                schedule,
            });
        }
        Self {
            by_policy,
            read_at: Some(read_at),
        }
    }

    /// The schedule under which `slot` is a slot of `policy`: `current` if
    /// it is one of its slots, else a recorded schedule in effect at `slot`
    /// of which it is one. `None`: a slot the policy never had.
    pub fn schedule_of<'a>(
        &'a self,
        policy: &str,
        current: &'a Schedule,
        slot: DateTime<Utc>,
    ) -> Option<&'a Schedule> {
        if current.slot_at(slot) == Some(slot) {
            return Some(current);
        }
        let list = self.by_policy.get(policy)?;
        let last = list.len().checked_sub(1)?;
        list.iter()
            .enumerate()
            .filter(|(i, p)| {
                // The latest record, not the current schedule: a change
                // not recorded yet; it ended by the time of the reading.
                let until = p.until.or_else(|| {
                    (*i == last && !p.is(current))
                        .then_some(self.read_at)
                        .flatten()
                });
                p.from.is_none_or(|f| f <= slot) && until.is_none_or(|u| slot < u)
            })
            .map(|(_, p)| &p.schedule)
            .find(|s| s.slot_at(slot) == Some(slot))
    }

    /// Whether `current` differs from the latest recorded schedule of
    /// `policy` (or none is recorded): create-snapshots then records it.
    pub fn must_record(&self, policy: &str, current: &Schedule) -> bool {
        self.by_policy
            .get(policy)
            .and_then(|list| list.last())
            .is_none_or(|p| !p.is(current))
    }
}

impl Past {
    fn is(&self, schedule: &Schedule) -> bool {
        self.expression == schedule.expression() && self.time_zone == schedule.timezone().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        crate::keys::parse_time(s).unwrap()
    }

    fn slot(expr: &str, tz: &str, now: &str) -> String {
        let s = Schedule::parse(expr, tz).unwrap();
        crate::keys::format_time(s.slot_at(utc(now)).unwrap())
    }

    #[test]
    fn daily_in_utc() {
        assert_eq!(
            slot("@daily", "UTC", "2026-03-01T13:45:00Z"),
            "2026-03-01T00:00:00Z"
        );
        // The firing instant itself belongs to the new slot.
        assert_eq!(
            slot("@daily", "UTC", "2026-03-01T00:00:00Z"),
            "2026-03-01T00:00:00Z"
        );
        assert_eq!(
            slot("@daily", "UTC", "2026-02-28T23:59:59Z"),
            "2026-02-28T00:00:00Z"
        );
    }

    #[test]
    fn daily_in_a_zone_starts_at_local_midnight() {
        // Berlin is UTC+1 in winter and UTC+2 in summer.
        assert_eq!(
            slot("@daily", "Europe/Berlin", "2026-01-15T12:00:00Z"),
            "2026-01-14T23:00:00Z"
        );
        assert_eq!(
            slot("@daily", "Europe/Berlin", "2026-07-15T12:00:00Z"),
            "2026-07-14T22:00:00Z"
        );
    }

    #[test]
    fn spring_forward_gap_fires_right_after_the_gap() {
        // 2026-03-29 in Berlin: 02:00 local jumps to 03:00. 02:30 does not exist.
        assert_eq!(
            slot("30 2 * * *", "Europe/Berlin", "2026-03-29T03:00:00Z"),
            "2026-03-29T01:00:00Z"
        );
        // The day before and after are ordinary.
        assert_eq!(
            slot("30 2 * * *", "Europe/Berlin", "2026-03-28T03:00:00Z"),
            "2026-03-28T01:30:00Z"
        );
        assert_eq!(
            slot("30 2 * * *", "Europe/Berlin", "2026-03-30T03:00:00Z"),
            "2026-03-30T00:30:00Z"
        );
    }

    #[test]
    fn fall_back_overlap_fires_a_fixed_time_once() {
        // 2026-10-25 in Berlin: 03:00 local falls back to 02:00, so 02:30 happens
        // at 00:30Z and again at 01:30Z. A daily job fires only at the first.
        assert_eq!(
            slot("30 2 * * *", "Europe/Berlin", "2026-10-25T01:45:00Z"),
            "2026-10-25T00:30:00Z"
        );
        assert_eq!(
            slot("30 2 * * *", "Europe/Berlin", "2026-10-25T12:00:00Z"),
            "2026-10-25T00:30:00Z"
        );
    }

    #[test]
    fn hourly_through_fall_back_has_distinct_slots_for_both_hours() {
        let a = slot("0 * * * *", "Europe/Berlin", "2026-10-25T00:30:00Z");
        let b = slot("0 * * * *", "Europe/Berlin", "2026-10-25T01:30:00Z");
        assert_eq!(a, "2026-10-25T00:00:00Z");
        assert_eq!(b, "2026-10-25T01:00:00Z");
    }

    #[test]
    fn month_ends_and_leap_days() {
        // Day 31 skips months without one.
        assert_eq!(
            slot("0 0 31 * *", "UTC", "2026-05-15T00:00:00Z"),
            "2026-03-31T00:00:00Z"
        );
        assert_eq!(
            slot("@monthly", "UTC", "2026-03-01T00:00:00Z"),
            "2026-03-01T00:00:00Z"
        );
        // Leap day schedules fire only in leap years: 2028 is the next.
        assert_eq!(
            slot("0 0 29 2 *", "UTC", "2028-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            slot("0 0 29 2 *", "UTC", "2031-01-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            slot("@weekly", "UTC", "2026-03-04T10:00:00Z"),
            "2026-03-01T00:00:00Z"
        );
    }

    #[test]
    fn invalid_schedules_are_refused() {
        for expr in [
            "",
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "0 0 30 2 *",
            "@yearly",
            "@often",
            "0 0 * * 8",
        ] {
            assert!(
                Schedule::parse(expr, "UTC").is_err(),
                "{expr:?} was accepted"
            );
        }
        assert!(matches!(
            Schedule::parse("@daily", "Nowhere/City"),
            Err(ScheduleError::TimeZone(_))
        ));
    }

    fn arb_schedule() -> impl Strategy<Value = Schedule> {
        let exprs = prop_oneof![
            Just("@hourly"),
            Just("@daily"),
            Just("@weekly"),
            Just("@monthly"),
            Just("*/15 * * * *"),
            Just("30 2 * * *"),
            Just("0 */6 * * *"),
            Just("0 0 31 * *"),
            Just("0 1 * * 1-5"),
            Just("0 0 29 2 *"),
            Just("45 23 * * 0"),
        ];
        let zones = prop_oneof![
            Just("UTC"),
            Just("Europe/Berlin"),
            Just("America/New_York"),
            Just("Australia/Lord_Howe"),
            Just("Asia/Kolkata"),
            Just("Pacific/Chatham"),
            Just("America/Santiago"),
        ];
        (exprs, zones).prop_map(|(e, z)| Schedule::parse(e, z).unwrap())
    }

    fn arb_instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2027 to 2040, where every test schedule has fired before.
        (1_798_761_600i64..2_208_988_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn the_slot_contains_now(s in arb_schedule(), now in arb_instant()) {
            let start = s.slot_at(now).unwrap();
            let next = s.next_slot_after(start).unwrap();
            prop_assert!(start <= now, "slot {start} after now {now}");
            prop_assert!(now < next, "next slot {next} not after now {now}");
        }

        #[test]
        fn every_instant_of_a_slot_names_the_same_slot(s in arb_schedule(), now in arb_instant(), back in 0i64..10_000) {
            let start = s.slot_at(now).unwrap();
            let earlier = (now - chrono::Duration::seconds(back)).max(start);
            prop_assert_eq!(s.slot_at(earlier), Some(start));
            prop_assert_eq!(s.slot_at(start), Some(start));
        }

        #[test]
        fn slots_never_go_backwards(s in arb_schedule(), a in arb_instant(), b in arb_instant()) {
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(s.slot_at(early) <= s.slot_at(late));
        }
    }
}

#[cfg(test)]
mod past_tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        crate::keys::parse_time(s).unwrap()
    }

    fn record(expression: &str, time_zone: &str, from: &str) -> ScheduleRecord {
        ScheduleRecord {
            policy: "p".into(),
            expression: expression.into(),
            time_zone: time_zone.into(),
            from: utc(from),
        }
    }

    #[test]
    fn a_slot_of_an_earlier_schedule_is_one_while_that_schedule_was_in_effect() {
        // 03:00 UTC daily until Dec 7, then 02:00 in Berlin.
        let current = Schedule::parse("0 2 * * *", "Europe/Berlin").unwrap();
        let past = PastSchedules::from_records(
            vec![
                record("0 2 * * *", "Europe/Berlin", "2026-12-07T10:00:00Z"),
                record("0 3 * * *", "UTC", "2026-11-01T00:00:00Z"),
            ],
            utc("2026-12-07T12:00:00Z"),
        );
        let old_slot = utc("2026-12-05T03:00:00Z");
        let on = past.schedule_of("p", &current, old_slot).unwrap();
        assert_eq!(on.expression(), "0 3 * * *");
        // Its window is the old schedule's.
        assert_eq!(
            on.next_slot_after(old_slot),
            Some(utc("2026-12-06T03:00:00Z"))
        );
        // Before the first record too: the history was made under it.
        assert!(past
            .schedule_of("p", &current, utc("2025-01-01T03:00:00Z"))
            .is_some());
        // Not after it ended, nor off any schedule, nor for another policy.
        assert!(past
            .schedule_of("p", &current, utc("2026-12-08T03:00:00Z"))
            .is_none());
        assert!(past
            .schedule_of("p", &current, utc("2026-12-05T03:30:00Z"))
            .is_none());
        assert!(past.schedule_of("q", &current, old_slot).is_none());
        // The current schedule's slots, always.
        let new_slot = utc("2026-12-08T01:00:00Z");
        assert_eq!(
            past.schedule_of("p", &current, new_slot)
                .map(Schedule::expression),
            Some("0 2 * * *")
        );
        assert!(PastSchedules::default()
            .schedule_of("p", &current, new_slot)
            .is_some());
    }

    /// Changed twice (A, then B, then C): B's slots stay proven from the
    /// first one create-snapshots took, which started before B was
    /// recorded in that very run.
    #[test]
    fn a_schedule_changed_twice_proves_the_middle_ones_first_slot() {
        let a = record("0 3 * * *", "UTC", "2026-11-01T00:00:00Z");
        // B (00:00 UTC daily) recorded by the run at 00:05 that took its
        // first slot, 00:00.
        let b = record("0 0 * * *", "UTC", "2026-12-07T00:05:00Z");
        let c = record("0 12 * * *", "UTC", "2026-12-10T12:05:00Z");
        let current = Schedule::parse("0 12 * * *", "UTC").unwrap();
        let past = PastSchedules::from_records(vec![a, b, c], utc("2026-12-11T00:00:00Z"));
        for slot in ["2026-12-07T00:00:00Z", "2026-12-10T00:00:00Z"] {
            assert_eq!(
                past.schedule_of("p", &current, utc(slot))
                    .map(Schedule::expression),
                Some("0 0 * * *"),
                "{slot}"
            );
        }
        // Not B's slot before its first, nor after C was recorded.
        assert!(past
            .schedule_of("p", &current, utc("2026-12-06T00:00:00Z"))
            .is_none());
        assert!(past
            .schedule_of("p", &current, utc("2026-12-11T00:00:00Z"))
            .is_none());
        // A's, before B.
        assert!(past
            .schedule_of("p", &current, utc("2026-12-06T03:00:00Z"))
            .is_some());
    }

    /// Deployed with a new schedule that create-snapshots has not recorded
    /// yet: the old schedule's slots up to the reading are proven, none
    /// after it (a snapshot made by hand later, claiming one, is not).
    #[test]
    fn a_change_not_recorded_yet_ends_the_old_schedule_at_the_reading() {
        let current = Schedule::parse("0 1 * * *", "Europe/Berlin").unwrap();
        let past = PastSchedules::from_records(
            vec![record("0 3 * * *", "UTC", "2026-11-01T00:00:00Z")],
            utc("2026-12-07T10:00:00Z"),
        );
        assert!(past
            .schedule_of("p", &current, utc("2026-12-07T03:00:00Z"))
            .is_some());
        assert!(past
            .schedule_of("p", &current, utc("2026-12-08T03:00:00Z"))
            .is_none());
        // Once recorded as current, the old one ended at the record's time.
        let recorded = PastSchedules::from_records(
            vec![
                record("0 3 * * *", "UTC", "2026-11-01T00:00:00Z"),
                record("0 1 * * *", "Europe/Berlin", "2026-12-07T10:05:00Z"),
            ],
            utc("2026-12-09T00:00:00Z"),
        );
        assert!(recorded
            .schedule_of("p", &current, utc("2026-12-07T03:00:00Z"))
            .is_some());
        assert!(recorded
            .schedule_of("p", &current, utc("2026-12-08T03:00:00Z"))
            .is_none());
    }

    #[test]
    fn a_schedule_is_recorded_when_it_differs_from_the_latest_record() {
        let current = Schedule::parse("0 2 * * *", "Europe/Berlin").unwrap();
        assert!(PastSchedules::default().must_record("p", &current));
        let same = PastSchedules::from_records(
            vec![
                record("0 3 * * *", "UTC", "2026-11-01T00:00:00Z"),
                record("0 2 * * *", "Europe/Berlin", "2026-12-07T10:00:00Z"),
            ],
            utc("2026-12-07T12:00:00Z"),
        );
        assert!(!same.must_record("p", &current));
        assert!(same.must_record("q", &current));
        let zone = Schedule::parse("0 2 * * *", "UTC").unwrap();
        assert!(same.must_record("p", &zone));
        // A record that does not parse is left out.
        let bad = PastSchedules::from_records(
            vec![record("nonsense", "UTC", "2026-11-01T00:00:00Z")],
            utc("2026-12-07T12:00:00Z"),
        );
        assert!(bad.must_record("p", &current));
    }
}
