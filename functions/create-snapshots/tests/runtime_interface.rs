//! The real binary under the Lambda Runtime API: proves `main.rs` wiring,
//! start-up validation and error types as Lambda would see them. A minimal
//! Runtime API (2018-06-01) is served here on 127.0.0.1; no AWS endpoint is
//! reachable (`AWS_ENDPOINT_URL` points at a closed port), so any AWS call
//! would fail the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

/// What the binary posted for the one invocation.
#[derive(Debug)]
struct Outcome {
    path: String,
    body: Value,
}

/// Serve `event` once to whoever polls `next`, and report what comes back.
fn runtime_api(event: Value) -> (u16, mpsc::Receiver<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut served = false;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            let event = event.clone();
            let first = !served;
            served = true;
            thread::spawn(move || serve(stream, event, first, tx));
        }
    });
    (port, rx)
}

fn serve(stream: TcpStream, event: Value, mut give_event: bool, tx: mpsc::Sender<Outcome>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if path.ends_with("/invocation/next") {
            if !give_event {
                // The runtime polls again after answering: hold it until the test ends.
                thread::sleep(Duration::from_secs(60));
                return;
            }
            give_event = false;
            let payload = event.to_string();
            let deadline_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 300_000;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:f\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
                payload.len()
            )
            .unwrap();
        } else {
            write!(stream, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").unwrap();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let _ = tx.send(Outcome { path, body });
        }
    }
}

struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn invoke(env: &[(&str, &str)], event: Value) -> Outcome {
    let (port, outcomes) = runtime_api(event);
    let mut command = Command::new(env!("CARGO_BIN_EXE_create-snapshots"));
    command
        .env_clear()
        .envs([
            (
                "AWS_LAMBDA_RUNTIME_API",
                format!("127.0.0.1:{port}").as_str(),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", "itest-create-snapshots"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            // Nothing listens on port 9: an AWS call would fail, not escape.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _function = Function(command.spawn().unwrap());
    outcomes
        .recv_timeout(Duration::from_secs(60))
        .expect("the binary answers the invocation")
}

#[test]
fn a_bad_policy_document_fails_every_invocation_with_config_error_naming_policy_and_field() {
    let outcome = invoke(
        &[
            ("DEPLOYMENT_NAME", "itest"),
            (
                "POLICIES",
                r#"{"gold": {"schedule": "@daily", "keep": {"dayly": 3}}}"#,
            ),
        ],
        json!({"kind": "tick"}),
    );
    assert!(
        outcome.path.ends_with("/invocation/req-1/error"),
        "{}",
        outcome.path
    );
    assert_eq!(outcome.body["errorType"], "ConfigError");
    let message = outcome.body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("policy `gold`") && message.contains("keep.dayly"),
        "{message}"
    );
}

#[test]
fn a_missing_deployment_name_is_named() {
    let outcome = invoke(&[], json!({"kind": "tick"}));
    assert_eq!(outcome.body["errorType"], "ConfigError");
    assert!(outcome.body["errorMessage"]
        .as_str()
        .unwrap()
        .contains("DEPLOYMENT_NAME"));
}

#[test]
fn a_malformed_event_is_rejected_as_invalid_event_before_any_aws_call() {
    let outcome = invoke(
        &[
            ("DEPLOYMENT_NAME", "itest"),
            ("ACCOUNT_ID", "123456789012"),
            ("LEDGER_TABLE", "itest-ledger"),
        ],
        json!({"kind": "tock"}),
    );
    assert!(outcome.path.ends_with("/error"));
    assert_eq!(outcome.body["errorType"], "InvalidEvent");
    assert!(outcome.body["errorMessage"]
        .as_str()
        .unwrap()
        .contains("kind"));
}
