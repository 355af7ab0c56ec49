//! Clipping untrusted text (a rejected value, a policy name, a command's
//! output) before it goes into a log line, an error or a notification: a
//! 100 KB value must never be echoed whole. The one place that does it.

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
pub const OUTPUT_EXCERPT_CHARS: usize = 1_000;

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

#[cfg(test)]
mod tests {
    use super::*;

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
