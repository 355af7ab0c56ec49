//! The retention planner against restic's own `forget` golden data, case
//! for case: every policy of restic's `TestApplyPolicy` over its 103
//! snapshots must keep exactly the snapshots restic keeps, for exactly the
//! reasons restic gives (its wording, derived from ours).
//!
//! The fixture `fixtures/restic-forget.json` is generated from a restic
//! checkout by `scripts/restic_forget_cases.py` and records the restic
//! commit it came from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use ebs_lifecycle_core::policy::{KeepRules, KeepWithin, ALL};
use ebs_lifecycle_core::retention::{plan, Candidate, KeepReason};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/restic-forget.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// restic's policy, in this project's rules: `-1` is `"all"`.
fn rules(policy: &Value) -> KeepRules {
    let count = |key: &str| {
        policy[key].as_i64().map(|n| {
            if n == -1 {
                ALL
            } else {
                u32::try_from(n).unwrap()
            }
        })
    };
    let within = |key: &str| policy[key].as_str().map(|d| KeepWithin::parse(d).unwrap());
    KeepRules {
        last: count("last"),
        hourly: count("hourly"),
        daily: count("daily"),
        weekly: count("weekly"),
        monthly: count("monthly"),
        yearly: count("yearly"),
        within: within("within"),
        within_hourly: within("within_hourly"),
        within_daily: within("within_daily"),
        within_weekly: within("within_weekly"),
        within_monthly: within("within_monthly"),
        within_yearly: within("within_yearly"),
        tags: policy["tags"]
            .as_array()
            .map(|lists| {
                lists
                    .iter()
                    .map(|l| {
                        l.as_array()
                            .unwrap()
                            .iter()
                            .map(|t| t.as_str().unwrap().to_string())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// restic's Duration.String(): `1y1m1d`, units in that order, zeros left out.
fn duration(w: &KeepWithin) -> String {
    [
        (w.years, 'y'),
        (w.months, 'm'),
        (w.days, 'd'),
        (w.hours, 'h'),
    ]
    .iter()
    .filter(|(n, _)| *n != 0)
    .map(|(n, u)| format!("{n}{u}"))
    .collect()
}

/// Our reasons in restic's words, in restic's order (tags, within, the
/// count rules finest first, the within rules finest first).
fn restic_words(rules: &KeepRules, reasons: &[KeepReason], tags: &[String]) -> Vec<String> {
    use KeepReason::*;
    let mut out = Vec::new();
    if reasons.contains(&Tag) {
        for list in &rules.tags {
            if list.iter().all(|t| tags.contains(t)) {
                out.push(format!("has tags [{}]", list.join(", ")));
            }
        }
    }
    let within_of = |reason: KeepReason| match reason {
        WithinHourly | OldestWithinHourly => rules.within_hourly,
        WithinDaily | OldestWithinDaily => rules.within_daily,
        WithinWeekly | OldestWithinWeekly => rules.within_weekly,
        WithinMonthly | OldestWithinMonthly => rules.within_monthly,
        WithinYearly | OldestWithinYearly => rules.within_yearly,
        _ => rules.within,
    };
    if reasons.contains(&Within) {
        out.push(format!("within {}", duration(&within_of(Within).unwrap())));
    }
    let order = [
        (Last, "last snapshot"),
        (Hourly, "hourly snapshot"),
        (OldestHourly, "oldest hourly snapshot"),
        (Daily, "daily snapshot"),
        (OldestDaily, "oldest daily snapshot"),
        (Weekly, "weekly snapshot"),
        (OldestWeekly, "oldest weekly snapshot"),
        (Monthly, "monthly snapshot"),
        (OldestMonthly, "oldest monthly snapshot"),
        (Yearly, "yearly snapshot"),
        (OldestYearly, "oldest yearly snapshot"),
    ];
    for (reason, words) in order {
        if reasons.contains(&reason) {
            out.push(words.to_string());
        }
    }
    let within_order = [
        (WithinHourly, "hourly within"),
        (OldestWithinHourly, "oldest hourly within"),
        (WithinDaily, "daily within"),
        (OldestWithinDaily, "oldest daily within"),
        (WithinWeekly, "weekly within"),
        (OldestWithinWeekly, "oldest weekly within"),
        (WithinMonthly, "monthly within"),
        (OldestWithinMonthly, "oldest monthly within"),
        (WithinYearly, "yearly within"),
        (OldestWithinYearly, "oldest yearly within"),
    ];
    for (reason, words) in within_order {
        if reasons.contains(&reason) {
            out.push(format!("{words} {}", duration(&within_of(reason).unwrap())));
        }
    }
    out
}

#[test]
fn every_restic_golden_case_agrees() {
    let fixture = fixture();
    let snapshots = fixture["snapshots"].as_array().unwrap();
    let n = snapshots.len();
    // Ids that sort like restic's stable sort: equal times keep input order.
    let candidates: Vec<Candidate> = snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| Candidate {
            id: format!("{:05}", 99_999 - i),
            time: s["time"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            tags: s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect(),
        })
        .collect();
    let index_of: BTreeMap<String, usize> =
        (0..n).map(|i| (format!("{:05}", 99_999 - i), i)).collect();

    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 40, "restic's TestApplyPolicy has 40 policies");
    let mut disagreements = Vec::new();
    for (number, case) in cases.iter().enumerate() {
        let rules = rules(&case["policy"]);
        let decisions = plan(&rules, Tz::UTC, &candidates);
        // restic lists what it keeps newest first, as our plan is ordered.
        let ours: Vec<(usize, Vec<String>)> = decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| {
                let i = index_of[&d.id];
                (i, restic_words(&rules, &d.reasons, &candidates[i].tags))
            })
            .collect();
        let theirs: Vec<(usize, Vec<String>)> = case["keep"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["reasons"].as_array().unwrap())
            .map(|(i, words)| {
                (
                    usize::try_from(i.as_u64().unwrap()).unwrap(),
                    words
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| w.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect();
        if ours != theirs {
            let first = ours
                .iter()
                .zip(&theirs)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("ours {a:?}, restic {b:?}"))
                .unwrap_or_else(|| format!("{} kept, restic {}", ours.len(), theirs.len()));
            disagreements.push(format!("case {number} {}: {first}", case["policy"]));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree with restic {}:\n{}",
        disagreements.len(),
        cases.len(),
        fixture["restic_commit"],
        disagreements.join("\n")
    );
}
