#!/usr/bin/env python3
"""make demo: create-snapshots on a local emulated AWS account, run as Lambda runs it.

1. Starts moto on a free 127.0.0.1 port (no stock AMIs).
2. Seeds an account: an instance under an instance-consistent hourly policy,
   volumes under a daily policy, a volume naming a policy that does not exist,
   and one that did not opt in; an SNS topic with an SQS queue subscribed.
3. Serves the Lambda Runtime API itself and starts the real create-snapshots
   binary against it, with the environment the template sets. Each tick is an
   invocation with the scheduler's payload, exactly as deployed.
4. Prints what the function did, the snapshots and their tags, runs a second
   tick in the same slot to show nothing is duplicated.
5. Starts complete-snapshots the same way and feeds it the events EC2 would
   send when those snapshots complete (moto sends none), then a duplicate, an
   event for a snapshot this deployment does not manage, and a reconcile tick.
6. Seeds 150 days of an older volume's snapshots, made honestly: moto runs
   in this process and `time-machine` moves its clock back to each day, so EC2
   stamps each snapshot with its day. Runs expire-snapshots on it: a dry run
   (the plan: what is kept, and by which rules), then real runs (the first
   stops at MAX_DELETIONS and alerts, the next finishes).
7. Prints the notifications the topic delivered and the metric lines, and
   stops everything it started.

Exits non-zero if anything did not go as a user would expect.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# moto reads this when it is imported: no stock AMIs (about a thousand foreign snapshots).
os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"

import datetime  # noqa: E402
import logging  # noqa: E402

import boto3  # noqa: E402
import time_machine  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import moto_ebs_fixes  # noqa: E402,F401  (CopySnapshot honours Encrypted, as EC2 does)

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
DEPLOYMENT = "demo-backups"

POLICIES = {
    "default": {
        "schedule": "@daily",
        "timezone": "UTC",
        "keep": {"last": 3, "daily": 7, "weekly": 4, "monthly": 12},
        "copy_tags": ["Owner", "CostCenter"],
        "tags": {"Tier": "standard"},
    },
    "fleet": {
        "schedule": "0 * * * *",
        "timezone": "Europe/Berlin",
        "keep": {"last": 2, "hourly": 24, "daily": 14},
        "consistency": "instance",
        "copy_tags": ["*"],
    },
}

HISTORY_DAYS = 150
DEMO_MAX_DELETIONS = 60

COLOUR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def paint(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def step(text: str) -> None:
    print(paint(f"==> {text}", "1;36"), flush=True)


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


class RuntimeApi:
    """The Lambda Runtime API (2018-06-01), enough to run one function: the
    binary polls `next`, we hand it an event, it posts a response or an error."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.results: dict[str, queue.Queue] = {}
        self.init_error: dict | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the demo's output readable
                pass

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    self.send_error(404)
                    return
                request_id, payload, timeout_s = api.events.get()
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                deadline_ms = int((time.time() + timeout_s) * 1000)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    f"arn:aws:lambda:{REGION}:123456789012:function:{DEPLOYMENT}-create-snapshots",
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

    def __init__(self, name: str, binary: Path, env: dict, log_path: Path) -> None:
        self.name = name
        self.api = RuntimeApi()
        self.log_path = log_path
        full_env = {
            **env,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.api.port}",
            "AWS_LAMBDA_FUNCTION_NAME": f"{DEPLOYMENT}-{name}",
        }
        self.process = subprocess.Popen([str(binary)], env=full_env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)

    def invoke(self, payload: dict) -> dict:
        kind, body = self.api.invoke(payload)
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


def snapshot_event(snapshot: dict) -> dict:
    """The `EBS Snapshot Notification` EC2 sends when CreateSnapshot completes."""
    arn = f"arn:aws:ec2::{REGION}:snapshot/{snapshot['SnapshotId']}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "EBS Snapshot Notification",
        "source": "aws.ec2", "account": "123456789012", "time": now, "region": REGION, "resources": [arn],
        "detail": {
            "event": "createSnapshot", "result": "succeeded", "cause": "", "request-id": "",
            "snapshot_id": arn, "source": f"arn:aws:ec2::{REGION}:volume/{snapshot['VolumeId']}",
            "startTime": snapshot["StartTime"].strftime("%Y-%m-%dT%H:%M:%SZ"), "endTime": now,
        },
    }


def multi_volume_event(snapshots: list[dict]) -> dict:
    """The `EBS Multi-Volume Snapshots Completion Status` EC2 sends for CreateSnapshots."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    arns = [f"arn:aws:ec2::{REGION}:snapshot/{s['SnapshotId']}" for s in snapshots]
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "EBS Multi-Volume Snapshots Completion Status",
        "source": "aws.ec2", "account": "123456789012", "time": now, "region": REGION, "resources": arns,
        "detail": {
            "event": "createSnapshots", "result": "succeeded", "cause": "", "request-id": "",
            "startTime": now, "endTime": now,
            "snapshots": [
                {"snapshot_id": arn, "source": f"arn:aws:ec2::{REGION}:volume/{s['VolumeId']}", "status": "completed"}
                for arn, s in zip(arns, snapshots)
            ],
        },
    }


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def seed(ec2, sns, sqs) -> dict:
    tag = lambda resource, **kv: [{"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in kv.items()]}]
    out = {}
    web = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1,
        TagSpecifications=tag("instance", Backup="fleet", Name="web-1", Team="storefront"),
    )["Instances"][0]
    out["web-1"] = web["InstanceId"]
    out["web-1 root"] = web["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    data = ec2.create_volume(Size=50, AvailabilityZone=f"{REGION}a", TagSpecifications=tag("volume", Name="web-1-cache"))
    ec2.attach_volume(VolumeId=data["VolumeId"], InstanceId=web["InstanceId"], Device="/dev/sdf")
    out["web-1 data"] = data["VolumeId"]
    for name, size, extra in [("db-data", 200, {"Owner": "ana", "CostCenter": "4711"}), ("reports", 20, {"Owner": "li"})]:
        v = ec2.create_volume(Size=size, AvailabilityZone=f"{REGION}a",
                              TagSpecifications=tag("volume", Backup="default", Name=name, **extra))
        out[name] = v["VolumeId"]
    typo = ec2.create_volume(Size=8, AvailabilityZone=f"{REGION}a", TagSpecifications=tag("volume", Backup="dialy", Name="typo"))
    out["typo"] = typo["VolumeId"]
    scratch = ec2.create_volume(Size=8, AvailabilityZone=f"{REGION}a", TagSpecifications=tag("volume", Name="scratch"))
    out["scratch"] = scratch["VolumeId"]

    topic = sns.create_topic(Name=f"{DEPLOYMENT}-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="demo-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    out["topic"], out["queue"] = topic, queue_url
    return out


def seed_history(ec2) -> str:
    """A volume under the daily policy with HISTORY_DAYS of completed snapshots,
    each created while moto's clock is moved back to its day, and tagged the way
    create-snapshots and complete-snapshots tag them."""
    volume = ec2.create_volume(
        Size=500, AvailabilityZone=f"{REGION}a",
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Backup", "Value": "default"}, {"Key": "Name", "Value": "archive"}]}],
    )["VolumeId"]
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=5, second=0, microsecond=0)
    for age in range(HISTORY_DAYS, 0, -1):
        day = today - datetime.timedelta(days=age)
        stamp = day.strftime("%Y-%m-%dT%H:%M:%SZ")
        tags = {
            "lifecycle:managed-by": DEPLOYMENT, "lifecycle:policy": "default",
            "lifecycle:slot": day.replace(minute=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lifecycle:state": "completed", "lifecycle:volume-id": volume,
            "lifecycle:created-at": stamp, "lifecycle:completed-at": stamp,
            "lifecycle:consistency": "crash", "Name": "archive",
        }
        with time_machine.travel(day, tick=False):
            ec2.create_snapshot(
                VolumeId=volume, Description="history",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
            )
    return volume


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(paint(line, "1"))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def describe_run(summary: dict) -> None:
    c = summary["counts"]
    print(f"    time {summary['time']}: targeted {c['targeted']}, created {c['created']}, "
          f"not due {c['not_due']}, failed {c['failed']}, unknown policy {c['unknown_policy']}, "
          f"left for later {c['left_for_later']}")
    for u in summary.get("unknown_policies", []):
        print(paint(f"    ! {u['resource_type']} {u['resource_id']} names policy '{u['policy']}', which does not exist", "33"))
    for f in summary.get("failed", []):
        print(paint(f"    ! {f['volume_id']}: {f['error']}", "31"))


def snapshot_table(ec2) -> list[dict]:
    snaps = sorted(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"], key=lambda s: (tags_of(s).get("Name", ""), s["VolumeId"]))
    rows = []
    for s in snaps:
        t = tags_of(s)
        extra = {k: v for k, v in t.items() if not k.startswith("lifecycle:") and k != "Name"}
        rows.append([
            s["SnapshotId"], s["VolumeId"], t.get("Name", ""), t.get("lifecycle:policy", "(foreign)"),
            t.get("lifecycle:slot", ""), t.get("lifecycle:state", ""), t.get("lifecycle:completed-at", ""),
            t.get("lifecycle:consistency", ""), ",".join(f"{k}={v}" for k, v in sorted(extra.items())),
        ])
    print()
    print_table(rows, ["snapshot", "volume", "Name", "policy", "slot", "state", "completed-at", "consistency", "other tags"])
    print()
    return snaps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=str(ROOT / "target/debug"), help="where the function binaries are")
    args = parser.parse_args()
    bin_dir = Path(args.bin_dir)
    for name in ("create-snapshots", "complete-snapshots", "tag-snapshots", "check-encryption", "expire-snapshots"):
        if not (bin_dir / name).exists():
            print(f"{bin_dir / name} is missing: run `cargo build --workspace --bins` (make demo does)", file=sys.stderr)
            return 2

    work = ROOT / ".demo"
    work.mkdir(exist_ok=True)
    problems: list[str] = []
    moto = None
    functions: list[LambdaFunction] = []

    try:
        step("starting moto (local AWS emulator) on 127.0.0.1, in this process so its clock can travel")
        # moto logs requests, and a traceback for APIs it lacks (DescribeLockedSnapshots).
        logging.disable(logging.CRITICAL)
        moto_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        moto.start()
        wait_for_port(moto_port, "moto")
        endpoint = f"http://127.0.0.1:{moto_port}"
        session = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="demo", aws_secret_access_key="demo")
        ec2, sns, sqs = (boto3.client(s, **session) for s in ("ec2", "sns", "sqs"))

        step("seeding an account")
        ids = seed(ec2, sns, sqs)
        print(f"    instance web-1 {ids['web-1']} (Backup=fleet: hourly, instance-consistent) with {ids['web-1 root']} and {ids['web-1 data']}")
        print(f"    volumes db-data {ids['db-data']} and reports {ids['reports']} (Backup=default: daily)")
        print(f"    volume typo {ids['typo']} (Backup=dialy: no such policy), volume scratch {ids['scratch']} (not opted in)")
        archive = seed_history(ec2)
        print(f"    volume archive {archive} (Backup=default) with {HISTORY_DAYS} daily snapshots, stamped by moto at each past day")

        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_ENDPOINT_URL": endpoint,
            # The environment template.yaml sets (Globals.Function.Environment).
            "POLICIES": json.dumps(POLICIES),
            "SELECTOR_TAG_KEY": "Backup",
            "DEPLOYMENT_NAME": DEPLOYMENT,
            "TOPIC_ARN": ids["topic"],
            "DRY_RUN": "false",
            "MAX_DELETIONS": "200",
            "STUCK_AFTER_MINUTES": "240",
            "REMEDIATE": "off",
            "ENCRYPTION_KMS_KEY_ID": "",
            "ALLOWED_KMS_KEY_IDS": "",
            "ALLOWED_SHARE_ACCOUNTS": "",
            "METRICS_NAMESPACE": "EbsSnapshotLifecycle",
        }
        step("starting create-snapshots and complete-snapshots, each under a local Lambda Runtime API")
        create = LambdaFunction("create-snapshots", bin_dir / "create-snapshots", env, work / "create-snapshots.log")
        complete = LambdaFunction("complete-snapshots", bin_dir / "complete-snapshots", env, work / "complete-snapshots.log")
        functions += [create, complete]

        tick = lambda: {"kind": "tick", "scheduled_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        step("tick 1: the scheduler invokes create-snapshots")
        first = create.invoke(tick())
        describe_run(first)
        snaps = snapshot_table(ec2)

        expected = {ids["web-1 root"], ids["web-1 data"], ids["db-data"], ids["reports"], archive}
        made = {s["VolumeId"] for s in snaps}
        if made != expected:
            problems.append(f"snapshotted {sorted(made)}, expected {sorted(expected)}")
        today = [s for s in snaps if tags_of(s).get("lifecycle:state") == "pending"]
        for s in today:
            t = tags_of(s)
            if t.get("lifecycle:managed-by") != DEPLOYMENT:
                problems.append(f"{s['SnapshotId']} lacks its lifecycle tags: {t}")
        snaps = today
        if [u["resource_id"] for u in first["unknown_policies"]] != [ids["typo"]]:
            problems.append("the volume naming a missing policy was not reported")

        step("tick 2, same slot: nothing is due, nothing is duplicated")
        second = create.invoke(tick())
        describe_run(second)
        after = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        print(f"    snapshots in the account: {len(snaps) + HISTORY_DAYS} after tick 1, {len(after)} after tick 2")
        if second["counts"]["created"] != 0 or len(after) != len(snaps) + HISTORY_DAYS:
            problems.append("the second tick created snapshots again")

        step("EC2 reports completion: complete-snapshots gets the events EC2 would send")
        together = [s for s in snaps if tags_of(s).get("lifecycle:consistency") == "instance"]
        alone = [s for s in snaps if s not in together]
        events = [snapshot_event(s) for s in alone] + ([multi_volume_event(together)] if together else [])
        for e in events:
            result = complete.invoke(e)
            print(f"    {e['detail-type']} ({e['detail']['event']}): completed {[t['snapshot_id'] for t in result['completed']]}")
        duplicate = complete.invoke(events[0])
        print(f"    the same event delivered again: {duplicate['unchanged']} unchanged, {len(duplicate['completed'])} completed")
        if duplicate["unchanged"] != 1 or duplicate["completed"]:
            problems.append("a duplicate event changed something")
        foreign_volume = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
        foreign = ec2.create_snapshot(VolumeId=foreign_volume, Description="made by hand")
        result = complete.invoke(snapshot_event(foreign))
        print(f"    an event for {foreign['SnapshotId']}, made by hand: foreign {result['foreign']}, left untouched")
        if result["foreign"] != 1:
            problems.append("a foreign snapshot was not recognised")
        reconcile = complete.invoke(tick())
        print(f"    daily reconcile: {len(reconcile['completed'])} corrected, {len(reconcile['stuck'])} stuck")
        final = [s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] if s.get("Description") != "history"]
        for s in final:
            t = tags_of(s)
            if t.get("lifecycle:managed-by") == DEPLOYMENT and (t.get("lifecycle:state") != "completed" or not t.get("lifecycle:completed-at")):
                problems.append(f"{s['SnapshotId']} is not completed: {t}")

        step("tag-snapshots, daily backfill: where each snapshot came from, why it is kept, when it is projected to expire")
        tagger = LambdaFunction("tag-snapshots", bin_dir / "tag-snapshots", env, work / "tag-snapshots.log")
        functions.append(tagger)
        labelled = tagger.invoke(tick())
        print(f"    {labelled['tagged']} snapshots tagged in {labelled['create_tags_calls']} CreateTags calls "
              f"(batched by identical change), {labelled['unchanged']} already right")
        everything = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        ours = [s for s in everything if tags_of(s).get("lifecycle:managed-by") == DEPLOYMENT]
        newest_archive = sorted((s for s in ours if s["VolumeId"] == archive), key=lambda s: s["StartTime"], reverse=True)
        shown = [s for s in ours if s["VolumeId"] != archive] + newest_archive[:6]
        rows = [[s["SnapshotId"], tags_of(s).get("Name", ""), s["StartTime"].strftime("%Y-%m-%d"),
                 tags_of(s).get("lifecycle:retained-by", ""), tags_of(s).get("lifecycle:expires-at", "")] for s in shown]
        print_table(rows, ["snapshot", "Name", "taken", "retained-by", "expires-at"])
        print(f"    ... and {len(newest_archive) - 6} more archive snapshots, each labelled")
        unlabelled = [s["SnapshotId"] for s in ours if "lifecycle:retained-by" not in tags_of(s) or "lifecycle:expires-at" not in tags_of(s)]
        if unlabelled:
            problems.append(f"snapshots without retention labels after the backfill: {unlabelled}")
        labelled_none = {s["SnapshotId"] for s in newest_archive if tags_of(s).get("lifecycle:retained-by") == "none"}
        again = tagger.invoke(tick())
        print(f"    a second backfill right after: {again['tagged']} tagged, {again['create_tags_calls']} CreateTags calls")
        if again["create_tags_calls"] != 0:
            problems.append("a second tag-snapshots run wrote tags again")

        step("check-encryption, daily, REMEDIATE=public: someone made the hand-made snapshot public")
        ec2.modify_snapshot_attribute(SnapshotId=foreign["SnapshotId"], Attribute="createVolumePermission",
                                      OperationType="add", GroupNames=["all"])
        checker = LambdaFunction("check-encryption", bin_dir / "check-encryption", {**env, "REMEDIATE": "public"}, work / "check-encryption.log")
        functions.append(checker)
        checked = checker.invoke(tick())
        counts: dict[str, int] = {}
        for f in checked["findings"]:
            counts[f["kind"]] = counts.get(f["kind"], 0) + 1
        print(f"    {checked['snapshots_checked']} snapshots checked, permissions read for {checked['permissions_read']}: "
              + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        public = [f for f in checked["findings"] if f["kind"] == "public-snapshot"]
        for f in public:
            print(f"    {f['severity']}: {f['snapshot_id']} {f['detail']} -> {f['fix']['status']}: {f['fix']['what']}")
        groups = ec2.describe_snapshot_attribute(SnapshotId=foreign["SnapshotId"], Attribute="createVolumePermission")["CreateVolumePermissions"]
        if len(public) != 1 or public[0]["fix"]["status"] != "applied" or groups:
            problems.append(f"the public snapshot was not made private: {public} {groups}")
        else:
            print("    it is private again; unencrypted snapshots are reported with advice (REMEDIATE=all would replace managed ones with encrypted copies)")

        step(f"expire-snapshots, dry run: the plan for the archive volume ({HISTORY_DAYS + 1} snapshots, policy default)")
        dry = LambdaFunction("expire-snapshots", bin_dir / "expire-snapshots", {**env, "DRY_RUN": "true"}, work / "expire-snapshots-dry.log")
        functions.append(dry)
        plan = dry.invoke(tick())
        report = next(v for v in plan["volumes"] if v["volume_id"] == archive)
        rows = [[k["snapshot_id"], (k["start_time"] or "")[:10], k.get("retained_by") or k["why"]] for k in reversed(report["kept"])]
        print_table(rows, ["kept snapshot", "taken", "kept by"])
        print(f"    would delete {len(report['deleted'])} (oldest {report['deleted'][0]['start_time'][:10] if report['deleted'] else '-'}), "
              f"source volume GiB of those: {plan['counts']['source_volume_gib_of_deleted']} (snapshots are incremental: the real saving is smaller)")
        if len(ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [archive]}])["Snapshots"]) != HISTORY_DAYS + 1:
            problems.append("the dry run deleted something")
        kept_ids = {k["snapshot_id"] for k in report["kept"]}

        step(f"expire-snapshots for real, MAX_DELETIONS={DEMO_MAX_DELETIONS}, paced at 5 deletions a second")
        expire = LambdaFunction("expire-snapshots", bin_dir / "expire-snapshots", {**env, "MAX_DELETIONS": str(DEMO_MAX_DELETIONS)}, work / "expire-snapshots.log")
        functions.append(expire)
        for run in range(1, 6):
            result = expire.invoke(tick())
            c = result["counts"]
            print(f"    run {run}: deleted {c['deleted']}, kept {c['kept']}, failed {c['failed']}, left for the next run {c['left_for_later']}"
                  + ("  (stopped at MAX_DELETIONS, alert sent)" if result["cap_reached"] else ""))
            if not result["cap_reached"]:
                break
        left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [archive]}])["Snapshots"]}
        print(f"    archive volume now holds {len(left)} snapshots: exactly the ones the plan kept")
        if left != kept_ids:
            problems.append(f"after expiry the archive holds {len(left)} snapshots, the plan kept {len(kept_ids)}")
        if {k["snapshot_id"] for k in report["deleted"]} != labelled_none:
            problems.append("the snapshots tag-snapshots labelled retained-by=none are not the ones expiry deleted")
        else:
            print(f"    the {len(labelled_none)} deleted are exactly those tag-snapshots had labelled retained-by=none")
        after_expiry = tagger.invoke(tick())
        print(f"    tag-snapshots after expiry: {after_expiry['create_tags_calls']} CreateTags calls (the survivors' labels still hold)")
        if after_expiry["create_tags_calls"] != 0:
            problems.append("expiry changed the labels of the snapshots it kept")
        others = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] if s["VolumeId"] != archive}
        if others != {s["SnapshotId"] for s in final if s["VolumeId"] != archive}:
            problems.append("expiry touched snapshots of other volumes")

        step("notifications delivered to the topic (read back from a subscribed SQS queue)")
        kinds = []
        while True:
            batch = sqs.receive_message(QueueUrl=ids["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not batch:
                break
            for m in batch:
                body = json.loads(m["Body"])
                kinds.append(body["kind"])
                print(f"    [{body['severity']}] {body['kind']}: {body['summary']}")
                sqs.delete_message(QueueUrl=ids["queue"], ReceiptHandle=m["ReceiptHandle"])
        if "deletion-cap-reached" not in kinds or kinds.count("run-summary") < 4 or "encryption-findings" not in kinds:
            problems.append(f"expected create and expire run summaries and a cap alert, got {kinds}")

        step("metrics (CloudWatch Embedded Metric Format lines from the functions' logs)")
        for f in functions:
            for line in f.log_path.read_text().splitlines():
                if '"_aws"' in line:
                    doc = json.loads(line)
                    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
                    print(f"    {f.name}: " + ", ".join(f"{n}={doc[n]}" for n in names))
            print(f"    full JSON logs: {f.log_path.relative_to(ROOT)}")
    finally:
        for f in functions:
            f.stop()
        if moto is not None:
            moto.stop()

    print()
    if problems:
        for p in problems:
            print(paint(f"FAILED: {p}", "1;31"))
        return 1
    print(paint("demo passed: snapshots tagged at creation, nothing duplicated, tracked to completed, labelled, checked, expired by the plan", "1;32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
