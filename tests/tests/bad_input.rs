//! Bad input, checked in under `tests/fixtures/`: malformed events (every
//! handler), policy documents and environment values. Each gets a clear,
//! short error naming what is wrong; no handler makes an AWS call or
//! publishes, and nothing panics. The same parsers are fuzzed by the
//! targets in `fuzz/` (see the README).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::config::{Credentials, Region};
use aws_smithy_mocks::RuleMode;
use serde_json::Value;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::config::{Config, ConfigError};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::fuzzing::MAX_ERROR_CHARS;
use ebs_lifecycle_core::policy::{Policies, PolicyError};
use integration_tests::*;
use lambda_runtime::Diagnostic;

fn corpus(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace_root().join("tests/fixtures").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// An EC2 client with no answers at all, counting what it is asked.
fn silent_ec2() -> (aws_sdk_ec2::Client, RequestCounter) {
    let counter = RequestCounter::default();
    let client = mocked_ec2(RuleMode::MatchAny, &[]);
    let config = client
        .config()
        .to_builder()
        .interceptor(counter.clone())
        .build();
    (aws_sdk_ec2::Client::from_conf(config), counter)
}

fn silent_kms() -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// The EBS direct APIs with no answers at all, counting what they are asked.
fn silent_ebs(counter: &RequestCounter) -> ebs_lifecycle::aws::ebs::EbsBlocks {
    let config = aws_sdk_ebs::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(counter.clone())
        .build();
    ebs_lifecycle::aws::ebs::EbsBlocks::new(
        aws_sdk_ebs::Client::from_conf(config),
        ebs_lifecycle::aws::ebs::PACING,
    )
}

/// Run one handler on `event`; its error as Lambda would report it.
async fn run_function(function: &str, event: &Value) -> Result<(), Diagnostic> {
    let (ec2, counter) = silent_ec2();
    let adapter = Ec2Adapter::new(ec2);
    let kms = KmsAdapter::new(silent_kms());
    let blocks = silent_ebs(&counter);
    let no_commands = no_commands();
    let notifier = RecordingNotifier::default();
    let config = config(r#"{"gold": {"schedule": "@daily", "keep": {"last": 3}}}"#);
    let now = chrono::Utc::now();
    let deadline = Deadline::after(Duration::from_secs(600));
    let result: Result<(), Diagnostic> = match function {
        "create-snapshots" => create_snapshots::handle(
            create_ports(&adapter, &no_commands, &notifier, mocked_ledger()),
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "complete-snapshots" => complete_snapshots::handle(
            complete_ports(&adapter, &notifier, mocked_ledger()),
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "tag-snapshots" => tag_snapshots::handle(
            tag_ports(&adapter, &notifier, mocked_ledger()),
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "check-encryption" => check_encryption::handle(
            check_ports(&adapter, &kms, &notifier, mocked_ledger()),
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "expire-snapshots" => expire_snapshots::handle(
            expire_ports(&adapter, &notifier, mocked_ledger()),
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "copy-snapshots" => {
            let destinations = BTreeMap::new();
            copy_snapshots::handle(
                copy_snapshots::Ports {
                    catalog: &adapter,
                    sharing: &adapter,
                    keys: &kms,
                    destinations: &destinations,
                    notifier: &notifier,
                    ledger: mocked_ledger(),
                    copy_pacing: copy_snapshots::COPY_PACING,
                    delete_pacing: copy_snapshots::DELETE_PACING,
                },
                &config,
                event,
                now,
                deadline,
            )
            .await
            .map(drop)
            .map_err(Into::into)
        }
        "vault-snapshots" => vault_snapshots::handle(
            vault_snapshots::Ports {
                catalog: &adapter,
                protections: &adapter,
                copier: &adapter,
                deleter: &adapter,
                tagger: &adapter,
                locker: &adapter,
                notifier: &notifier,
                ledger: mocked_ledger(),
                copy_pacing: vault_snapshots::COPY_PACING,
                delete_pacing: vault_snapshots::DELETE_PACING,
            },
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "report-snapshots" => report_snapshots::handle(
            report_snapshots::Ports {
                catalog: &adapter,
                inventory: &adapter,
                protections: &adapter,
                blocks: &blocks,
                tagger: &adapter,
                notifier: &notifier,
                ledger: mocked_ledger(),
                drills: mocked_ledger(),
                reports: None,
            },
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "archive-snapshots" => archive_snapshots::handle(
            archive_snapshots::Ports {
                catalog: &adapter,
                inventory: &adapter,
                protections: &adapter,
                blocks: &blocks,
                archiver: &adapter,
                tagger: &adapter,
                notifier: &notifier,
                ledger: mocked_ledger(),
            },
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        "verify-restores" => verify_restores::handle(
            verify_restores::Ports {
                catalog: &adapter,
                volumes: &adapter,
                blocks: &blocks,
                copies: &std::collections::BTreeMap::new(),
                ledger: mocked_ledger(),
                drills: mocked_ledger(),
                notifier: &notifier,
            },
            &config,
            event,
            now,
            deadline,
        )
        .await
        .map(drop)
        .map_err(Into::into),
        other => {
            panic!("{other}: a function of template.yaml this test does not run yet: add it here")
        }
    };
    assert_eq!(counter.all(), BTreeMap::new(), "{function}: no AWS call");
    assert!(notifier.sent().is_empty(), "{function}: nothing published");
    result
}

#[tokio::test]
async fn every_function_rejects_every_malformed_event_without_an_aws_call() {
    let cases = corpus("malformed-events.json");
    assert!(cases.len() >= 30);
    for case in &cases {
        let why = case["why"].as_str().unwrap();
        for function in deployed_functions() {
            let function = function.as_str();
            let error = run_function(function, &case["event"])
                .await
                .expect_err(&format!("{function} accepted: {why}"));
            assert_eq!(error.error_type, "InvalidEvent", "{function}: {why}");
            assert!(
                error.error_message.chars().count() < MAX_ERROR_CHARS,
                "{function}: {why}: the message stays short even for huge input"
            );
            if let Some(field) = case["field"].as_str() {
                // create and expire take only ticks: their complaint may be
                // that the event is not a tick at all.
                let tick_only = matches!(
                    function,
                    "create-snapshots" | "expire-snapshots" | "copy-snapshots" | "report-snapshots"
                );
                assert!(
                    tick_only || error.error_message.contains(field),
                    "{function}: {why}: names {field}: {}",
                    error.error_message
                );
            }
        }
    }
}

#[test]
fn every_malformed_policy_document_is_rejected_naming_the_policy_and_field() {
    let cases = corpus("malformed-policies.json");
    assert!(cases.len() >= 30);
    let mut wrong = Vec::new();
    for case in &cases {
        let why = case["why"].as_str().unwrap();
        let document = case["policies"].as_str().unwrap();
        let error = match Policies::parse(document) {
            Ok(_) => {
                wrong.push(format!("{why}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        let message = error.to_string();
        if message.chars().count() >= MAX_ERROR_CHARS {
            wrong.push(format!("{why}: {} chars", message.chars().count()));
        }
        if let Some(policy) = case["policy"].as_str() {
            match &error {
                PolicyError::Field {
                    policy: p, field, ..
                } => {
                    let expected = case["field"].as_str();
                    if p != policy || expected.is_some_and(|f| f != field) {
                        wrong.push(format!("{why}: names {p}.{field}: {message}"));
                    }
                }
                other => wrong.push(format!("{why}: not a field error: {other}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_malformed_environment_is_rejected_naming_the_variable() {
    let cases = corpus("malformed-environment.json");
    assert!(cases.len() >= 20);
    let mut wrong = Vec::new();
    for case in &cases {
        let why = case["why"].as_str().unwrap();
        let env: BTreeMap<String, String> = serde_json::from_value(case["env"].clone()).unwrap();
        let error: ConfigError = match Config::from_lookup(|k| env.get(k).cloned()) {
            Ok(_) => {
                wrong.push(format!("{why}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        if error.variable() != case["variable"].as_str().unwrap() {
            wrong.push(format!("{why}: blames {}: {error}", error.variable()));
        }
        if error.to_string().chars().count() >= MAX_ERROR_CHARS {
            wrong.push(format!(
                "{why}: {} chars",
                error.to_string().chars().count()
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
