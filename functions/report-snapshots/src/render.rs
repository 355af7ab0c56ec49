//! The report's CSV and its self-contained HTML page (no script, no font,
//! no request for anything: a chart as inline SVG, a table). Pure: the
//! handler stores what these return.

use std::fmt::Write;

use ebs_lifecycle_core::coverage::VolumeCoverage;
use ebs_lifecycle_core::tags;

use crate::Report;

/// The classes in the order the chart shows them, with their colours.
const CLASSES: [(&str, &str, &str); 5] = [
    ("deployment", "this deployment", "#2e7d32"),
    (
        "data-lifecycle-manager",
        "Data Lifecycle Manager",
        "#1565c0",
    ),
    ("aws-backup", "AWS Backup", "#6a1b9a"),
    ("hand-made", "by hand only", "#ef6c00"),
    ("unprotected", "not at all", "#c62828"),
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// One row per volume.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "volume_id,name,protected_by,policy,newest_snapshot,gap_since,gap_intervals,gap_severity\n",
    );
    for c in &report.coverage {
        let gap = c.gap.as_ref();
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
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
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
    format!(
        "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        if c.gap.is_some() {
            "gap"
        } else {
            c.cover.as_str()
        },
        escape(&c.volume_id),
        escape(c.name.as_deref().unwrap_or("")),
        c.cover.as_str(),
        escape(c.policy.as_deref().unwrap_or("")),
        c.newest.map(tags::format_time).unwrap_or_default(),
        escape(&gap)
    )
}

/// The page people open: the chart, the gaps first, then every volume.
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
</style></head>
<body>
<h1>EBS snapshot coverage</h1>
<p>Deployment <b>{deployment}</b>, {time}: <b id="volumes">{volumes_n}</b> volumes,
<b id="gaps">{gaps}</b> of this deployment's in a coverage gap.</p>
{chart}
<table><thead><tr><th>volume</th><th>name</th><th>protected by</th><th>policy</th><th>newest snapshot</th><th>gap</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"#,
        deployment = escape(&report.header.deployment),
        time = escape(&report.header.time),
        volumes_n = report.volumes,
        gaps = report.gaps,
        chart = chart(report),
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
            },
            VolumeCoverage {
                volume_id: "vol-2".into(),
                name: None,
                cover: Cover::Unprotected,
                policy: None,
                newest: None,
                gap: None,
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
    fn the_csv_has_a_row_per_volume_and_quotes_what_needs_it() {
        let text = csv(&report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("vol-1,\"db, \"\"main\"\" <prod>\",deployment,gold,"));
        assert!(lines[1].ends_with(",3,warning"));
        assert_eq!(lines[2], "vol-2,,unprotected,,,,,");
    }

    #[test]
    fn the_page_is_self_contained_escaped_and_charts_the_counts() {
        let page = html(&report());
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") || page.matches("http://").count() == 1); // the SVG namespace only
        assert!(!page.contains("https://"));
        assert!(page.contains("db, &quot;main&quot; &lt;prod&gt;"));
        assert!(page.contains(r#"data-cover="deployment" data-count="1""#));
        assert!(page.contains(r#"data-cover="unprotected" data-count="1""#));
        assert!(page.contains(r#"data-cover="aws-backup" data-count="0""#));
        // The gap comes first.
        assert!(page.find("vol-1").unwrap() < page.find("vol-2").unwrap());
    }
}
