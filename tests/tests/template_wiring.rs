//! The template wires each function to exactly the events it handles.
//!
//! Every EventBridge pattern in `template.yaml` is loaded into quamina (a
//! port of the matcher EventBridge's own patterns follow) and run against
//! the sample events of `tests/fixtures/events` plus variants of them that
//! EC2 also sends (copies, partial multi-volume failures) and events that
//! look alike but are not ours (other EBS events, another source). The
//! deliveries must be the routing table below, and must agree with the
//! event parser the handlers use: a function receives what it acts on and
//! nothing it would ignore. Every schedule's input must parse as a tick.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use ebs_lifecycle_core::events::{Reported, SnapshotEvent, SnapshotOperation, Tick};
use integration_tests::workspace_root;
use serde_json::{json, Value};

/// One function's wiring, read from the template.
#[derive(Debug, Default)]
struct Wiring {
    /// EventBridge rule name -> pattern (JSON).
    rules: BTreeMap<String, Value>,
    /// Schedule name -> input (JSON text with the scheduler's placeholder).
    schedules: BTreeMap<String, String>,
}

fn template_wiring() -> BTreeMap<String, Wiring> {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    // CloudFormation's short tags (!Ref, !Sub) parse as tagged values; the
    // parts read here (patterns, inputs) carry none.
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let template: Value = serde_json::to_value(&template).unwrap();
    let mut functions = BTreeMap::new();
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let mut wiring = Wiring::default();
        if let Some(events) = resource["Properties"]["Events"].as_object() {
            for (event_name, event) in events {
                let properties = &event["Properties"];
                match event["Type"].as_str().unwrap() {
                    "EventBridgeRule" => {
                        wiring
                            .rules
                            .insert(event_name.clone(), properties["Pattern"].clone());
                    }
                    "ScheduleV2" => {
                        let input = properties["Input"].as_str().unwrap().to_string();
                        wiring.schedules.insert(event_name.clone(), input);
                    }
                    // A new kind of trigger must be added to this test.
                    other => panic!("{name}.{event_name}: event source {other} is not checked"),
                }
            }
        }
        functions.insert(name.clone(), wiring);
    }
    functions
}

/// Every rule of every function, named `<function>/<rule>`.
fn matcher(functions: &BTreeMap<String, Wiring>) -> quamina::Quamina<String> {
    let mut matcher = quamina::Quamina::<String>::new();
    for (function, wiring) in functions {
        for (rule, pattern) in &wiring.rules {
            matcher
                .add_pattern(format!("{function}/{rule}"), &pattern.to_string())
                .unwrap_or_else(|e| panic!("{function}/{rule}: {e}"));
        }
    }
    matcher
}

/// The functions a matcher loaded with every rule delivers `event` to.
fn deliveries(matcher: &quamina::Quamina<String>, event: &Value) -> BTreeSet<String> {
    let bytes = serde_json::to_vec(event).unwrap();
    matcher
        .matches_for_event(&bytes)
        .unwrap()
        .into_iter()
        .map(|rule| rule.split('/').next().unwrap().to_string())
        .collect()
}

fn fixture(name: &str) -> Value {
    let path = workspace_root().join("tests/fixtures/events").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The corpus: (what it is, the event).
fn corpus() -> Vec<(&'static str, Value)> {
    let created = fixture("create-snapshot-succeeded.json");
    let failed = fixture("create-snapshot-failed.json");
    let multi = fixture("create-snapshots-completed.json");

    let mut copied = created.clone();
    copied["detail"]["event"] = json!("copySnapshot");
    copied["detail"]["source"] = json!("arn:aws:ec2::us-east-1:snapshot/snap-0aaaaaaaaaaaaaaaa");
    let mut copy_failed = copied.clone();
    copy_failed["detail"]["result"] = json!("failed");
    copy_failed["detail"]["cause"] = json!("KMS key is disabled");

    let mut multi_partly_failed = multi.clone();
    multi_partly_failed["detail"]["result"] = json!("failed");
    multi_partly_failed["detail"]["snapshots"][1]["status"] = json!("failed");
    let mut multi_all_failed = multi_partly_failed.clone();
    multi_all_failed["detail"]["snapshots"][0]["status"] = json!("failed");

    let mut shared = created.clone();
    shared["detail"]["event"] = json!("shareSnapshot");
    let mut archived = created.clone();
    archived["detail"]["event"] = json!("archiveSnapshot");
    let mut volume = created.clone();
    volume["detail-type"] = json!("EBS Volume Notification");
    volume["detail"]["event"] = json!("createVolume");
    let mut instance = created.clone();
    instance["detail-type"] = json!("EC2 Instance State-change Notification");
    instance["detail"] = json!({"instance-id": "i-0123456789abcdef0", "state": "stopped"});
    // Anyone may put events on the default bus with their own source; only
    // EC2's own count.
    let mut spoofed = created.clone();
    spoofed["source"] = json!("my.application");

    vec![
        ("createSnapshot succeeded", created),
        ("createSnapshot failed", failed),
        ("copySnapshot succeeded", copied),
        ("copySnapshot failed", copy_failed),
        ("createSnapshots completed", multi),
        ("createSnapshots partly failed", multi_partly_failed),
        ("createSnapshots all failed", multi_all_failed),
        ("shareSnapshot", shared),
        ("archiveSnapshot", archived),
        ("EBS Volume Notification", volume),
        ("EC2 instance state change", instance),
        ("createSnapshot from another source", spoofed),
    ]
}

#[test]
fn each_function_receives_exactly_the_events_of_the_routing_table() {
    let matcher = matcher(&template_wiring());

    const COMPLETE: &str = "CompleteSnapshotsFunction";
    const TAG: &str = "TagSnapshotsFunction";
    const CHECK: &str = "CheckEncryptionFunction";
    let table: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("createSnapshot succeeded", vec![COMPLETE, TAG, CHECK]),
        ("createSnapshot failed", vec![COMPLETE]),
        ("copySnapshot succeeded", vec![COMPLETE, TAG, CHECK]),
        ("copySnapshot failed", vec![COMPLETE]),
        ("createSnapshots completed", vec![COMPLETE, TAG, CHECK]),
        // The multi-volume event has one result for all; tag-snapshots and
        // check-encryption act on the snapshots that did complete.
        ("createSnapshots partly failed", vec![COMPLETE, TAG, CHECK]),
        ("createSnapshots all failed", vec![COMPLETE, TAG, CHECK]),
        // A vault stack's vault-snapshots reconciles on every share.
        ("shareSnapshot", vec!["VaultSnapshotsFunction"]),
        // archive-snapshots follows its moves to the archive tier.
        ("archiveSnapshot", vec!["ArchiveSnapshotsFunction"]),
        ("EBS Volume Notification", vec![]),
        ("EC2 instance state change", vec![]),
        ("createSnapshot from another source", vec![]),
    ]);

    let mut wrong = Vec::new();
    for (what, event) in corpus() {
        let got = deliveries(&matcher, &event);
        let want: BTreeSet<String> = table[what].iter().map(|f| f.to_string()).collect();
        if got != want {
            wrong.push(format!("{what}: delivered to {got:?}, expected {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn deliveries_agree_with_the_handlers_event_parser() {
    let matcher = matcher(&template_wiring());
    for (what, event) in corpus() {
        let got = deliveries(&matcher, &event);
        let parsed = SnapshotEvent::parse(&event);
        match parsed {
            // An archival's end reaches archive-snapshots, and only it.
            Ok(SnapshotEvent::Results {
                operation: SnapshotOperation::ArchiveSnapshot,
                ..
            }) => {
                let archive = BTreeSet::from(["ArchiveSnapshotsFunction".to_string()]);
                assert_eq!(got, archive, "{what}");
            }
            // An event the handlers act on reaches complete-snapshots (every
            // outcome), and tag-snapshots and check-encryption whenever one
            // snapshot in it succeeded.
            Ok(SnapshotEvent::Results { ref results, .. }) => {
                assert!(got.contains("CompleteSnapshotsFunction"), "{what}: {got:?}");
                if results.iter().any(|r| r.reported == Reported::Succeeded) {
                    for f in ["TagSnapshotsFunction", "CheckEncryptionFunction"] {
                        assert!(got.contains(f), "{what} does not reach {f}: {got:?}");
                    }
                }
            }
            // A share reaches a vault's vault-snapshots, which reconciles.
            Ok(SnapshotEvent::Ignored { ref event, .. }) if event == "shareSnapshot" => {
                let vault = BTreeSet::from(["VaultSnapshotsFunction".to_string()]);
                assert_eq!(got, vault, "{what}");
            }
            // Anything a handler would ignore or refuse is not delivered at
            // all: no invocation, no cost, no error alarm.
            Ok(SnapshotEvent::Ignored { .. }) | Err(_) => {
                assert!(
                    got.is_empty(),
                    "{what} ({parsed:?}) is delivered to {got:?}"
                );
            }
        }
    }
}

/// How a sample parses: `(operation, each snapshot's reported outcome)`, or
/// `None` for an event the functions ignore.
type Parsed = Option<(&'static str, Vec<Option<bool>>)>;

/// AWS's own sample events (tests/fixtures/events/aws-docs, taken field for
/// field from the EBS EventBridge documentation): what the parser makes of
/// each, and which functions the template delivers it to. None is rejected:
/// a rejection would fail the invocation and land in the failure queue.
#[test]
fn aws_documented_samples() {
    const COMPLETE: &str = "CompleteSnapshotsFunction";
    const TAG: &str = "TagSnapshotsFunction";
    const CHECK: &str = "CheckEncryptionFunction";
    // (file, parsed as (operation, per-snapshot outcome) or ignored, delivered to)
    let ok = Some(true);
    let failed = Some(false);
    let table: Vec<(&str, Parsed, Vec<&str>)> = vec![
        (
            "create-snapshot-succeeded.json",
            Some(("createSnapshot", vec![ok])),
            vec![COMPLETE, TAG, CHECK],
        ),
        (
            "create-snapshots-succeeded.json",
            Some(("createSnapshots", vec![ok, ok])),
            vec![COMPLETE, TAG, CHECK],
        ),
        // `"status": "error"` per snapshot: both failed. tag-snapshots and
        // check-encryption receive the event (the pattern cannot tell) and
        // find nothing to do.
        (
            "create-snapshots-failed.json",
            Some(("createSnapshots", vec![failed, failed])),
            vec![COMPLETE, TAG, CHECK],
        ),
        (
            "copy-snapshot-succeeded.json",
            Some(("copySnapshot", vec![ok])),
            vec![COMPLETE, TAG, CHECK],
        ),
        (
            "copy-snapshot-failed.json",
            Some(("copySnapshot", vec![failed])),
            vec![COMPLETE],
        ),
        ("share-snapshot.json", None, vec!["VaultSnapshotsFunction"]),
        (
            "archive-snapshot-succeeded.json",
            Some(("archiveSnapshot", vec![ok])),
            vec!["ArchiveSnapshotsFunction"],
        ),
        (
            "archive-snapshot-failed.json",
            Some(("archiveSnapshot", vec![failed])),
            vec!["ArchiveSnapshotsFunction"],
        ),
        ("restore-snapshot-permanent-succeeded.json", None, vec![]),
        ("restore-snapshot-permanent-failed.json", None, vec![]),
        ("restore-snapshot-temporary-succeeded.json", None, vec![]),
        ("restore-snapshot-temporary-failed.json", None, vec![]),
        ("restore-expiry.json", None, vec![]),
        ("fast-snapshot-restore-state-change.json", None, vec![]),
    ];
    let on_disk = std::fs::read_dir(workspace_root().join("tests/fixtures/events/aws-docs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .count();
    assert_eq!(on_disk, table.len(), "every sample has its row");

    let matcher = matcher(&template_wiring());
    let mut wrong = Vec::new();
    for (file, parsed_as, delivered_to) in table {
        let event = fixture(&format!("aws-docs/{file}"));
        let parsed = SnapshotEvent::parse(&event);
        let got = match &parsed {
            Ok(SnapshotEvent::Results { operation, results }) => Some((
                operation.as_str(),
                results
                    .iter()
                    .map(|r| r.reported.succeeded())
                    .collect::<Vec<_>>(),
            )),
            Ok(SnapshotEvent::Ignored { .. }) => None,
            Err(e) => {
                wrong.push(format!("{file}: rejected: {e}"));
                continue;
            }
        };
        if got != parsed_as {
            wrong.push(format!("{file}: parsed as {got:?}, expected {parsed_as:?}"));
        }
        let got = deliveries(&matcher, &event);
        let want: BTreeSet<String> = delivered_to.iter().map(|f| f.to_string()).collect();
        if got != want {
            wrong.push(format!("{file}: delivered to {got:?}, expected {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What EC2 may add later is accepted, not rejected: an unknown status or
/// event name, extra fields, a time that is not one. The field acted on
/// (the snapshot id) must still be usable.
#[test]
fn values_not_seen_before_are_accepted() {
    let base = fixture("aws-docs/create-snapshots-succeeded.json");
    let mut unknown_status = base.clone();
    unknown_status["detail"]["snapshots"][1]["status"] = json!("partially-completed");
    unknown_status["detail"]["newField"] = json!({"nested": [1, 2]});
    let Ok(SnapshotEvent::Results { results, .. }) = SnapshotEvent::parse(&unknown_status) else {
        panic!("an unknown status is accepted");
    };
    assert_eq!(results[0].reported, Reported::Succeeded);
    assert_eq!(results[1].reported.succeeded(), None, "EC2's state decides");
    assert!(results[1]
        .notes
        .iter()
        .any(|n| n.contains("partially-completed")));

    let mut unknown_event = fixture("aws-docs/create-snapshot-succeeded.json");
    unknown_event["detail"]["event"] = json!("someFutureSnapshotEvent");
    assert!(matches!(
        SnapshotEvent::parse(&unknown_event),
        Ok(SnapshotEvent::Ignored { .. })
    ));

    let mut unknown_result = fixture("aws-docs/create-snapshot-succeeded.json");
    unknown_result["detail"]["result"] = json!("cancelled");
    unknown_result["detail"]["endTime"] = json!("soon");
    let Ok(SnapshotEvent::Results { results, .. }) = SnapshotEvent::parse(&unknown_result) else {
        panic!("an unknown result is accepted");
    };
    assert_eq!(results[0].reported.succeeded(), None);
    assert_eq!(results[0].end_time, None);
    assert_eq!(results[0].notes.len(), 2, "{:?}", results[0].notes);

    // The field acted on must be usable: a snapshot id that is not one is
    // still a rejection.
    let mut bad_id = fixture("aws-docs/create-snapshot-succeeded.json");
    bad_id["detail"]["snapshot_id"] = json!("arn:aws:ec2:us-west-2::volume/vol-01234567");
    assert!(SnapshotEvent::parse(&bad_id).is_err());
}

#[test]
fn every_function_has_its_schedule_and_each_schedule_sends_a_tick() {
    let functions = template_wiring();
    let expected: BTreeMap<&str, &str> = BTreeMap::from([
        ("CreateSnapshotsFunction", "Tick"),
        ("CompleteSnapshotsFunction", "Reconcile"),
        ("TagSnapshotsFunction", "Backfill"),
        ("CheckEncryptionFunction", "Daily"),
        ("ExpireSnapshotsFunction", "Daily"),
        ("CopySnapshotsFunction", "Tick"),
        ("VaultSnapshotsFunction", "Hourly"),
        ("ReportSnapshotsFunction", "Daily"),
        ("ArchiveSnapshotsFunction", "Daily"),
        ("VerifyRestoresFunction", "Weekly"),
    ]);
    let names: Vec<&str> = functions.keys().map(String::as_str).collect();
    assert_eq!(names, expected.keys().copied().collect::<Vec<_>>());
    for (function, wiring) in &functions {
        let schedules: Vec<&str> = wiring.schedules.keys().map(String::as_str).collect();
        assert_eq!(schedules, [expected[function.as_str()]], "{function}");
        for input in wiring.schedules.values() {
            // What EventBridge Scheduler substitutes for the placeholder.
            let sent = input.replace("<aws.scheduler.scheduled-time>", "2026-11-22T04:15:00Z");
            let event: Value = serde_json::from_str(&sent).unwrap();
            assert!(Tick::is_tick(&event), "{function}: {sent}");
            let tick = Tick::parse(&event).unwrap();
            assert_eq!(
                tick.scheduled_time.map(|t| t.to_rfc3339()),
                Some("2026-11-22T04:15:00+00:00".to_string()),
                "{function}"
            );
        }
    }
    // The two functions that act only on their schedule have no rule.
    assert!(functions["CreateSnapshotsFunction"].rules.is_empty());
    assert!(functions["ExpireSnapshotsFunction"].rules.is_empty());
    assert!(functions["CopySnapshotsFunction"].rules.is_empty());
}

/// The template as JSON (short tags such as `!Sub` become `{"!Sub": ...}`).
fn template_json() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    serde_json::to_value(&template).unwrap()
}

/// `${Name}` substitutions of a `!Sub` text, as CloudFormation does them.
fn substitute(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_string(), |t, (name, value)| {
        t.replace(&format!("${{{name}}}"), value)
    })
}

/// The SSM policy is JSON text (its condition key holds a parameter):
/// rendered as CloudFormation would, it must be a valid policy that lets
/// create-snapshots run commands only on opted-in instances and only with
/// the shell document or the user's listed documents.
/// The intrinsic functions a statement uses, evaluated as CloudFormation
/// would with `params` (parameters and pseudo parameters, a list parameter
/// as a JSON array) and `conditions`.
fn evaluate(
    value: &Value,
    params: &BTreeMap<&str, Value>,
    conditions: &BTreeMap<&str, bool>,
) -> Value {
    let Value::Object(map) = value else {
        return match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| evaluate(v, params, conditions))
                    .collect(),
            ),
            other => other.clone(),
        };
    };
    let arg = |key: &str| map.get(key).map(|v| evaluate(v, params, conditions));
    if let Some(name) = map.get("!Ref").and_then(Value::as_str) {
        return params[name].clone();
    }
    if let Some(text) = arg("!Sub") {
        let text = text.as_str().unwrap().to_string();
        return Value::String(params.iter().fold(text, |t, (k, v)| {
            t.replace(&format!("${{{k}}}"), v.as_str().unwrap_or_default())
        }));
    }
    if let Some(Value::Array(args)) = arg("!Join") {
        let parts: Vec<String> = args[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        return Value::String(parts.join(args[0].as_str().unwrap()));
    }
    if let Some(Value::Array(args)) = arg("!Split") {
        return json!(args[1]
            .as_str()
            .unwrap()
            .split(args[0].as_str().unwrap())
            .collect::<Vec<_>>());
    }
    if let Some(Value::Array(args)) = map.get("!If") {
        let branch = if conditions[args[0].as_str().unwrap()] {
            &args[1]
        } else {
            &args[2]
        };
        return evaluate(branch, params, conditions);
    }
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), evaluate(v, params, conditions)))
            .collect(),
    )
}

#[test]
fn commands_run_only_on_opted_in_instances_with_the_listed_documents() {
    let template = template_json();
    let policy = &template["Resources"]["RunConsistencyCommandsPolicy"]["Properties"];
    let sub = policy["PolicyDocument"]["!Sub"].as_array().unwrap();
    let text = sub[0].as_str().unwrap();
    let pseudo = [
        ("AWS::Partition", "aws"),
        ("AWS::Region", "eu-west-1"),
        ("AWS::AccountId", "123456789012"),
        ("SelectorTagKey", "Backup"),
    ];
    let document: Value = serde_json::from_str(&substitute(text, &pseudo)).unwrap();
    let statements = document["Statement"].as_array().unwrap();
    let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap().clone();
    let instances = by_sid("CommandsOnlyOnOptedInInstances");
    assert_eq!(instances["Action"], "ssm:SendCommand");
    assert_eq!(
        instances["Resource"],
        "arn:aws:ec2:eu-west-1:123456789012:instance/*"
    );
    assert_eq!(
        instances["Condition"],
        json!({"StringLike": {"ssm:resourceTag/Backup": "*"}})
    );
    assert_eq!(
        by_sid("FollowCommands")["Action"],
        json!(["ssm:GetCommandInvocation", "ssm:CancelCommand"])
    );
    assert_eq!(statements.len(), 2, "nothing else: {document}");
    assert!(
        !text.contains("ConsistencyDocumentArns") && !text.contains("DocumentArns"),
        "no ARN is pasted into JSON text"
    );

    // The documents: a list, evaluated as CloudFormation would. The stack's
    // own document always; AWS-RunShellScript only with AllowShellCommands.
    let documents =
        &template["Resources"]["RunConsistencyDocumentsPolicy"]["Properties"]["PolicyDocument"];
    let shell = "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript";
    let stack = "arn:aws:ssm:eu-west-1:123456789012:document/stack-FreezeThaw-1";
    let mine = "arn:aws:ssm:eu-west-1:123456789012:document/FlushDb";
    let theirs = "arn:aws:ssm:eu-west-1:123456789012:document/Other";
    for (arns, has, shell_allowed, expected) in [
        (json!([""]), false, false, vec![stack]),
        (json!([""]), false, true, vec![shell]),
        (json!([mine]), true, false, vec![stack, mine]),
        (json!([mine, theirs]), true, true, vec![shell, mine, theirs]),
    ] {
        let mut params: BTreeMap<&str, Value> =
            pseudo.iter().map(|(k, v)| (*k, json!(v))).collect();
        params.insert("ConsistencyDocumentArns", arns);
        params.insert("FreezeThawDocument", json!("stack-FreezeThaw-1"));
        let conditions = BTreeMap::from([
            ("HasConsistencyDocuments", has),
            ("AllowsShellCommands", shell_allowed),
        ]);
        let rendered = evaluate(documents, &params, &conditions);
        let statements = rendered["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0]["Sid"], "OnlyTheseDocuments");
        assert_eq!(statements[0]["Action"], "ssm:SendCommand");
        let mut granted: Vec<String> = statements[0]["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        granted.sort();
        granted.dedup();
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        if !expected.contains(&stack.to_string()) {
            expected.push(stack.to_string());
        }
        expected.sort();
        assert_eq!(granted, expected, "shell allowed: {shell_allowed}");
    }

    // Each ARN must look like one: a value that would carry JSON or a
    // wildcard is refused by CloudFormation before anything deploys.
    let pattern = template["Parameters"]["ConsistencyDocumentArns"]["AllowedPattern"]
        .as_str()
        .unwrap();
    let pattern = regex_lite::Regex::new(pattern).unwrap();
    for ok in ["", mine] {
        assert!(pattern.is_match(ok), "{ok}");
    }
    for bad in [
        "arn:aws:ssm:eu-west-1:123456789012:document/*",
        r#"arn:aws:ssm:eu-west-1:123456789012:document/X"]},{"Effect":"Allow","Action":"*","Resource":["*"#,
        "*",
        "arn:aws:iam::123456789012:role/Admin",
    ] {
        assert!(!pattern.is_match(bad), "{bad}");
    }
}

#[test]
fn instances_are_stopped_only_with_their_owners_opt_in() {
    let template = template_json();
    let create = &template["Resources"]["CreateSnapshotsFunction"]["Properties"];
    let statements: Vec<&Value> = create["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .collect();
    let granting = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .copied()
            .filter(|s| {
                s["Action"] == action
                    || s["Action"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == action))
            })
            .collect()
    };
    let stop = granting("ec2:StopInstances");
    assert_eq!(stop.len(), 1);
    assert_eq!(
        stop[0]["Condition"],
        json!({"StringEqualsIgnoreCase": {"aws:ResourceTag/lifecycle:allow-stop": "true"}})
    );
    for start in granting("ec2:StartInstances") {
        let condition = start["Condition"].to_string();
        assert!(
            condition.contains("lifecycle:allow-stop")
                || condition.contains("lifecycle:stopped-for-snapshot"),
            "{condition}"
        );
    }
    let tags_on_instances: Vec<&Value> = granting("ec2:CreateTags")
        .into_iter()
        .chain(granting("ec2:DeleteTags"))
        .filter(|s| s["Resource"].to_string().contains(":instance/"))
        .collect();
    assert_eq!(tags_on_instances.len(), 2);
    for s in tags_on_instances {
        assert_eq!(
            s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
            json!(["lifecycle:stopped-for-snapshot"])
        );
    }
}

/// Every statement named `sid` anywhere below `value` (statements under an
/// `!If` included).
fn statements_named<'a>(value: &'a Value, sid: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.get("Sid").and_then(Value::as_str) == Some(sid) {
                out.push(value);
            }
            for v in map.values() {
                statements_named(v, sid, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| statements_named(v, sid, out)),
        _ => {}
    }
}

fn statement(template: &Value, sid: &str) -> Value {
    let mut found = Vec::new();
    statements_named(template, sid, &mut found);
    assert_eq!(found.len(), 1, "one statement {sid}");
    found[0].clone()
}

/// check-encryption may take sharing away, never add it: a
/// ModifySnapshotAttribute that adds a user or a group is outside its grant.
#[test]
fn sharing_can_only_be_removed() {
    let remove = statement(&template_json(), "RemoveSharing");
    assert_eq!(remove["Action"], "ec2:ModifySnapshotAttribute");
    assert_eq!(
        remove["Condition"]["Null"],
        json!({"ec2:Add/userId": "true", "ec2:Add/group": "true"})
    );
}

/// DeleteTags with no keys deletes every tag of the instance, and
/// ForAllValues holds for an empty set: the keys must be present.
#[test]
fn instance_tags_are_deleted_only_by_name() {
    let unmark = statement(&template_json(), "UnmarkInstancesThisStackMarked");
    assert_eq!(unmark["Action"], "ec2:DeleteTags");
    assert_eq!(unmark["Condition"]["Null"], json!({"aws:TagKeys": "false"}));
    assert_eq!(
        unmark["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        json!(["lifecycle:stopped-for-snapshot"])
    );
}

/// Deleting the stack keeps the audit trail: every log group, and the key
/// they are encrypted with.
#[test]
fn logs_and_their_key_survive_the_stack() {
    let template = template_json();
    let resources = template["Resources"].as_object().unwrap();
    let kept: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Logs::LogGroup" || r["Type"] == "AWS::KMS::Key")
        .map(|(name, r)| {
            assert_eq!(r["DeletionPolicy"], "Retain", "{name}");
            assert_eq!(r["UpdateReplacePolicy"], "Retain", "{name}");
            name
        })
        .collect();
    assert_eq!(kept.len(), 11, "ten log groups and the stack key: {kept:?}");
}

/// Starting an instance with customer-managed-key volumes needs a KMS grant
/// for EC2; create-snapshots may create one only through EC2 and only for an
/// AWS resource.
#[test]
fn key_grants_only_for_ec2_starting_an_instance() {
    let grant = statement(&template_json(), "GrantKeysToEc2ForStart");
    assert_eq!(grant["Action"], "kms:CreateGrant");
    assert_eq!(
        grant["Condition"]["Bool"],
        json!({"kms:GrantIsForAWSResource": "true"})
    );
    assert_eq!(
        grant["Condition"]["StringEquals"]["kms:ViaService"]["!Sub"],
        "ec2.${AWS::Region}.amazonaws.com"
    );
}

/// The default freeze and thaw ship as the stack's own SSM document: its
/// script is the code's (`document_script`), and its parameters admit no
/// shell metacharacter, so no value can add a command.
#[test]
fn the_freeze_document_is_the_codes_and_its_parameters_take_no_shell() {
    let template = template_json();
    let document = &template["Resources"]["FreezeThawDocument"]["Properties"];
    assert_eq!(document["DocumentType"], "Command");
    let content = &document["Content"];
    let script = content["mainSteps"][0]["inputs"]["runCommand"][0]
        .as_str()
        .unwrap();
    assert_eq!(
        script.trim_end(),
        ebs_lifecycle_core::consistency::document_script().trim_end(),
        "template.yaml's FreezeThawDocument must carry consistency::document_script() verbatim"
    );
    let parameters = content["parameters"].as_object().unwrap();
    assert_eq!(
        parameters["action"]["allowedValues"],
        json!(["freeze", "thaw"])
    );
    for (name, good) in [
        ("serials", "vol0aaa vol0bbb"),
        ("devices", "/dev/sdf /dev/xvdg"),
        ("watchdog", "90"),
    ] {
        let pattern =
            regex_lite::Regex::new(parameters[name]["allowedPattern"].as_str().unwrap()).unwrap();
        assert!(pattern.is_match(good), "{name}: {good}");
        for bad in [
            "$(reboot)",
            "a;b",
            "`id`",
            "a\"b",
            "a'b",
            "a\nb",
            "a|b",
            "a&b",
            "${x}",
            "{{ x }}",
        ] {
            assert!(!pattern.is_match(bad), "{name} admits {bad:?}");
        }
    }
    // create-snapshots is told the document's name.
    let env =
        &template["Resources"]["CreateSnapshotsFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env["CONSISTENCY_DOCUMENT"],
        json!({"!Ref": "FreezeThawDocument"})
    );
    assert_eq!(
        env["ALLOW_SHELL_COMMANDS"],
        json!({"!Ref": "AllowShellCommands"})
    );
}

/// The ledger's ARN in every statement: the stack's own table, or the one
/// an earlier stack left (`ExistingLedgerTableName`).
fn ledger_arn() -> Value {
    json!({"!If": [
        "CreatesLedger",
        {"!GetAtt": "Ledger.Arn"},
        {"!Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${ExistingLedgerTableName}"}
    ]})
}

/// The stack's ledger is the authority a tag cannot be: each function may
/// touch only its own kinds of record there (the leading key), with only
/// the calls its code makes, and the table outlives the stack (and a
/// stack re-created over it finds it).
#[test]
fn each_function_reads_and_writes_only_its_own_ledger_records() {
    const HOLD_READERS: [&str; 5] = [
        "ExpireSnapshotsFunction",
        "CopySnapshotsFunction",
        "VaultSnapshotsFunction",
        "ReportSnapshotsFunction",
        "ArchiveSnapshotsFunction",
    ];
    let template = template_json();
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(globals["ACCOUNT_ID"], json!({"!Ref": "AWS::AccountId"}));
    assert_eq!(
        globals["LEDGER_TABLE"],
        json!({"!If": ["CreatesLedger", {"!Ref": "Ledger"}, {"!Ref": "ExistingLedgerTableName"}]})
    );
    // Made only when no earlier stack's retained ledger is named; the
    // table name an operator re-creating the stack needs is an output.
    assert_eq!(
        template["Conditions"]["CreatesLedger"],
        json!({"!Equals": [{"!Ref": "ExistingLedgerTableName"}, ""]})
    );
    assert_eq!(
        template["Resources"]["Ledger"]["Condition"],
        "CreatesLedger"
    );
    assert_eq!(
        template["Outputs"]["LedgerTableName"]["Value"],
        globals["LEDGER_TABLE"]
    );
    let ledger = &template["Resources"]["Ledger"];
    assert_eq!(ledger["Type"], "AWS::DynamoDB::Table");
    assert_eq!(ledger["DeletionPolicy"], "Retain");
    assert_eq!(
        ledger["Properties"]["KeySchema"],
        json!([
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"}
        ])
    );
    assert_eq!(
        ledger["Properties"]["TimeToLiveSpecification"]["AttributeName"],
        "expires_at"
    );
    let expected: [(&str, &[&str], &[&str]); 9] = [
        (
            "CreateSnapshotsFunction",
            &["Query", "GetItem", "BatchGetItem", "PutItem", "DeleteItem"],
            &["stop", "schedule", "made"],
        ),
        (
            "CompleteSnapshotsFunction",
            &["BatchGetItem", "PutItem"],
            &["copy", "report"],
        ),
        (
            "TagSnapshotsFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem"],
            &["copy", "report", "cursor"],
        ),
        (
            "CheckEncryptionFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem"],
            &["copy", "report", "cursor"],
        ),
        (
            "ExpireSnapshotsFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem", "Query"],
            &["copy", "deletions", "report", "inflight", "cursor"],
        ),
        (
            "CopySnapshotsFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem", "Query"],
            &["copy", "inflight", "deletions", "report"],
        ),
        (
            "ReportSnapshotsFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem", "Query"],
            &["copy", "report", "seen", "inflight", "cursor"],
        ),
        (
            "ArchiveSnapshotsFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem", "Query"],
            &["copy", "report", "inflight", "cursor"],
        ),
        (
            "VaultSnapshotsFunction",
            &["BatchGetItem", "GetItem", "PutItem", "DeleteItem", "Query"],
            &[
                "copy",
                "inflight",
                "deletions",
                "report",
                "cursor",
                "vaultcopies",
            ],
        ),
    ];
    for (function, actions, keys) in expected {
        let policies = &template["Resources"][function]["Properties"]["Policies"];
        let mut on_ledger = Vec::new();
        let mut reads_holds = false;
        let mut reads_schedules = false;
        let mut reads_creations = false;
        for statement in policies
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["Statement"].as_array())
            .flatten()
        {
            let actions_text = statement["Action"].to_string();
            if statement["Sid"] == "LedgerReadSchedules" {
                // The schedules the policies had: read only, and only them.
                assert_eq!(statement["Action"], "dynamodb:Query", "{function}");
                assert_eq!(
                    statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
                    json!(["schedule"]),
                    "{function}"
                );
                reads_schedules = true;
            } else if matches!(
                statement["Sid"].as_str(),
                Some("LedgerReadCreations" | "LedgerReadForgetCreations")
            ) {
                // The creation records: read only (expire-snapshots also
                // forgets a deleted snapshot's), and only them.
                let mut want = json!(["dynamodb:GetItem", "dynamodb:BatchGetItem"]);
                if function == "ExpireSnapshotsFunction" {
                    want.as_array_mut()
                        .unwrap()
                        .push(json!("dynamodb:DeleteItem"));
                }
                assert_eq!(statement["Action"], want, "{function}");
                assert_eq!(statement["Resource"], ledger_arn(), "{function}");
                assert_eq!(
                    statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
                    json!(["made"]),
                    "{function}"
                );
                reads_creations = true;
            } else if statement["Sid"] == "LedgerReadHolds" {
                // The operators' holds: read only, and only them.
                assert_eq!(statement["Action"], "dynamodb:Query", "{function}");
                assert_eq!(statement["Resource"], ledger_arn(), "{function}");
                assert_eq!(
                    statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
                    json!(["hold"]),
                    "{function}"
                );
                reads_holds = true;
            } else if statement["Sid"] == "LedgerReadVerifiedRestores" {
                // The volumes' last verified restores (report-snapshots'
                // restore-unverified): read only, and only them.
                assert_eq!(function, "ReportSnapshotsFunction");
                assert_eq!(statement["Action"], "dynamodb:BatchGetItem", "{function}");
                assert_eq!(
                    statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
                    json!(["verified"]),
                    "{function}"
                );
            } else if actions_text.contains("dynamodb:") {
                on_ledger.push(statement.clone());
            }
        }
        // Every function that deletes or archives, or plans what the next
        // expiry frees, honours the holds; none can write one.
        assert_eq!(
            reads_holds,
            HOLD_READERS.contains(&function),
            "{function}: reads the holds"
        );
        assert!(!keys.contains(&"hold"), "{function}: writes no hold");
        // Every function proves snapshots, so every one reads the
        // schedules (a vault's, against a snapshot made there with a
        // scheduled Description); only create-snapshots, which runs them,
        // writes them.
        assert!(
            reads_schedules || keys.contains(&"schedule"),
            "{function}: reads the schedules"
        );
        assert_eq!(
            keys.contains(&"schedule"),
            function == "CreateSnapshotsFunction",
            "{function}: writes the schedules"
        );
        // Every function proves scheduled snapshots by their creation
        // records; only create-snapshots writes them.
        assert!(
            reads_creations || keys.contains(&"made"),
            "{function}: reads the creation records"
        );
        assert_eq!(
            keys.contains(&"made"),
            function == "CreateSnapshotsFunction",
            "{function}: writes creation records"
        );
        assert_eq!(on_ledger.len(), 1, "{function}: one ledger statement");
        let s = &on_ledger[0];
        assert_eq!(s["Resource"], ledger_arn(), "{function}");
        let want: Vec<String> = actions.iter().map(|a| format!("dynamodb:{a}")).collect();
        assert_eq!(s["Action"], json!(want), "{function}");
        assert_eq!(
            s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
            json!(keys),
            "{function}"
        );
    }
}

/// Holds are written only through `HoldSnapshotsPolicy`: the ledger's
/// `hold` items and nothing else, attached to no function's role, its ARN
/// an output for operators.
#[test]
fn holds_are_set_only_by_their_own_permission() {
    let template = template_json();
    let policy = &template["Resources"]["HoldSnapshotsPolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::ManagedPolicy");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Resource"], ledger_arn());
    assert_eq!(
        s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
        json!(["hold"])
    );
    assert_eq!(
        s["Action"],
        json!([
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem"
        ])
    );
    let resources = template["Resources"].as_object().unwrap();
    for (name, resource) in resources {
        if resource["Type"] == "AWS::Serverless::Function" {
            let policies = resource["Properties"]["Policies"].to_string();
            assert!(
                !policies.contains("HoldSnapshotsPolicy"),
                "{name} must not be able to set holds"
            );
        }
    }
    assert_eq!(
        template["Outputs"]["HoldSnapshotsPolicyArn"]["Value"],
        json!({"!Ref": "HoldSnapshotsPolicy"})
    );
}

/// Restores go through `RestoreVolumesPolicy`: it reads the proof (never
/// writes the ledger), creates only volumes tagged as restores at creation,
/// deletes only volumes a restore still marks pending, and is attached to
/// no function.
#[test]
fn restores_have_their_own_permission_that_deletes_only_restored_volumes() {
    let template = template_json();
    let policy = &template["Resources"]["RestoreVolumesPolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::ManagedPolicy");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let by_sid = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("{sid}"))
    };
    let ledger = by_sid("LedgerReadProof");
    assert_eq!(ledger["Resource"], ledger_arn());
    assert_eq!(
        ledger["Action"],
        json!([
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem"
        ])
    );
    assert_eq!(
        ledger["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
        json!(["copy", "made", "schedule", "hold", "inflight", "verified"])
    );
    // `plan` reads what expiry reads (the tier status of archived snapshots
    // too), `explain` the vault accounts a snapshot is shared with.
    let reads = by_sid("ReadSnapshotsVolumesInstances")["Action"].to_string();
    for read in [
        "DescribeSnapshots",
        "DescribeVolumes",
        "DescribeInstances",
        "DescribeImages",
        "DescribeLockedSnapshots",
        "DescribeSnapshotTierStatus",
        "DescribeSnapshotAttribute",
    ] {
        assert!(reads.contains(&format!("ec2:{read}\"")), "{read}: {reads}");
    }
    assert_eq!(
        by_sid("CreateRestoredVolumes")["Condition"]["Null"]
            ["aws:RequestTag/lifecycle:restored-from"],
        "false"
    );
    assert_eq!(
        by_sid("DeleteOnlyPendingRestores")["Condition"]["Null"]
            ["aws:ResourceTag/lifecycle:restore-pending"],
        "false"
    );
    assert_eq!(
        by_sid("UnmarkVolumes")["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        json!(["lifecycle:restore-pending", "lifecycle:replaced-by"])
    );
    assert_eq!(
        by_sid("GrantsForEc2")["Condition"]["Bool"]["kms:GrantIsForAWSResource"],
        "true"
    );
    // Nothing in it writes the ledger or touches a snapshot.
    let all = serde_json::to_string(statements).unwrap();
    for forbidden in [
        "PutItem",
        "DeleteItem",
        "DeleteSnapshot",
        "CreateSnapshot",
        "ModifySnapshotAttribute",
    ] {
        assert!(!all.contains(forbidden), "{forbidden}");
    }
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] == "AWS::Serverless::Function" {
            let policies = resource["Properties"]["Policies"].to_string();
            assert!(!policies.contains("RestoreVolumesPolicy"), "{name}");
        }
    }
    assert_eq!(
        template["Outputs"]["RestoreVolumesPolicyArn"]["Value"],
        json!({"!Ref": "RestoreVolumesPolicy"})
    );
}

/// The functions' resource policies, as SAM generates them: each admits
/// only EventBridge, and only from one of the stack's own rules (the
/// schedules invoke through their own role instead), so nothing else in the
/// account or outside it can invoke a function with a forged event.
#[test]
fn functions_admit_only_the_stacks_own_rules() {
    let output = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .arg(workspace_root().join("scripts/sam_transform.py"))
        .output()
        .expect("the project virtualenv runs the SAM transform");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let transformed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let resources = transformed["Resources"].as_object().unwrap();
    let permissions: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Permission")
        .collect();
    assert_eq!(
        permissions.len(),
        8,
        "two completion rules for each of three functions, a vault's share rule, archive-snapshots' archival rule"
    );
    for (name, permission) in permissions {
        let p = &permission["Properties"];
        assert_eq!(p["Action"], "lambda:InvokeFunction", "{name}");
        assert_eq!(p["Principal"], "events.amazonaws.com", "{name}");
        let rule = p["SourceArn"]["Fn::GetAtt"][0].as_str().unwrap();
        assert_eq!(p["SourceArn"]["Fn::GetAtt"][1], "Arn", "{name}");
        assert_eq!(resources[rule]["Type"], "AWS::Events::Rule", "{name}");
        let function = p["FunctionName"]["Ref"].as_str().unwrap();
        assert!(
            resources[rule]["Properties"]["Targets"]
                .to_string()
                .contains(function),
            "{name}: the rule targets {function}"
        );
    }
}

/// tag-snapshots may write, of the lifecycle keys, exactly those its code
/// writes (never ownership, state, links or a hold), and any other key
/// only in calls that carry no lifecycle key (the code never mixes them).
#[test]
fn tag_snapshots_writes_an_allow_list_of_lifecycle_keys() {
    let template = template_json();
    let labels = statement(&template, "TagOwnSnapshotsLabels");
    assert_eq!(labels["Action"], "ec2:CreateTags");
    assert_eq!(
        labels["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        json!({"!Ref": "AWS::StackName"})
    );
    assert_eq!(
        labels["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        json!(ebs_lifecycle_core::tagging::LIFECYCLE_KEYS_WRITTEN)
    );
    let copied = statement(&template, "TagOwnSnapshotsCopiedTags");
    assert_eq!(
        copied["Condition"]["ForAllValues:StringNotLike"]["aws:TagKeys"],
        json!(["lifecycle:*", "aws:*"])
    );
    assert_eq!(
        copied["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        json!({"!Ref": "AWS::StackName"})
    );
}

/// `make org-template`: the same stack as the SAM template deploys, with no
/// transform (StackSets refuse one) and the function code read from the
/// organisation's artifact bucket of each region; cfn-lint clean.
#[test]
fn the_organisation_template_deploys_what_the_sam_template_does() {
    let python = workspace_root().join(".venv/bin/python");
    let out = std::env::temp_dir().join(format!("itest-org-template-{}", std::process::id()));
    let run = std::process::Command::new(&python)
        .arg(workspace_root().join("scripts/org_template.py"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let org: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("org-template.json")).unwrap())
            .unwrap();
    let sam = std::process::Command::new(&python)
        .arg(workspace_root().join("scripts/sam_transform.py"))
        .output()
        .unwrap();
    let sam: Value = serde_json::from_slice(&sam.stdout).unwrap();

    assert!(org.get("Transform").is_none());
    let org_resources = org["Resources"].as_object().unwrap();
    let sam_resources = sam["Resources"].as_object().unwrap();
    assert_eq!(
        org_resources.keys().collect::<BTreeSet<_>>(),
        sam_resources.keys().collect::<BTreeSet<_>>()
    );
    for (name, resource) in org_resources {
        assert_eq!(resource["Type"], sam_resources[name]["Type"], "{name}");
        if resource["Type"] == "AWS::Lambda::Function" {
            assert_eq!(
                resource["Properties"]["Code"]["S3Bucket"],
                json!({"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}),
                "{name}"
            );
        } else {
            // Every role, policy, rule and permission exactly as SAM's.
            assert_eq!(resource, &sam_resources[name], "{name}");
        }
    }

    let lint = std::process::Command::new(workspace_root().join(".venv/bin/cfn-lint"))
        .args(["--ignore-checks", "W3037", "--"])
        .arg(out.join("org-template.json"))
        .arg(out.join("org-artifact-buckets.yaml"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
}

/// copy-snapshots may copy only the deployment's snapshots of this region,
/// only into the target regions, only under the target keys; tag only at
/// creation or its own copies' state and labels; delete only its own
/// copies there. Without targets it has no copy permission at all.
#[test]
fn copy_permissions_are_the_deployments_snapshots_the_target_regions_and_keys() {
    let template = template_json();
    let policy = &template["Resources"]["CopyToTargetRegionsPolicy"];
    assert_eq!(policy["Condition"], "HasCopyTargets");
    assert_eq!(
        policy["Properties"]["Roles"],
        json!([{"!Ref": "CopySnapshotsFunctionRole"}])
    );
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let stack = json!({"!Ref": "AWS::StackName"});
    let regions = json!({"!Ref": "CopyTargetRegions"});
    for s in statements {
        let sid = s["Sid"].as_str().unwrap();
        let action = s["Action"].to_string();
        let equals = &s["Condition"]["StringEquals"];
        if action.contains("ec2:") {
            let own = equals["aws:ResourceTag/lifecycle:managed-by"] == stack
                || equals["aws:RequestTag/lifecycle:managed-by"] == stack
                || equals["ec2:CreateAction"] == "CopySnapshot";
            assert!(own, "{sid}: not limited to the deployment's snapshots");
            let any_region = s["Resource"].to_string().contains(":ec2:*::");
            if any_region {
                assert_eq!(equals["ec2:Region"], regions, "{sid}: any region");
            }
        }
        if sid == "LabelOwnCopies" {
            let keys = &s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"];
            assert_eq!(
                keys,
                &json!([
                    "lifecycle:state",
                    "lifecycle:completed-at",
                    "lifecycle:retained-by",
                    "lifecycle:expires-at"
                ])
            );
        }
        if sid == "EncryptCopiesWithTargetKeys" {
            assert_eq!(s["Resource"], json!({"!Ref": "CopyTargetKmsKeyArns"}));
        }
    }
    // Without the policy the role cannot copy, tag or delete anything.
    let inline =
        template["Resources"]["CopySnapshotsFunction"]["Properties"]["Policies"].to_string();
    for action in ["ec2:CopySnapshot", "ec2:CreateTags", "ec2:DeleteSnapshot"] {
        assert!(
            !inline.contains(action),
            "{action} outside the conditional policy"
        );
    }
}

/// A vault stack's role can lock its copies and never unlock them; it
/// deletes only its own; the source side shares only with the vault
/// accounts named, never publicly. Both exist only when configured.
#[test]
fn a_vault_locks_never_unlocks_and_sources_share_only_with_their_vaults() {
    let template = template_json();
    let resources = &template["Resources"];
    let vault = &resources["VaultSnapshotsFunction"];
    assert_eq!(vault["Condition"], "IsVault");
    let policies = vault["Properties"]["Policies"].to_string();
    assert!(policies.contains("ec2:LockSnapshot"));
    assert!(
        !policies.contains("UnlockSnapshot"),
        "the vault role can unlock"
    );
    let stack = json!({"!Ref": "AWS::StackName"});
    for statement in vault["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
    {
        let action = statement["Action"].to_string();
        if action.contains("ec2:DeleteSnapshot") || action.contains("ec2:LockSnapshot") {
            assert_eq!(
                statement["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
                stack,
                "{statement}"
            );
        }
    }
    let share = &resources["ShareWithVaultsPolicy"];
    assert_eq!(share["Condition"], "HasVaultTargets");
    let statement = &share["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Action"], "ec2:ModifySnapshotAttribute");
    assert_eq!(
        statement["Condition"]["ForAllValues:StringEquals"]["ec2:Add/userId"],
        json!({"!Ref": "CopyTargetAccounts"})
    );
    assert_eq!(statement["Condition"]["Null"]["ec2:Add/group"], "true");
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        stack
    );
}

/// The dashboard's body is valid JSON once CloudFormation substitutes it,
/// and it shows every function, the failure queue and the stack's metrics.
/// It is made unless `CreateDashboard=false`, and nothing else needs it.
#[test]
fn the_dashboard_shows_every_function_and_the_stacks_metrics() {
    let template = template_json();
    assert_eq!(
        template["Resources"]["Dashboard"]["Condition"],
        "HasDashboard"
    );
    assert_eq!(
        template["Outputs"]["DashboardName"]["Condition"],
        "HasDashboard"
    );
    assert_eq!(
        template["Conditions"]["HasDashboard"],
        json!({"!Equals": [{"!Ref": "CreateDashboard"}, "true"]})
    );
    let others = serde_json::to_string(&template["Resources"]).unwrap();
    assert_eq!(
        others.matches(r#"{"!Ref":"Dashboard"}"#).count(),
        0,
        "no resource refers to the dashboard"
    );
    let sub = &template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["!Sub"];
    let mut body = sub[0].as_str().unwrap().to_string();
    let names = sub[1].as_object().unwrap();
    for (name, _) in names {
        body = body.replace(&format!("${{{name}}}"), &format!("fn-{name}"));
    }
    for (name, value) in [
        ("AWS::Region", "us-east-1"),
        ("AWS::StackName", "prod"),
        ("MetricsNamespace", "EbsSnapshotLifecycle"),
    ] {
        body = body.replace(&format!("${{{name}}}"), value);
    }
    let dashboard: Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let text = dashboard.to_string();
    for needle in [
        "fn-Create",
        "fn-Complete",
        "fn-Tag",
        "fn-Check",
        "fn-Expire",
        "fn-Copy",
        "fn-Report",
        "fn-Archive",
        "fn-Verify",
        "fn-QueueName",
        "RestoreDrillsPassed",
        "RestoreDrillsFailed",
        "RestoreSeconds",
        "SnapshotsArchiveStarted",
        "SnapshotsArchiveFailed",
        "SnapshotsCreateFailed",
        "CrossRegionCopyFailed",
        "VolumesUnprotected",
        "UnencryptedSnapshots",
        "PublicSnapshots",
        "StuckSnapshots",
        "SnapshotStorageBytes",
        "EstimatedMonthlyCost",
    ] {
        assert!(text.contains(needle), "the dashboard lacks {needle}");
    }
}

/// report-snapshots lists blocks but can never read them, and tags only
/// its two cache keys, only on this deployment's snapshots.
#[test]
fn the_report_lists_blocks_never_reads_them_and_tags_only_its_cache() {
    let template = template_json();
    let text = template.to_string();
    assert!(
        !text.contains("\"ebs:*\""),
        "no wildcard on the EBS direct APIs"
    );
    // Only the restore drills read snapshot data (the next test).
    let resources = template["Resources"].as_object().unwrap();
    let readers: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r.to_string().contains("ebs:GetSnapshotBlock"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        readers,
        ["VerifyRestoresFunction"],
        "who may read snapshot data"
    );
    let statements = inline_statements(&template, "ReportSnapshotsFunction");
    let with = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .filter(|s| s["Action"].to_string().contains(action))
            .collect()
    };
    // The volumes' last verified restores: read only.
    let verified: Vec<&Value> = statements
        .iter()
        .filter(|s| s.to_string().contains("\"verified\""))
        .collect();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0]["Action"], "dynamodb:BatchGetItem");
    let lists = with("ebs:");
    assert_eq!(lists.len(), 1);
    assert_eq!(
        lists[0]["Action"],
        json!(["ebs:ListChangedBlocks", "ebs:ListSnapshotBlocks"])
    );
    let tags = with("ec2:CreateTags");
    assert_eq!(tags.len(), 1, "one tagging statement");
    assert_eq!(
        tags[0]["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        json!({"!Ref": "AWS::StackName"})
    );
    assert_eq!(
        tags[0]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        json!(["lifecycle:unique-bytes", "lifecycle:unique-basis"])
    );
    // Every function prices alike (the report, archiving, expiry's
    // early-deletion charge).
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    for (variable, parameter) in [
        ("STANDARD_PRICE_GB_MONTH", "StandardPricePerGbMonth"),
        ("ARCHIVE_PRICE_GB_MONTH", "ArchivePricePerGbMonth"),
        ("RESTORE_PRICE_GB", "RestorePricePerGb"),
    ] {
        assert_eq!(env[variable], json!({"!Ref": parameter}), "{variable}");
        assert!(template["Parameters"][parameter]["Default"].is_string());
    }
}

/// verify-restores reads the blocks of this deployment's snapshots only,
/// makes only volumes that say at creation they are its drills (from its
/// own snapshots), and deletes only volumes that carry that tag.
#[test]
fn restore_drills_read_only_the_deployments_blocks_and_make_and_delete_only_drill_volumes() {
    let template = template_json();
    let statements = inline_statements(&template, "VerifyRestoresFunction");
    let with = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .filter(|s| s["Action"].to_string().contains(action))
            .collect()
    };
    let own = json!({"!Ref": "AWS::StackName"});
    let reads = with("ebs:GetSnapshotBlock");
    assert_eq!(reads.len(), 1);
    assert_eq!(
        reads[0]["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        own
    );
    let creates = with("ec2:CreateVolume");
    assert_eq!(
        creates.len(),
        2,
        "the volume and the snapshot it is made from"
    );
    for c in &creates {
        let c = &c["Condition"];
        let tagged = c["StringEquals"]["aws:RequestTag/lifecycle:managed-by"] == own
            && c["Null"]["aws:RequestTag/lifecycle:drill"] == "false";
        let own_snapshot = c["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"] == own;
        assert!(tagged || own_snapshot, "{c}");
    }
    let deletes = with("ec2:DeleteVolume");
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0]["Condition"]["Null"]["aws:ResourceTag/lifecycle:drill"],
        "false"
    );
    assert_eq!(
        deletes[0]["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        own
    );
    let text = serde_json::to_string(&statements).unwrap();
    for never in [
        "ec2:DeleteSnapshot",
        "ec2:AttachVolume",
        "ec2:ModifySnapshotAttribute",
        "ebs:PutSnapshotBlock",
        "\"ec2:*\"",
    ] {
        assert!(!text.contains(never), "verify-restores may not {never}");
    }
    let tags = with("ec2:CreateTags");
    assert_eq!(tags.len(), 1, "tags only at creation");
    assert_eq!(
        tags[0]["Condition"]["StringEquals"]["ec2:CreateAction"],
        "CreateVolume"
    );
}

/// Every role a key policy may have to name is an output (the docs tell
/// operators to put it there), and every function's name is one.
#[test]
fn outputs_name_every_function_and_every_role_a_key_policy_names() {
    let template = template_json();
    let outputs = template["Outputs"].as_object().unwrap();
    for role in [
        "CopySnapshotsFunctionRole",
        "VerifyRestoresFunctionRole",
        "CheckEncryptionFunctionRole",
        "VaultSnapshotsFunctionRole",
    ] {
        let output = &outputs[&format!("{role}Arn")];
        assert_eq!(
            output["Value"],
            json!({"!GetAtt": format!("{role}.Arn")}),
            "{role}"
        );
    }
    assert_eq!(
        outputs["VaultSnapshotsFunctionRoleArn"]["Condition"],
        "IsVault"
    );
    let resources = template["Resources"].as_object().unwrap();
    for (name, resource) in resources {
        if resource["Type"] == "AWS::Serverless::Function" {
            assert!(
                outputs.contains_key(&format!("{name}Name")),
                "no output names {name}"
            );
        }
    }
}

/// The drills of disaster-recovery copies exist only with copy targets,
/// and act only in `CopyTargetRegions`, with the same tags as at home and
/// the target keys only through EC2 and EBS.
#[test]
fn drills_of_copies_act_only_in_the_copy_regions() {
    let template = template_json();
    let conditional: Vec<&Value> = template["Resources"]["VerifyRestoresFunction"]["Properties"]
        ["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .filter_map(|s| s["!If"].as_array())
        .map(|branches| {
            assert_eq!(branches[0], "HasCopyTargets");
            assert_eq!(branches[2], json!({"!Ref": "AWS::NoValue"}));
            &branches[1]
        })
        .collect();
    let sids: Vec<&str> = conditional
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        [
            "CreateDrillVolumesInCopyRegions",
            "CreateDrillVolumesFromOwnCopies",
            "TagDrillVolumesAtCreationInCopyRegions",
            "DeleteOnlyDrillVolumesInCopyRegions",
            "ReadOwnCopyBlocks",
            "CopyTargetKeysThroughEc2AndEbs",
            "CopyTargetKeyGrantsForEc2"
        ]
    );
    let own = json!({"!Ref": "AWS::StackName"});
    for s in &conditional[..5] {
        let equals = &s["Condition"]["StringEquals"];
        assert_eq!(
            equals["aws:RequestedRegion"],
            json!({"!Ref": "CopyTargetRegions"}),
            "{s}"
        );
        let tagged = equals["aws:RequestTag/lifecycle:managed-by"] == own
            || equals["aws:ResourceTag/lifecycle:managed-by"] == own
            || equals["ec2:CreateAction"] == "CreateVolume";
        assert!(tagged, "{s}");
    }
    let keys = conditional[5];
    assert_eq!(keys["Resource"], json!({"!Ref": "CopyTargetKmsKeyArns"}));
    assert!(!keys["Action"].to_string().contains("CreateGrant"));
    assert_eq!(
        keys["Condition"]["StringLike"]["kms:ViaService"],
        json!(["ec2.*.amazonaws.com", "ebs.*.amazonaws.com"])
    );
    // Grants only for EC2 itself, as at home.
    let grants = conditional[6];
    assert_eq!(grants["Action"], "kms:CreateGrant");
    assert_eq!(grants["Resource"], json!({"!Ref": "CopyTargetKmsKeyArns"}));
    assert_eq!(
        grants["Condition"]["Bool"]["kms:GrantIsForAWSResource"],
        "true"
    );
}

/// archive-snapshots moves only this deployment's snapshots, can neither
/// restore nor delete, lists blocks without reading them, and tags only
/// where each move stands.
#[test]
fn archiving_moves_only_the_deployments_snapshots_and_tags_only_the_tier() {
    let template = template_json();
    let statements = inline_statements(&template, "ArchiveSnapshotsFunction");
    let text = serde_json::to_string(&statements).unwrap();
    for never in [
        "ec2:RestoreSnapshotTier",
        "ec2:DeleteSnapshot",
        "ec2:ModifySnapshotAttribute",
        "ec2:CopySnapshot",
        "ebs:GetSnapshotBlock",
    ] {
        assert!(!text.contains(never), "archive-snapshots may not {never}");
    }
    let with = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .filter(|s| s["Action"].to_string().contains(action))
            .collect()
    };
    let moves = with("ec2:ModifySnapshotTier");
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0]["Action"], "ec2:ModifySnapshotTier");
    let own = json!({"!Ref": "AWS::StackName"});
    assert_eq!(
        moves[0]["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        own
    );
    let tags = with("ec2:CreateTags");
    assert_eq!(tags.len(), 1);
    assert_eq!(
        tags[0]["Condition"]["StringEquals"]["aws:ResourceTag/lifecycle:managed-by"],
        own
    );
    assert_eq!(
        tags[0]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        json!(["lifecycle:tier", "lifecycle:archived-at"])
    );
    assert_eq!(
        with("ebs:")[0]["Action"],
        json!(["ebs:ListChangedBlocks", "ebs:ListSnapshotBlocks"])
    );
}

/// The inline policy statements of a function's role in the template.
fn inline_statements(template: &Value, function: &str) -> Vec<Value> {
    template["Resources"][function]["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .cloned()
        .collect()
}
