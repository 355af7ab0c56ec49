//! The report's CSV and its self-contained HTML page (no script, no font,
//! no request for anything: a chart as inline SVG, a table). Pure: the
//! handler stores what these return.

use std::collections::BTreeMap;
use std::fmt::Write;

use ebs_lifecycle_core::coverage::VolumeCoverage;
use ebs_lifecycle_core::tags;

use crate::rows::{VolumeCost, TIMELINES};
use crate::Report;

const GIB: f64 = 1_073_741_824.0;
/// Colours of the rules that keep a snapshot, in the timelines: each rule
/// family its own (`within` and its calendar forms one, the oldest-snapshot
/// rule's forms one), `none` for what the next expiry may delete.
const RULE_COLOURS: [(&str, &str); 10] = [
    ("last", "#2e7d32"),
    ("hourly", "#90caf9"),
    ("daily", "#42a5f5"),
    ("weekly", "#1e88e5"),
    ("monthly", "#6a1b9a"),
    ("yearly", "#ef6c00"),
    ("within", "#00897b"),
    ("oldest", "#8d6e63"),
    ("tag", "#f9a825"),
    ("none", "#c62828"),
];

/// The family of a keep reason (`within-daily` is `within`,
/// `oldest-within-monthly` is `oldest`), and its colour.
fn rule_colour(reason: Option<&str>) -> (&'static str, &'static str) {
    let family = match reason {
        None => "none",
        Some(r) if r.starts_with("oldest") => "oldest",
        Some(r) if r.starts_with("within") => "within",
        Some(r) => r,
    };
    RULE_COLOURS
        .iter()
        .find(|(k, _)| *k == family)
        .copied()
        .unwrap_or(("none", "#c62828"))
}

/// Labels of the timelines' date axis: about six, evenly spaced.
const AXIS_TICKS: i64 = 6;

/// The classes in the order the chart shows them, with their colours.
const CLASSES: [(&str, &str, &str); 6] = [
    ("deployment", "this deployment", "#2e7d32"),
    (
        "data-lifecycle-manager",
        "Data Lifecycle Manager",
        "#1565c0",
    ),
    ("aws-backup", "AWS Backup", "#6a1b9a"),
    ("hand-made", "by hand only", "#ef6c00"),
    ("unprotected", "not at all", "#c62828"),
    // The run ran out of time before it read these volumes' snapshots; the
    // next run starts with them.
    ("not-checked", "not checked this run", "#9e9e9e"),
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A CSV cell. A text a spreadsheet would read as a formula (a volume's
/// `Name` tag is anyone's to write: `=HYPERLINK(...)`) is given a leading
/// `'`, which spreadsheets show as text; numbers, negative ones included,
/// stay numbers.
fn csv_field(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '@', '\t', '\r'])
        || (text.starts_with('-') && text.parse::<f64>().is_err());
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One row per volume.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "volume_id,name,protected_by,policy,newest_snapshot,gap_since,gap_intervals,gap_severity,restore_verified_at,restore_snapshot,restore_seconds,restore_unverified,excluded\n",
    );
    for c in &report.coverage {
        let gap = c.gap.as_ref();
        let restore = c.restore.as_ref();
        let fields = [
            c.volume_id.clone(),
            c.name.clone().unwrap_or_default(),
            c.cover.as_str().to_string(),
            c.policy.clone().unwrap_or_default(),
            c.newest.map(tags::format_time).unwrap_or_default(),
            gap.map(|g| tags::format_time(g.since)).unwrap_or_default(),
            gap.map(|g| g.intervals.to_string()).unwrap_or_default(),
            gap.map(|g| format!("{:?}", g.severity).to_lowercase())
                .unwrap_or_default(),
            restore
                .and_then(|r| r.verified_at)
                .map(tags::format_time)
                .unwrap_or_default(),
            restore
                .and_then(|r| r.snapshot_id.clone())
                .unwrap_or_default(),
            restore
                .and_then(|r| r.seconds)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            restore
                .map(|r| r.unverified.to_string())
                .unwrap_or_default(),
            c.excluded.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// cost.csv's first line.
pub(crate) const COST_CSV_HEADER: &str = "volume_id,policy,snapshot_id,time,tier,full_bytes,unique_bytes,added_bytes,retained_by,expires,expiry_deletes,archive_saving_usd\n";

/// cost.csv's rows of one volume: one per snapshot, with what it costs.
pub(crate) fn cost_csv_rows(v: &VolumeCost, out: &mut String) {
    let opt = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    for c in &v.snapshots {
        let fields = [
            v.volume_id.clone(),
            v.policy.clone(),
            c.id.clone(),
            c.time.clone(),
            c.tier.to_string(),
            opt(c.full_bytes),
            opt(c.unique_bytes),
            opt(c.added_bytes),
            c.retained_by.join(" "),
            c.expires.clone(),
            c.expiry_deletes.to_string(),
            c.archive_saving_usd
                .map(|u| format!("{u:.4}"))
                .unwrap_or_default(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
}

/// cost.csv from the snapshots in memory (the run spools them instead:
/// `crate::spool`).
pub fn cost_csv(report: &Report) -> String {
    let mut out = String::from(COST_CSV_HEADER);
    for v in report.cost.volumes.iter() {
        cost_csv_rows(v, &mut out);
    }
    out
}

/// Per policy: the bytes stored and the monthly cost.
fn per_policy(report: &Report) -> Vec<(String, u64, f64)> {
    let mut by: std::collections::BTreeMap<&str, (u64, f64)> = Default::default();
    for v in &report.cost.volumes {
        let e = by.entry(v.policy.as_str()).or_default();
        e.0 += v.standard_bytes + v.archive_bytes;
        e.1 += v.monthly_usd;
    }
    by.into_iter()
        .map(|(p, (b, u))| (p.to_string(), b, u))
        .collect()
}

/// Storage and monthly cost per policy: one bar each, the figures beside.
fn cost_chart(report: &Report) -> String {
    let policies = per_policy(report);
    let max = policies.iter().map(|p| p.2).fold(0.0, f64::max);
    let (label_w, bar_w, row_h) = (190.0, 360.0, 30usize);
    let height = row_h * policies.len().max(1) + 10;
    let mut svg = format!(
        r#"<svg id="cost" role="img" aria-label="monthly cost per policy" width="{}" height="{height}" data-total-usd="{:.4}" xmlns="http://www.w3.org/2000/svg">"#,
        label_w + bar_w + 280.0,
        report.cost.monthly_usd
    );
    for (i, (policy, bytes, usd)) in policies.iter().enumerate() {
        let y = 5 + i * row_h;
        let w = if max > 0.0 { usd / max * bar_w } else { 0.0 };
        let _ = write!(
            svg,
            r##"<text x="0" y="{}" font-size="14">{}</text><rect data-policy="{}" data-usd="{usd:.4}" data-bytes="{bytes}" x="{label_w}" y="{y}" width="{w:.1}" height="{}" fill="#1565c0"/><text x="{:.1}" y="{}" font-size="14">{usd:.2} USD/month, {:.1} GiB</text>"##,
            y + 18,
            escape(policy),
            escape(policy),
            row_h - 8,
            label_w + w + 6.0,
            y + 18,
            *bytes as f64 / GIB,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Storage over the kept history: per policy, what its kept snapshots
/// store, accumulated by day (each adds what it added).
fn storage_chart(report: &Report) -> String {
    let series = &report.cost.storage;
    let (w, h, left) = (720.0, 220.0, 60.0);
    let mut svg = format!(
        r#"<svg id="storage" role="img" aria-label="storage per policy over the kept history" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">"#,
        w + left + 160.0,
        h + 30.0
    );
    let days = || series.values().flat_map(|s| s.keys().copied());
    let (Some(t0), Some(t1)) = (days().min(), days().max()) else {
        svg.push_str("</svg>");
        return svg;
    };
    let totals: Vec<u64> = series.values().map(|s| s.values().sum()).collect();
    let top = totals.iter().copied().max().unwrap_or(1).max(1) as f64;
    let span = (t1 - t0).max(1) as f64;
    let colours = [
        "#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#c62828", "#00838f",
    ];
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{h}" x2="{}" y2="{h}" stroke="#888"/><text x="0" y="14" font-size="12">{:.1} GiB</text><text x="{left}" y="{}" font-size="12">{}</text><text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"##,
        left + w,
        top / GIB,
        h + 18.0,
        tags::format_time(chrono::DateTime::from_timestamp(t0, 0).unwrap_or_default())
            .get(..10)
            .unwrap_or(""),
        left + w,
        h + 18.0,
        tags::format_time(chrono::DateTime::from_timestamp(t1, 0).unwrap_or_default())
            .get(..10)
            .unwrap_or(""),
    );
    for (i, (policy, points)) in series.iter().enumerate() {
        let mut sum = 0u64;
        let path: Vec<String> = points
            .iter()
            .map(|(t, added)| {
                sum += added;
                format!(
                    "{:.1},{:.1}",
                    left + (t - t0) as f64 / span * w,
                    h - sum as f64 / top * (h - 10.0)
                )
            })
            .collect();
        let colour = colours[i % colours.len()];
        let _ = write!(
            svg,
            r#"<polyline data-policy="{}" data-bytes="{sum}" points="{}" fill="none" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}" font-size="12" fill="{colour}">{}</text>"#,
            escape(policy),
            path.join(" "),
            left + w + 8.0,
            20 + i * 16,
            escape(policy),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The volumes and policies by monthly cost, the costliest first (ties by
/// volume id): the timelines' order and the table's.
fn costliest_first(report: &Report) -> Vec<&VolumeCost> {
    let mut volumes: Vec<&VolumeCost> = report.cost.volumes.iter().collect();
    volumes.sort_by(|a, b| a.costliest_first(b));
    volumes
}

/// Per-volume timelines of the kept snapshots, each dot coloured by the
/// rule that keeps it (the costliest volumes, at most [`TIMELINES`], kept
/// with their snapshots as the run priced them).
fn timelines(report: &Report) -> String {
    let volumes = &report.cost.timelines;
    // Volumes by their Name where they have one (the id in the tooltip).
    let names: BTreeMap<&str, &str> = report
        .coverage
        .iter()
        .filter_map(|c| Some((c.volume_id.as_str(), c.name.as_deref()?)))
        .collect();
    let times: Vec<i64> = volumes
        .iter()
        .flat_map(|v| &v.snapshots)
        .filter_map(|c| tags::parse_time(&c.time))
        .map(|t| t.timestamp())
        .collect();
    let (t0, t1) = (
        times.iter().copied().min().unwrap_or(0),
        times.iter().copied().max().unwrap_or(0),
    );
    let span = (t1 - t0).max(1) as f64;
    let (left, w, row_h) = (260.0, 600.0, 22usize);
    let rows_h = row_h * volumes.len().max(1) + 10;
    let mut svg = format!(
        r#"<svg id="timelines" role="img" aria-label="kept snapshots per volume" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">"#,
        left + w + 60.0,
        rows_h + 30
    );
    for (i, v) in volumes.iter().enumerate() {
        let y = 15 + i * row_h;
        let label = match names.get(v.volume_id.as_str()) {
            Some(name) => shorten(name, 28),
            None => v.volume_id.clone(),
        };
        let _ = write!(
            svg,
            r##"<g data-volume="{}" data-snapshots="{}"><text x="0" y="{}" font-size="12"><title>{}</title>{} ({})</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            escape(&v.volume_id),
            v.snapshots.len(),
            y + 4,
            escape(&v.volume_id),
            escape(&label),
            escape(&v.policy),
            left + w,
        );
        for c in &v.snapshots {
            let Some(t) = tags::parse_time(&c.time) else {
                continue;
            };
            let (family, rule) = rule_colour(c.retained_by.first().copied());
            let x = left + (t.timestamp() - t0) as f64 / span * w;
            let title = format!(
                "{} {} kept by {} ({} unique bytes, {} tier)",
                c.id,
                c.time,
                if c.retained_by.is_empty() {
                    "none".to_string()
                } else {
                    c.retained_by.join(", ")
                },
                c.unique_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "?".into()),
                c.tier,
            );
            // A dot in the standard tier, a square in the archive tier.
            let _ = if c.tier == "archive" {
                write!(
                    svg,
                    r#"<rect class="snapshot" data-tier="archive" data-rule="{family}" x="{:.1}" y="{}" width="8" height="8" fill="{rule}"><title>{}</title></rect>"#,
                    x - 4.0,
                    y - 4,
                    escape(&title)
                )
            } else {
                write!(
                    svg,
                    r#"<circle class="snapshot" data-tier="standard" data-rule="{family}" cx="{x:.1}" cy="{y}" r="4" fill="{rule}"><title>{}</title></circle>"#,
                    escape(&title)
                )
            };
        }
        svg.push_str("</g>");
    }
    // The date axis: the first and the last snapshot's days and evenly
    // spaced days between, each at its place on the line above.
    if !times.is_empty() {
        let y = rows_h;
        let _ = write!(
            svg,
            r##"<g id="axis"><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#999"/>"##,
            left + w
        );
        let ticks = if t1 > t0 { AXIS_TICKS } else { 1 };
        for k in 0..ticks {
            let t = t0 + (t1 - t0) * k / (ticks - 1).max(1);
            let x = left + (t - t0) as f64 / span * w;
            let day = chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{}" stroke="#999"/><text class="tick" data-time="{t}" x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{day}</text>"##,
                y + 4,
                y + 17
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars()
        .take(max - 1)
        .chain(std::iter::once('…'))
        .collect()
}

fn cost_rows(report: &Report) -> String {
    let volumes = costliest_first(report);
    volumes
        .iter()
        .map(|v| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.4}</td><td>{:.2}</td><td>{:.4}</td></tr>",
                escape(&v.volume_id),
                escape(&v.policy),
                v.snapshot_count,
                v.standard_bytes as f64 / GIB,
                v.archive_bytes as f64 / GIB,
                v.monthly_usd,
                v.expiry_frees_bytes as f64 / GIB,
                v.archive_saves_usd,
            )
        })
        .collect()
}

/// The coverage chart: one bar per class, its count written beside it.
fn chart(report: &Report) -> String {
    let max = CLASSES
        .iter()
        .map(|(k, _, _)| report.by_cover.get(k).copied().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, row_h) = (190usize, 360usize, 30usize);
    let height = row_h * CLASSES.len() + 10;
    let mut svg = format!(
        r#"<svg id="coverage" role="img" aria-label="volumes by protection" width="{}" height="{height}" data-total="{}" xmlns="http://www.w3.org/2000/svg">"#,
        label_w + bar_w + 60,
        report.volumes
    );
    for (i, (key, label, colour)) in CLASSES.iter().enumerate() {
        let n = report.by_cover.get(key).copied().unwrap_or(0);
        let y = 5 + i * row_h;
        let w = n * bar_w / max;
        let _ = write!(
            svg,
            r#"<text x="0" y="{}" font-size="14">{label}</text><rect data-cover="{key}" data-count="{n}" x="{label_w}" y="{y}" width="{w}" height="{}" fill="{colour}"/><text x="{}" y="{}" font-size="14">{n}</text>"#,
            y + 18,
            row_h - 8,
            label_w + w + 6,
            y + 18,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn row(c: &VolumeCoverage) -> String {
    let gap = c
        .gap
        .as_ref()
        .map(|g| {
            format!(
                "since {} ({} intervals, {:?})",
                tags::format_time(g.since),
                g.intervals,
                g.severity
            )
        })
        .unwrap_or_default();
    let restore = match &c.restore {
        None => String::new(),
        Some(r) => match (r.verified_at, &r.snapshot_id) {
            (Some(at), Some(snapshot)) => format!(
                "{}{} ({}, {} s)",
                if r.unverified {
                    "restore-unverified: last "
                } else {
                    ""
                },
                tags::format_time(at),
                snapshot,
                r.seconds.unwrap_or(0)
            ),
            _ => "restore-unverified: never drilled".into(),
        },
    };
    format!(
        "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        if c.gap.is_some() {
            "gap"
        } else if c.restore.as_ref().is_some_and(|r| r.unverified) {
            "restore-unverified"
        } else {
            c.cover.as_str()
        },
        escape(&c.volume_id),
        escape(c.name.as_deref().unwrap_or("")),
        c.cover.as_str(),
        // A volume of an opted-in instance that a policy leaves out: why.
        escape(c.policy.as_deref().or(c.excluded.as_deref()).unwrap_or("")),
        c.newest.map(tags::format_time).unwrap_or_default(),
        escape(&gap),
        escape(&restore)
    )
}

/// The page people open: the chart, the gaps first, then every volume.
/// The ledger's holds in effect, soonest to end first: what keeps a
/// snapshot that removing a tag cannot lift (docs/policies-and-tags.md,
/// "Holds").
fn holds(report: &Report) -> String {
    if report.holds.is_empty() {
        return r#"<h2>Holds</h2><p id="holds">No hold in the stack's ledger.</p>"#.to_string();
    }
    let rows: String = report
        .holds
        .iter()
        .map(|h| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&h.resource_id),
                tags::format_time(h.until),
                escape(&h.reason),
                escape(&h.by),
                tags::format_time(h.at),
            )
        })
        .collect();
    format!(
        r#"<h2>Holds</h2><p id="holds"><b>{}</b> holds in the stack's ledger keep these snapshots and volumes' snapshots from deletion, whatever their tags say.</p>
<table><thead><tr><th>snapshot or volume</th><th>until</th><th>reason</th><th>set by</th><th>set at</th></tr></thead>
<tbody>{rows}</tbody></table>"#,
        report.holds.len()
    )
}

pub fn html(report: &Report) -> String {
    let mut volumes: Vec<&VolumeCoverage> = report.coverage.iter().collect();
    volumes.sort_by_key(|c| (c.gap.is_none(), c.cover, c.volume_id.clone()));
    let rows: String = volumes.iter().map(|c| row(c)).collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EBS snapshot coverage: {deployment}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; text-align: left; }}
tr.gap td {{ background: #ffebee; }}
tr.unprotected td {{ background: #fff3e0; }}
tr.not-checked td {{ color: #757575; }}
tr.restore-unverified td {{ background: #fffde7; }}
</style></head>
<body>
<h1>EBS snapshot coverage</h1>
<p>Deployment <b>{deployment}</b>, {time}: <b id="volumes">{volumes_n}</b> volumes,
<b id="gaps">{gaps}</b> of this deployment's in a coverage gap,
<b id="restore-unverified">{restore_unverified}</b> restore-unverified (no restore drill passed within the last {max_age} days{restore_unknown}).</p>
{chart}
<table><thead><tr><th>volume</th><th>name</th><th>protected by</th><th>policy</th><th>newest snapshot</th><th>gap</th><th>last verified restore</th></tr></thead>
<tbody>{rows}</tbody></table>
{holds}
<h2>What the snapshots cost</h2>
<p><b id="snapshots">{snapshots}</b> snapshots of this deployment store <b id="stored-gib">{stored:.2}</b> GiB
(standard {standard:.2} GiB, archive {archive:.2} GiB): about <b id="monthly-usd">{monthly:.2}</b> USD a month
at {price_standard} / {price_archive} USD per GB-month. The next expiry frees at least <b id="frees-gib">{frees:.2}</b> GiB;
archiving the {candidates} snapshots the policies' archive rules pick (monthly and yearly after 90 days where a policy has none) would save <b id="archive-usd">{saves:.2}</b> USD over their kept life.
{left}</p>
{cost_chart}
<h3>Storage over the kept history</h3>
{storage_chart}
<h3>Kept snapshots per volume (the {timelines} costliest)</h3>
<p>{legend}</p>
{timelines_chart}
<table><thead><tr><th>volume</th><th>policy</th><th>snapshots</th><th>standard GiB</th><th>archive GiB</th><th>USD/month</th><th>next expiry frees GiB</th><th>archiving saves USD</th></tr></thead>
<tbody>{cost_rows}</tbody></table>
</body></html>
"#,
        deployment = escape(&report.header.deployment),
        time = escape(&report.header.time),
        volumes_n = report.volumes,
        gaps = report.gaps,
        restore_unverified = report.restore_unverified,
        max_age = report.restore_max_age_days,
        restore_unknown = if report.restore_unknown {
            "; the drills' records could not be read this run, so none is counted"
        } else {
            ""
        },
        chart = chart(report),
        holds = holds(report),
        snapshots = report.cost.snapshots,
        stored = (report.cost.standard_bytes + report.cost.archive_bytes) as f64 / GIB,
        standard = report.cost.standard_bytes as f64 / GIB,
        archive = report.cost.archive_bytes as f64 / GIB,
        monthly = report.cost.monthly_usd,
        price_standard = report.cost.prices.map_or(0.0, |p| p.standard),
        price_archive = report.cost.prices.map_or(0.0, |p| p.archive),
        frees = report.cost.expiry_frees_bytes as f64 / GIB,
        candidates = report.cost.archive_candidates,
        saves = report.cost.archive_saves_usd,
        left = if report.cost.left > 0 {
            format!(
                "<br><b>{} snapshots not measured yet</b>: the next runs continue where this one stopped.",
                report.cost.left
            )
        } else {
            String::new()
        },
        cost_chart = cost_chart(report),
        storage_chart = storage_chart(report),
        timelines = TIMELINES,
        legend = RULE_COLOURS
            .iter()
            .map(|(rule, colour)| format!(r#"<span style="color:{colour}">&#9679; {rule}</span>"#))
            .chain(std::iter::once(
                "(a square: in the archive tier)".to_string()
            ))
            .collect::<Vec<_>>()
            .join(" "),
        timelines_chart = timelines(report),
        cost_rows = cost_rows(report),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebs_lifecycle_core::coverage::{Cover, Gap};
    use ebs_lifecycle_core::notify::Severity;

    fn report() -> Report {
        let t = |s: &str| tags::parse_time(s).unwrap();
        let coverage = vec![
            VolumeCoverage {
                volume_id: "vol-1".into(),
                name: Some("db, \"main\" <prod>".into()),
                cover: Cover::Deployment,
                policy: Some("gold".into()),
                newest: Some(t("2026-03-01T00:00:12Z")),
                gap: Some(Gap {
                    since: t("2026-03-01T00:00:12Z"),
                    intervals: 3,
                    severity: Severity::Warning,
                }),
                restore: Some(ebs_lifecycle_core::coverage::RestoreStatus {
                    verified_at: Some(t("2026-02-20T05:00:00Z")),
                    snapshot_id: Some("snap-1".into()),
                    seconds: Some(41),
                    unverified: false,
                }),
                excluded: None,
            },
            VolumeCoverage {
                volume_id: "vol-2".into(),
                name: None,
                cover: Cover::Unprotected,
                policy: None,
                newest: None,
                gap: None,
                restore: None,
                excluded: Some("policy fleet excludes it (boot volume)".into()),
            },
        ];
        let (by_cover, gaps) = ebs_lifecycle_core::coverage::counts(&coverage);
        Report {
            volumes: 2,
            by_cover,
            gaps,
            coverage,
            ..Report::default()
        }
    }

    #[test]
    fn the_page_lists_the_ledger_holds_escaped() {
        let t = |s: &str| tags::parse_time(s).unwrap();
        let mut report = report();
        assert!(html(&report).contains("No hold in the stack's ledger."));
        report.holds = vec![ebs_lifecycle_core::holds::Hold {
            resource_id: "vol-0123456789abcdef0".into(),
            until: t("2027-03-01T00:00:00Z"),
            reason: "<script>legal</script>".into(),
            by: "arn:aws:iam::111111111111:user/ann".into(),
            at: t("2026-12-01T00:00:00Z"),
        }];
        let page = html(&report);
        assert!(page.contains("<b>1</b> holds"));
        assert!(page.contains("<td>vol-0123456789abcdef0</td><td>2027-03-01T00:00:00Z</td>"));
        assert!(page.contains("&lt;script&gt;legal&lt;/script&gt;"));
        assert!(!page.contains("<script>legal"));
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_as_a_formula_is_text() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for (given, written) in [
            ("+1+cmd", "'+1+cmd"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("-2+3", "'-2+3"),
            ("\t=1", "'\t=1"),
            ("-12.5", "-12.5"),
            ("db-main", "db-main"),
        ] {
            assert_eq!(csv_field(given), written, "{given}");
        }
    }

    #[test]
    fn the_csv_has_a_row_per_volume_and_quotes_what_needs_it() {
        let text = csv(&report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("vol-1,\"db, \"\"main\"\" <prod>\",deployment,gold,"));
        assert!(lines[1].ends_with(",3,warning,2026-02-20T05:00:00Z,snap-1,41,false,"));
        // Why the deployment leaves a volume of an opted-in instance out.
        assert_eq!(
            lines[2],
            "vol-2,,unprotected,,,,,,,,,,policy fleet excludes it (boot volume)"
        );
    }

    #[test]
    fn the_page_is_self_contained_escaped_and_charts_the_counts() {
        let page = html(&report());
        assert!(!page.contains("<script"));
        // The last verified restore of each of the deployment's volumes.
        assert!(page.contains("<td>2026-02-20T05:00:00Z (snap-1, 41 s)</td>"));
        assert!(page.contains(r#"<b id="restore-unverified">0</b> restore-unverified"#));
        // The SVG namespace is the only address on the page.
        assert_eq!(
            page.matches("http://").count(),
            page.matches("http://www.w3.org/2000/svg").count()
        );
        assert!(!page.contains("https://"));
        assert!(page.contains("db, &quot;main&quot; &lt;prod&gt;"));
        assert!(page.contains(r#"data-cover="deployment" data-count="1""#));
        assert!(page.contains(r#"data-cover="unprotected" data-count="1""#));
        assert!(page.contains(r#"data-cover="aws-backup" data-count="0""#));
        assert!(page.contains("<td>policy fleet excludes it (boot volume)</td>"));
        // The gap comes first.
        assert!(page.find("vol-1").unwrap() < page.find("vol-2").unwrap());
    }

    #[test]
    fn timelines_draw_a_dot_per_standard_snapshot_and_a_square_per_archived_one() {
        use crate::rows::{SnapshotCost, VolumeCost};
        let snapshot = |id: &str, time: &str, tier: &'static str| SnapshotCost {
            id: id.into(),
            time: time.into(),
            tier,
            full_bytes: Some(1 << 30),
            unique_bytes: Some(1 << 20),
            added_bytes: Some(1 << 20),
            retained_by: vec!["monthly"],
            expires: "never".into(),
            expiry_deletes: false,
            archive_saving_usd: None,
        };
        let mut r = report();
        r.cost.add(VolumeCost {
            volume_id: "vol-1".into(),
            policy: "gold".into(),
            standard_bytes: 1 << 20,
            archive_bytes: 1 << 30,
            monthly_usd: 0.1,
            expiry_frees_bytes: 0,
            archive_saves_usd: 0.0,
            snapshot_count: 0,
            snapshots: vec![
                snapshot("snap-a", "2026-01-31T00:00:00Z", "archive"),
                snapshot("snap-b", "2026-02-28T00:00:00Z", "standard"),
            ],
        });
        let page = html(&r);
        assert_eq!(
            page.matches(r#"<rect class="snapshot" data-tier="archive""#)
                .count(),
            1
        );
        assert_eq!(
            page.matches(r#"<circle class="snapshot" data-tier="standard""#)
                .count(),
            1
        );
        assert!(page.contains(
            "snap-a 2026-01-31T00:00:00Z kept by monthly (1048576 unique bytes, archive tier)"
        ));
        // The date axis runs from the first snapshot's day to the last's.
        assert!(page.contains(">2026-01-31</text>"), "the first day");
        assert!(page.contains(">2026-02-28</text>"), "the last day");
        assert_eq!(page.matches(r#"class="tick""#).count(), 6);
        let csv = cost_csv(&r);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().nth(1).unwrap().starts_with("vol-1,gold,snap-a,2026-01-31T00:00:00Z,archive,1073741824,1048576,1048576,monthly,never,false,"));
    }

    #[test]
    fn every_keep_rule_has_its_own_colour_and_a_deletable_snapshot_the_none_colour() {
        let colour = |r: Option<&str>| rule_colour(r).1;
        let families = [
            "last", "hourly", "daily", "weekly", "monthly", "yearly", "within", "oldest", "tag",
        ];
        let mut seen: Vec<&str> = families.iter().map(|f| colour(Some(f))).collect();
        seen.push(colour(None));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), families.len() + 1, "one colour each");
        // The forms of a family take its colour, never a calendar rule's.
        assert_eq!(colour(Some("within-daily")), colour(Some("within")));
        assert_eq!(
            colour(Some("oldest-within-monthly")),
            colour(Some("oldest"))
        );
        assert_ne!(colour(Some("within-daily")), colour(Some("daily")));
        assert_ne!(colour(Some("tag")), colour(None));
        // Every reason the retention planner gives has a family of its own.
        for reason in [
            "within-hourly",
            "within-yearly",
            "oldest-daily",
            "oldest-yearly",
            "oldest-within-hourly",
        ] {
            assert_ne!(rule_colour(Some(reason)).0, "none", "{reason}");
        }
    }

    #[test]
    fn timelines_name_volumes_by_their_name_tag() {
        use crate::rows::VolumeCost;
        let mut r = report();
        r.coverage[0].name = Some("a database with a very long name indeed".into());
        let id = r.coverage[0].volume_id.clone();
        r.cost.add(VolumeCost {
            volume_id: id.clone(),
            policy: "gold".into(),
            standard_bytes: 1,
            archive_bytes: 0,
            monthly_usd: 0.1,
            expiry_frees_bytes: 0,
            archive_saves_usd: 0.0,
            snapshot_count: 0,
            snapshots: Vec::new(),
        });
        let page = html(&r);
        assert!(
            page.contains(&format!(
                "<title>{id}</title>a database with a very long… (gold)"
            )),
            "{page}"
        );
    }
}
