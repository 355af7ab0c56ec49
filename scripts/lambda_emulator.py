"""Running the function binaries as Lambda runs them, on this machine: a
local implementation of the Lambda Runtime API (2018-06-01) per function,
and each function's environment as template.yaml sets it.

Used by scripts/demo.py (a year in the life of an account) and
scripts/bench_functions.py (memory and start-up of each binary). The
environment is read from the template, never restated: a variable added to
the template reaches both without a change here.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start on port {port}")


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (`!Ref X` becomes
    `{"Ref": "X"}`, `!Sub s` becomes `{"Fn::Sub": s}`, ...)."""


def _intrinsic(loader, tag_suffix, node):
    # CloudFormation's long forms: `Ref` and `Condition` have no `Fn::`.
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            # `!GetAtt Resource.Attribute` is `["Resource", "Attribute"]` in JSON.
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def template() -> dict:
    with (ROOT / "template.yaml").open() as f:
        return yaml.load(f, Loader=_CloudFormationLoader)


def ledger_table(deployment: str) -> str:
    """The name the emulated stack's ledger table (template.yaml `Ledger`) has."""
    return f"{deployment}-ledger"


def create_ledger_table(endpoint: str, deployment: str, credentials: dict | None = None) -> str:
    """Create the stack's ledger table in the emulator, keyed as the
    template's, in the account `credentials` act as (default: the demo's)."""
    import boto3  # the project virtualenv has it (moto depends on it)

    credentials = credentials or {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, **credentials)
    name = ledger_table(deployment)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def function_env(endpoint: str, topic: str, deployment: str, parameters: dict[str, str] | None = None) -> dict[str, str]:
    """What template.yaml sets (Globals.Function.Environment), with each
    `!Ref` resolved: the stack name is `deployment`, the topic is `topic`,
    a parameter is `parameters[name]` or else the template's default. Then
    what Lambda adds, and the local endpoint and dummy credentials."""
    t = template()
    defaults = {name: str(p.get("Default", "")) for name, p in t.get("Parameters", {}).items()}
    given = {
        **defaults,
        **(parameters or {}),
        "AWS::StackName": deployment,
        "AWS::AccountId": ACCOUNT,
        "NotificationTopic": topic,
        "Ledger": ledger_table(deployment),
    }
    variables = t["Globals"]["Function"]["Environment"]["Variables"]
    conditions = t.get("Conditions", {})

    def resolve(key: str, value: object) -> str:
        # `!Ref`, plain values, and `!If` on a condition made of
        # `!Equals`/`!Not` over those: what the Globals use.
        if isinstance(value, dict) and "Ref" in value:
            if value["Ref"] not in given:
                raise SystemExit(f"template.yaml: {key} refers to {value['Ref']}, which the emulator cannot resolve")
            return given[value["Ref"]]
        if isinstance(value, dict) and "Fn::If" in value:
            name, then, otherwise = value["Fn::If"]
            return resolve(key, then if holds(key, conditions[name]) else otherwise)
        if isinstance(value, (str, int, bool)):
            return str(value)
        raise SystemExit(f"template.yaml: {key} is {value!r}, which the emulator cannot resolve")

    def holds(key: str, condition: object) -> bool:
        if isinstance(condition, dict) and "Fn::Equals" in condition:
            left, right = condition["Fn::Equals"]
            return resolve(key, left) == resolve(key, right)
        if isinstance(condition, dict) and "Fn::Not" in condition:
            return not holds(key, condition["Fn::Not"][0])
        raise SystemExit(f"template.yaml: {key} depends on {condition!r}, which the emulator cannot resolve")

    env: dict[str, str] = {key: resolve(key, value) for key, value in variables.items()}
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(t["Globals"]["Function"].get("MemorySize", 128)),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL": endpoint,
        **env,
    }


class RuntimeApi:
    """The Lambda Runtime API (2018-06-01), enough to run one function: the
    binary polls `next`, we hand it an event, it posts a response or an error."""

    def __init__(self, function_name: str, deployment: str, clock=None) -> None:
        self.events: queue.Queue = queue.Queue()
        self.results: dict[str, queue.Queue] = {}
        self.init_error: dict | None = None
        # When the function first asked for an event: start-up is over.
        self.first_poll_at: float | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the demo's output readable
                pass

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    self.send_error(404)
                    return
                if api.first_poll_at is None:
                    api.first_poll_at = time.monotonic()
                request_id, payload, timeout_s = api.events.get()
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                # In the function's (simulated) time.
                now = clock() if clock else datetime.datetime.now(datetime.timezone.utc)
                deadline_ms = int((now.timestamp() + timeout_s) * 1000)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{deployment}-{function_name}",
                )
                self.send_header("Lambda-Runtime-Trace-Id", f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else b""
                parts = self.path.strip("/").split("/")
                # /2018-06-01/runtime/invocation/{id}/response|error, /2018-06-01/runtime/init/error
                if parts[2:4] == ["init", "error"]:
                    api.init_error = json.loads(body or b"{}")
                elif len(parts) == 5 and parts[2] == "invocation" and parts[4] in ("response", "error"):
                    api.results.setdefault(parts[3], queue.Queue()).put((parts[4], body))
                else:
                    self.send_error(404)
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, payload: dict, timeout_s: int = 300) -> tuple[str, dict]:
        request_id = str(uuid.uuid4())
        self.results[request_id] = queue.Queue()
        self.events.put((request_id, payload, timeout_s))
        kind, body = self.results[request_id].get(timeout=timeout_s + 30)
        return kind, json.loads(body or b"null")

    def close(self) -> None:
        self.server.shutdown()


class LambdaFunction:
    """One function binary under its own Runtime API, as Lambda runs it."""

    def __init__(self, name: str, binary: Path, env: dict, log_path: Path, clock=None) -> None:
        self.name = name
        deployment = env.get("DEPLOYMENT_NAME", "local")
        self.api = RuntimeApi(name, deployment, clock)
        self.invocations = 0
        self.seconds = 0.0
        self.log_path = log_path
        full_env = {
            **env,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.api.port}",
            "AWS_LAMBDA_FUNCTION_NAME": f"{deployment}-{name}",
        }
        self.started_at = time.monotonic()
        # LAMBDA_EMULATOR_WRAP (e.g. `heaptrack -o /tmp/ht`): a profiler to
        # run the binary under (bench_functions.py's memory investigations).
        wrap = os.environ.get("LAMBDA_EMULATOR_WRAP", "").split()
        self.process = subprocess.Popen([*wrap, str(binary)], env=full_env, stdout=log_path.open("w"),
                                        stderr=subprocess.STDOUT)

    def invoke(self, payload: dict, timeout_s: int = 300) -> dict:
        self.invocations += 1
        begun = time.monotonic()
        kind, body = self.api.invoke(payload, timeout_s)
        self.seconds += time.monotonic() - begun
        if kind != "response":
            raise SystemExit(f"{self.name} failed: {body}")
        return body

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.api.close()
