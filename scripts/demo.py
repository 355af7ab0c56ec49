#!/usr/bin/env python3
"""make demo: a year in the life of an AWS account, on the local emulator, in a few minutes.

1. Starts moto (the local AWS emulator, with scripts/moto_ebs_fixes.py as the
   tests use it) on 127.0.0.1.
2. Seeds an account: an instance with two volumes under `fleet` (every 6
   hours, instance-consistent), volumes under `gfs` (daily, grandfather-
   father-son), one whose tag names a policy that does not exist, one that
   is not encrypted, one that is deleted part-way through the year, one that
   is not opted in, and a snapshot made by hand; an SNS topic with an SQS
   queue subscribed, so every notification can be read back.
3. Starts the nine real function binaries, each under a local Lambda Runtime
   API, with the environment template.yaml sets. They run as Lambda runs
   them, warm, one invocation at a time.
4. Walks a simulated year: at each slot a scheduler tick to create-snapshots,
   then the completion events EC2 would send (moto sends none), fanned out to
   complete-snapshots, tag-snapshots and check-encryption as the template's
   EventBridge rules do; every day the reconcile, the tag backfill, expiry and
   the encryption check at their template times. Along the way people do what
   people do: fix a mistyped tag, delete a volume, make a snapshot public,
   register an AMI from a snapshot.
5. Prints a timeline, then per volume what is kept and why, what was deleted,
   the encryption findings and fixes, and the notifications the topic
   delivered; checks that every one of them is what a user would expect, and
   exits non-zero otherwise. Stops everything it started.

How time is simulated: moto and each function run as their own processes
on a clock offset this script rewrites before each step: the functions under
libfaketime (from PyPI, LD_PRELOAD), moto under time-machine
(scripts/moto_sim_clock.py). EC2 (moto) stamps each snapshot with the
simulated time, and the functions read the system clock as in production;
they are never told the time by their input. The tick carries the
scheduler's `scheduled_time`, which the functions only log.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3  # noqa: E402
import libfaketime  # noqa: E402

from lambda_emulator import (  # noqa: E402
    ACCOUNT, REGION, ROOT, LambdaFunction, create_ledger_table, free_port, function_env, ledger_table, wait_for_port,
)

DEPLOYMENT = "demo-backups"
UTC = datetime.timezone.utc

POLICIES = {
    "fleet": {
        "schedule": "0 */6 * * *",
        "timezone": "UTC",
        "keep": {"last": 4, "daily": 7, "weekly": 4},
        "consistency": "instance",
        "copy_tags": ["*"],
    },
    "gfs": {
        "schedule": "@daily",
        "timezone": "UTC",
        "keep": {"last": 3, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 3},
        "copy_tags": ["Owner", "CostCenter"],
        "tags": {"Tier": "standard"},
        # Monthly and yearly snapshots older than 90 days go to the archive
        # tier where that saves money (archive-snapshots weighs each one).
        "archive": {"after": "90d", "rules": ["monthly", "yearly"]},
    },
}
# warehouse is reloaded every night: each snapshot rewrites the same 24 GiB
# (blocks 0-49151 of its 40 GiB), so what a snapshot holds is its own and
# archiving its monthly snapshots pays. The other volumes change a little a
# day (moto's seeded writes); their snapshots share most blocks, and
# archiving them would cost more.
WAREHOUSE_WRITES = "0-49151"
# The slots of `fleet` open at 00:00, 06:00, 12:00 and 18:00 UTC. The template
# ticks every 15 minutes; a tick inside a slot that is already fulfilled does
# nothing, so the demo ticks once per slot, 15 minutes after it opens.
TICK_HOURS = (0, 6, 12, 18)
# The template's default daily schedules (ReconcileSchedule, TagSchedule,
# ExpirySchedule, EncryptionCheckSchedule).
DAILY = [("04:15", "complete-snapshots"), ("04:30", "tag-snapshots"),
         ("04:45", "expire-snapshots"), ("05:00", "check-encryption"),
         # The template runs copy-snapshots hourly; gfs is daily, so one run a
         # day (after the day's snapshot completed) does the same work.
         ("05:20", "copy-snapshots"),
         # A vault stack reconciles hourly and on every share; once a day
         # after the source shared does the same work here.
         ("05:40", "vault-snapshots"),
         ("06:00", "report-snapshots"),
         ("06:30", "archive-snapshots")]
# verify-restores' weekly drills (RestoreDrillSchedule: Sundays 05:00; here
# 05:10, after check-encryption), with the template's bounds (5 drills,
# 500 GiB a run).
WEEKLY = [("05:10", "verify-restores")]
# From this day on, the first Sunday breaks one drill on purpose: the
# newest snapshot of the volume first in line reads a corrupted block
# (the emulator's test tag), and its drill must fail and alert.
# The template's Timeout where a run's deadline decides how much it does
# (verify-restores starts no drill within 6 minutes of it); the others run
# well inside the emulator's default 300 s.
TIMEOUTS = {"verify-restores": {"timeout_s": 900}}
BREAK_DRILL_FROM_DAY = int(os.environ.get("DEMO_BREAK_DRILL_FROM_DAY", "150"))
# When the demo delivers EC2's archiveSnapshot events for the moves that
# ended (moto's archivals take six hours).
ARCHIVE_EVENTS = "13:00"
# The disaster-recovery region of gfs's copies (its key is made at seeding).
DR_REGION = "eu-west-1"
DR_KEEP = {"daily": 7, "weekly": 4, "monthly": 6}
# The vault account: the same template deployed there with VaultForAccounts;
# the `vaulted` policy's volume shares with it, it copies, locks, keeps.
VAULT_ACCOUNT = "210987654321"
VAULT_DEPLOYMENT = "demo-vault"
VAULT_POLICIES = {"vaulted": {"daily": 7, "monthly": 6}}
VAULT_LOCK_DAYS = 14
VAULTED = {"schedule": "@daily", "timezone": "UTC", "keep": {"last": 3, "daily": 7}}
START = datetime.datetime(2025, 11, 23, tzinfo=UTC)

COLOUR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
PROGRESS = sys.stderr.isatty()


def paint(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def step(text: str) -> None:
    print(paint(f"==> {text}", "1;36"), flush=True)


def iso(t: datetime.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimClock:
    """The simulated time: an offset from the real clock, in a file that the
    functions (libfaketime) and moto (scripts/moto_sim_clock.py) follow;
    this process keeps the real clock and computes the simulated one. Between two `set` calls
    every clock runs forward at the real pace."""

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self.set(START)

    def set(self, when: datetime.datetime) -> None:
        self.offset = when.timestamp() - time.time()
        self.offset_file.write_text(f"{int(self.offset):+d}\n")

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(time.time() + self.offset, UTC)

    def faketime_env(self) -> dict[str, str]:
        lib = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
        return {
            "LD_PRELOAD": str(lib),
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
            # Timers and timeouts (tokio's Instant) stay on the real clock.
            "DONT_FAKE_MONOTONIC": "1",
        }


CLOCK: SimClock | None = None


def sim_now() -> datetime.datetime:
    return CLOCK.now() if CLOCK else datetime.datetime.now(UTC)


def snapshot_arn(snapshot_id: str) -> str:
    return f"arn:aws:ec2::{REGION}:snapshot/{snapshot_id}"


def envelope(detail_type: str, resources: list[str], detail: dict) -> dict:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.ec2",
        "account": ACCOUNT, "time": iso(sim_now()), "region": REGION,
        "resources": resources, "detail": detail,
    }


def snapshot_event(snapshot_id: str, volume_id: str, started: str) -> dict:
    """The `EBS Snapshot Notification` EC2 sends when CreateSnapshot completes."""
    arn = snapshot_arn(snapshot_id)
    return envelope("EBS Snapshot Notification", [arn], {
        "event": "createSnapshot", "result": "succeeded", "cause": "", "request-id": "",
        "snapshot_id": arn, "source": f"arn:aws:ec2::{REGION}:volume/{volume_id}",
        "startTime": started, "endTime": iso(sim_now()),
    })


def multi_volume_event(created: list[dict], started: str) -> dict:
    """The `EBS Multi-Volume Snapshots Completion Status` EC2 sends for CreateSnapshots."""
    arns = [snapshot_arn(c["snapshot_id"]) for c in created]
    return envelope("EBS Multi-Volume Snapshots Completion Status", arns, {
        "event": "createSnapshots", "result": "succeeded", "cause": "", "request-id": "",
        "startTime": started, "endTime": iso(sim_now()),
        "snapshots": [
            {"snapshot_id": arn, "source": f"arn:aws:ec2::{REGION}:volume/{c['volume_id']}", "status": "completed"}
            for arn, c in zip(arns, created)
        ],
    })


def completion_events(created: list[dict], started: str) -> list[dict]:
    """One event per CreateSnapshot, one per CreateSnapshots set, as EC2 sends them."""
    sets: dict[str, list[dict]] = collections.defaultdict(list)
    events = []
    for c in created:
        if c.get("instance_id"):
            sets[c["instance_id"]].append(c)
        else:
            events.append(snapshot_event(c["snapshot_id"], c["volume_id"], started))
    events += [multi_volume_event(members, started) for members in sets.values()]
    return events


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def tag_spec(resource: str, **tags: str) -> list[dict]:
    return [{"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def seed(ec2, sns, sqs) -> dict:
    ids = {}
    web = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1,
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8, "Encrypted": True}}],
        TagSpecifications=tag_spec("instance", Backup="fleet", Name="web-1", Team="storefront"),
    )["Instances"][0]
    ids["web-1"] = web["InstanceId"]
    ids["web-1 root"] = web["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    cache = ec2.create_volume(Size=50, AvailabilityZone=f"{REGION}a", Encrypted=True,
                              TagSpecifications=tag_spec("volume", Name="web-1-cache"))
    ec2.attach_volume(VolumeId=cache["VolumeId"], InstanceId=web["InstanceId"], Device="/dev/sdf")
    ids["web-1 cache"] = cache["VolumeId"]
    for name, size, encrypted, extra in [
        ("db-data", 200, True, {"Backup": "gfs", "Owner": "ana", "CostCenter": "4711"}),
        ("warehouse", 40, True, {"Backup": "gfs", "Owner": "ana", "moto:writes": WAREHOUSE_WRITES}),
        ("reports", 20, False, {"Backup": "gfs", "Owner": "li"}),
        ("old-app", 30, True, {"Backup": "gfs", "Owner": "sam"}),
        ("typo", 8, True, {"Backup": "dialy"}),
        ("scratch", 8, False, {}),
    ]:
        v = ec2.create_volume(Size=size, AvailabilityZone=f"{REGION}a", Encrypted=encrypted,
                              TagSpecifications=tag_spec("volume", Name=name, **extra))
        ids[name] = v["VolumeId"]
    ids["hand-made"] = ec2.create_snapshot(VolumeId=ids["scratch"], Description="made by hand before the system")["SnapshotId"]

    topic = sns.create_topic(Name=f"{DEPLOYMENT}-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="demo-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    ids["topic"], ids["queue"] = topic, queue_url
    return ids


def print_table(rows: list[list], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("    " + paint("  ".join(h.ljust(w) for h, w in zip(header, widths)), "1"))
    for r in rows:
        print("    " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


class Year:
    """The simulated year: drives the functions, remembers what they did,
    prints the timeline."""

    def __init__(self, clock: SimClock, fns: dict[str, LambdaFunction], ec2, sqs, ids: dict, days: int) -> None:
        self.clock, self.fns, self.ec2, self.sqs, self.ids, self.days = clock, fns, ec2, sqs, ids, days
        self.fanout = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        # Read every day: SQS drops messages after 4 days (of simulated time).
        self.notifications: list[dict] = []
        self.problems: list[str] = []
        self.created: dict[str, int] = collections.Counter()   # volume -> snapshots created
        self.deleted: dict[str, int] = collections.Counter()   # volume -> snapshots deleted
        self.slots: set[tuple[str, str]] = set()
        self.fixes: list[str] = []
        self.month = collections.Counter()
        self.first_deletion_seen = False
        self.protected_seen: set[str] = set()
        self.last_findings: list[dict] = []
        self.ami_snapshot: str | None = None
        self.unknown_reported_days: set[int] = set()
        self.copies = collections.Counter()   # started / completed / failed / deleted
        self.vault = collections.Counter()    # shared / copied / locked / deleted
        self.last_coverage: dict = {}
        # Per report run: (EBS direct API requests, figures computed, snapshots priced).
        self.cost_runs: list[tuple[int, int, int]] = []
        # Per day: (standard bytes, archive bytes, USD a month) as the report
        # priced them, and the unique bytes of what is archived (what the
        # standard tier would hold without archiving, at least).
        self.storage_days: list[tuple[int, int, float, int]] = []
        self.archived_unique: dict[str, int] = {}
        self.archive = collections.Counter()   # started / completed / failed / events
        self.archive_refused: list[dict] = []
        self.archive_saving = 0.0
        self.pending_archivals: set[str] = set()
        # Copies the last copy-snapshots run started: they complete after it,
        # and the next run (after the year) would tag them.
        self.last_started: set[str] = set()
        self.first_copy_seen = False
        # Restore drills: every drill (day, its summary entry), each
        # volume's last passed drill, the drill broken on purpose.
        self.drills: list[tuple[str, dict]] = []
        self.last_verified: dict[str, str] = {}
        self.broken: tuple[str, str] | None = None   # (snapshot, volume)
        self.broken_result: dict | None = None

    def note(self, when: datetime.datetime, text: str, colour: str = "0") -> None:
        if PROGRESS:
            sys.stderr.write("\r\033[K")
        print(f"  {when:%Y-%m-%d %H:%M}  {paint(text, colour)}", flush=True)

    def tick(self) -> dict:
        return {"kind": "tick", "scheduled_time": iso(self.clock.now())}

    def at(self, day: datetime.datetime, hhmm: str) -> datetime.datetime:
        h, m = map(int, hhmm.split(":"))
        when = day.replace(hour=h, minute=m)
        self.clock.set(when)
        return when

    def run(self) -> None:
        for n in range(self.days):
            day = START + datetime.timedelta(days=n)
            if day.day == 1 and n > 0:
                self.digest(day - datetime.timedelta(days=1))
            self.people(n, day)
            for hour in TICK_HOURS:
                self.create(n, day, hour)
                if hour == 0:
                    self.daily(n, day)
                    if n == self.days - 1:
                        # The year ends after the last daily runs, when
                        # every label has just been checked against expiry.
                        break
            self.notifications += read_notifications(self.sqs, self.ids["queue"])
            if PROGRESS:
                sys.stderr.write(f"\r  {day:%Y-%m-%d}  day {n + 1}/{self.days}  "
                                 f"{sum(f.invocations for f in self.fns.values())} invocations ")
                sys.stderr.flush()
        self.digest(START + datetime.timedelta(days=self.days - 1))
        if PROGRESS:
            sys.stderr.write("\r\033[K")

    def people(self, n: int, day: datetime.datetime) -> None:
        """What the account's people do, on chosen days (just after midnight,
    so the day's runs see it)."""
        ec2, ids = self.ec2, self.ids
        if n == 8:
            when = self.at(day, "00:05")
            ec2.create_tags(Resources=[ids["typo"]], Tags=[{"Key": "Backup", "Value": "gfs"}])
            self.note(when, f"typo {ids['typo']}: its owner fixes the tag, Backup=dialy -> gfs, after a week of daily run-summary alerts", "33")
        if n == 45:
            when = self.at(day, "00:05")
            ec2.modify_snapshot_attribute(SnapshotId=ids["hand-made"], Attribute="createVolumePermission",
                                          OperationType="add", GroupNames=["all"])
            self.note(when, f"someone makes the hand-made snapshot {ids['hand-made']} public", "33")
        if n == 60:
            when = self.at(day, "00:05")
            snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [ids["db-data"]]}])["Snapshots"]
            newest = max(snaps, key=lambda s: s["StartTime"])
            image = ec2.register_image(
                Name="db-golden", RootDeviceName="/dev/xvda", Architecture="x86_64", VirtualizationType="hvm",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": newest["SnapshotId"]}}],
            )["ImageId"]
            self.ami_snapshot = newest["SnapshotId"]
            self.note(when, f"an AMI {image} is registered from db-data's snapshot {newest['SnapshotId']} "
                            f"(its daily slot would expire in a week)", "33")
        if n == 120:
            when = self.at(day, "00:05")
            ec2.delete_volume(VolumeId=ids["old-app"])
            self.note(when, f"old-app {ids['old-app']} is deleted: its snapshots now follow the orphan rules (keep the last 1)", "33")

    def create(self, n: int, day: datetime.datetime, hour: int) -> None:
        if hour == 0:
            # warehouse's nightly reload (moto writes the next snapshot's
            # blocks from this tag, and consumes it).
            self.ec2.create_tags(Resources=[self.ids["warehouse"]],
                                 Tags=[{"Key": "moto:writes", "Value": WAREHOUSE_WRITES}])
        when = self.at(day, f"{hour:02d}:15")
        summary = self.fns["create-snapshots"].invoke(self.tick())
        ran_at = datetime.datetime.fromisoformat(summary["time"].replace("Z", "+00:00"))
        if abs((ran_at - when).total_seconds()) > 300:
            self.problems.append(f"create-snapshots read {summary['time']} at simulated {iso(when)}")
        for c in summary["created"]:
            self.created[c["volume_id"]] += 1
            self.month["created"] += 1
            key = (c["volume_id"], c["slot"])
            if key in self.slots:
                self.problems.append(f"{c['volume_id']} got a second snapshot for slot {c['slot']}")
            self.slots.add(key)
        for f in summary["failed"]:
            self.problems.append(f"{iso(when)}: {f['volume_id']} failed: {f['error']}")
        if summary["unknown_policies"]:
            self.unknown_reported_days.add(n)
            if n == 0 and hour == 0:
                for u in summary["unknown_policies"]:
                    self.note(when, f"create-snapshots: {u['resource_type']} {u['resource_id']} names policy "
                                    f"'{u['policy']}', which does not exist: a run-summary alert once a day until fixed", "31")
        if n == 0 and hour == 0:
            self.note(when, f"create-snapshots: first tick, {len(summary['created'])} snapshots "
                            f"({sum(1 for c in summary['created'] if c.get('instance_id'))} as web-1's instance-consistent set)", "32")
        if n == 8 and hour == 0 and any(c["volume_id"] == self.ids["typo"] for c in summary["created"]):
            self.note(when, "create-snapshots: typo is snapshotted under gfs from its first slot after the fix", "32")
        if not summary["created"]:
            return
        # EC2 completes the snapshots and sends its events; EventBridge gives
        # each event to the three functions whose rules match it.
        started = iso(when)
        self.at(day, f"{hour:02d}:25")
        events = completion_events(summary["created"], started)
        # EventBridge delivers each event to the three targets independently;
        # each function (reserved concurrency 1) takes its events one at a time.
        done, _, _ = self.fanout.map(
            lambda name: [self.fns[name].invoke(event) for event in events],
            ("complete-snapshots", "tag-snapshots", "check-encryption"),
        )
        for result in done:
            if result.get("failed"):
                self.problems.append(f"complete-snapshots reported failures: {result['failed']}")

    def daily(self, n: int, day: datetime.datetime) -> None:
        runs = sorted(DAILY + (WEEKLY if day.weekday() == 6 else []))
        for hhmm, name in runs:
            when = self.at(day, hhmm)
            if name == "verify-restores" and n >= BREAK_DRILL_FROM_DAY and self.broken is None:
                self.break_a_drill(when)
            result = self.fns[name].invoke(self.tick(), **TIMEOUTS.get(name, {}))
            if name == "verify-restores":
                self.after_verify(when, result)
                continue
            if name == "complete-snapshots" and (result["completed"] or result["stuck"]):
                self.problems.append(f"the reconcile found work on {iso(when)}: {result}")
            elif name == "expire-snapshots":
                self.after_expiry(when, result)
            elif name == "check-encryption":
                self.after_check(when, result)
            elif name == "copy-snapshots":
                self.after_copy(when, result)
            elif name == "vault-snapshots":
                self.after_vault(when, result)
            elif name == "report-snapshots":
                self.after_report(when, result)
            elif name == "archive-snapshots":
                self.after_archive(when, result)
        if self.pending_archivals:
            self.archive_events(day)

    def break_a_drill(self, when: datetime.datetime) -> None:
        """Corrupt a block of the newest snapshot of the volume the next
        drills take first (never verified, else verified longest ago): what
        a snapshot that no longer restores looks like to a drill."""
        managed = [s for s in self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
                   if tags_of(s).get("lifecycle:managed-by") == DEPLOYMENT and s["State"] == "completed"]
        volumes = {tags_of(s).get("lifecycle:volume-id", s["VolumeId"]) for s in managed}
        first = min(volumes, key=lambda v: (v in self.last_verified, self.last_verified.get(v, ""), v))
        newest = max((s for s in managed if tags_of(s).get("lifecycle:volume-id", s["VolumeId"]) == first),
                     key=lambda s: s["StartTime"])
        self.ec2.create_tags(Resources=[newest["SnapshotId"]], Tags=[{"Key": "moto:corrupt-block", "Value": "*"}])
        self.broken = (newest["SnapshotId"], first)
        self.note(when, f"a block of {newest['SnapshotId']} (newest of {first}) is corrupted on purpose "
                        f"(the emulator's moto:corrupt-block): its drill must fail", "33")

    def after_verify(self, when: datetime.datetime, result: dict) -> None:
        for d in result["drills"]:
            self.drills.append((f"{when:%Y-%m-%d}", d))
            if d["verdict"] == "verified" and not d.get("region"):
                self.last_verified[d["volume_id"]] = f"{when:%Y-%m-%d}"
            if self.broken and d["snapshot_id"] == self.broken[0]:
                self.broken_result = d
                self.note(when, f"verify-restores: the drill of {d['snapshot_id']} {d['verdict']}: "
                                f"{d.get('failure', {}).get('reason', '-')}", "31" if d["verdict"] == "failed" else "33")
                self.ec2.delete_tags(Resources=[d["snapshot_id"]], Tags=[{"Key": "moto:corrupt-block"}])
            elif d["verdict"] != "verified":
                self.problems.append(f"verify-restores on {iso(when)}: the drill of {d['snapshot_id']} "
                                     f"{d['verdict']}: {d.get('failure') or d.get('error')}")
        cleanup = result.get("cleanup", {})
        if cleanup.get("deleted") or cleanup.get("left") or cleanup.get("error"):
            self.problems.append(f"verify-restores on {iso(when)}: a drill volume outlived its run: {cleanup}")

    def after_archive(self, when: datetime.datetime, result: dict) -> None:
        for m in result["archive_started"]:
            self.archived_unique[m["snapshot_id"]] = m["unique_bytes"]
            self.pending_archivals.add(m["snapshot_id"])
            self.archive_saving += m["saving_usd"]
        self.archive["started"] += len(result["archive_started"])
        self.archive["completed"] += len(result["archive_completed"])
        self.archive["failed"] += len(result["archive_failed"])
        for f in result["archive_failed"]:
            self.problems.append(f"an archival failed on {iso(when)}: {f}")
        for e in result.get("errors", []):
            self.problems.append(f"archive-snapshots on {iso(when)}: {e}")
        for r in result["refused"]:
            if r["why"] == "costs-more" and not any(x["snapshot_id"] == r["snapshot_id"] for x in self.archive_refused):
                self.archive_refused.append({**r, "when": iso(when)})
        if result["archive_started"] and not self.archive["noted"]:
            self.archive["noted"] = 1
            m = result["archive_started"][0]
            self.note(when, f"archive-snapshots: first move to the archive tier, {m['snapshot_id']} ({m['volume_id']}): "
                            f"{m['unique_bytes'] / 2**30:.1f} GiB its own of {m['full_bytes'] / 2**30:.1f} GiB, "
                            f"saves {m['saving_usd']:.2f} USD over its remaining life", "32")

    def archive_events(self, day: datetime.datetime) -> None:
        """EC2's archiveSnapshot event for each move that ended, as
        EventBridge delivers it to archive-snapshots."""
        when = self.at(day, ARCHIVE_EVENTS)
        statuses = self.ec2.describe_snapshot_tier_status()["SnapshotTierStatuses"]
        for st in statuses:
            status = st.get("LastTieringOperationStatus")
            if st["SnapshotId"] not in self.pending_archivals or status == "archival-in-progress":
                continue
            self.pending_archivals.discard(st["SnapshotId"])
            arn = snapshot_arn(st["SnapshotId"])
            event = envelope("EBS Snapshot Notification", [arn], {
                "event": "archiveSnapshot", "result": "succeeded" if status == "archival-completed" else "failed",
                "cause": "" if status == "archival-completed" else st.get("LastTieringOperationStatusDetail", ""),
                "request-id": "", "snapshot_id": arn,
                "startTime": iso(st["LastTieringStartTime"]), "endTime": iso(when),
            })
            result = self.fns["archive-snapshots"].invoke(event)
            self.archive["events"] += 1
            self.archive["completed"] += len(result["archive_completed"])

    def after_report(self, when: datetime.datetime, result: dict) -> None:
        self.last_coverage = result
        cost = result.get("cost", {})
        self.storage_days.append((cost.get("standard_bytes", 0), cost.get("archive_bytes", 0),
                                  cost.get("monthly_usd", 0.0),
                                  sum(u for i, u in self.archived_unique.items() if i not in self.pending_archivals)))
        self.cost_runs.append((cost.get("requests", 0), cost.get("computed", 0), cost.get("snapshots", 0)))
        # Every opted-in volume is snapshotted on time all year: a gap
        # would be a failure of the year, not a finding.
        for c in result["coverage"]:
            if c.get("gap"):
                self.problems.append(f"report-snapshots: {c['volume_id']} in a coverage gap on {iso(when)}: {c['gap']}")

    def after_vault(self, when: datetime.datetime, result: dict) -> None:
        for key in ("started", "completed", "locked", "deleted"):
            self.vault[key] += len(result[key])
        for f in result["failed"]:
            self.problems.append(f"a vault copy failed on {iso(when)}: {f['error']}")
        for r in result["refused"]:
            self.problems.append(f"the vault refused {r['snapshot_id']} on {iso(when)}: {r['why']}")
        if result["started"] and not self.vault["noted"]:
            self.vault["noted"] = 1
            self.note(when, f"vault-snapshots (account {VAULT_ACCOUNT}): first copy of a share, "
                            f"under the vault's own key; locked {VAULT_LOCK_DAYS} days once completed", "32")

    def after_copy(self, when: datetime.datetime, result: dict) -> None:
        for region in result["regions"]:
            if region.get("error"):
                self.problems.append(f"copy-snapshots could not work on {region['region']} on {iso(when)}: {region['error']}")
            for f in region["failed"]:
                self.problems.append(f"a copy to {region['region']} failed on {iso(when)}: {f['error']}")
            self.copies["started"] += len(region["started"])
            self.last_started = {c["copy_id"] for c in region["started"]}
            self.copies["completed"] += len(region["completed"])
            self.copies["deleted"] += len(region["deleted"])
        for v in result.get("vaults", []):
            if v.get("error"):
                self.problems.append(f"sharing with {v['target']} failed on {iso(when)}: {v['error']}")
            self.vault["shared"] += len(v["shared"])
            if region["started"] and not self.first_copy_seen:
                self.first_copy_seen = True
                self.note(when, f"copy-snapshots: first copies to {region['region']} ({len(region['started'])}): "
                                f"each gfs volume's newest snapshot, encrypted with the region's key", "32")

    def after_expiry(self, when: datetime.datetime, result: dict) -> None:
        deleted = 0
        for v in result["volumes"]:
            self.deleted[v["volume_id"]] += len(v["deleted"])
            deleted += len(v["deleted"])
            for f in v["failed"]:
                self.problems.append(f"expiry failed to delete {f['snapshot_id']}: {f['error']}")
            for k in v["kept"]:
                # A safety rule keeps what no keep rule does (the newest
                # completed snapshot is always kept by `last` as well).
                if k["why"] not in ("kept-by-policy", "newest-completed", "not-completed", "copy-in-progress") \
                        and k["snapshot_id"] not in self.protected_seen:
                    self.protected_seen.add(k["snapshot_id"])
                    self.note(when, f"expire-snapshots: {k['snapshot_id']} ({v['volume_id']}) is protected ({k['why']}): "
                                    f"kept whatever its policy says", "36")
        self.month["deleted"] += deleted
        if deleted and not self.first_deletion_seen:
            self.first_deletion_seen = True
            self.note(when, f"expire-snapshots: first deletions ({deleted}): snapshots no keep rule holds any more", "32")
        if result["cap_reached"]:
            self.problems.append(f"the deletion cap was reached on {iso(when)}")

    def after_check(self, when: datetime.datetime, result: dict) -> None:
        self.last_findings = result["findings"]
        for f in result["findings"]:
            if f["fix"]["status"] == "applied":
                text = f"check-encryption: {f['kind']} {f.get('snapshot_id', '')}: {f['fix']['what']} (applied)"
                self.fixes.append(f"{when:%Y-%m-%d} {text}")
                self.note(when, text, "32")

    def digest(self, last_day: datetime.datetime) -> None:
        live = len([s for s in self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
                    if tags_of(s).get("lifecycle:managed-by") == DEPLOYMENT])
        if PROGRESS:
            sys.stderr.write("\r\033[K")
        print(paint(f"  {last_day:%Y-%m}           month: {self.month['created']} snapshots created, "
                    f"{self.month['deleted']} deleted; {live} managed snapshots in the account", "2"), flush=True)
        self.month = collections.Counter()


def read_notifications(sqs, queue_url: str) -> list[dict]:
    out = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return out
        for m in batch:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def report(year: Year, ec2, sqs, ids: dict) -> list[str]:
    """The end of the year: what is kept and why, per volume; findings;
    notifications. Returns what is not as a user would expect."""
    problems = list(year.problems)
    names = {v: k for k, v in ids.items() if k in ("web-1 root", "web-1 cache", "db-data", "warehouse", "reports", "old-app",
                                                   "typo", "scratch")}
    snaps = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    managed = [s for s in snaps if tags_of(s).get("lifecycle:managed-by") == DEPLOYMENT]
    by_volume: dict[str, list[dict]] = collections.defaultdict(list)
    for s in managed:
        by_volume[s["VolumeId"]].append(s)

    step("per volume: what is kept, and why (lifecycle:retained-by on each snapshot)")
    rows = []
    for volume, name in names.items():
        kept = sorted(by_volume.get(volume, []), key=lambda s: s["StartTime"])
        reasons = collections.Counter(r for s in kept for r in tags_of(s).get("lifecycle:retained-by", "?").split(","))
        policy = next((tags_of(s).get("lifecycle:policy") for s in kept), "-")
        rows.append([name, volume, policy, year.created[volume], year.deleted[volume], len(kept),
                     kept[0]["StartTime"].strftime("%Y-%m-%d") if kept else "-",
                     " ".join(f"{r}x{n}" for r, n in sorted(reasons.items())) or "-"])
    print_table(rows, ["volume", "id", "policy", "created", "deleted", "kept", "oldest kept", "kept by (rule x snapshots)"])

    db = sorted(by_volume.get(ids["db-data"], []), key=lambda s: s["StartTime"], reverse=True)
    print()
    step("db-data's snapshots, newest first: grandfather-father-son after a year")
    print_table([[s["SnapshotId"], s["StartTime"].strftime("%Y-%m-%d %a"), tags_of(s).get("lifecycle:retained-by", ""),
                  tags_of(s).get("lifecycle:expires-at", "")] for s in db],
                ["snapshot", "taken", "retained-by", "expires-at (projected)"])

    # What a user relies on.
    for s in managed:
        t = tags_of(s)
        if t.get("lifecycle:state") != "completed":
            problems.append(f"{s['SnapshotId']} is {t.get('lifecycle:state')}, not completed")
        label = t.get("lifecycle:retained-by")
        if s["SnapshotId"] == year.ami_snapshot:
            continue
        if label in (None, "none"):
            problems.append(f"{s['SnapshotId']} ({names.get(s['VolumeId'])}) is kept but labelled retained-by={label}")
    if year.ami_snapshot and year.ami_snapshot not in {s["SnapshotId"] for s in snaps}:
        problems.append(f"the AMI's snapshot {year.ami_snapshot} was deleted")
    elif year.ami_snapshot and year.ami_snapshot not in year.protected_seen:
        problems.append("expiry never had to protect the AMI's snapshot")
    if ids["hand-made"] not in {s["SnapshotId"] for s in snaps}:
        problems.append("the hand-made snapshot was deleted")
    perms = ec2.describe_snapshot_attribute(SnapshotId=ids["hand-made"], Attribute="createVolumePermission")["CreateVolumePermissions"]
    if year.days > 46 and perms:
        problems.append(f"the hand-made snapshot is still shared: {perms}")
    if year.days > 121 and len(by_volume.get(ids["old-app"], [])) != 1:
        problems.append(f"old-app (deleted) keeps {len(by_volume.get(ids['old-app'], []))} snapshots, the orphan rule says 1")
    if any(n >= 8 for n in year.unknown_reported_days):
        problems.append("the typo volume was still reported after its tag was fixed")
    if year.days >= 365:
        slots = {tags_of(s).get("lifecycle:slot", "")[:10] for s in db}
        if "2025-12-31" not in slots:
            problems.append("db-data lost 2025's yearly snapshot (2025-12-31)")
        months = {s["StartTime"].strftime("%Y-%m") for s in db}
        if len(months) < 12:
            problems.append(f"db-data's snapshots cover {len(months)} months, the policy keeps 12 monthly")

    print()
    step("encryption: the last daily check's findings, and what was fixed during the year")
    kinds = collections.Counter((f["kind"], f["severity"], f["fix"]["status"]) for f in year.last_findings)
    print_table([[k, sev, status, n] for (k, sev, status), n in sorted(kinds.items())], ["finding", "severity", "fix", "count"])
    for line in year.fixes:
        print(f"    fixed: {line}")
    found = {f["kind"] for f in year.last_findings}
    for kind in ("unencrypted-snapshot", "unencrypted-volume"):
        if kind not in found:
            problems.append(f"the unencrypted reports volume raised no {kind} finding")
    if year.days > 46 and not any("public-snapshot" in line for line in year.fixes):
        problems.append("the public snapshot was never made private")

    print()
    step("notifications the topic delivered during the year (read back from a subscribed SQS queue)")
    received = year.notifications + read_notifications(sqs, ids["queue"])
    by_kind = collections.Counter((n["kind"], n["severity"]) for n in received)
    first = {}
    for n in received:
        first.setdefault(n["kind"], n["summary"])
    print_table([[k, sev, c, first[k][:90]] for (k, sev), c in sorted(by_kind.items())],
                ["kind", "severity", "count", "first one says"])
    got = {k for k, _ in by_kind}
    for kind in ("run-summary", "encryption-findings"):
        if kind not in got:
            problems.append(f"no {kind} notification was delivered")
    return problems


def report_drills(year: Year, ec2, dr_ec2, ids: dict) -> list[str]:
    """The restore drills of the year: each drill (the disaster-recovery
    copies' in their region, in turn), the one broken on purpose and its
    alert, no drill volume left in either region."""
    problems = []
    names = {v: k for k, v in ids.items() if isinstance(v, str) and v.startswith("vol-")}
    print()
    step("restore drills: verify-restores every Sunday (a volume made from the snapshot, checked, 16 blocks read "
         "against EBS's checksums and 8 against the snapshot before it, the volume deleted)")
    print_table([[day, d["snapshot_id"], names.get(d["volume_id"], d["volume_id"])
                  + (f" ({d['region']} copy)" if d.get("region") else ""), d["pick"], f"{d['seconds']:.1f}",
                  d["blocks_read"], d["chain_blocks"], d["requests"],
                  d["verdict"] + (f" ({d['failure']['reason']})" if d.get("failure") else "")]
                 for day, d in year.drills],
                ["day", "snapshot", "volume", "pick", "seconds", "blocks read", "chain blocks", "requests", "verdict"])
    verdicts = collections.Counter(d["verdict"] for _, d in year.drills)
    print(f"    {len(year.drills)} drills: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
          + f"; every volume's last verified restore: "
          + ", ".join(f"{names.get(v, v)} {day}" for v, day in sorted(year.last_verified.items())))
    if year.days >= 7 and not year.drills:
        problems.append("verify-restores drilled nothing all year")
    if year.broken:
        alerts = [n for n in year.notifications if n["kind"] == "restore-drill-failed"]
        print(f"    broken on purpose: {year.broken[0]} -> "
              + (f"{year.broken_result['verdict']} ({year.broken_result.get('failure', {}).get('reason')})"
                 if year.broken_result else "never drilled")
              + f"; restore-drill-failed notifications: {len(alerts)}")
        if not year.broken_result or year.broken_result.get("failure", {}).get("reason") != "checksum":
            problems.append(f"the corrupted snapshot {year.broken[0]}'s drill did not fail on its checksum: {year.broken_result}")
        if len(alerts) != 1:
            problems.append(f"{len(alerts)} restore-drill-failed notifications, expected exactly one")
    copy_drills = [d for _, d in year.drills if d.get("region")]
    print(f"    of which {len(copy_drills)} of disaster-recovery copies in {DR_REGION}: "
          + ", ".join(f"{n} {v}" for v, n in sorted(collections.Counter(d["verdict"] for d in copy_drills).items())))
    if year.days >= 14 and not copy_drills:
        problems.append(f"verify-restores drilled no copy in {DR_REGION} all year")
    left = [v for client in (ec2, dr_ec2)
            for v in client.describe_volumes(Filters=[{"Name": "tag-key", "Values": ["lifecycle:drill"]}])["Volumes"]]
    if left:
        problems.append(f"drill volumes left behind: {[v['VolumeId'] for v in left]}")
    return problems


def restore_web_1(bin_dir: Path, endpoint: str, ec2, ids: dict, days: int) -> list[str]:
    """The operator's tool at the end of the year: web-1's two volumes back
    as they were at a moment of the year (new volumes; the instance is left
    as it is), the device map printed."""
    problems = []
    at = START + datetime.timedelta(days=max(0, days - 10), hours=13)
    print()
    step(f"ebs-lifecycle restore instance: web-1's volumes as they were at {iso(at)}")
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "demo",
           "AWS_SECRET_ACCESS_KEY": "demo", "AWS_REGION": REGION}
    command = [str(bin_dir / "ebs-lifecycle"), "--stack", DEPLOYMENT, "--ledger-table", ledger_table(DEPLOYMENT),
               "--region", REGION, "--output", "json", "restore", "instance", ids["web-1"], "--at", iso(at)]
    print("    $ ebs-lifecycle --stack " + DEPLOYMENT + " ... restore instance " + ids["web-1"] + " --at " + iso(at))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [f"ebs-lifecycle restore instance failed ({done.returncode}): {done.stderr.strip()[-300:]}"]
    result = json.loads(done.stdout)
    rows = [[device, d["volume_id"], d["snapshot_id"], d["snapshot_time"], d["replaced_volume_id"]]
            for device, d in sorted(result["devices"].items())]
    print_table(rows, ["device", "restored volume", "from snapshot", "snapshot time", "volume there now"])
    print(f"    one crash-consistent set: {result['consistent_set']}; {result['seconds']} s")
    if len(rows) != 2 or not result["consistent_set"]:
        problems.append(f"restore instance did not bring web-1's two volumes back as one set: {result}")
    for _, volume, snapshot, taken, _ in rows:
        made = ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]
        if made["State"] != "available" or made.get("SnapshotId") != snapshot or taken > iso(at):
            problems.append(f"restored {volume}: {made['State']}, from {made.get('SnapshotId')} taken {taken}")
    return problems


def plan_next_day(bin_dir: Path, endpoint: str, policies: dict, work: Path, days: int) -> list[str]:
    """`ebs-lifecycle plan` with the year's policy document: what the next
    day's first tick and expiry would do, read only."""
    at = START + datetime.timedelta(days=days, minutes=15)
    document = work / "policies.json"
    document.write_text(json.dumps(policies))
    print()
    step(f"ebs-lifecycle plan: what create and expire would do at {iso(at)}")
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "demo",
           "AWS_SECRET_ACCESS_KEY": "demo", "AWS_REGION": REGION}
    base = [str(bin_dir / "ebs-lifecycle"), "--stack", DEPLOYMENT, "--ledger-table", ledger_table(DEPLOYMENT),
            "--region", REGION]
    print(f"    $ ebs-lifecycle --stack {DEPLOYMENT} ... plan .demo/policies.json --at {iso(at)}")
    done = subprocess.run(base + ["plan", str(document), "--at", iso(at)], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        return [f"ebs-lifecycle plan failed ({done.returncode}): {done.stderr.strip()[-300:]}"]
    for line in done.stdout.rstrip().splitlines():
        print("    " + line)
    return []


def seed_vault(session: dict, ec2, ids: dict) -> dict:
    """The vault account (a role of it, as the vault stack's functions act),
    its key and ledger; in the source account, a volume under a customer
    managed key whose policy lets the vault read what is shared."""
    sts = boto3.client("sts", **session)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{VAULT_ACCOUNT}:role/demo-vault",
                            RoleSessionName="demo")["Credentials"]
    as_vault = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"]}
    vault_session = {**session, **as_vault}
    vault_key = boto3.client("kms", **vault_session).create_key(Description="the vault's own key")["KeyMetadata"]["Arn"]
    create_ledger_table(session["endpoint_url"], VAULT_DEPLOYMENT, as_vault)
    kms = boto3.client("kms", **session)
    source_key = kms.create_key(Description="vaulted volumes")["KeyMetadata"]
    kms.put_key_policy(KeyId=source_key["KeyId"], PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:root"},
             "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncrypt*"], "Resource": "*"}]}))
    ids["vault-source-key"] = source_key["Arn"]
    ids["ledger-db"] = ec2.create_volume(Size=100, AvailabilityZone=f"{REGION}a", Encrypted=True, KmsKeyId=source_key["Arn"],
                                         TagSpecifications=tag_spec("volume", Name="ledger-db", Backup="vaulted"))["VolumeId"]
    return {
        "ec2": boto3.client("ec2", **vault_session),
        "env": {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"], "ACCOUNT_ID": VAULT_ACCOUNT,
            "VAULT_FOR_ACCOUNTS": ACCOUNT, "VAULT_POLICIES": json.dumps(VAULT_POLICIES),
            "VAULT_KMS_KEY_ID": vault_key, "VAULT_LOCK_DAYS": str(VAULT_LOCK_DAYS),
        },
    }


def report_coverage(year: Year, ids: dict) -> list[str]:
    """report-snapshots' last daily run: what protects each volume."""
    problems = []
    names = {v: k for k, v in ids.items() if isinstance(v, str) and v.startswith("vol-")}
    print()
    step("coverage: what protects every volume of the region (report-snapshots' last run)")
    coverage = year.last_coverage.get("coverage", [])
    print_table([[names.get(c["volume_id"], c.get("name", "")), c["volume_id"], c["cover"], c.get("policy", "-"),
                  (c.get("newest") or "-")[:16]] for c in coverage],
                ["volume", "id", "protected by", "policy", "newest snapshot"])
    by_cover = {c["volume_id"]: c["cover"] for c in coverage}
    if year.days >= 2:
        if by_cover.get(ids["db-data"]) != "deployment":
            problems.append("db-data is not reported as protected by the deployment")
        if by_cover.get(ids["scratch"]) != "hand-made":
            problems.append(f"scratch (only a hand-made snapshot) is reported {by_cover.get(ids['scratch'])}")
    return problems


def report_page(year: Year, session: dict, bucket: str, work: Path) -> list[str]:
    """The last report from the bucket: its cost, and its page opened in
    Debian's chromium (scripts/check_report_page.py) with a screenshot."""
    problems = []
    page, data, shot = work / "report.html", work / "report.json", work / "report.png"
    s3 = boto3.client("s3", **session)
    try:
        for name, path in (("report.html", page), ("report.json", data)):
            path.write_bytes(s3.get_object(Bucket=bucket, Key=f"coverage/latest/{name}")["Body"].read())
    except Exception as e:  # noqa: BLE001  (reported as a problem below)
        return [f"the report is not in the bucket: {e}"]
    cost = json.loads(data.read_text())["cost"]
    print()
    step("cost: what the deployment's snapshots store (report-snapshots' last run)")
    per_policy: dict = {}
    for v in cost["volumes"]:
        row = per_policy.setdefault(v["policy"], [0, 0, 0.0, 0, 0.0])
        row[0] += len(v.get("snapshots", []))
        row[1] += v["standard_bytes"] + v["archive_bytes"]
        row[2] += v["monthly_usd"]
        row[3] += v["expiry_frees_bytes"]
        row[4] += v["archive_saves_usd"]
    print_table([[p, n, f"{b / 2**30:.2f}", f"{u:.2f}", f"{f / 2**30:.2f}", f"{a:.2f}"]
                 for p, (n, b, u, f, a) in sorted(per_policy.items())],
                ["policy", "snapshots", "stored GiB", "USD/month", "next expiry frees GiB", "archiving saves USD"])
    print(f"    {cost['snapshots']} snapshots, {cost['requests']} EBS direct API requests in the last run, "
          f"{cost['left']} left unmeasured, {cost['archive_candidates']} archive candidates")
    if year.cost_runs:
        first, rest = year.cost_runs[0], year.cost_runs[1:]
        print(f"    requests: first run {first[0]} for {first[1]} snapshots measured; then "
              f"{sum(r[0] for r in rest)} in {len(rest)} runs for {sum(r[1] for r in rest)} measured "
              f"({sum(r[0] for r in rest) / max(1, sum(r[1] for r in rest)):.2f} per snapshot measured)")
    if cost["left"] or any(c.get("unique_bytes") is None and c["tier"] != "archive"
                           for v in cost["volumes"] for c in v.get("snapshots", [])):
        problems.append("the last report left snapshots unmeasured")
    if year.days >= 2 and not cost["standard_bytes"]:
        problems.append("the report priced no storage")
    checked = subprocess.run([sys.executable, str(ROOT / "scripts/check_report_page.py"), str(page), str(data),
                              str(shot)], capture_output=True, text=True)
    print("    " + (checked.stdout + checked.stderr).strip().replace("\n", "\n    "))
    if checked.returncode != 0:
        problems.append("the report page does not show the JSON's numbers in chromium")
    print(f"    the report: {year.last_coverage.get('location')} (a copy: open {page}; screenshot {shot})")
    return problems


def report_archive(year: Year, ec2, ids: dict) -> list[str]:
    """What archive-snapshots did over the year, and what it saved."""
    problems = []
    print()
    step("the archive tier: what archive-snapshots moved, and what it saved (gfs: monthly and yearly, after 90 days)")
    snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [ids["warehouse"]]}])["Snapshots"]
    rows = [[s["SnapshotId"], s["StartTime"].strftime("%Y-%m-%d"), tags_of(s).get("lifecycle:retained-by", ""),
             s.get("StorageTier", ""), tags_of(s).get("lifecycle:tier", "-"), tags_of(s).get("lifecycle:archived-at", "-")[:16]]
            for s in sorted(snaps, key=lambda s: s["StartTime"], reverse=True)
            if tags_of(s).get("lifecycle:managed-by") == DEPLOYMENT]
    print("    warehouse (reloaded nightly: every snapshot's 24 GiB its own), newest first:")
    print_table(rows, ["snapshot", "taken", "retained-by", "EC2 tier", "lifecycle:tier", "archived-at"])
    standard_price, archive_price, gb = 0.05, 0.0125, 2**30
    with_gbm = sum((st + ar) / gb / 30 for st, ar, _, _ in year.storage_days)
    without_gbm = sum((st + unique) / gb / 30 for st, _, _, unique in year.storage_days)
    with_usd = sum(usd / 30 for _, _, usd, _ in year.storage_days)
    without_usd = sum((st + unique) / gb * standard_price / 30 for st, _, _, unique in year.storage_days)
    archived_gbm = sum(ar / gb / 30 for _, ar, _, _ in year.storage_days)
    print(f"    moves started {year.archive['started']}, completed {year.archive['completed']} "
          f"({year.archive['events']} archiveSnapshot events), failed {year.archive['failed']}; "
          f"projected saving of the moves over their remaining lives {year.archive_saving:.2f} USD")
    print(f"    over the year (report-snapshots' daily figures, {len(year.storage_days)} days): "
          f"{with_gbm:.0f} GB-months stored with archiving ({archived_gbm:.0f} of them in the archive tier at "
          f"{archive_price} USD), {without_gbm:.0f} without; {with_usd:.2f} USD with, at least "
          f"{without_usd:.2f} USD without (at {standard_price} USD per GB-month; each archived snapshot counted at "
          f"its unique bytes when it moved)")
    if year.archive_refused:
        r = year.archive_refused[0]
        name = {v: k for k, v in ids.items()}.get(r["volume_id"], r["volume_id"])
        print(f"    refused because it would cost more: {len(year.archive_refused)} snapshots, e.g. {r['snapshot_id']} "
              f"({name}) on {r['when'][:10]}: {r['usd']:.2f} USD more over its remaining life "
              f"(its blocks are mostly shared with its neighbours)")
    if year.days >= 150:
        if not any(s.get("StorageTier") == "archive" for s in snaps):
            problems.append("no warehouse snapshot is in the archive tier")
        if not year.archive_refused:
            problems.append("archive-snapshots never refused a move that would cost more")
        if with_usd >= without_usd:
            problems.append(f"archiving saved nothing: {with_usd:.2f} USD with, {without_usd:.2f} without")
    for s in snaps:
        if s.get("StorageTier") == "archive" and tags_of(s).get("lifecycle:tier") != "archive" \
                and s["SnapshotId"] not in year.pending_archivals:
            problems.append(f"{s['SnapshotId']} is archived but tagged lifecycle:tier={tags_of(s).get('lifecycle:tier')}")
    db = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [ids["db-data"]]}])["Snapshots"]
    if any(s.get("StorageTier") == "archive" for s in db):
        problems.append("a db-data snapshot was archived, though its blocks are shared")
    return problems


def report_vault(year: Year, vault_ec2, ids: dict) -> list[str]:
    """The vault account after the year: what it holds for ledger-db."""
    problems = []
    copies = vault_ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    locks = {s["SnapshotId"]: s["LockState"] for s in vault_ec2.describe_locked_snapshots()["Snapshots"]}
    print()
    step(f"the vault account {VAULT_ACCOUNT}: ledger-db's copies (keep {json.dumps(VAULT_POLICIES['vaulted'])}, "
         f"locked {VAULT_LOCK_DAYS} days from completion)")
    rows = []
    for c in sorted(copies, key=lambda s: tags_of(s).get("lifecycle:created-at", "")):
        t = tags_of(c)
        rows.append([c["SnapshotId"], t.get("lifecycle:created-at", "")[:10], t.get("lifecycle:retained-by", ""),
                     locks.get(c["SnapshotId"], "-"), t.get("lifecycle:copy-of", "")])
    print_table(rows, ["vault copy", "source time", "retained-by", "lock", "copy of (source account)"])
    print(f"    shared by the source {year.vault['shared']}, copied {year.vault['started']}, "
          f"locked {year.vault['locked']}, deleted by the vault's rules {year.vault['deleted']}")
    if year.days >= 30:
        if len(copies) < 7:
            problems.append(f"the vault holds {len(copies)} copies; its rules keep daily 7")
        if not any(state in ("compliance", "compliance-cooloff") for state in locks.values()):
            problems.append("no vault copy is locked")
        if year.vault["deleted"] == 0:
            problems.append("the vault's rules never let a copy go")
    return problems


def report_copies(year: Year, dr_ec2, ids: dict) -> list[str]:
    """gfs's copies in the disaster-recovery region after the year."""
    problems = []
    names = {v: k for k, v in ids.items() if k in ("db-data", "reports", "old-app", "typo")}
    copies = [s for s in dr_ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
              if tags_of(s).get("lifecycle:managed-by") == DEPLOYMENT]
    by_volume: dict[str, list[dict]] = collections.defaultdict(list)
    for c in copies:
        by_volume[tags_of(c).get("lifecycle:volume-id", "?")].append(c)
    print()
    step(f"disaster-recovery copies in {DR_REGION} (keep {json.dumps(DR_KEEP)}, one copy a day at most)")
    rows = []
    for volume, name in names.items():
        kept = sorted(by_volume.get(volume, []), key=lambda s: tags_of(s).get("lifecycle:created-at", ""))
        reasons = collections.Counter(r for s in kept for r in tags_of(s).get("lifecycle:retained-by", "-").split(","))
        rows.append([name, volume, len(kept),
                     tags_of(kept[0]).get("lifecycle:created-at", "-")[:10] if kept else "-",
                     " ".join(f"{r}x{n}" for r, n in sorted(reasons.items())) or "-"])
    print_table(rows, ["volume", "id", "copies", "oldest (source time)", "kept by (rule x copies)"])
    print(f"    copies started {year.copies['started']}, completed {year.copies['completed']}, "
          f"deleted by the target's rules {year.copies['deleted']}")
    for c in copies:
        t = tags_of(c)
        if c.get("KmsKeyId") != ids["dr-key"] or not c.get("Encrypted"):
            problems.append(f"copy {c['SnapshotId']} is not encrypted with the region's key")
        if c["State"] == "completed" and t.get("lifecycle:state") != "completed" \
                and c["SnapshotId"] not in year.last_started:
            problems.append(f"copy {c['SnapshotId']} is completed but tagged {t.get('lifecycle:state')}")
    if year.days >= 60:
        db = len(by_volume.get(ids["db-data"], []))
        # daily 7, weekly 4, monthly 6: at least 7 + 3 + 1 after two months.
        if db < 11:
            problems.append(f"db-data has {db} copies in {DR_REGION}; its target keeps daily 7, weekly 4, monthly 6")
        if year.copies["deleted"] == 0:
            problems.append("the target's retention never deleted a copy")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=str(ROOT / "target/debug"), help="where the function binaries are")
    parser.add_argument("--days", type=int, default=365, help="how long to simulate (default a year)")
    args = parser.parse_args()
    bin_dir = Path(args.bin_dir)
    names = ("create-snapshots", "complete-snapshots", "tag-snapshots", "check-encryption", "expire-snapshots",
             "copy-snapshots", "vault-snapshots", "report-snapshots", "archive-snapshots", "verify-restores")
    for name in names + ("ebs-lifecycle",):
        if not (bin_dir / name).exists():
            print(f"{bin_dir / name} is missing: run `cargo build --workspace --bins` (make demo does)", file=sys.stderr)
            return 2

    work = ROOT / ".demo"
    work.mkdir(exist_ok=True)
    global CLOCK
    clock = CLOCK = SimClock(work / "faketime-offset")
    moto = None
    fns: dict[str, LambdaFunction] = {}
    started = time.monotonic()
    try:
        step("starting moto (the local AWS emulator) on 127.0.0.1, on the simulated clock")
        clock.set(START - datetime.timedelta(hours=2))
        moto_port = free_port()
        moto = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/moto_sim_clock.py"), str(clock.offset_file), "127.0.0.1", str(moto_port)],
            # No stock AMIs (about a thousand foreign snapshots).
            env={**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
            stdout=subprocess.DEVNULL, stderr=(work / "moto.log").open("w"),
        )
        wait_for_port(moto_port, "moto")
        endpoint = f"http://127.0.0.1:{moto_port}"
        session = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="demo", aws_secret_access_key="demo")
        ec2, sns, sqs = (boto3.client(s, **session) for s in ("ec2", "sns", "sqs"))

        step(f"seeding the account on {START:%Y-%m-%d}")
        ids = seed(ec2, sns, sqs)
        dr_key = boto3.client("kms", **{**session, "region_name": DR_REGION}).create_key(
            Description="demo: gfs's disaster-recovery copies")["KeyMetadata"]["Arn"]
        policies = json.loads(json.dumps(POLICIES))
        policies["gfs"]["copies"] = [{"region": DR_REGION, "kms_key": dr_key, "keep": DR_KEEP}]
        ids["dr-key"] = dr_key
        vault = seed_vault(session, ec2, ids)
        policies["vaulted"] = {**VAULTED, "copies": [{"account": VAULT_ACCOUNT, "region": REGION,
                                                      "kms_key": ids["vault-source-key"], "keep": {"daily": 7}}]}
        create_ledger_table(endpoint, DEPLOYMENT)
        print(f"    instance web-1 {ids['web-1']} (Backup=fleet: every 6 hours, one instance-consistent set) "
              f"with volumes {ids['web-1 root']} and {ids['web-1 cache']}")
        print(f"    db-data {ids['db-data']}, reports {ids['reports']} (not encrypted), old-app {ids['old-app']}: Backup=gfs (daily)")
        print(f"    typo {ids['typo']}: Backup=dialy (no such policy); scratch {ids['scratch']}: not opted in; "
              f"hand-made snapshot {ids['hand-made']}")
        print(f"    policies: {json.dumps(policies)}")

        step("starting the ten functions, each under its own Lambda Runtime API, clock from libfaketime")
        # The template's environment with the demo's parameters (the demo
        # account's policies, public snapshots made private by itself).
        parameters = {"Policies": json.dumps(policies), "DryRun": "false", "Remediate": "public"}
        env = {**function_env(endpoint, ids["topic"], DEPLOYMENT, parameters), **clock.faketime_env()}
        # report-snapshots writes its report to the stack's bucket (the
        # template sets REPORT_BUCKET on that function only).
        report_bucket = f"{DEPLOYMENT}-reports"
        boto3.client("s3", **session).create_bucket(Bucket=report_bucket)
        for name in names:
            if name == "vault-snapshots":
                continue
            extra = {"REPORT_BUCKET": report_bucket} if name == "report-snapshots" else {}
            fns[name] = LambdaFunction(name, bin_dir / name, {**env, **extra}, work / f"{name}.log", clock=sim_now)
        # The vault stack: its own account (a role's credentials), ledger and key.
        vault_env = {**function_env(endpoint, "", VAULT_DEPLOYMENT, {}), **clock.faketime_env(),
                     **vault["env"]}
        fns["vault-snapshots"] = LambdaFunction("vault-snapshots", bin_dir / "vault-snapshots", vault_env,
                                                work / "vault-snapshots.log", clock=sim_now)

        step(f"a year in the life: {args.days} days from {START:%Y-%m-%d}; "
             f"ticks at {', '.join(f'{h:02d}:15' for h in TICK_HOURS)}, daily runs at "
             + ", ".join(f"{t} {n}" for t, n in DAILY)
             + "; Sundays " + ", ".join(f"{t} {n}" for t, n in WEEKLY))
        year = Year(clock, fns, ec2, sqs, ids, args.days)
        year.run()
        print()
        dr_ec2 = boto3.client("ec2", **{**session, "region_name": DR_REGION})
        problems = (report(year, ec2, sqs, ids) + report_copies(year, dr_ec2, ids)
                    + report_vault(year, vault["ec2"], ids) + report_coverage(year, ids))
        problems += report_page(year, session, report_bucket, work)
        problems += report_archive(year, ec2, ids)
        problems += report_drills(year, ec2, dr_ec2, ids)
        problems += restore_web_1(bin_dir, endpoint, ec2, ids, args.days)
        problems += plan_next_day(bin_dir, endpoint, policies, work, args.days)
        calls = ", ".join(f"{n} {f.invocations} ({1000 * f.seconds / max(f.invocations, 1):.0f} ms each)" for n, f in fns.items())
        print()
        print(f"    invocations: {calls}; wall time {time.monotonic() - started:.0f} s")
        print(f"    each function's JSON log (with its EMF metric lines): .demo/<function>.log")
    finally:
        for f in fns.values():
            f.stop()
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)

    print()
    if problems:
        for p in problems:
            print(paint(f"FAILED: {p}", "1;31"))
        return 1
    print(paint("demo passed: every opted-in volume backed up on schedule, each snapshot tracked to completed, "
                "labelled, checked and kept or deleted by its policy, the protected ones kept", "1;32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
