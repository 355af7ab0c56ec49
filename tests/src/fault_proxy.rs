//! A fault-injecting HTTP proxy in front of moto, for end-to-end fault tests.
//!
//! The SDK talks to the proxy as it would to EC2; the proxy forwards each
//! request to moto unless a planned fault for that operation is due. Faults
//! are what the network and EC2 do to a real run: a throttling answer
//! (`RequestLimitExceeded`, HTTP 503), an internal error (HTTP 500), a
//! connection reset before the request reaches EC2, a reset *after* EC2 acted
//! (the answer is lost: the case that makes a blind retry create twice), and
//! an answer slower than the SDK's attempt timeout.
//!
//! moto answers with `Connection: close`, so the proxy handles one request
//! per connection, as moto does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded untouched: a planned success between faults, so that a
    /// sequence of faults can hit different calls rather than exhaust the
    /// retries of one.
    Pass,
    /// HTTP 503 `RequestLimitExceeded`; moto never sees the request.
    Throttle,
    /// HTTP 500 `InternalError`; moto never sees the request.
    InternalError,
    /// The connection is closed before the request is forwarded.
    ResetBeforeForward,
    /// The request is forwarded (EC2 acts), then the connection is closed
    /// without the answer.
    ResetAfterForward,
    /// The answer comes after this long (forwarded first).
    Delay(Duration),
}

#[derive(Debug)]
struct Planned {
    operation: String,
    fault: Fault,
    times: usize,
}

/// EC2's token bucket for one operation, as the proxy emulates it.
#[derive(Debug)]
struct EmulatedBucket {
    operation: String,
    burst: f64,
    per_second: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl EmulatedBucket {
    /// Take a token if there is one.
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct State {
    plan: VecDeque<Planned>,
    buckets: Vec<EmulatedBucket>,
    /// Added to every answer, as the network and EC2 take time.
    latency: Duration,
    /// Every request seen: operation and the fault applied, if any.
    seen: Vec<(String, Option<Fault>)>,
    /// When each request that went through to moto arrived, by operation.
    passed_at: Vec<(String, std::time::Instant)>,
}

/// The proxy; it stops when dropped (its task is aborted).
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free 127.0.0.1 port and forward to `upstream` (moto's endpoint URL).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("moto's endpoint is http://127.0.0.1:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, state).await;
                });
            }
        });
        Self {
            endpoint,
            state,
            task,
        }
    }

    /// The next `times` requests of `operation` (`CreateSnapshot`, ...) get `fault`.
    pub fn inject(&self, operation: &str, times: usize, fault: Fault) {
        self.state.lock().unwrap().plan.push_back(Planned {
            operation: operation.into(),
            fault,
            times,
        });
    }

    /// From now on, `operation` draws on a token bucket like EC2's: `burst`
    /// tokens refilled at `per_second`; a request finding it empty is
    /// answered `RequestLimitExceeded` (503) and never reaches moto.
    pub fn emulate_bucket(&self, operation: &str, burst: f64, per_second: f64) {
        self.state.lock().unwrap().buckets.push(EmulatedBucket {
            operation: operation.into(),
            burst,
            per_second,
            tokens: burst,
            at: std::time::Instant::now(),
        });
    }

    /// Every answer from now on comes `latency` later.
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    /// How many requests of `operation` arrived (faulted ones included).
    pub fn requests(&self, operation: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.seen.iter().filter(|(op, _)| op == operation).count()
    }

    /// When the requests of `operation` that reached moto arrived, in order.
    pub fn passed_at(&self, operation: &str) -> Vec<std::time::Instant> {
        let state = self.state.lock().unwrap();
        state
            .passed_at
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, t)| *t)
            .collect()
    }

    /// The faults applied, in order.
    pub fn faults_applied(&self) -> Vec<(String, Fault)> {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter_map(|(op, f)| f.map(|f| (op.clone(), f)))
            .collect()
    }

    /// An SDK configuration for this proxy: moto's dummy credentials, the
    /// production retry policy with a short backoff, and `attempt_timeout`
    /// per attempt (tests use a short one to exercise timeouts quickly).
    pub fn sdk_config(&self, attempt_timeout: Duration) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(crate::REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "moto"),
                ),
            )
            .retry_config(
                ebs_lifecycle::aws::retry_config().with_initial_backoff(Duration::from_millis(20)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            )
            .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
            .build()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one HTTP/1.1 request: head and body (Content-Length).
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buf))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The operation: EC2's query protocol names it in the form body
/// (`Action=...`); JSON protocols (KMS, SQS) in `X-Amz-Target`.
fn operation_of(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    if let Some(start) = text.find("Action=") {
        let rest = &text[start + "Action=".len()..];
        let end = rest.find(['&', '\r', '\n']).unwrap_or(rest.len());
        return rest[..end].to_string();
    }
    text.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-amz-target:")
                .then(|| l.rsplit('.').next().unwrap_or_default().trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn error_response(status: u16, reason: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message></Error></Errors>\
         <RequestID>fault-proxy</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn forward(request: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut moto = TcpStream::connect(upstream).await?;
    moto.write_all(request).await?;
    let mut answer = Vec::new();
    // moto closes the connection after its answer.
    moto.read_to_end(&mut answer).await?;
    Ok(answer)
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    let operation = operation_of(&request);
    let (fault, latency) = {
        let mut state = state.lock().unwrap();
        let latency = state.latency;
        let empty = state
            .buckets
            .iter_mut()
            .find(|b| b.operation == operation)
            .is_some_and(|b| !b.take());
        if empty {
            state.seen.push((operation, Some(Fault::Throttle)));
            (Some(Fault::Throttle), latency)
        } else {
            let fault = planned_fault(&mut state, operation.clone());
            if fault.is_none() {
                state.passed_at.push((operation, std::time::Instant::now()));
            }
            (fault, latency)
        }
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    answer(client, &request, upstream, fault).await
}

/// The next planned fault for `operation`, recorded as seen.
fn planned_fault(state: &mut State, operation: String) -> Option<Fault> {
    {
        let due = state
            .plan
            .iter_mut()
            .find(|p| p.operation == operation && p.times > 0);
        let fault = due.map(|p| {
            p.times -= 1;
            p.fault
        });
        state.plan.retain(|p| p.times > 0);
        let fault = fault.filter(|f| *f != Fault::Pass);
        state.seen.push((operation, fault));
        fault
    }
}

async fn answer(
    mut client: TcpStream,
    request: &[u8],
    upstream: SocketAddr,
    fault: Option<Fault>,
) -> std::io::Result<()> {
    match fault {
        Some(Fault::Throttle) => {
            client
                .write_all(&error_response(
                    503,
                    "Service Unavailable",
                    "RequestLimitExceeded",
                ))
                .await?
        }
        Some(Fault::InternalError) => {
            client
                .write_all(&error_response(
                    500,
                    "Internal Server Error",
                    "InternalError",
                ))
                .await?
        }
        Some(Fault::ResetBeforeForward) => reset(client),
        Some(Fault::ResetAfterForward) => {
            forward(request, upstream).await?;
            reset(client);
        }
        Some(Fault::Delay(d)) => {
            let answer = forward(request, upstream).await?;
            tokio::time::sleep(d).await;
            client.write_all(&answer).await?;
        }
        Some(Fault::Pass) | None => {
            let answer = forward(request, upstream).await?;
            client.write_all(&answer).await?;
        }
    }
    Ok(())
}

/// Close with RST (linger 0), as a dropped connection looks to the SDK.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}
