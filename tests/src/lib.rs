//! Integration-test harness.
//!
//! - [`Moto`]: a private moto server per test, on a free 127.0.0.1 port,
//!   started from the project's virtualenv (`.venv`, made by `make venv`) with
//!   `MOTO_EC2_LOAD_DEFAULT_AMIS=false` and the fixes of
//!   `scripts/moto_ebs_fixes.py`, and killed when the test ends. One
//!   server per test keeps tests isolated: nothing one test creates is seen
//!   by another.
//! - [`mocked_ec2`]: a real SDK client whose responses come from
//!   `aws-smithy-mocks` rules, for what moto cannot produce (throttling,
//!   pagination, per-volume limits). The client keeps the production retry
//!   policy, with a tiny backoff so tests are fast.
//! - [`RequestCounter`]: an SDK interceptor that counts the requests a client
//!   sends, per operation, so tests can assert how many calls a run costs.
//! - [`RecordingNotifier`]: captures notifications so tests can assert them.
//! - [`fault_proxy::FaultProxy`]: an HTTP proxy in front of moto that
//!   throttles, fails, resets or delays chosen requests, for end-to-end
//!   fault tests with the real SDK client and retry policy.
//! - seeding helpers for volumes and instances.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness: failing loudly is the point

pub mod fault_proxy;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle::ports::notifier::{Notifier, NotifyError};
use ebs_lifecycle_core::notify::Notification;

pub const REGION: &str = "us-east-1";

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The account moto acts as (its default), which the test configuration names.
pub const ACCOUNT: &str = "123456789012";

/// The functions template.yaml builds, by binary name (each function's
/// `Metadata.BuildProperties.Binary`), in the template's order: the one
/// list the tests that must cover every function iterate.
pub fn deployed_functions() -> Vec<String> {
    let template = std::fs::read_to_string(workspace_root().join("template.yaml"))
        .expect("template.yaml is readable");
    template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary: "))
        .map(|name| name.trim().to_string())
        .collect()
}
/// The stack's ledger table, created in every test's moto.
pub const LEDGER_TABLE: &str = "itest-ledger";

/// The port moto_sim_clock.py says it listens on (its first line), within
/// 30 seconds.
fn announced_port(child: &mut std::process::Child) -> u16 {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("moto's stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = sender.send(line);
        // Drained to the end: the server never writes into a closed pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("moto did not say its port within 30 s");
    line.trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("moto said {line:?}, not its port"))
}

/// A moto server owned by one test.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// libfaketime-style offset (seconds) moto's clock follows
    /// (scripts/moto_sim_clock.py): what EC2 stamps as StartTime.
    clock: PathBuf,
    /// Slots handed out by [`managed_snapshot`], one day apart.
    slots: std::sync::atomic::AtomicI64,
}

impl Moto {
    pub fn start() -> Self {
        let python = workspace_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make venv` (make test does it) to create the project virtualenv",
            python.display()
        );
        // moto's own server with the project's documented fixes
        // (scripts/moto_ebs_fixes.py: CopySnapshot honours Encrypted), on a
        // clock tests can set (scripts/moto_sim_clock.py), so a history is
        // stamped by EC2 as if taken at its slots. Port 0: the server binds
        // a free port and says which. (Picking a free port here and handing
        // it over left a window in which two tests could get the same one,
        // the second then talking to the first's server: seen once as
        // "Table already exists" under load.)
        static CLOCKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let clock = std::env::temp_dir().join(format!(
            "itest-moto-clock-{}-{}",
            std::process::id(),
            CLOCKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&clock, "+0").expect("the clock file is writable");
        let mut child = Command::new(python)
            .arg(workspace_root().join("scripts/moto_sim_clock.py"))
            .arg(&clock)
            .args(["127.0.0.1", "0"])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let port = announced_port(&mut child);
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            clock,
            slots: std::sync::atomic::AtomicI64::new(0),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        create_ledger_table(&moto.sdk_config());
        moto
    }

    /// SDK configuration acting as another account of this server: the
    /// credentials of a role of that account (STS AssumeRole), as a stack
    /// deployed there has. moto keeps accounts apart by them.
    pub async fn sdk_config_as(&self, account: &str) -> aws_config::SdkConfig {
        let provider = aws_config::sts::AssumeRoleProvider::builder(format!(
            "arn:aws:iam::{account}:role/itest"
        ))
        .session_name("itest")
        .configure(&self.sdk_config())
        .build()
        .await;
        self.sdk_config()
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build()
    }
}

/// The template's `Ledger` table (same keys) in the account `sdk` acts as,
/// on its own thread and runtime: called from async tests and sync ones
/// alike.
pub fn create_ledger_table(sdk: &aws_config::SdkConfig) {
    {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let client = aws_sdk_dynamodb::Client::new(sdk);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let key = |name: &str, kind: KeyType| {
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(kind)
                        .build()
                        .unwrap()
                };
                let attribute = |name: &str| {
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .unwrap()
                };
                client
                    .create_table()
                    .table_name(LEDGER_TABLE)
                    .key_schema(key("pk", KeyType::Hash))
                    .key_schema(key("sk", KeyType::Range))
                    .attribute_definitions(attribute("pk"))
                    .attribute_definitions(attribute("sk"))
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await
                    .unwrap();
            })
        })
        .join()
        .unwrap();
    }
}

impl Moto {
    /// The stack's ledger on this moto (leaked: ports borrow it for the test).
    pub fn ledger(&self) -> &'static ebs_lifecycle::aws::ledger::DynamoLedger {
        Box::leak(Box::new(ebs_lifecycle::aws::ledger::DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&self.sdk_config()),
            LEDGER_TABLE,
        )))
    }

    /// The stack's ledger on this moto, every request counted (leaked as
    /// [`Moto::ledger`]).
    pub fn counted_ledger(
        &self,
    ) -> (
        &'static ebs_lifecycle::aws::ledger::DynamoLedger,
        RequestCounter,
    ) {
        counted_ledger_in(&self.sdk_config())
    }

    /// SDK configuration for another region of this server (moto keeps
    /// regions apart).
    pub fn sdk_config_in(&self, region: &str) -> aws_config::SdkConfig {
        self.sdk_config()
            .into_builder()
            .region(Region::new(region.to_string()))
            .build()
    }

    /// EC2 in another region of this server.
    pub fn ec2_in(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config_in(region))
    }

    /// A customer managed KMS key in `region`; returns its ARN.
    pub async fn kms_key_in(&self, region: &str) -> String {
        create_kms_key(&self.sdk_config_in(region)).await
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config())
    }

    /// Seed moto's random ids (its `/moto-api/seed`): the same calls then
    /// get the same snapshot and volume ids, so a generated test that picks
    /// by position in a listing replays exactly.
    pub fn seed_ids(&self, seed: u64) {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /moto-api/seed?a={seed} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
    }

    /// Set moto's clock to `t` (it runs on from there); `None`: real time.
    pub fn set_clock(&self, t: Option<chrono::DateTime<chrono::Utc>>) {
        let offset = t.map_or(0, |t| (t - chrono::Utc::now()).num_seconds());
        std::fs::write(&self.clock, format!("{offset:+}")).unwrap();
    }

    /// The next slot [`managed_snapshot`] hands out: midnight UTC, a day
    /// after the last, from 2026-03-01 (on every `@daily` and hourly schedule).
    pub fn next_slot(&self) -> chrono::DateTime<chrono::Utc> {
        let n = self.slots.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ebs_lifecycle_core::tags::parse_time("2026-03-01T00:00:00Z").unwrap()
            + chrono::Duration::days(n)
    }

    /// SDK configuration pointing at this server, with dummy credentials and
    /// the production retry policy.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    "testing", "testing", None, None, "moto",
                )),
            )
            .retry_config(ebs_lifecycle::aws::retry_config())
            .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
            .time_source(aws_smithy_async::time::SystemTimeSource::new())
            .build()
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config())
    }

    /// An EC2 client whose every request (retries included) is counted.
    pub fn counted_ec2(&self) -> (aws_sdk_ec2::Client, RequestCounter) {
        let counter = RequestCounter::default();
        let config = aws_sdk_ec2::config::Builder::from(&self.sdk_config())
            .interceptor(counter.clone())
            .build();
        (aws_sdk_ec2::Client::from_conf(config), counter)
    }

    /// The EBS direct APIs on moto (its synthetic block maps), unpaced,
    /// every request counted.
    pub fn ebs_blocks(&self) -> (ebs_lifecycle::aws::ebs::EbsBlocks, RequestCounter) {
        let counter = RequestCounter::default();
        let config = aws_sdk_ebs::config::Builder::from(&self.sdk_config())
            .interceptor(counter.clone())
            .build();
        let blocks = ebs_lifecycle::aws::ebs::EbsBlocks::new(
            aws_sdk_ebs::Client::from_conf(config),
            ebs_lifecycle::pacing::BucketPacing::NONE,
        );
        (blocks, counter)
    }

    pub fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk_config())
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config())
    }

    /// The Run Commands moto recorded, oldest first: (document, instances,
    /// the `commands` parameter).
    pub async fn commands_sent(&self) -> Vec<(String, Vec<String>, Vec<String>)> {
        let listed = self.ssm().list_commands().send().await.unwrap();
        let mut sent: Vec<_> = listed
            .commands()
            .iter()
            .map(|c| {
                (
                    c.requested_date_time()
                        .map(|t| t.as_nanos())
                        .unwrap_or_default(),
                    c.document_name().unwrap_or_default().to_string(),
                    c.instance_ids().to_vec(),
                    c.parameters()
                        .and_then(|p| p.get("commands"))
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        sent.sort();
        sent.into_iter().map(|(_, d, i, c)| (d, i, c)).collect()
    }

    /// An SSM client whose requests go into `counter` (share it with
    /// [`Moto::counted_ec2`]'s to see both services' calls in order).
    pub fn counted_ssm(&self, counter: &RequestCounter) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::config::Builder::from(&self.sdk_config())
            .interceptor(counter.clone())
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.clock);
    }
}

/// Counts the HTTP requests a client transmits, by operation name
/// (`CreateTags`, `DescribeSnapshots`, ...). Each retry is a request.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, usize>>>,
    /// Every request in the order sent, across the clients that share it.
    sequence: Arc<Mutex<Vec<String>>>,
}

impl RequestCounter {
    pub fn count(&self, operation: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    pub fn all(&self) -> BTreeMap<String, usize> {
        self.counts.lock().unwrap().clone()
    }

    /// Operation names in the order they were sent.
    pub fn sequence(&self) -> Vec<String> {
        self.sequence.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.counts.lock().unwrap().clear();
        self.sequence.lock().unwrap().clear();
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        self.sequence.lock().unwrap().push(operation.clone());
        *self.counts.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}

/// A ledger in the account `sdk` acts as, every request counted.
pub fn counted_ledger_in(
    sdk: &aws_config::SdkConfig,
) -> (
    &'static ebs_lifecycle::aws::ledger::DynamoLedger,
    RequestCounter,
) {
    let counter = RequestCounter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .interceptor(counter.clone())
        .build();
    let ledger = Box::leak(Box::new(ebs_lifecycle::aws::ledger::DynamoLedger::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        LEDGER_TABLE,
    )));
    (ledger, counter)
}

impl RequestCounter {
    /// Writes sent to DynamoDB (each retry counted).
    pub fn ledger_writes(&self) -> usize {
        [
            "PutItem",
            "DeleteItem",
            "UpdateItem",
            "BatchWriteItem",
            "TransactWriteItems",
        ]
        .iter()
        .map(|op| self.count(op))
        .sum()
    }
}

/// A real EC2 client answered by mock rules.
pub fn mocked_ec2(mode: RuleMode, rules: &[&Rule]) -> aws_sdk_ec2::Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(mode);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(interceptor)
        .retry_config(
            ebs_lifecycle::aws::retry_config().with_initial_backoff(Duration::from_millis(1)),
        )
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

/// A real SSM client answered by mock rules. With no rules, every call
/// fails: the SSM port of a test whose policies run no command.
pub fn mocked_ssm(mode: RuleMode, rules: &[&Rule]) -> aws_sdk_ssm::Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(mode);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(interceptor)
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// The SSM port of a test whose policies run no command: every call fails.
pub fn no_commands() -> ebs_lifecycle::aws::ssm::SsmAdapter {
    ebs_lifecycle::aws::ssm::SsmAdapter::new(mocked_ssm(RuleMode::MatchAny, &[]))
}

/// create-snapshots' waits for tests: moto stops an instance and runs a
/// command at once, so polls are short; the stop timeout stays realistic.
pub const TEST_WAITS: create_snapshots::Waits = create_snapshots::Waits {
    command_poll: Duration::from_millis(20),
    ssm_spacing: Duration::from_millis(1),
    instance_poll: Duration::from_millis(20),
    stop_timeout: Duration::from_secs(10),
    freeze_window: create_snapshots::Waits::PRODUCTION.freeze_window,
};

/// create-snapshots' ports on one EC2 adapter (and its SSM runner), with
/// [`TEST_WAITS`].
pub fn create_ports<'a>(
    ec2: &'a ebs_lifecycle::aws::ec2::Ec2Adapter,
    commands: &'a dyn ebs_lifecycle::ports::commands::CommandRunner,
    notifier: &'a dyn Notifier,
    ledger: &'a dyn Ledger,
) -> create_snapshots::Ports<'a> {
    create_snapshots::Ports {
        ledger,
        inventory: ec2,
        catalog: ec2,
        creator: ec2,
        notifier,
        commands,
        instances: ec2,
        waits: TEST_WAITS,
        bucket: Box::leak(Box::new(create_snapshots::Bucket::new(
            create_snapshots::BucketPacing::NONE,
        ))),
        memo: fresh_memo(),
    }
}

/// A memo with nothing notified yet, for one set of ports: each test starts
/// as a new execution environment does. (Leaked: a few bytes per test.)
pub fn fresh_memo() -> &'static ebs_lifecycle_core::notify::DailyMemo {
    Box::leak(Box::new(ebs_lifecycle_core::notify::DailyMemo::new()))
}

/// complete-snapshots' ports on one EC2 adapter.
pub fn complete_ports<'a>(
    ec2: &'a ebs_lifecycle::aws::ec2::Ec2Adapter,
    notifier: &'a dyn Notifier,
    ledger: &'a dyn Ledger,
) -> complete_snapshots::Ports<'a> {
    complete_snapshots::Ports {
        ledger,
        catalog: ec2,
        tagger: ec2,
        notifier,
    }
}

/// tag-snapshots' ports on one EC2 adapter.
pub fn tag_ports<'a>(
    ec2: &'a ebs_lifecycle::aws::ec2::Ec2Adapter,
    notifier: &'a dyn Notifier,
    ledger: &'a dyn Ledger,
) -> tag_snapshots::Ports<'a> {
    tag_snapshots::Ports {
        ledger,
        catalog: ec2,
        inventory: ec2,
        tagger: ec2,
        notifier,
        pacing: tag_snapshots::CREATE_TAGS_PACING,
    }
}

/// check-encryption's ports on one EC2 adapter and a key directory.
pub fn check_ports<'a>(
    ec2: &'a ebs_lifecycle::aws::ec2::Ec2Adapter,
    keys: &'a dyn ebs_lifecycle::ports::keys::KeyDirectory,
    notifier: &'a dyn Notifier,
    ledger: &'a dyn Ledger,
) -> check_encryption::Ports<'a> {
    check_encryption::Ports {
        ledger,
        catalog: ec2,
        inventory: ec2,
        sharing: ec2,
        settings: ec2,
        copier: ec2,
        keys,
        notifier,
        memo: fresh_memo(),
    }
}

/// expire-snapshots' ports on one EC2 adapter.
pub fn expire_ports<'a>(
    ec2: &'a ebs_lifecycle::aws::ec2::Ec2Adapter,
    notifier: &'a dyn Notifier,
    ledger: &'a dyn Ledger,
) -> expire_snapshots::Ports<'a> {
    expire_snapshots::Ports {
        ledger,
        catalog: ec2,
        inventory: ec2,
        protections: ec2,
        deleter: ec2,
        notifier,
        pacing: expire_snapshots::DELETE_PACING,
    }
}

/// An EC2 error response as the service sends it (status and XML body), so
/// it goes through the SDK's deserializer and retry classifier as in production.
pub fn ec2_error(status: u16, code: &str) -> aws_smithy_runtime_api::http::Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{code} (injected by the test)</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
    );
    aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(status).expect("a valid HTTP status"),
        aws_smithy_types::body::SdkBody::from(body),
    )
}

/// Configuration as the template would set it, with the given policies.
pub fn config(policies: &str) -> Config {
    config_with(policies, &[])
}

/// [`config`] with more variables set (or overridden).
pub fn config_with(policies: &str, extra: &[(&str, &str)]) -> Config {
    let base = [
        ("DEPLOYMENT_NAME", "itest"),
        ("ACCOUNT_ID", ACCOUNT),
        ("AWS_REGION", REGION),
        ("LEDGER_TABLE", LEDGER_TABLE),
        ("POLICIES", policies),
        ("METRICS_NAMESPACE", "ItestSnapshots"),
    ];
    let lookup = |name: &str| {
        extra
            .iter()
            .chain(base.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    Config::from_lookup(lookup).expect("test configuration is valid")
}

/// Keeps every notification it is given.
#[derive(Default)]
pub struct RecordingNotifier {
    pub sent: Mutex<Vec<Notification>>,
}

impl RecordingNotifier {
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.sent.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

pub fn tag_spec(resource: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build()
}

/// Create a volume with tags; returns its id.
pub async fn create_volume(ec2: &aws_sdk_ec2::Client, size: i32, tags: &[(&str, &str)]) -> String {
    let mut request = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(size);
    if !tags.is_empty() {
        request = request.tag_specifications(tag_spec(ResourceType::Volume, tags));
    }
    request
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string()
}

/// Launch an instance with tags; returns its id and its root volume's id.
pub async fn run_instance(ec2: &aws_sdk_ec2::Client, tags: &[(&str, &str)]) -> (String, String) {
    let mut request = ec2
        .run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        request = request.tag_specifications(tag_spec(ResourceType::Instance, tags));
    }
    let out = request.send().await.unwrap();
    let instance = &out.instances()[0];
    let root = instance.block_device_mappings()[0]
        .ebs()
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    (instance.instance_id().unwrap().to_string(), root)
}

pub async fn attach(ec2: &aws_sdk_ec2::Client, volume: &str, instance: &str, device: &str) {
    ec2.attach_volume()
        .volume_id(volume)
        .instance_id(instance)
        .device(device)
        .send()
        .await
        .unwrap();
}

/// Every snapshot the account owns, with tags as a map.
pub async fn snapshots(ec2: &aws_sdk_ec2::Client) -> Vec<ebs_lifecycle_core::model::Snapshot> {
    ec2.describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap()
        .snapshots()
        .iter()
        .filter_map(ebs_lifecycle::aws::ec2::snapshot_of)
        .collect()
}

/// The labels create-snapshots writes for `slot` (created 12 s into it),
/// completed five minutes later.
pub fn labels_for(
    volume: &str,
    deployment: &str,
    policy: &str,
    slot: chrono::DateTime<chrono::Utc>,
) -> ebs_lifecycle_core::tags::LifecycleLabels {
    ebs_lifecycle_core::tags::LifecycleLabels {
        managed_by: deployment.into(),
        policy: policy.into(),
        slot,
        state: ebs_lifecycle_core::tags::LifecycleState::Completed,
        volume_id: Some(volume.into()),
        instance_id: None,
        device: None,
        created_at: slot + chrono::Duration::seconds(12),
        completed_at: Some(slot + chrono::Duration::minutes(5)),
        consistency: ebs_lifecycle_core::tags::ConsistencyLabel::Crash,
        retained_by: None,
        expires_at: None,
        hold: false,
    }
}

/// The identity the test configuration gives `deployment`.
pub fn identity(deployment: &str) -> ebs_lifecycle_core::ownership::Identity {
    ebs_lifecycle_core::ownership::Identity {
        deployment: deployment.into(),
        account: ACCOUNT.into(),
        region: REGION.into(),
    }
}

/// A snapshot of `volume` as create-snapshots makes it for `labels`: its
/// lifecycle tags (only those: no `Name`, no copied tags, as a multi-volume
/// set or an older version leaves them) plus `extra`, the Description that
/// proves it the deployment's, and EC2's StartTime at `labels.created_at`
/// (moto's clock is set there for the call). Returns its id.
pub async fn snapshot_as_created(
    moto: &Moto,
    volume: &str,
    labels: &ebs_lifecycle_core::tags::LifecycleLabels,
    extra: &[(&str, &str)],
) -> String {
    let description = identity(&labels.managed_by).scheduled(
        &ebs_lifecycle_core::ownership::Subject::Volume(volume.into()),
        &labels.policy,
        labels.slot,
    );
    let mut pairs: Vec<(String, String)> = labels.to_tags().into_iter().collect();
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    moto.set_clock(Some(labels.created_at));
    let id = moto
        .ec2()
        .create_snapshot()
        .volume_id(volume)
        .description(description)
        .tag_specifications(tag_spec(ResourceType::Snapshot, &refs))
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    moto.set_clock(None);
    id
}

/// A completed snapshot of `volume` for the next slot of this moto (each
/// call one day after the last, from 2026-03-01), as create-snapshots
/// made it ([`snapshot_as_created`]), plus `extra` tags. Returns its id.
pub async fn managed_snapshot(
    moto: &Moto,
    volume: &str,
    deployment: &str,
    policy: &str,
    extra: &[(&str, &str)],
) -> String {
    let labels = labels_for(volume, deployment, policy, moto.next_slot());
    snapshot_as_created(moto, volume, &labels, extra).await
}

/// A copy of the deployment's `source` (of `volume`, policy `policy`, made
/// for `slot`) in `region`, as copy-snapshots makes it: CopySnapshot an
/// hour after the slot (moto's clock set there for the call; it completes
/// 30 minutes later), the copy's lifecycle tags, and the ledger's copy
/// record that proves it. Returns its id.
pub async fn dr_copy(
    moto: &Moto,
    region: &str,
    (volume, policy): (&str, &str),
    source: &str,
    slot: chrono::DateTime<chrono::Utc>,
) -> String {
    use ebs_lifecycle::ports::ledger::Ledger;
    use ebs_lifecycle_core::tags as keys;
    let there = moto.ec2_in(region);
    moto.set_clock(Some(slot + chrono::Duration::hours(1)));
    let copy = there
        .copy_snapshot()
        .source_region(REGION)
        .source_snapshot_id(source)
        .description(identity("itest").copy(REGION, source))
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    moto.set_clock(None);
    put_tags(
        &there,
        &copy,
        &[
            (keys::MANAGED_BY, "itest"),
            (keys::COPY_OF, source),
            (keys::SOURCE_REGION, REGION),
            (keys::VOLUME_ID, volume),
            (keys::TARGET, region),
        ],
    )
    .await;
    moto.ledger()
        .record_copy(&ebs_lifecycle_core::ownership::CopyRecord {
            copy_id: copy.clone(),
            source_snapshot_id: source.to_string(),
            volume_id: volume.to_string(),
            policy: policy.into(),
            slot,
            created_at: slot + chrono::Duration::seconds(12),
            target: Some(region.into()),
        })
        .await
        .unwrap();
    copy
}

/// `n` days of `volume`'s history under `policy` ([`managed_snapshot`]),
/// each copied to `region` an hour after its slot ([`dr_copy`]): the
/// sources and their copies, oldest first.
pub async fn copied_history(
    moto: &Moto,
    region: &str,
    (volume, policy): (&str, &str),
    n: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut sources, mut copies) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let slot = moto.next_slot();
        let labels = labels_for(volume, "itest", policy, slot);
        let source = snapshot_as_created(moto, volume, &labels, &[]).await;
        copies.push(dr_copy(moto, region, (volume, policy), &source, slot).await);
        sources.push(source);
    }
    (sources, copies)
}

/// The volumes carrying a `lifecycle:drill` tag (a restore drill's), by id.
pub async fn drill_volumes(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    ec2.describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag-key")
                .values("lifecycle:drill")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(String::from))
        .collect()
}

/// A DynamoDB client answered by mock rules that hold nothing: no stop, no
/// copy, every report a first, every deletion granted. The ledger of tests
/// whose EC2 is mocked too.
pub fn mocked_ledger() -> &'static ebs_lifecycle::aws::ledger::DynamoLedger {
    mocked_ledger_with(&[])
}

/// [`mocked_ledger`] with `first` rules tried before the empty answers.
pub fn mocked_ledger_with(first: &[&Rule]) -> &'static ebs_lifecycle::aws::ledger::DynamoLedger {
    use aws_sdk_dynamodb::operation::{
        batch_get_item::BatchGetItemOutput, delete_item::DeleteItemOutput, get_item::GetItemOutput,
        put_item::PutItemOutput, query::QueryOutput,
    };
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::mock;
    let rules = [
        mock!(Client::get_item)
            .sequence()
            .output(|| GetItemOutput::builder().build())
            .repeatedly()
            .build(),
        mock!(Client::put_item)
            .sequence()
            .output(|| PutItemOutput::builder().build())
            .repeatedly()
            .build(),
        mock!(Client::delete_item)
            .sequence()
            .output(|| DeleteItemOutput::builder().build())
            .repeatedly()
            .build(),
        mock!(Client::query)
            .sequence()
            .output(|| QueryOutput::builder().build())
            .repeatedly()
            .build(),
        mock!(Client::batch_get_item)
            .sequence()
            .output(|| BatchGetItemOutput::builder().build())
            .repeatedly()
            .build(),
    ];
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in first.iter().copied().chain(rules.iter()) {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Box::leak(Box::new(ebs_lifecycle::aws::ledger::DynamoLedger::new(
        Client::from_conf(config),
        LEDGER_TABLE,
    )))
}

/// Put tags on any resource (volume, instance, snapshot).
pub async fn put_tags(ec2: &aws_sdk_ec2::Client, resource: &str, tags: &[(&str, &str)]) {
    ec2.create_tags()
        .resources(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .send()
        .await
        .unwrap();
}

/// A snapshot made by hand (no lifecycle tags); returns its id.
pub async fn hand_made_snapshot(ec2: &aws_sdk_ec2::Client, volume: &str) -> String {
    ec2.create_snapshot()
        .volume_id(volume)
        .description("made by hand")
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string()
}

/// A customer managed KMS key where `sdk` acts (its account and region);
/// returns its ARN.
pub async fn create_kms_key(sdk: &aws_config::SdkConfig) -> String {
    aws_sdk_kms::Client::new(sdk)
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

/// An instance's state name, as EC2 has it now.
pub async fn instance_state(ec2: &aws_sdk_ec2::Client, instance: &str) -> String {
    let answer = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.state().and_then(|s| s.name()))
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}
