//! The retention planner: which of one volume's snapshots the `keep` rules
//! keep, and why. Pure: no AWS, no clock.
//!
//! Semantics are restic's `forget` as of its current release
//! (internal/data/snapshot_policy.go), checked case for case against
//! restic's own golden data (`tests/restic_forget.rs`); restic's names in
//! brackets:
//! - snapshots are considered newest first (ties broken by id, so the result
//!   is deterministic);
//! - `last N` (`--keep-last`) keeps the N newest;
//! - each calendar rule (`hourly`, `daily`, `weekly` on ISO weeks, `monthly`,
//!   `yearly`; `--keep-daily` ...) keeps the newest snapshot of each
//!   distinct bucket it meets, until it has kept its count; buckets are read
//!   on the wall clock of the policy's time zone;
//! - a count may be `"all"` (restic's `-1`): no limit;
//! - the oldest snapshot is kept by every calendar rule that still has count
//!   left when it gets there (restic 0.16, issue #3624), even if its bucket
//!   was already kept: label `oldest-<rule>`. A short history under a long
//!   rule keeps its beginning;
//! - `within D` (`--keep-within`) keeps every snapshot taken after
//!   (newest snapshot - D), with D subtracted in calendar units as Go's
//!   `AddDate` does (2026-03-31 minus one month is 2026-03-03). Like restic,
//!   D is measured back from the newest snapshot, not from "now", so a
//!   volume whose backups stopped does not lose its last days of history as
//!   time passes;
//! - `within_hourly D` ... `within_yearly D` (`--keep-within-hourly` ...):
//!   the newest snapshot of every bucket after (newest - D), no count; the
//!   oldest rule applies too (`oldest-within-<rule>`);
//! - `tags` (`--keep-tag`): a snapshot carrying every key of one entry.
//!
//! A snapshot kept by no rule is not kept. Whether it may really be deleted is
//! for the safety rules (`crate::safety`) to say.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::policy::{KeepRules, KeepWithin, ALL};

/// A rule that keeps a snapshot. `as_str` is what `lifecycle:retained-by` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeepReason {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    WithinHourly,
    WithinDaily,
    WithinWeekly,
    WithinMonthly,
    WithinYearly,
    /// A calendar rule kept the oldest snapshot with count to spare
    /// (restic's "oldest daily snapshot").
    OldestHourly,
    OldestDaily,
    OldestWeekly,
    OldestMonthly,
    OldestYearly,
    OldestWithinHourly,
    OldestWithinDaily,
    OldestWithinWeekly,
    OldestWithinMonthly,
    OldestWithinYearly,
    /// The snapshot carries the keys of a `tags` entry.
    Tag,
}

impl KeepReason {
    /// Every reason, in declaration order.
    pub const ALL: [KeepReason; 23] = {
        use KeepReason::*;
        [
            Last,
            Hourly,
            Daily,
            Weekly,
            Monthly,
            Yearly,
            Within,
            WithinHourly,
            WithinDaily,
            WithinWeekly,
            WithinMonthly,
            WithinYearly,
            OldestHourly,
            OldestDaily,
            OldestWeekly,
            OldestMonthly,
            OldestYearly,
            OldestWithinHourly,
            OldestWithinDaily,
            OldestWithinWeekly,
            OldestWithinMonthly,
            OldestWithinYearly,
            Tag,
        ]
    };

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
            Self::Within => "within",
            Self::WithinHourly => "within-hourly",
            Self::WithinDaily => "within-daily",
            Self::WithinWeekly => "within-weekly",
            Self::WithinMonthly => "within-monthly",
            Self::WithinYearly => "within-yearly",
            Self::OldestHourly => "oldest-hourly",
            Self::OldestDaily => "oldest-daily",
            Self::OldestWeekly => "oldest-weekly",
            Self::OldestMonthly => "oldest-monthly",
            Self::OldestYearly => "oldest-yearly",
            Self::OldestWithinHourly => "oldest-within-hourly",
            Self::OldestWithinDaily => "oldest-within-daily",
            Self::OldestWithinWeekly => "oldest-within-weekly",
            Self::OldestWithinMonthly => "oldest-within-monthly",
            Self::OldestWithinYearly => "oldest-within-yearly",
            Self::Tag => "tag",
        }
    }

    /// The calendar rule whose buckets this reason counts in.
    fn calendar(self) -> Option<KeepReason> {
        use KeepReason::*;
        match self {
            Hourly | WithinHourly | OldestHourly | OldestWithinHourly => Some(Hourly),
            Daily | WithinDaily | OldestDaily | OldestWithinDaily => Some(Daily),
            Weekly | WithinWeekly | OldestWeekly | OldestWithinWeekly => Some(Weekly),
            Monthly | WithinMonthly | OldestMonthly | OldestWithinMonthly => Some(Monthly),
            Yearly | WithinYearly | OldestYearly | OldestWithinYearly => Some(Yearly),
            Last | Within | Tag => None,
        }
    }

    /// The reason a bucket rule gives when it keeps the oldest snapshot in
    /// a bucket it already kept.
    fn oldest(self) -> KeepReason {
        use KeepReason::*;
        match self {
            Hourly => OldestHourly,
            Daily => OldestDaily,
            Weekly => OldestWeekly,
            Monthly => OldestMonthly,
            Yearly => OldestYearly,
            WithinHourly => OldestWithinHourly,
            WithinDaily => OldestWithinDaily,
            WithinWeekly => OldestWithinWeekly,
            WithinMonthly => OldestWithinMonthly,
            WithinYearly => OldestWithinYearly,
            other => other,
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One snapshot as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub time: DateTime<Utc>,
    /// Its tag keys, for the `tags` rule; left empty when the rules have
    /// none (nothing to match, nothing to hold in memory).
    pub tags: Vec<String>,
}

/// The planner's verdict on one snapshot. Empty `reasons` means "not kept".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    pub time: DateTime<Utc>,
    pub reasons: Vec<KeepReason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// The value of `lifecycle:retained-by`, e.g. `last,daily,monthly`.
    pub fn retained_by(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A calendar rule while planning: how many more it may keep, and the bucket
/// it last kept a snapshot in.
struct Bucket {
    reason: KeepReason,
    remaining: u32,
    last: Option<i64>,
}

/// The bucket of a local time under a rule (restic's bucketer functions).
pub(crate) fn bucket_of(reason: KeepReason, local: &DateTime<Tz>) -> i64 {
    let reason = reason.calendar().unwrap_or(reason);
    let (y, m, d, h) = (
        i64::from(local.year()),
        i64::from(local.month()),
        i64::from(local.day()),
        i64::from(local.hour()),
    );
    match reason {
        KeepReason::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
        KeepReason::Daily => (y * 100 + m) * 100 + d,
        KeepReason::Weekly => {
            let week = local.iso_week();
            i64::from(week.year()) * 100 + i64::from(week.week())
        }
        KeepReason::Monthly => y * 100 + m,
        KeepReason::Yearly => y,
        // Not calendar rules.
        _ => 0,
    }
}

/// `t` minus `within`, on the wall clock of `tz`, normalised like Go's `AddDate`.
pub(crate) fn within_cutoff(t: DateTime<Utc>, within: &KeepWithin, tz: Tz) -> DateTime<Utc> {
    let local = t.with_timezone(&tz).naive_local();
    let months = i64::from(local.year()) * 12 + i64::from(local.month0())
        - i64::from(within.years) * 12
        - i64::from(within.months);
    let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
    let first = i32::try_from(year)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, (month0 + 1) as u32, 1));
    let Some(first) = first else {
        return DateTime::<Utc>::MIN_UTC;
    };
    // Day overflow rolls into the next month, as Go does.
    let date = first + Duration::days(i64::from(local.day()) - 1 - i64::from(within.days));
    let wall = date.and_time(local.time()) - Duration::hours(i64::from(within.hours));
    tz.from_local_datetime(&wall)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        // A wall time inside a DST gap: the instant just after the gap is
        // later than the cutoff would be, so step an hour back (keeps more).
        .or_else(|| {
            tz.from_local_datetime(&(wall - Duration::hours(1)))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        })
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The calendar rules and their counts, finest first (restic's order).
fn calendar_rules(rules: &KeepRules) -> impl Iterator<Item = (KeepReason, Option<u32>)> {
    [
        (KeepReason::Hourly, rules.hourly),
        (KeepReason::Daily, rules.daily),
        (KeepReason::Weekly, rules.weekly),
        (KeepReason::Monthly, rules.monthly),
        (KeepReason::Yearly, rules.yearly),
    ]
    .into_iter()
}

/// The `within_<rule>` rules and their durations, finest first.
fn within_calendar_rules(rules: &KeepRules) -> impl Iterator<Item = (KeepReason, KeepWithin)> {
    [
        (KeepReason::WithinHourly, rules.within_hourly),
        (KeepReason::WithinDaily, rules.within_daily),
        (KeepReason::WithinWeekly, rules.within_weekly),
        (KeepReason::WithinMonthly, rules.within_monthly),
        (KeepReason::WithinYearly, rules.within_yearly),
    ]
    .into_iter()
    .filter_map(|(reason, within)| within.map(|w| (reason, w)))
}

/// Whether the snapshot carries every key of one of the `tags` entries.
fn tagged(rules: &KeepRules, candidate: &Candidate) -> bool {
    rules
        .tags
        .iter()
        .any(|keys| keys.iter().all(|k| candidate.tags.contains(k)))
}

/// Decide, for one volume's snapshots, which the rules keep and why.
/// The result is in planning order: newest first.
pub fn plan(rules: &KeepRules, tz: Tz, snapshots: &[Candidate]) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = snapshots.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));

    let mut buckets: Vec<Bucket> = calendar_rules(rules)
        .filter_map(|(reason, count)| {
            count.map(|remaining| Bucket {
                reason,
                remaining,
                last: None,
            })
        })
        .collect();
    let newest = order.first().map(|c| c.time);
    let cutoff = match (&rules.within, newest) {
        (Some(within), Some(newest)) => Some(within_cutoff(newest, within, tz)),
        _ => None,
    };
    // (rule, cutoff, last bucket kept): bucket rules over the snapshots
    // after the cutoff, no count.
    let mut within_buckets: Vec<(KeepReason, DateTime<Utc>, Option<i64>)> = match newest {
        Some(newest) => within_calendar_rules(rules)
            .map(|(reason, within)| (reason, within_cutoff(newest, &within, tz), None))
            .collect(),
        None => Vec::new(),
    };
    let last = match rules.last {
        Some(ALL) => usize::MAX,
        other => other.unwrap_or(0) as usize,
    };
    let oldest = order.len().saturating_sub(1);

    order
        .iter()
        .enumerate()
        .map(|(nr, snapshot)| {
            let mut reasons = Vec::new();
            if nr < last {
                reasons.push(KeepReason::Last);
            }
            let local = snapshot.time.with_timezone(&tz);
            for bucket in buckets.iter_mut().filter(|b| b.remaining > 0) {
                let value = bucket_of(bucket.reason, &local);
                let same = bucket.last == Some(value);
                if !same || nr == oldest {
                    bucket.last = Some(value);
                    if bucket.remaining != ALL {
                        bucket.remaining -= 1;
                    }
                    reasons.push(if same {
                        bucket.reason.oldest()
                    } else {
                        bucket.reason
                    });
                }
            }
            if cutoff.is_some_and(|c| snapshot.time > c) {
                reasons.push(KeepReason::Within);
            }
            for (reason, cutoff, last) in within_buckets.iter_mut() {
                if snapshot.time <= *cutoff {
                    continue;
                }
                let value = bucket_of(*reason, &local);
                let same = *last == Some(value);
                if !same || nr == oldest {
                    *last = Some(value);
                    reasons.push(if same { reason.oldest() } else { *reason });
                }
            }
            if tagged(rules, snapshot) {
                reasons.push(KeepReason::Tag);
            }
            Decision {
                id: snapshot.id.clone(),
                time: snapshot.time,
                reasons,
            }
        })
        .collect()
}

/// When the keep rules stop keeping a snapshot, if the schedule keeps running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No rule keeps it now: the next expiry run may delete it.
    Due,
    /// The start of the future slot whose snapshot takes its place: once that
    /// snapshot completes, no rule keeps this one.
    At(DateTime<Utc>),
    /// No future slot ever displaces it (the schedule has stopped firing, or
    /// the volume is gone and no more snapshots will come).
    Never,
}

/// The planner's decision on one snapshot and its projected expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub decision: Decision,
    pub expiry: Expiry,
}

/// Start of the bucket after the one `local` is in, as a UTC instant.
pub(crate) fn next_bucket_start(reason: KeepReason, local: &DateTime<Tz>) -> Option<DateTime<Utc>> {
    let reason = reason.calendar()?;
    let date = local.date_naive();
    let next = match reason {
        KeepReason::Hourly => {
            let hour = date.and_hms_opt(local.hour(), 0, 0)?;
            hour + Duration::hours(1)
        }
        KeepReason::Daily => date.succ_opt()?.and_hms_opt(0, 0, 0)?,
        KeepReason::Weekly => {
            let days = 7 - i64::from(local.weekday().num_days_from_monday());
            (date + Duration::days(days)).and_hms_opt(0, 0, 0)?
        }
        KeepReason::Monthly => {
            let (y, m) = if local.month() == 12 {
                (local.year() + 1, 1)
            } else {
                (local.year(), local.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?
        }
        KeepReason::Yearly => {
            NaiveDate::from_ymd_opt(local.year() + 1, 1, 1)?.and_hms_opt(0, 0, 0)?
        }
        _ => return None,
    };
    let tz = local.timezone();
    // A bucket may start inside a DST gap (e.g. midnight in a zone that
    // springs forward at 00:00): then it starts when the wall clock resumes.
    (0..4).find_map(|h| {
        tz.from_local_datetime(&(next + Duration::hours(h)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// Plan one volume's snapshots as [`plan`] does, and project when each kept
/// one stops being kept, assuming a new snapshot at every future slot.
/// `next_slot(t)` is the schedule's first firing strictly after `t` (`None`
/// when it never fires again; pass `|_| None` for an orphaned volume).
///
/// Keeping is monotone in newer snapshots (restic's rules only ever count
/// from the newest end), so each rule's expiry is one instant, found without
/// re-planning: `last N` lets go at the (N - rank)-th future slot; a calendar
/// rule with count C lets go of the snapshot in its b-th bucket once C - b new
/// buckets have opened (or at once, if the next slot falls into its own
/// bucket); `within` lets go at the first slot whose cutoff reaches it. A
/// snapshot expires when the last rule keeping it lets go. The property test
/// below checks this against re-running [`plan`] slot by slot.
pub fn project(
    rules: &KeepRules,
    tz: Tz,
    snapshots: &[Candidate],
    next_slot: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
) -> Vec<Projection> {
    let decisions = plan(rules, tz, snapshots);
    let Some(newest) = decisions.first().map(|d| d.time) else {
        return Vec::new();
    };
    let oldest_rank = decisions.len() - 1;
    let first_slot = next_slot(newest);
    let at_or_after = |t: DateTime<Utc>| next_slot(t - Duration::seconds(1));
    let newest_local = newest.with_timezone(&tz);

    // `last`: the future slots, as many as the rule counts ("all" never
    // lets go).
    let mut future = Vec::new();
    let last = rules.last.filter(|n| *n != ALL);
    let mut cursor = first_slot;
    while let Some(t) = cursor.filter(|_| future.len() < last.unwrap_or(0) as usize) {
        future.push(t);
        cursor = next_slot(t);
    }

    // Calendar rules: per rule, where the k-th new bucket opens, and whether
    // the next slot lands in the newest snapshot's own bucket.
    struct Calendar {
        reason: KeepReason,
        count: u32,
        same_bucket: Option<DateTime<Utc>>,
        openings: Vec<DateTime<Utc>>,
    }
    let calendars: Vec<Calendar> = calendar_rules(rules)
        .filter_map(|(reason, count)| {
            let count = count?;
            let newest_bucket = bucket_of(reason, &newest_local);
            let same_bucket =
                first_slot.filter(|t| bucket_of(reason, &t.with_timezone(&tz)) == newest_bucket);
            let mut openings = Vec::new();
            if count != ALL {
                let mut cursor = match same_bucket {
                    Some(_) => next_bucket_start(reason, &newest_local).and_then(at_or_after),
                    None => first_slot,
                };
                while let Some(t) = cursor.filter(|_| openings.len() < count as usize) {
                    openings.push(t);
                    cursor = next_bucket_start(reason, &t.with_timezone(&tz)).and_then(at_or_after);
                }
            }
            Some(Calendar {
                reason,
                count,
                same_bucket,
                openings,
            })
        })
        .collect();

    // Walk newest first, tracking each calendar rule's bucket index (the
    // bucket changes met so far).
    let mut bucket_index: Vec<(Option<i64>, u32)> = vec![(None, 0); calendars.len()];
    decisions
        .into_iter()
        .enumerate()
        .map(|(rank, decision)| {
            let local = decision.time.with_timezone(&tz);
            let oldest = rank == oldest_rank;
            let mut lets_go: Vec<Option<DateTime<Utc>>> = Vec::new();
            for (calendar, (last, index)) in calendars.iter().zip(bucket_index.iter_mut()) {
                let bucket = bucket_of(calendar.reason, &local);
                let same_as_newer = *last == Some(bucket);
                if last.is_some_and(|l| l != bucket) {
                    *index += 1;
                }
                *last = Some(bucket);
                let kept = decision.reasons.contains(&calendar.reason)
                    || decision.reasons.contains(&calendar.reason.oldest());
                if !kept {
                    continue;
                }
                if calendar.count == ALL {
                    // Only a newer snapshot in its own bucket displaces it,
                    // and not the oldest, which "all" keeps regardless.
                    lets_go.push(match (calendar.same_bucket, rank, oldest) {
                        (Some(t), 0, false) => Some(t),
                        _ => None,
                    });
                } else if oldest {
                    // The oldest is kept while fewer than `count` distinct
                    // buckets are newer than it: count the future's.
                    let newer_buckets = if rank == 0 {
                        0
                    } else if same_as_newer {
                        *index + 1
                    } else {
                        *index
                    };
                    let needed = calendar.count.saturating_sub(newer_buckets) as usize;
                    // Only for the sole snapshot does a slot in its own bucket
                    // add a newer bucket (its own).
                    let own = calendar.same_bucket.filter(|_| rank == 0);
                    lets_go.push(
                        own.into_iter()
                            .chain(calendar.openings.iter().copied())
                            .nth(needed.saturating_sub(1)),
                    );
                } else {
                    let needed = calendar.count.saturating_sub(*index) as usize;
                    lets_go.push(match (calendar.same_bucket, *index) {
                        (Some(t), 0) => Some(t),
                        _ => calendar.openings.get(needed.saturating_sub(1)).copied(),
                    });
                }
            }
            if decision.reasons.contains(&KeepReason::Last) {
                lets_go.push(match last {
                    None => None,
                    Some(n) => {
                        let needed = (n as usize).saturating_sub(rank);
                        future.get(needed.saturating_sub(1)).copied()
                    }
                });
            }
            if let (true, Some(within)) = (
                decision.reasons.contains(&KeepReason::Within),
                &rules.within,
            ) {
                lets_go.push(within_lets_go(
                    decision.time,
                    newest,
                    within,
                    tz,
                    &next_slot,
                ));
            }
            for (reason, within) in within_calendar_rules(rules) {
                let regular = decision.reasons.contains(&reason);
                if !regular && !decision.reasons.contains(&reason.oldest()) {
                    continue;
                }
                let mut at = within_lets_go(decision.time, newest, &within, tz, &next_slot);
                // The newest loses its bucket to a new snapshot in it, unless
                // it is also the oldest (then the oldest rule keeps it).
                if rank == 0 && !oldest {
                    let newest_bucket = bucket_of(reason, &newest_local);
                    if let Some(t) = first_slot
                        .filter(|t| bucket_of(reason, &t.with_timezone(&tz)) == newest_bucket)
                    {
                        at = Some(at.map_or(t, |a| a.min(t)));
                    }
                }
                lets_go.push(at);
            }
            if decision.reasons.contains(&KeepReason::Tag) {
                lets_go.push(None);
            }
            let expiry = if !decision.keep() {
                Expiry::Due
            } else if lets_go.iter().any(Option::is_none) {
                Expiry::Never
            } else {
                lets_go
                    .into_iter()
                    .flatten()
                    .max()
                    .map_or(Expiry::Never, Expiry::At)
            };
            Projection { decision, expiry }
        })
        .collect()
}

/// The first future slot whose `within` cutoff reaches `time`.
fn within_lets_go(
    time: DateTime<Utc>,
    newest: DateTime<Utc>,
    within: &KeepWithin,
    tz: Tz,
    next_slot: &impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    // A lower bound of `time + within` (months of 28 days, a day of slack for
    // DST), so the walk below covers days, not the whole duration.
    let shortest = Duration::days(
        i64::from(within.years) * 365 + i64::from(within.months) * 28 + i64::from(within.days) - 1,
    ) + Duration::hours(i64::from(within.hours));
    let mut cursor = next_slot(newest.max(time + shortest));
    // Bounded so a pathological schedule (every minute, years of `within`)
    // cannot spin; past the bound the projection says "never" honestly
    // enough for a label.
    for _ in 0..200_000 {
        let t = cursor?;
        if within_cutoff(t, within, tz) >= time {
            return Some(t);
        }
        cursor = next_slot(t);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{format_time, parse_time};
    use std::collections::BTreeSet;

    fn rules(
        last: Option<u32>,
        h: Option<u32>,
        d: Option<u32>,
        w: Option<u32>,
        m: Option<u32>,
        y: Option<u32>,
    ) -> KeepRules {
        KeepRules {
            last,
            hourly: h,
            daily: d,
            weekly: w,
            monthly: m,
            yearly: y,
            ..KeepRules::default()
        }
    }

    fn daily_history(first: &str, days: i64, hour: u32) -> Vec<Candidate> {
        let start = parse_time(first).unwrap() + Duration::hours(i64::from(hour));
        (0..days)
            .map(|i| {
                let time = start + Duration::days(i);
                Candidate {
                    id: format!("snap-{}", format_time(time)),
                    time,
                    tags: Vec::new(),
                }
            })
            .collect()
    }

    fn kept_dates(decisions: &[Decision]) -> BTreeSet<String> {
        decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| format_time(d.time)[..10].to_string())
            .collect()
    }

    /// 400 daily snapshots, 2025-01-01 .. 2026-02-04 (UTC, 03:00), with
    /// daily 7, weekly 4, monthly 12, yearly 2, worked out by hand the way
    /// restic walks them (newest first, newest of each bucket).
    #[test]
    fn four_hundred_days_keep_exactly_what_restic_keeps() {
        let history = daily_history("2025-01-01T00:00:00Z", 400, 3);
        assert_eq!(format_time(history[399].time), "2026-02-04T03:00:00Z");
        let decisions = plan(
            &rules(None, None, Some(7), Some(4), Some(12), Some(2)),
            Tz::UTC,
            &history,
        );

        let expected: BTreeSet<String> = [
            // daily 7: the 7 newest days
            "2026-02-04",
            "2026-02-03",
            "2026-02-02",
            "2026-02-01",
            "2026-01-31",
            "2026-01-30",
            "2026-01-29",
            // weekly 4: newest of ISO weeks 2026-W06 (Feb 4), W05 (Feb 1, a Sunday), W04 (Jan 25), W03 (Jan 18)
            "2026-01-25",
            "2026-01-18",
            // monthly 12: newest of 2026-02, 2026-01 (Jan 31), then month ends back to 2025-03
            "2025-12-31",
            "2025-11-30",
            "2025-10-31",
            "2025-09-30",
            "2025-08-31",
            "2025-07-31",
            "2025-06-30",
            "2025-05-31",
            "2025-04-30",
            "2025-03-31",
            // yearly 2: newest of 2026 (Feb 4) and of 2025 (Dec 31): already kept
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(kept_dates(&decisions), expected);

        let reasons = |date: &str| {
            decisions
                .iter()
                .find(|d| format_time(d.time).starts_with(date))
                .unwrap()
                .retained_by()
        };
        assert_eq!(reasons("2026-02-04"), "daily,weekly,monthly,yearly");
        assert_eq!(reasons("2026-02-01"), "daily,weekly");
        assert_eq!(reasons("2026-01-31"), "daily,monthly");
        assert_eq!(reasons("2025-12-31"), "monthly,yearly");
        assert_eq!(reasons("2025-03-31"), "monthly");
        assert_eq!(reasons("2025-02-28"), "");
    }

    #[test]
    fn last_keeps_the_newest_n_whatever_their_spacing() {
        let history = daily_history("2026-01-01T00:00:00Z", 10, 0);
        let decisions = plan(
            &rules(Some(3), None, None, None, None, None),
            Tz::UTC,
            &history,
        );
        assert_eq!(
            kept_dates(&decisions),
            ["2026-01-08", "2026-01-09", "2026-01-10"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn several_snapshots_a_day_keep_the_newest_of_each_day() {
        let mut history = Vec::new();
        for day in 1..=3 {
            for hour in [1, 9, 17] {
                let time = parse_time(&format!("2026-01-0{day}T{hour:02}:00:00Z")).unwrap();
                history.push(Candidate {
                    id: format!("snap-{day}-{hour}"),
                    time,
                    tags: Vec::new(),
                });
            }
        }
        let decisions = plan(
            &rules(None, None, Some(2), None, None, None),
            Tz::UTC,
            &history,
        );
        let kept: Vec<&str> = decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(kept, ["snap-3-17", "snap-2-17"]);
    }

    #[test]
    fn buckets_follow_the_policy_time_zone_not_utc() {
        // 23:30 UTC on Jan 1 is already Jan 2 in Berlin, and 22:30 UTC is not.
        let history = vec![
            Candidate {
                id: "a".into(),
                time: parse_time("2026-01-01T22:30:00Z").unwrap(),
                tags: Vec::new(),
            },
            Candidate {
                id: "b".into(),
                time: parse_time("2026-01-01T23:30:00Z").unwrap(),
                tags: Vec::new(),
            },
        ];
        // Count to spare, so the oldest is kept either way (restic's oldest
        // rule); the reason tells whether it was a day of its own.
        let daily = rules(None, None, Some(5), None, None, None);
        let reasons = |tz: Tz| -> Vec<Vec<KeepReason>> {
            plan(&daily, tz, &history)
                .into_iter()
                .map(|d| d.reasons)
                .collect()
        };
        use KeepReason::{Daily, OldestDaily};
        assert_eq!(
            reasons(Tz::UTC),
            [vec![Daily], vec![OldestDaily]],
            "one UTC day: only the newest is the day's"
        );
        assert_eq!(
            reasons(chrono_tz::Europe::Berlin),
            [vec![Daily], vec![Daily]],
            "two Berlin days: both"
        );
        // Kiritimati (UTC+14): local day differs from UTC for most of the day.
        assert_eq!(
            reasons(chrono_tz::Pacific::Kiritimati),
            [vec![Daily], vec![OldestDaily]]
        );
    }

    #[test]
    fn hourly_across_fall_back_buckets_by_wall_clock_like_restic() {
        // Berlin 2026-10-25: 02:00-03:00 local happens twice (00:xx and 01:xx UTC).
        // restic buckets by wall clock, so both fall into local hour 2: one kept.
        let history = vec![
            Candidate {
                id: "first-2am".into(),
                time: parse_time("2026-10-25T00:30:00Z").unwrap(),
                tags: Vec::new(),
            },
            Candidate {
                id: "second-2am".into(),
                time: parse_time("2026-10-25T01:30:00Z").unwrap(),
                tags: Vec::new(),
            },
            Candidate {
                id: "3am".into(),
                time: parse_time("2026-10-25T02:30:00Z").unwrap(),
                tags: Vec::new(),
            },
        ];
        let decisions = plan(
            &rules(None, Some(24), None, None, None, None),
            chrono_tz::Europe::Berlin,
            &history,
        );
        let kept: Vec<(&str, Vec<KeepReason>)> = decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| (d.id.as_str(), d.reasons.clone()))
            .collect();
        // The first 2 am shares the second's hour: only the oldest rule
        // keeps it (24 hours to spare).
        assert_eq!(
            kept,
            [
                ("3am", vec![KeepReason::Hourly]),
                ("second-2am", vec![KeepReason::Hourly]),
                ("first-2am", vec![KeepReason::OldestHourly]),
            ]
        );
    }

    #[test]
    fn iso_weeks_cross_year_ends() {
        // 2026-12-31 (Thu) and 2027-01-01 (Fri) are both ISO week 2026-W53.
        let history = vec![
            Candidate {
                id: "dec31".into(),
                time: parse_time("2026-12-31T12:00:00Z").unwrap(),
                tags: Vec::new(),
            },
            Candidate {
                id: "jan1".into(),
                time: parse_time("2027-01-01T12:00:00Z").unwrap(),
                tags: Vec::new(),
            },
            Candidate {
                id: "jan4".into(),
                time: parse_time("2027-01-04T12:00:00Z").unwrap(),
                tags: Vec::new(),
            },
        ];
        let decisions = plan(
            &rules(None, None, None, Some(5), None, None),
            Tz::UTC,
            &history,
        );
        let kept: Vec<(&str, Vec<KeepReason>)> = decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| (d.id.as_str(), d.reasons.clone()))
            .collect();
        // Dec 31 is in Jan 1's week: kept only as the oldest.
        assert_eq!(
            kept,
            [
                ("jan4", vec![KeepReason::Weekly]),
                ("jan1", vec![KeepReason::Weekly]),
                ("dec31", vec![KeepReason::OldestWeekly]),
            ]
        );
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot_like_go_add_date() {
        let w = |text: &str| KeepRules {
            within: Some(KeepWithin::parse(text).unwrap()),
            ..KeepRules::default()
        };
        let history = daily_history("2026-03-01T00:00:00Z", 31, 12); // Mar 1 .. Mar 31, 12:00
                                                                     // 3d back from Mar 31 12:00 is Mar 28 12:00; "after" excludes Mar 28 itself.
        assert_eq!(kept_dates(&plan(&w("3d"), Tz::UTC, &history)).len(), 3);
        // 1m back from Mar 31 is "Feb 31" = Mar 3 (Go normalisation): Mar 4 .. Mar 31 kept.
        let kept = kept_dates(&plan(&w("1m"), Tz::UTC, &history));
        assert_eq!(kept.iter().next().map(String::as_str), Some("2026-03-04"));
        assert_eq!(kept.len(), 28);
        // 36h: Mar 30 00:00; Mar 30 12:00 and Mar 31 kept.
        assert_eq!(kept_dates(&plan(&w("36h"), Tz::UTC, &history)).len(), 2);
    }

    #[test]
    fn nothing_to_plan_is_fine() {
        assert!(plan(&rules(Some(3), None, None, None, None, None), Tz::UTC, &[]).is_empty());
    }

    mod projection {
        use super::*;
        use crate::schedule::Schedule;
        use proptest::prelude::*;

        /// A snapshot and the slot after which it is no longer kept.
        type LetsGo = (String, Option<DateTime<Utc>>);

        /// Re-plan with one more future snapshot per slot, up to `horizon`
        /// slots: the first slot after which each snapshot is no longer kept.
        fn brute_force(
            rules: &KeepRules,
            tz: Tz,
            history: &[Candidate],
            schedule: &Schedule,
            horizon: usize,
        ) -> (Vec<LetsGo>, DateTime<Utc>) {
            let mut all = history.to_vec();
            let newest = history.iter().map(|c| c.time).max().unwrap();
            let mut lets_go: Vec<LetsGo> = plan(rules, tz, history)
                .into_iter()
                .filter(Decision::keep)
                .map(|d| (d.id, None))
                .collect();
            let mut t = newest;
            for k in 0..horizon {
                t = schedule.next_slot_after(t).unwrap();
                all.push(Candidate {
                    id: format!("future-{k:05}"),
                    time: t,
                    tags: Vec::new(),
                });
                let kept: BTreeSet<String> = plan(rules, tz, &all)
                    .into_iter()
                    .filter(Decision::keep)
                    .map(|d| d.id)
                    .collect();
                for (id, gone) in lets_go.iter_mut() {
                    if gone.is_none() && !kept.contains(id) {
                        *gone = Some(t);
                    }
                }
            }
            (lets_go, t)
        }

        fn small() -> impl Strategy<Value = Option<u32>> {
            prop_oneof![2 => Just(None), 1 => (1u32..5).prop_map(Some)]
        }

        fn within() -> impl Strategy<Value = Option<KeepWithin>> {
            prop_oneof![3 => Just(None), 1 => (0u32..4, 0u32..30).prop_map(|(d, h)| Some(KeepWithin { days: d, hours: h.max(u32::from(d == 0)), ..KeepWithin::default() }))]
        }

        fn keep_rules() -> impl Strategy<Value = KeepRules> {
            (
                (small(), small(), small(), small(), small()),
                prop_oneof![3 => Just(None), 1 => (1u32..3).prop_map(Some), 1 => Just(Some(ALL))],
                within(),
                (within(), within(), within()),
            )
                .prop_map(
                    |((last, hourly, daily, weekly, monthly), yearly, within, (wh, wd, ww))| {
                        KeepRules {
                            last,
                            hourly,
                            daily,
                            weekly,
                            monthly,
                            yearly,
                            within,
                            within_hourly: wh,
                            within_daily: wd,
                            within_weekly: ww,
                            ..KeepRules::default()
                        }
                    },
                )
                .prop_filter("keeps something", |r| !r.is_empty())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            /// The projection agrees with re-running the planner slot by slot:
            /// a snapshot projected to go at slot t is kept until t's snapshot
            /// arrives and not after; one projected beyond the horizon is
            /// still kept at its end.
            #[test]
            fn projection_agrees_with_replanning_slot_by_slot(
                rules in keep_rules(),
                schedule in prop_oneof![
                    Just("@hourly"), Just("@daily"), Just("0 */6 * * *"),
                    Just("30 2 * * *"), Just("0 3 * * 1"), Just("0 0 1 * *")
                ],
                tz in prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("America/New_York")],
                offsets in proptest::collection::vec(0i64..(24 * 90), 1..25),
            ) {
                let schedule = Schedule::parse(schedule, tz).unwrap();
                let zone = schedule.timezone();
                let start = parse_time("2026-09-01T00:00:00Z").unwrap();
                let history: Vec<Candidate> = offsets
                    .iter()
                    .enumerate()
                    .map(|(i, h)| Candidate {
                        id: format!("snap-{i:03}"),
                        time: start + Duration::hours(*h) + Duration::minutes(3),
                        tags: Vec::new(),
                    })
                    .collect();
                let projected = project(&rules, zone, &history, |t| schedule.next_slot_after(t));
                let (brute, horizon_end) = brute_force(&rules, zone, &history, &schedule, 150);
                let by_id: std::collections::HashMap<&str, Expiry> = projected
                    .iter()
                    .map(|p| (p.decision.id.as_str(), p.expiry))
                    .collect();
                prop_assert_eq!(
                    projected.iter().filter(|p| p.expiry != Expiry::Due).count(),
                    brute.len()
                );
                for (id, gone) in &brute {
                    match (by_id[id.as_str()], gone) {
                        (Expiry::At(t), Some(g)) => prop_assert_eq!(t, *g, "{}", id),
                        (Expiry::At(t), None) => prop_assert!(t > horizon_end, "{} projected {} but kept to {}", id, t, horizon_end),
                        (Expiry::Never, None) => {}
                        (other, g) => prop_assert!(false, "{}: projected {:?}, re-planning says {:?}", id, other, g),
                    }
                }
            }
        }

        #[test]
        fn an_orphan_is_never_displaced_and_the_unkept_are_due() {
            let history = daily_history("2026-01-01T00:00:00Z", 5, 3);
            let projected = project(
                &rules(Some(2), None, None, None, None, None),
                Tz::UTC,
                &history,
                |_| None,
            );
            let expiries: Vec<Expiry> = projected.iter().map(|p| p.expiry).collect();
            assert_eq!(
                expiries,
                [
                    Expiry::Never,
                    Expiry::Never,
                    Expiry::Due,
                    Expiry::Due,
                    Expiry::Due
                ]
            );
        }

        #[test]
        fn daily_seven_on_a_daily_schedule_goes_a_week_later() {
            let schedule = Schedule::parse("@daily", "UTC").unwrap();
            let history = daily_history("2026-01-01T00:00:00Z", 10, 0);
            let projected = project(
                &rules(None, None, Some(7), None, None, None),
                Tz::UTC,
                &history,
                |t| schedule.next_slot_after(t),
            );
            // Newest is Jan 10 00:00; Jan 10 is displaced when the 7th new
            // day opens: Jan 17. Jan 4 (oldest kept) goes with Jan 11's.
            assert_eq!(
                projected[0].expiry,
                Expiry::At(parse_time("2026-01-17T00:00:00Z").unwrap())
            );
            assert_eq!(
                projected[6].expiry,
                Expiry::At(parse_time("2026-01-11T00:00:00Z").unwrap())
            );
            assert_eq!(projected[7].expiry, Expiry::Due);
        }
    }
}
