//! The Organizations policy example of docs/examples (an SCP that lets only
//! the stack's roles and a backup-admin role write the `lifecycle:` keys
//! and the opt-in key), evaluated request by request with the IAM condition
//! operators it uses: who is refused and who is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use integration_tests::workspace_root;

/// A request as IAM sees it for this policy.
struct Request<'a> {
    action: &'a str,
    principal: &'a str,
    /// `aws:TagKeys`; `None` when the request names no keys.
    tag_keys: Option<&'a [&'a str]>,
}

/// IAM's `*` and `?` wildcards.
fn like(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap()).collect(),
        _ => panic!("{v}"),
    }
}

/// Whether every condition of a statement holds for the request (the
/// operators this policy uses; any other is a test failure).
fn conditions_hold(condition: &Value, r: &Request<'_>) -> bool {
    condition
        .as_object()
        .unwrap()
        .iter()
        .all(|(operator, keys)| {
            keys.as_object().unwrap().iter().all(|(key, patterns)| {
                let patterns = strings(patterns);
                match (operator.as_str(), key.as_str()) {
                    ("ForAnyValue:StringLike", "aws:TagKeys") => r
                        .tag_keys
                        .unwrap_or_default()
                        .iter()
                        .any(|k| patterns.iter().any(|p| like(p, k))),
                    ("ArnNotLike", "aws:PrincipalArn") => {
                        !patterns.iter().any(|p| like(p, r.principal))
                    }
                    ("Null", "aws:TagKeys") => (patterns == ["true"]) == r.tag_keys.is_none(),
                    other => panic!("operator {other:?} is not evaluated here"),
                }
            })
        })
}

fn denied(policy: &Value, r: &Request<'_>) -> bool {
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        assert_eq!(s["Effect"], "Deny", "an SCP example that only denies");
        strings(&s["Action"]).contains(&r.action) && conditions_hold(&s["Condition"], r)
    })
}

#[test]
fn only_the_stack_and_backup_admins_write_lifecycle_and_opt_in_tags() {
    let text = std::fs::read_to_string(
        workspace_root().join("docs/examples/scp-protect-lifecycle-tags.json"),
    )
    .unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let developer = "arn:aws:iam::123456789012:role/Developer";
    let stack =
        "arn:aws:iam::123456789012:role/ebs-snapshot-lifecycle-ExpireSnapshotsFunctionRole-AbC";
    let admin = "arn:aws:iam::123456789012:role/BackupAdmin";
    let cases: [(&str, &str, Option<&[&str]>, bool); 11] = [
        // Forging ownership or state, or opting in, as anyone else: refused.
        (
            "ec2:CreateTags",
            developer,
            Some(&["lifecycle:managed-by"]),
            true,
        ),
        (
            "ec2:CreateTags",
            developer,
            Some(&["Owner", "lifecycle:superseded-by"]),
            true,
        ),
        ("ec2:CreateTags", developer, Some(&["Backup"]), true),
        ("ec2:DeleteTags", developer, Some(&["lifecycle:hold"]), true),
        ("ec2:DeleteTags", developer, None, true),
        (
            "ec2:RunInstances",
            developer,
            Some(&["Backup", "Name"]),
            true,
        ),
        (
            "ec2:CreateSnapshot",
            developer,
            Some(&["lifecycle:managed-by"]),
            true,
        ),
        // Everything else stays as it was.
        (
            "ec2:CreateTags",
            developer,
            Some(&["Owner", "CostCenter"]),
            false,
        ),
        ("ec2:DeleteTags", developer, Some(&["Owner"]), false),
        // The stack's roles and the admins are not refused.
        ("ec2:CreateTags", stack, Some(&["lifecycle:state"]), false),
        (
            "ec2:CreateTags",
            admin,
            Some(&["Backup", "lifecycle:allow-stop"]),
            false,
        ),
    ];
    for (action, principal, tag_keys, expected) in cases {
        let r = Request {
            action,
            principal,
            tag_keys,
        };
        assert_eq!(
            denied(&policy, &r),
            expected,
            "{action} by {principal} with {tag_keys:?}"
        );
    }
}
