//! Clipping untrusted text (a rejected value, a policy name, a command's
//! output) before it goes into a log line, an error or a notification: a
//! 100 KB value must never be echoed whole. The one place that does it.
//! And [`bounded`]: a run summary cut to a size (an invocation's response,
//! a log line), whatever the size of the account.

/// The start of a rejected value (or policy name), for an error message: a
/// 100 KB value must not be echoed into logs and notifications.
pub fn excerpt(value: &str) -> String {
    const KEEP: usize = 64;
    match value.char_indices().nth(KEEP) {
        None => value.to_string(),
        Some((end, _)) => format!("{}… ({} bytes)", &value[..end], value.len()),
    }
}

/// At most this much of a command's output goes into a notification.
pub(crate) const OUTPUT_EXCERPT_CHARS: usize = 1_000;

/// The end of a command's output (errors come last), at most
/// [`OUTPUT_EXCERPT_CHARS`] characters, without control characters.
pub fn output_excerpt(output: &str) -> String {
    let cleaned: String = output
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    let count = trimmed.chars().count();
    if count <= OUTPUT_EXCERPT_CHARS {
        return trimmed.to_string();
    }
    let tail: String = trimmed.chars().skip(count - OUTPUT_EXCERPT_CHARS).collect();
    format!("…{tail}")
}

/// `value` in at most `limit` bytes of JSON: every list longer than a
/// sample keeps its first items and says how many it left out (a sibling
/// `<name>_omitted` in an object, a last string element in a list), the
/// sample shrinking (100, 20, 5, 1, 0) until the whole fits; counts and
/// every other scalar stay. `None` only if even the empty lists do not fit.
pub fn bounded(value: &serde_json::Value, limit: usize) -> Option<serde_json::Value> {
    let fits =
        |v: &serde_json::Value| serde_json::to_string(v).map_or(usize::MAX, |t| t.len()) <= limit;
    if fits(value) {
        return Some(value.clone());
    }
    [100, 20, 5, 1, 0]
        .into_iter()
        .map(|sample| sampled(value, sample))
        .find(|v| fits(v))
}

fn sampled(value: &serde_json::Value, sample: usize) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, v) in map {
                if let Value::Array(items) = v {
                    if items.len() > sample {
                        out.insert(format!("{key}_omitted"), Value::from(items.len() - sample));
                    }
                }
                out.insert(key.clone(), sampled_items(v, sample));
            }
            Value::Object(out)
        }
        Value::Array(_) => sampled_items(value, sample),
        other => other.clone(),
    }
}

fn sampled_items(value: &serde_json::Value, sample: usize) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            let mut kept: Vec<Value> = items
                .iter()
                .take(sample)
                .map(|v| sampled(v, sample))
                .collect();
            if items.len() > sample && !matches!(items.first(), None | Some(Value::Object(_))) {
                kept.push(Value::from(format!("… {} more", items.len() - sample)));
            }
            Value::Array(kept)
        }
        other => sampled(other, sample),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_too_large_keeps_its_counts_and_a_sample_of_every_list() {
        let volumes: Vec<serde_json::Value> = (0..5_000)
            .map(|i| {
                serde_json::json!({
                    "volume_id": format!("vol-{i:017}"),
                    "kept": (0..30).map(|k| format!("snap-{i}-{k}")).collect::<Vec<_>>(),
                })
            })
            .collect();
        let summary = serde_json::json!({
            "function": "expire-snapshots",
            "counts": {"snapshots": 150_000, "deleted": 3},
            "volumes": volumes,
        });
        let small = serde_json::json!({"counts": {"deleted": 3}, "volumes": []});
        assert_eq!(
            bounded(&small, 1_000),
            Some(small.clone()),
            "what fits is untouched"
        );

        let cut = bounded(&summary, 256 * 1024).unwrap();
        assert!(serde_json::to_string(&cut).unwrap().len() <= 256 * 1024);
        assert_eq!(cut["counts"]["snapshots"], 150_000);
        assert_eq!(cut["function"], "expire-snapshots");
        assert_eq!(cut["volumes_omitted"], 4_900);
        assert_eq!(cut["volumes"].as_array().unwrap().len(), 100);
        assert_eq!(cut["volumes"][0]["volume_id"], "vol-00000000000000000");
        assert_eq!(cut["volumes"][0]["kept"].as_array().unwrap().len(), 30);

        let tiny = bounded(&summary, 2_000).unwrap();
        assert!(serde_json::to_string(&tiny).unwrap().len() <= 2_000);
        let listed = tiny["volumes"].as_array().unwrap().len();
        assert!(listed < 100);
        assert_eq!(tiny["volumes_omitted"], 5_000 - listed);
        assert_eq!(
            tiny["volumes"][0]["kept"]
                .as_array()
                .unwrap()
                .last()
                .unwrap(),
            &serde_json::json!(format!("… {} more", 30 - listed))
        );
        assert_eq!(bounded(&summary, 10), None);
    }

    #[test]
    fn output_excerpts_keep_the_end_and_drop_control_characters() {
        assert_eq!(output_excerpt("  ok\u{1b}[0m \n"), "ok [0m");
        let long = format!("{}END", "x".repeat(5_000));
        let e = output_excerpt(&long);
        assert!(e.ends_with("END") && e.starts_with('…'));
        assert_eq!(e.chars().count(), OUTPUT_EXCERPT_CHARS + 1);
    }

    #[test]
    fn excerpts_keep_short_values_and_clip_long_ones_on_a_char_boundary() {
        assert_eq!(excerpt("gold"), "gold");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert!(e.starts_with(&"é".repeat(64)));
        assert!(e.ends_with("… (200 bytes)"), "{e}");
    }
}
