//! The retention planner: which of one volume's snapshots the `keep` rules
//! keep, and why. Pure: no AWS, no clock.
//!
//! Semantics are exactly restic's `forget` (internal/restic/snapshot_policy.go):
//! - snapshots are considered newest first (ties broken by id, so the result
//!   is deterministic);
//! - `last N` keeps the N newest;
//! - each calendar rule (`hourly`, `daily`, `weekly` on ISO weeks, `monthly`,
//!   `yearly`) keeps the newest snapshot of each distinct bucket it meets,
//!   until it has kept its count; buckets are read on the wall clock of the
//!   policy's time zone;
//! - `within D` keeps every snapshot taken after (newest snapshot - D), with D
//!   subtracted in calendar units as Go's `AddDate` does (2026-03-31 minus one
//!   month is 2026-03-03). Like restic, D is measured back from the newest
//!   snapshot, not from "now", so a volume whose backups stopped does not lose
//!   its last days of history as time passes.
//!
//! A snapshot kept by no rule is not kept. Whether it may really be deleted is
//! for the safety rules (`crate::safety`) to say.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::policy::{KeepRules, KeepWithin};

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
}

impl KeepReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
            Self::Within => "within",
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
fn bucket_of(reason: KeepReason, local: &DateTime<Tz>) -> i64 {
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
        KeepReason::Last | KeepReason::Within => 0,
    }
}

/// `t` minus `within`, on the wall clock of `tz`, normalised like Go's `AddDate`.
fn within_cutoff(t: DateTime<Utc>, within: &KeepWithin, tz: Tz) -> DateTime<Utc> {
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

/// Decide, for one volume's snapshots, which the rules keep and why.
/// The result is in planning order: newest first.
pub fn plan(rules: &KeepRules, tz: Tz, snapshots: &[Candidate]) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = snapshots.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));

    let mut buckets: Vec<Bucket> = [
        (KeepReason::Hourly, rules.hourly),
        (KeepReason::Daily, rules.daily),
        (KeepReason::Weekly, rules.weekly),
        (KeepReason::Monthly, rules.monthly),
        (KeepReason::Yearly, rules.yearly),
    ]
    .into_iter()
    .filter_map(|(reason, count)| {
        count.map(|remaining| Bucket {
            reason,
            remaining,
            last: None,
        })
    })
    .collect();
    let cutoff = match (&rules.within, order.first()) {
        (Some(within), Some(newest)) => Some(within_cutoff(newest.time, within, tz)),
        _ => None,
    };
    let last = rules.last.unwrap_or(0) as usize;

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
                if bucket.last != Some(value) {
                    bucket.last = Some(value);
                    bucket.remaining -= 1;
                    reasons.push(bucket.reason);
                }
            }
            if cutoff.is_some_and(|c| snapshot.time > c) {
                reasons.push(KeepReason::Within);
            }
            Decision {
                id: snapshot.id.clone(),
                time: snapshot.time,
                reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{format_time, parse_time};
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
            within: None,
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
            },
            Candidate {
                id: "b".into(),
                time: parse_time("2026-01-01T23:30:00Z").unwrap(),
            },
        ];
        let daily = rules(None, None, Some(5), None, None, None);
        let utc: Vec<bool> = plan(&daily, Tz::UTC, &history)
            .iter()
            .map(Decision::keep)
            .collect();
        assert_eq!(utc, [true, false], "one UTC day: only the newest");
        let berlin: Vec<bool> = plan(&daily, chrono_tz::Europe::Berlin, &history)
            .iter()
            .map(Decision::keep)
            .collect();
        assert_eq!(berlin, [true, true], "two Berlin days: both");
        // Kiritimati (UTC+14): local day differs from UTC for most of the day.
        let kiritimati = plan(&daily, chrono_tz::Pacific::Kiritimati, &history);
        assert_eq!(kiritimati.iter().filter(|d| d.keep()).count(), 1);
    }

    #[test]
    fn hourly_across_fall_back_buckets_by_wall_clock_like_restic() {
        // Berlin 2026-10-25: 02:00-03:00 local happens twice (00:xx and 01:xx UTC).
        // restic buckets by wall clock, so both fall into local hour 2: one kept.
        let history = vec![
            Candidate {
                id: "first-2am".into(),
                time: parse_time("2026-10-25T00:30:00Z").unwrap(),
            },
            Candidate {
                id: "second-2am".into(),
                time: parse_time("2026-10-25T01:30:00Z").unwrap(),
            },
            Candidate {
                id: "3am".into(),
                time: parse_time("2026-10-25T02:30:00Z").unwrap(),
            },
        ];
        let decisions = plan(
            &rules(None, Some(24), None, None, None, None),
            chrono_tz::Europe::Berlin,
            &history,
        );
        let kept: Vec<&str> = decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(kept, ["3am", "second-2am"]);
    }

    #[test]
    fn iso_weeks_cross_year_ends() {
        // 2026-12-31 (Thu) and 2027-01-01 (Fri) are both ISO week 2026-W53.
        let history = vec![
            Candidate {
                id: "dec31".into(),
                time: parse_time("2026-12-31T12:00:00Z").unwrap(),
            },
            Candidate {
                id: "jan1".into(),
                time: parse_time("2027-01-01T12:00:00Z").unwrap(),
            },
            Candidate {
                id: "jan4".into(),
                time: parse_time("2027-01-04T12:00:00Z").unwrap(),
            },
        ];
        let decisions = plan(
            &rules(None, None, None, Some(5), None, None),
            Tz::UTC,
            &history,
        );
        let kept: Vec<&str> = decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(kept, ["jan4", "jan1"]);
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
}
