"""make bench, part 2: each function's release binary on the scale account.

    python scripts/bench_functions.py [--bin-dir DIR] [--volumes 2000] [--starts-only]

For each function, as Lambda runs it (the demo's local Runtime
API, the template's environment, moto on 127.0.0.1):

- start to ready: from process start to its first request for an event
  (Lambda's init phase), best of 5 fresh starts;
- peak memory: the process's peak resident set (VmHWM) after one
  invocation on an account of VOLUMES volumes with 10 snapshots each
  (2,000 and 20,000 by default: the scale scenario of tests/tests/scale.rs),
  in the order the day runs them: create, reconcile, tag backfill (paced as
  in production: about 3.5 minutes for 2,000 CreateTags), expiry (planning
  all, deleting at most 50), encryption check, the report (the first run
  measures unique bytes until its 15 minutes are nearly up; then a second
  run and a third, and the sizes of the report's files).

Binaries: the stripped release builds `make package` leaves in
.aws-sam/build/<Function>/bootstrap, or --bin-dir with one file per function.
Prints a table; BENCHMARKS.md records the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3  # noqa: E402

from lambda_emulator import (  # noqa: E402
    ACCOUNT, REGION, ROOT, LambdaFunction, create_ledger_table, free_port, function_env, wait_for_port,
)

FUNCTIONS = {
    "create-snapshots": "CreateSnapshotsFunction",
    "complete-snapshots": "CompleteSnapshotsFunction",
    "tag-snapshots": "TagSnapshotsFunction",
    "expire-snapshots": "ExpireSnapshotsFunction",
    "check-encryption": "CheckEncryptionFunction",
    "report-snapshots": "ReportSnapshotsFunction",
    "archive-snapshots": "ArchiveSnapshotsFunction",
    "copy-snapshots": "CopySnapshotsFunction",
    "vault-snapshots": "VaultSnapshotsFunction",
}
# Start to ready covers every function (verify-restores' drills are not
# invoked on the scale account: tests/tests/verify_restores_moto.rs).
EVERY_FUNCTION = {**FUNCTIONS, "verify-restores": "VerifyRestoresFunction"}
# report-snapshots runs as long as Lambda lets it (its first run over a large
# account measures what it can and leaves the rest for the next).
TIMEOUT_S = {"report-snapshots": 900, "archive-snapshots": 900}
# The archive rule makes archive-snapshots judge every kept snapshot but
# each volume's newest and oldest (the report's figures spare the walks of
# those they say cost more: all of them here, a little written a day).
POLICIES = {"scale": {"schedule": "@daily", "keep": {"last": 7}, "copy_tags": ["*"],
                      "archive": {"after": "7d", "rules": ["last"]}}}
# vault-snapshots runs in a vault stack only: a vault for another account,
# which shares nothing here (its listing and planning, nothing to copy).
VAULT_ENV = {"VAULT_FOR_ACCOUNTS": "210987654321", "VAULT_POLICIES": json.dumps({"scale": {"daily": 7}}),
             "VAULT_KMS_KEY_ID": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000",
             "VAULT_LOCK_DAYS": "0"}


def binary(bin_dir: Path | None, name: str) -> Path:
    path = bin_dir / name if bin_dir else ROOT / ".aws-sam" / "build" / EVERY_FUNCTION[name] / "bootstrap"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make package` (or pass --bin-dir)")
    return path


def seed(endpoint: str, volumes: int, clock: Path) -> None:
    """VOLUMES opted-in volumes with ten daily snapshots each, as
    create-snapshots would have taken them: the ownership Description, and
    EC2's StartTime in each slot (moto's clock is moved there through
    `clock`, scripts/moto_sim_clock.py)."""
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="bench", aws_secret_access_key="bench")
    ids = []
    for _ in range(volumes):
        ids.append(ec2.create_volume(
            AvailabilityZone=f"{REGION}a", Size=8, Encrypted=True,
            TagSpecifications=[{"ResourceType": "volume",
                                "Tags": [{"Key": "Backup", "Value": "scale"}, {"Key": "Owner", "Value": "team-a"}]}],
        )["VolumeId"])

    for day in range(1, 11):
        slot = f"2026-02-{day:02d}T00:00:00Z"
        taken = datetime.datetime(2026, 2, day, 0, 0, 12, tzinfo=datetime.timezone.utc)
        clock.write_text(f"{int(taken.timestamp() - time.time()):+d}")

        def snapshot(volume: str, slot: str = slot, day: int = day) -> None:
            tags = {
                "lifecycle:managed-by": "bench", "lifecycle:policy": "scale",
                "lifecycle:slot": slot, "lifecycle:state": "completed",
                "lifecycle:volume-id": volume, "lifecycle:created-at": f"2026-02-{day:02d}T00:00:12Z",
                "lifecycle:consistency": "crash",
            }
            ec2.create_snapshot(
                VolumeId=volume,
                Description=f"ebs-lifecycle bench {ACCOUNT}/{REGION}: {volume} policy scale slot {slot}",
                TagSpecifications=[{
                    "ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(snapshot, ids))
    clock.write_text("+0")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path)
    parser.add_argument("--volumes", type=int, default=2000)
    parser.add_argument("--only", nargs="*", choices=sorted(EVERY_FUNCTION), help="these functions only")
    parser.add_argument("--long-timeout", type=int, default=900,
                        help="seconds for report-snapshots' and archive-snapshots' invocations (Lambda's 900 by default)")
    parser.add_argument("--starts-only", action="store_true",
                        help="measure start to ready only (no seeding, no invocations; make package prints it)")
    parser.add_argument("--report-runs", type=int, default=3,
                        help="report-snapshots' runs (3: the first over the account, what it left, a day with nothing new)")
    args = parser.parse_args()
    every = EVERY_FUNCTION if args.starts_only else FUNCTIONS
    functions = [name for name in every if not args.only or name in args.only]
    work = Path(tempfile.mkdtemp(prefix="bench-functions-"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    clock = work / "moto-clock-offset"
    clock.write_text("+0")
    moto = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "moto_sim_clock.py"), str(clock), "127.0.0.1", str(port)],
        env={**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        wait_for_port(port, "moto")
        sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="bench", aws_secret_access_key="bench")
        topic = sns.create_topic(Name="bench")["TopicArn"]
        create_ledger_table(endpoint, "bench")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench-reports")
        env = {**function_env(endpoint, topic, "bench"), "POLICIES": json.dumps(POLICIES),
               "DEPLOYMENT_NAME": "bench", "REMEDIATE": "off",
               # Expiry plans every snapshot (what costs memory) but deletes
               # 50: at the production pace, 8,000 deletions take 27 minutes.
               "MAX_DELETIONS": "50", "REPORT_BUCKET": "bench-reports",
               # glibc's allocator settings, passed through for comparisons;
               # the root certificates' location (SSL_CERT_FILE, SSL_CERT_DIR),
               # so start-up can be measured with Lambda's one bundle file
               # instead of a machine's directory of hundreds of certificates.
               **{k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "SSL_CERT_"))}}

        def env_of(name: str) -> dict[str, str]:
            return {**env, **VAULT_ENV} if name == "vault-snapshots" else env

        starts: dict[str, float] = {}
        for name in functions:
            times = []
            for attempt in range(5):
                fn = LambdaFunction(name, binary(args.bin_dir, name), env_of(name), work / f"{name}-start{attempt}.log")
                while fn.api.first_poll_at is None:
                    if fn.process.poll() is not None:
                        raise SystemExit(f"{name} exited during start-up; see {work}")
                    time.sleep(0.001)
                times.append((fn.api.first_poll_at - fn.started_at) * 1000)
                fn.stop()
            starts[name] = min(times)
        if args.starts_only:
            print(f"\n{'function':20} {'start to ready (best of 5)':>27}")
            for name in functions:
                print(f"{name:20} {starts[name]:24.1f} ms")
            return 0

        begun = time.monotonic()
        seed(endpoint, args.volumes, clock)
        print(f"seeded {args.volumes} volumes, {args.volumes * 10} snapshots in {time.monotonic() - begun:.0f} s",
              flush=True)
        tick = {"kind": "tick", "scheduled_time": "2026-03-01T00:15:00Z"}
        for name in functions:
            fn = LambdaFunction(name, binary(args.bin_dir, name), env_of(name), work / f"{name}.log")
            # The report: its first run over the account, the next (what the
            # first left), and a third with everything measured (a day with
            # nothing new: listing, pricing, the files).
            runs = args.report_runs if name == "report-snapshots" else 1
            for run in range(runs):
                begun = time.monotonic()
                timeout = args.long_timeout if name in TIMEOUT_S else 300
                result = fn.invoke(tick, timeout)
                took = time.monotonic() - begun
                response_bytes = len(json.dumps(result))
                label = name if run == 0 else f"{name} (run {run + 1})"
                if name == "report-snapshots" and isinstance(result, dict):
                    cost = result.get("cost", {})
                    result = {"counts": {k: cost.get(k) for k in ("snapshots", "computed", "left", "requests")}}
                if name == "archive-snapshots" and isinstance(result, dict):
                    result = {"counts": {k: result.get(k) for k in ("considered", "measured", "from_report", "left",
                                                                    "block_requests")}
                              | {"started": len(result.get("archive_started", []))}}
                if isinstance(result, dict):
                    result["response_bytes"] = response_bytes
                rows.append((label, starts[name], peak_rss_mib(fn.process.pid), took, result))
                # Each row as it comes: a later invocation that times out
                # does not lose the figures before it.
                print(f"{label}: peak RSS {rows[-1][2]:.1f} MiB, {took:.1f} s, {json.dumps(result)[:300]}", flush=True)
            fn.stop()
        sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="bench-reports", Prefix="coverage/latest/")
                 .get("Contents", [])}
    finally:
        moto.terminate()
        moto.wait(timeout=10)

    print(f"\n{'function':20} {'start to ready':>15} {'peak RSS':>10} {'invocation':>11} {'response':>11}  what it did")
    for name, start_ms, rss, took, result in rows:
        did = {k: v for k, v in result.items() if isinstance(v, (int, bool)) and v} if isinstance(result, dict) else result
        counts = result.get("counts") if isinstance(result, dict) else None
        size = result.get("response_bytes", 0) / 1024 if isinstance(result, dict) else 0
        print(f"{name:20} {start_ms:12.1f} ms {rss:7.1f} MiB {took:9.1f} s {size:8.1f} KiB  {counts or did}")
    if "sizes" in locals():
        print("\nthe report's files: " + ", ".join(f"{k.rsplit('/', 1)[-1]} {v / 1024:.0f} KiB" for k, v in sizes.items()))
    print(f"\nlogs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
