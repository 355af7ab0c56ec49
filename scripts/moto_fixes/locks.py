"""Snapshot locks, which moto lacks, as EC2 documents them: LockSnapshot
(governance, or compliance with an optional cooling-off period in hours;
``LockDuration`` in days or ``ExpirationDate``), UnlockSnapshot (refused
once a compliance lock's cooling-off is over), DescribeLockedSnapshots (the
account's locks, their state computed from moto's clock:
``compliance-cooloff``, ``compliance``, ``governance``, ``expired``), and
DeleteSnapshot refused while a lock holds (``SnapshotLocked``, an
assumption: EC2 does not document the code).
"""

import datetime

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.models.elastic_block_store import EBSBackend

from .common import _client_error, original


def _lock_state(snapshot, now):  # type: ignore[no-untyped-def]
    lock = getattr(snapshot, "lock", None)
    if lock is None:
        return None
    if now >= lock["expires"]:
        return "expired"
    if lock["mode"] == "governance":
        return "governance"
    if lock["cool_off_hours"] and now < lock["created"] + datetime.timedelta(hours=lock["cool_off_hours"]):
        return "compliance-cooloff"
    return "compliance"


def _lock_view(snapshot, now):  # type: ignore[no-untyped-def]
    lock = snapshot.lock
    view = {
        "OwnerId": snapshot.owner_id,
        "SnapshotId": snapshot.id,
        "LockState": _lock_state(snapshot, now),
        "LockCreatedOn": lock["created"],
        "LockDurationStartTime": lock["created"],
        "LockExpiresOn": lock["expires"],
    }
    if lock["duration_days"]:
        view["LockDuration"] = lock["duration_days"]
    if lock["cool_off_hours"]:
        view["CoolOffPeriod"] = lock["cool_off_hours"]
        view["CoolOffPeriodExpiresOn"] = lock["created"] + datetime.timedelta(hours=lock["cool_off_hours"])
    return view


def _describe_locked_snapshots(self):  # type: ignore[no-untyped-def]
    now = utcnow()
    wanted = set(self._get_param("SnapshotIds", []) or [])
    locked = [
        _lock_view(s, now)
        for s in self.ec2_backend.snapshots.values()
        if getattr(s, "lock", None) is not None and (not wanted or s.id in wanted)
    ]
    return ActionResult({"Snapshots": locked})


def _lock_snapshot(self):  # type: ignore[no-untyped-def]
    now = utcnow()
    snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
    mode = self._get_param("LockMode")
    duration = self._get_int_param("LockDuration")
    cool_off = self._get_int_param("CoolOffPeriod") or 0
    expiration = self._get_param("ExpirationDate")
    if mode not in ("governance", "compliance"):
        raise _client_error("InvalidParameterValue", f"LockMode {mode!r}")
    if expiration:
        expires = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00")).replace(tzinfo=None)
    elif duration:
        expires = now + datetime.timedelta(days=duration)
    else:
        raise _client_error("MissingParameter", "LockDuration or ExpirationDate")
    state = _lock_state(snapshot, now)
    if state == "compliance":
        # Past the cooling-off: the lock may only be extended.
        if mode != "compliance" or expires < snapshot.lock["expires"]:
            raise _client_error("IncorrectState", "a compliance lock can only be extended")
        snapshot.lock["expires"] = expires
    else:
        snapshot.lock = {"mode": mode, "created": now, "expires": expires,
                         "duration_days": duration, "cool_off_hours": cool_off if mode == "compliance" else 0}
    return ActionResult(_lock_view(snapshot, now))


def _unlock_snapshot(self):  # type: ignore[no-untyped-def]
    snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
    if _lock_state(snapshot, utcnow()) == "compliance":
        raise _client_error("IncorrectState", "a snapshot locked in compliance mode cannot be unlocked after its cooling-off period")
    snapshot.lock = None
    return ActionResult({"SnapshotId": snapshot.id})


def _delete_snapshot_unless_locked(self, snapshot_id):  # type: ignore[no-untyped-def]
    snapshot = self.snapshots.get(snapshot_id)
    if snapshot is not None and _lock_state(snapshot, utcnow()) not in (None, "expired"):
        raise _client_error("SnapshotLocked", f"The snapshot {snapshot_id} is locked and cannot be deleted")
    return original(EBSBackend, "delete_snapshot")(self, snapshot_id)
