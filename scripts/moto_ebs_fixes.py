"""What moto's EC2 does differently from EC2, fixed where this project relies on it.

Imported by scripts/moto_server.py (the integration tests' server) and by
scripts/demo.py (which runs moto in-process). Two fixes, both to match what
EC2 documents:

- A snapshot of an encrypted volume reports the volume's KMS key
  (``KmsKeyId``); moto leaves it empty. check-encryption compares keys.
- CopySnapshot with ``Encrypted=true`` and no ``KmsKeyId`` encrypts the copy
  with the region's default EBS key; moto leaves the copy unencrypted.
  check-encryption's remediation is exactly that copy.

- A copy to another region (CopySnapshot with a ``SourceRegion`` other than
  its own) is ``pending`` for ``COPY_MINUTES`` (30) minutes of moto's clock,
  then ``completed``, or ``error`` if its KMS key was disabled or scheduled
  for deletion meanwhile; its VolumeId is EC2's placeholder
  ``vol-ffffffff``. moto completes every copy at once and keeps the
  source's VolumeId; copy-snapshots tracks copies from pending to completed
  or failed and must not read a copy's VolumeId. (Copies within a region,
  check-encryption's, still complete at once.)

- RegisterImage with a snapshot in its block device mappings makes an AMI
  backed by that snapshot (moto ignores the mappings and invents a snapshot
  of its own), so DescribeImages names it and DeleteSnapshot refuses it with
  ``InvalidSnapshot.InUse``, as EC2 does. Expiry's AMI protection is shown
  against that.

Sharing with another account, which moto keeps apart but does not let
through (a vault account is the same template in a second account; moto
acts as the account of assumed-role credentials):

- DescribeSnapshots with ``RestorableByUserIds`` (or ``OwnerIds`` naming
  another account) lists the other accounts' snapshots of the region whose
  ``createVolumePermission`` names the caller, and of the caller's own only
  those the accounts named may restore, as EC2 does; moto ignores both
  parameters and lists the caller's own.
- CopySnapshot of a snapshot another account shared with the caller copies
  it into the caller's account; moto looks for the source in the caller's
  own account only (``InvalidSnapshot.NotFound``).

Snapshot locks, which moto lacks, as EC2 documents them:

- LockSnapshot (governance, or compliance with an optional cooling-off
  period in hours; ``LockDuration`` in days or ``ExpirationDate``),
  UnlockSnapshot (refused once a compliance lock's cooling-off is over),
  DescribeLockedSnapshots (the account's locks, their state computed from
  moto's clock: ``compliance-cooloff``, ``compliance``, ``governance``,
  ``expired``), and DeleteSnapshot refused while a lock holds
  (``SnapshotLocked``, an assumption: EC2 does not document the code).

Two EC2 calls moto lacks (it answers them with an error, which the SDK
retries), answered as EC2 answers an account that never used the features:

- DescribeLockedSnapshots: no snapshot is locked (moto cannot lock one).
- GetSnapshotBlockPublicAccessState: ``unblocked``, EC2's default.

And pagination, which moto ignores:

- DescribeSnapshots honours ``MaxResults`` and ``NextToken`` (an offset into
  the filtered list), as EC2 pages at up to 1,000. Without it a large
  account comes back in one response, which is neither what the functions'
  paginators meet on AWS nor a fair measure of their memory.
- DescribeSnapshotTierStatus the same, and its ``last-tiering-operation``
  filter (moto answers every snapshot of the region, with its tags, in one
  response, and rejects the filter): 20,000 statuses in one answer were
  most of archive-snapshots' memory on the bench.

And one for speed, not behaviour:

- Rendering a resource's tags scans every tag in the region (moto's
  ``describe_tags`` with a resource-id filter), so describing N snapshots
  costs O(N x all tags). It reads the resource's own tags instead; the
  result is the same. Without it a year of the demo, or an account with
  thousands of snapshots, spends its time in that loop.
- Each request lists moto's package directory (about 150 stat calls) to
  find its service; the list never changes while the server runs, so it is
  read once.
- A filter's values are matched as shell patterns, one ``fnmatch`` per value
  per resource: a 200-value ``volume-id`` filter over 100,000 snapshots is
  20 million calls, 9-10 s a page, so the report's batch describes passed
  the SDK's 20 s attempt timeout. Values without a pattern character
  (``*``, ``?``, ``[``) are compared as a set; the result is the same.

Everything else is moto as released (moto[server] pinned in requirements-dev.txt).
"""

import datetime

import moto.backends
import moto.ec2.models.elastic_block_store
import moto.ec2.utils
from moto.core.utils import utcnow
from moto.ec2.models.elastic_block_store import Snapshot
from moto.core.responses import ActionResult
from moto.ec2.models.core import TaggedEC2Resource
import re

from moto.ec2.responses import EC2Response
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

_create_snapshot = EBSBackend.create_snapshot
_copy_snapshot = ElasticBlockStore.copy_snapshot


def _create_snapshot_with_volume_key(self, volume_id, *args, **kwargs):  # type: ignore[no-untyped-def]
    snapshot = _create_snapshot(self, volume_id, *args, **kwargs)
    if snapshot.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = snapshot.volume.kms_key_id
    return snapshot


COPY_MINUTES = 30
_PLACEHOLDER_VOLUME = "vol-ffffffff"


_backend_copy_snapshot = EBSBackend.copy_snapshot


def _copy_snapshot_shared_with_me(self, source_snapshot_id, source_region, description, kms_key_id):  # type: ignore[no-untyped-def]
    from moto.ec2.models.elastic_block_store import Snapshot as MotoSnapshot
    from moto.ec2.utils import random_snapshot_id

    for snapshot in _shared_with(self.account_id, source_region, set()):
        if snapshot.id == source_snapshot_id:
            copy = MotoSnapshot(self, random_snapshot_id(), volume=snapshot.volume, description=description,
                                encrypted=snapshot.encrypted, kms_key_id=kms_key_id)
            # A copy from another account takes time, as one from another region.
            copy.status = "pending"
            copy.copy_completes_at = copy.start_time + datetime.timedelta(minutes=COPY_MINUTES)
            self.snapshots[copy.id] = copy
            return copy
    return _backend_copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id)


def _copy_snapshot_honouring_encrypted(self):  # type: ignore[no-untyped-def]
    before = set(self.ec2_backend.snapshots)
    result = _copy_snapshot(self)
    encrypted = str(self._get_param("Encrypted", "false")).lower() == "true"
    source_region = self._get_param("SourceRegion")
    for snapshot_id in set(self.ec2_backend.snapshots) - before:
        snapshot = self.ec2_backend.snapshots[snapshot_id]
        snapshot.copied_from = self._get_param("SourceSnapshotId")
        _copied_snapshot_ids.add(snapshot_id)
        if encrypted:
            snapshot.encrypted = True
            if not snapshot.kms_key_id:
                snapshot.kms_key_id = self.ec2_backend._create_default_encryption_key()
        if source_region and source_region != self.ec2_backend.region_name:
            snapshot.status = "pending"
            snapshot.copy_completes_at = snapshot.start_time + datetime.timedelta(minutes=COPY_MINUTES)
    return result


def _key_usable(account_id, region, key_id):  # type: ignore[no-untyped-def]
    from moto.kms.models import kms_backends

    try:
        key = kms_backends[account_id][region].describe_key(key_id)
    except Exception:  # noqa: BLE001  (an unknown key fails the copy, as on EC2)
        return False
    return key.key_state == "Enabled"


def _settle_copies(backend):  # type: ignore[no-untyped-def]
    now = utcnow()
    for snapshot in backend.snapshots.values():
        completes_at = getattr(snapshot, "copy_completes_at", None)
        if snapshot.status != "pending" or completes_at is None or now < completes_at:
            continue
        usable = not snapshot.kms_key_id or _key_usable(
            backend.account_id, backend.region_name, snapshot.kms_key_id
        )
        snapshot.status = "completed" if usable else "error"


_backend_describe_snapshots = EBSBackend.describe_snapshots


def _describe_snapshots_settling_copies(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _settle_copies(self)
    return _backend_describe_snapshots(self, *args, **kwargs)


def _snapshot_volume_id(self):  # type: ignore[no-untyped-def]
    if getattr(self, "copy_completes_at", None) is not None:
        return _PLACEHOLDER_VOLUME
    return self.volume.id


def _own_tags(self):  # type: ignore[no-untyped-def]
    if not self.id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    return [
        {"resource_id": self.id, "key": key, "value": value, "resource_type": kind}
        for key, value in self.ec2_backend.tags.get(self.id, {}).items()
    ]


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


def _client_error(code, message):  # type: ignore[no-untyped-def]
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


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


_delete_snapshot = EBSBackend.delete_snapshot


def _delete_snapshot_unless_locked(self, snapshot_id):  # type: ignore[no-untyped-def]
    snapshot = self.snapshots.get(snapshot_id)
    if snapshot is not None and _lock_state(snapshot, utcnow()) not in (None, "expired"):
        raise _client_error("SnapshotLocked", f"The snapshot {snapshot_id} is locked and cannot be deleted")
    return _delete_snapshot(self, snapshot_id)


def _created_backends(region):  # type: ignore[no-untyped-def]
    """Every account's EC2 backend of `region` that exists, without creating any."""
    from moto.ec2.models import ec2_backends

    for account_id in list(dict.keys(ec2_backends)):
        regions = dict.get(ec2_backends, account_id)
        backend = dict.get(regions, region) if regions is not None else None
        if backend is not None:
            yield account_id, backend


def _shared_with(account_id, region, owners):  # type: ignore[no-untyped-def]
    for owner, backend in _created_backends(region):
        if owner == account_id or (owners and owner not in owners):
            continue
        _settle_copies(backend)
        for snapshot in backend.snapshots.values():
            if account_id in snapshot.create_volume_permission_userids \
                    or "all" in snapshot.create_volume_permission_groups:
                yield snapshot


def _get_snapshot_block_public_access_state(self):  # type: ignore[no-untyped-def]
    return ActionResult({"State": "unblocked"})


_register_image = AmisResponse.register_image
_ROOT_SNAPSHOT = re.compile(r"^BlockDeviceMapping\.(\d+)\.Ebs\.SnapshotId$")


def _register_image_backed_by_its_snapshot(self):  # type: ignore[no-untyped-def]
    before = set(self.ec2_backend.amis)
    result = _register_image(self)
    numbered = []
    for key in self.querystring:
        match = _ROOT_SNAPSHOT.match(key)
        if match:
            numbered.append((int(match.group(1)), self.querystring[key][0]))
    snapshot_ids = [snapshot_id for _, snapshot_id in sorted(numbered)]
    for ami_id in set(self.ec2_backend.amis) - before:
        if snapshot_ids and snapshot_ids[0] in self.ec2_backend.snapshots:
            ami = self.ec2_backend.amis[ami_id]
            invented = ami.ebs_snapshot
            ami.ebs_snapshot = self.ec2_backend.snapshots[snapshot_ids[0]]
            ami.ebs_snapshot.from_ami = ami_id
            self.ec2_backend.snapshots.pop(invented.id, None)
    return result


AmisResponse.register_image = _register_image_backed_by_its_snapshot


def _describe_snapshots_paged(self):  # type: ignore[no-untyped-def]
    from moto.ec2.utils import generic_filter

    own_account = self.ec2_backend.account_id
    owners = set(self._get_param("OwnerIds", []) or [])
    restorable = set(self._get_param("RestorableByUserIds", []) or [])
    others = owners - {"self", own_account, "amazon", "aws-marketplace"}
    filters = self._filters_from_querystring()
    snapshots = []
    if not owners or owners & {"self", own_account}:
        snapshots = self.ec2_backend.describe_snapshots(
            snapshot_ids=self._get_param("SnapshotIds", []), filters=filters
        )
    if restorable and not restorable & {"self", own_account}:
        # The caller's own snapshots that these accounts may restore.
        snapshots = [
            snap for snap in snapshots
            if snap.create_volume_permission_userids & restorable
            or "all" in snap.create_volume_permission_groups
        ]
    if others or restorable & {"self", own_account}:
        shared = list(_shared_with(own_account, self.ec2_backend.region_name, others))
        snapshots = list(snapshots) + list(generic_filter(filters, shared) if filters else shared)
    max_results = int(self._get_param("MaxResults") or 0)
    if not max_results:
        return ActionResult({"Snapshots": snapshots})
    start = int(self._get_param("NextToken") or 0)
    result = {"Snapshots": snapshots[start:start + max_results]}
    if start + max_results < len(snapshots):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


ElasticBlockStore.describe_snapshots = _describe_snapshots_paged


def _generic_filter_literal_sets(filters, objects):  # type: ignore[no-untyped-def]
    from moto.ec2.utils import is_filter_matching

    for name, values in (filters or {}).items():
        literal = isinstance(values, list) and all(
            isinstance(v, str) and not any(c in v for c in "*?[") for v in values
        )
        if not literal:
            objects = [obj for obj in objects if is_filter_matching(obj, name, values)]
            continue
        wanted = frozenset(values)

        def matches(obj, name=name, values=values, wanted=wanted):  # type: ignore[no-untyped-def]
            value = obj.get_filter_value(name)
            if isinstance(value, str):
                return value in wanted
            return is_filter_matching(obj, name, values)

        objects = [obj for obj in objects if matches(obj)]
    return objects


moto.ec2.utils.generic_filter = _generic_filter_literal_sets
moto.ec2.models.elastic_block_store.generic_filter = _generic_filter_literal_sets

_MOTO_MODULES = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MOTO_MODULES

EC2Response.describe_locked_snapshots = _describe_locked_snapshots
EC2Response.lock_snapshot = _lock_snapshot
EC2Response.unlock_snapshot = _unlock_snapshot
EBSBackend.delete_snapshot = _delete_snapshot_unless_locked
EBSBackend.copy_snapshot = _copy_snapshot_shared_with_me
EC2Response.get_snapshot_block_public_access_state = _get_snapshot_block_public_access_state
EBSBackend.create_snapshot = _create_snapshot_with_volume_key
EBSBackend.describe_snapshots = _describe_snapshots_settling_copies
Snapshot.volume_id = property(_snapshot_volume_id)
TaggedEC2Resource.get_tags = _own_tags
ElasticBlockStore.copy_snapshot = _copy_snapshot_honouring_encrypted


# ---------------------------------------------------------------------------
# Synthetic block maps: EC2 snapshots readable by the EBS direct APIs.
#
# moto's EBS direct APIs know only snapshots made with StartSnapshot (512-byte
# blocks, ListChangedBlocks walking only the first snapshot, no pages), and its
# DescribeSnapshots has no FullSnapshotSizeInBytes. Here every snapshot that
# CreateSnapshot(s) makes of a volume gets a deterministic block map inherited
# along that volume's snapshots, as EC2 keeps them:
#
# - blocks are 512 KiB (EC2's), a volume of G GiB has G x 2048 of them;
# - the first snapshot of a volume holds blocks [0, fill x blocks), fill
#   25-74 % by a seed from the volume id (crc32);
# - each later one holds the previous one's blocks with one extent rewritten
#   since: blocks x rate x days since the previous snapshot (at least 1), rate
#   0.2-1 %/day by the same seed, at an offset from the seed and the snapshot's
#   position (wrapping at the end of the volume);
# - a volume tag ``moto:writes`` (``0-99,200-209``: block ranges, inclusive)
#   replaces the pattern for the next snapshot of the volume, so a test can
#   write a map by hand; the tag is consumed.
#
# ListSnapshotBlocks and ListChangedBlocks (the second snapshot newer, of the
# same volume: only blocks that differ, with the token of each side that has
# the block) page by ``MaxResults`` (100-10,000) and ``NextToken`` or
# ``StartingBlockIndex``, in block order; DescribeSnapshots reports
# ``FullSnapshotSizeInBytes`` (blocks held x 512 KiB). Deleted snapshots stay
# in the lineage (their blocks live on in later snapshots, as on EC2). Copies
# have no block map (the direct APIs answer ValidationException).
# ---------------------------------------------------------------------------

import binascii

BLOCK_BYTES = 512 * 1024
_LINEAGES = {}  # volume id -> [entry], oldest first
_ENTRY = {}  # snapshot id -> entry


class _Entry:
    __slots__ = ("snapshot_id", "volume_id", "position", "extents", "blocks", "volume_gib", "full", "created",
                 "snapshot")

    def __init__(self, snapshot_id, volume_id, position, extents, blocks, volume_gib):  # type: ignore[no-untyped-def]
        self.snapshot_id = snapshot_id
        self.volume_id = volume_id
        self.position = position
        self.extents = extents  # [(first, last)] written since the previous entry, inclusive
        self.blocks = blocks
        self.volume_gib = volume_gib
        self.full = None


def _seed(volume_id):  # type: ignore[no-untyped-def]
    return binascii.crc32(volume_id.encode())


def _parse_writes(text, blocks):  # type: ignore[no-untyped-def]
    extents = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        first, last = int(first), int(last or first)
        extents.append((max(0, first), min(blocks - 1, last)))
    return [(a, b) for a, b in extents if a <= b]


def _seeded_writes(volume_id, lineage, blocks, now):  # type: ignore[no-untyped-def]
    seed = _seed(volume_id)
    if not lineage:
        fill = 0.25 + (seed % 50) / 100
        return [(0, max(1, int(blocks * fill)) - 1)]
    rate = (2 + 2 * ((seed // 50) % 5)) / 1000
    days = max(0.0, (now - lineage[-1].created).total_seconds() / 86400)
    count = min(blocks, max(1, int(blocks * rate * days)))
    start = binascii.crc32(f"{volume_id}:{len(lineage)}".encode()) % blocks
    end = start + count - 1
    if end < blocks:
        return [(start, end)]
    return [(start, blocks - 1), (0, end - blocks)]


def _record_lineage(snapshot):  # type: ignore[no-untyped-def]
    volume = snapshot.volume
    blocks = max(1, int(volume.size) * 2048)
    lineage = _LINEAGES.setdefault(volume.id, [])
    now = utcnow()
    tags = volume.ec2_backend.tags.get(volume.id, {})
    if "moto:writes" in tags:
        extents = _parse_writes(tags.pop("moto:writes"), blocks)
    else:
        extents = _seeded_writes(volume.id, lineage, blocks, now)
    entry = _Entry(snapshot.id, volume.id, len(lineage), extents, blocks, int(volume.size))
    entry.created = now
    entry.snapshot = snapshot
    lineage.append(entry)
    _ENTRY[snapshot.id] = entry


def _merge(extents):  # type: ignore[no-untyped-def]
    merged = []
    for first, last in sorted(extents):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _writers(lineage, upto, first, last, since=0):  # type: ignore[no-untyped-def]
    """[(a, b, snapshot id)]: who last wrote each block of [first, last] in
    entries since..upto (inclusive), newest first wins; unwritten blocks left out."""
    open_ = [(first, last)]
    found = []
    for entry in reversed(lineage[since:upto + 1]):
        if not open_:
            break
        still = []
        for a, b in open_:
            cuts = []
            for x, y in entry.extents:
                lo, hi = max(a, x), min(b, y)
                if lo <= hi:
                    found.append((lo, hi, entry.snapshot_id))
                    cuts.append((lo, hi))
            cursor = a
            for lo, hi in sorted(cuts):
                if cursor < lo:
                    still.append((cursor, lo - 1))
                cursor = max(cursor, hi + 1)
            if cursor <= b:
                still.append((cursor, b))
        open_ = still
    return sorted(found)


def _full_size(snapshot):  # type: ignore[no-untyped-def]
    entry = _ENTRY.get(snapshot.id)
    if entry is None:
        source = getattr(snapshot, "copied_from", None)
        entry = _ENTRY.get(source) if source else None
        if entry is None:
            return None
    if entry.full is None:
        lineage = _LINEAGES[entry.volume_id]
        held = _merge([e for earlier in lineage[:entry.position + 1] for e in earlier.extents])
        entry.full = sum(b - a + 1 for a, b in held) * BLOCK_BYTES
    return entry.full


def _token(snapshot_id, index):  # type: ignore[no-untyped-def]
    return f"{snapshot_id}.{index}"


def _page(self, ranges):  # type: ignore[no-untyped-def]
    """(first block of the page, last block, next token) over the merged ranges."""
    max_results = int(self._get_param("MaxResults") or 10000)
    max_results = min(10000, max(100, max_results))
    start = self._get_param("NextToken")
    start = int(start) if start else int(self._get_param("StartingBlockIndex") or 0)
    picked = []
    left = max_results
    for a, b in ranges:
        if b < start or left == 0:
            continue
        a = max(a, start)
        take = min(b - a + 1, left)
        picked.append((a, a + take - 1))
        left -= take
    more = None
    if picked:
        last = picked[-1][1]
        if any(b > last for _, b in ranges):
            more = str(last + 1)
    return picked, more


def _ebs_validation(message):  # type: ignore[no-untyped-def]
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError("ValidationException", message)
    error.code = 400
    return error


def _expiry():  # type: ignore[no-untyped-def]
    return (utcnow() + datetime.timedelta(days=7)).timestamp()


def _json(result):  # type: ignore[no-untyped-def]
    """The answer as the REST-JSON protocol has it, written directly: moto's
    generic serializer takes ten times longer over 10,000 blocks a page."""
    import json

    return 200, {"Content-Type": "application/json"}, json.dumps(result)


def _list_snapshot_blocks_synthetic(self):  # type: ignore[no-untyped-def]
    snapshot_id = self._get_param("SnapshotId")
    entry = _ENTRY.get(snapshot_id)
    if entry is None:
        return _ebs_originals["list_snapshot_blocks"](self)
    if _archived(entry):
        raise _ebs_validation("The snapshot is in the archive tier")
    lineage = _LINEAGES[entry.volume_id]
    held = _merge([e for earlier in lineage[:entry.position + 1] for e in earlier.extents])
    picked, more = _page(self, held)
    blocks = []
    for a, b in picked:
        for lo, hi, writer in _writers(lineage, entry.position, a, b):
            blocks.extend({"BlockIndex": i, "BlockToken": _token(writer, i)} for i in range(lo, hi + 1))
    result = {"Blocks": blocks, "VolumeSize": entry.volume_gib, "BlockSize": BLOCK_BYTES, "ExpiryTime": _expiry()}
    if more:
        result["NextToken"] = more
    return _json(result)


def _list_changed_blocks_synthetic(self):  # type: ignore[no-untyped-def]
    first_id = self._get_param("FirstSnapshotId")
    second_id = self._get_param("SecondSnapshotId")
    second = _ENTRY.get(second_id)
    if second is None:
        if second_id in _copied_snapshot_ids:
            raise _ebs_validation("The snapshot has no block map in this emulator (a copy)")
        return _ebs_originals["list_changed_blocks"](self)
    lineage = _LINEAGES[second.volume_id]
    if _archived(second) or (first_id and _ENTRY.get(first_id) and _archived(_ENTRY[first_id])):
        raise _ebs_validation("The snapshot is in the archive tier")
    if first_id:
        first = _ENTRY.get(first_id)
        if first is None or first.volume_id != second.volume_id:
            raise _ebs_validation("The snapshots must be of the same volume lineage")
        if first.position >= second.position:
            raise _ebs_validation("The first snapshot must be older than the second")
        since = first.position + 1
    else:
        first, since = None, 0
    changed = _merge([e for entry in lineage[since:second.position + 1] for e in entry.extents])
    picked, more = _page(self, changed)
    blocks = []
    for a, b in picked:
        seconds = _writers(lineage, second.position, a, b, since)
        olds = {}
        if first is not None:
            for lo, hi, writer in _writers(lineage, first.position, a, b):
                for i in range(lo, hi + 1):
                    olds[i] = writer
        for lo, hi, writer in seconds:
            for i in range(lo, hi + 1):
                block = {"BlockIndex": i, "SecondBlockToken": _token(writer, i)}
                if i in olds:
                    block["FirstBlockToken"] = _token(olds[i], i)
                blocks.append(block)
    result = {"ChangedBlocks": blocks, "VolumeSize": second.volume_gib, "BlockSize": BLOCK_BYTES,
              "ExpiryTime": _expiry()}
    if more:
        result["NextToken"] = more
    return _json(result)


_copied_snapshot_ids = set()
_ebs_create_snapshot = EBSBackend.create_snapshot


def _create_snapshot_with_block_map(self, volume_id, *args, **kwargs):  # type: ignore[no-untyped-def]
    snapshot = _ebs_create_snapshot(self, volume_id, *args, **kwargs)
    _record_lineage(snapshot)
    return snapshot


def _install_block_maps():  # type: ignore[no-untyped-def]
    from moto.ebs.responses import EBSResponse

    _ebs_originals["list_snapshot_blocks"] = EBSResponse.list_snapshot_blocks
    _ebs_originals["list_changed_blocks"] = EBSResponse.list_changed_blocks
    EBSResponse.list_snapshot_blocks = _list_snapshot_blocks_synthetic
    EBSResponse.list_changed_blocks = _list_changed_blocks_synthetic
    EBSBackend.create_snapshot = _create_snapshot_with_block_map
    Snapshot.full_snapshot_size_in_bytes = property(_full_size)


_ebs_originals = {}
_install_block_maps()


def _archived(entry):  # type: ignore[no-untyped-def]
    return getattr(entry.snapshot, "storage_tier", "standard") == "archive"


# ---------------------------------------------------------------------------
# The archive tier as EC2 documents it. moto moves a snapshot to the archive
# tier at once and checks nothing. Here ModifySnapshotTier starts an archival
# that is ``archival-in-progress`` (StorageTier still ``standard``) for
# ``ARCHIVE_HOURS`` hours of moto's clock, then ``archival-completed``
# (StorageTier ``archive``, ArchivalCompleteTime the end), or
# ``archival-failed`` if the snapshot carries the tag ``moto:archive-fails``
# (a test's way to see a failure). It is refused (codes as EC2 names them
# where documented, else an assumption: ``ResourceLimitExceeded`` for the
# quotas) for a snapshot not ``completed`` or already archived or archiving
# (IncorrectState), behind a registered AMI (InvalidSnapshot.InUse), when
# its volume has 25 snapshots archived or archiving, or the account 25
# archivals in progress (ResourceLimitExceeded). An archived snapshot
# cannot be copied or shared (IncorrectState) nor read by the EBS direct
# APIs (ValidationException). The 90-day minimum is billing, which moto
# does not do; the functions compute it.
# ---------------------------------------------------------------------------

ARCHIVE_HOURS = 6
ARCHIVED_PER_VOLUME = 25
ARCHIVALS_IN_PROGRESS = 25


def _settle_archivals(backend):  # type: ignore[no-untyped-def]
    now = utcnow()
    for snapshot in list(backend.snapshots.values()):
        ends = getattr(snapshot, "archive_completes_at", None)
        if ends is None or now < ends:
            continue
        snapshot.archive_completes_at = None
        snapshot.last_tiering_progress = 100
        if "moto:archive-fails" in backend.tags.get(snapshot.id, {}):
            snapshot.last_tiering_operation_status = "archival-failed"
            snapshot.last_tiering_operation_status_detail = "Archival failed (moto:archive-fails)"
            continue
        snapshot.storage_tier = "archive"
        snapshot.last_tiering_operation_status = "archival-completed"
        snapshot.last_tiering_operation_status_detail = "Archival completed successfully"
        snapshot.archival_complete_time = ends
        snapshot.restore_expiry_time = None


def _archiving(snapshot):  # type: ignore[no-untyped-def]
    return getattr(snapshot, "archive_completes_at", None) is not None


def _modify_snapshot_tier_as_ec2(self, snapshot_id, storage_tier):  # type: ignore[no-untyped-def]
    _settle_archivals(self)
    snapshot = self.get_snapshot(snapshot_id)
    if storage_tier != "archive":
        raise _client_error("InvalidParameterValue", f"StorageTier {storage_tier!r}")
    if snapshot.status != "completed":
        raise _client_error("IncorrectState", f"The snapshot {snapshot_id} is not completed")
    if snapshot.storage_tier == "archive" or _archiving(snapshot):
        raise _client_error("IncorrectState", f"The snapshot {snapshot_id} is archived or being archived")
    ami = getattr(snapshot, "from_ami", None)
    if ami and ami in getattr(self, "amis", {}):
        raise _client_error("InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is used by {ami}")
    if sum(1 for s in self.snapshots.values() if _archiving(s)) >= ARCHIVALS_IN_PROGRESS:
        raise _client_error("ResourceLimitExceeded", "25 archivals are in progress in the account")
    volume = snapshot.volume.id
    held = sum(1 for s in self.snapshots.values()
               if s.volume.id == volume and (s.storage_tier == "archive" or _archiving(s)))
    if held >= ARCHIVED_PER_VOLUME:
        raise _client_error("ResourceLimitExceeded", f"The volume {volume} has 25 archived snapshots")
    now = utcnow()
    snapshot.last_tiering_start_time = now
    snapshot.last_tiering_progress = 0
    snapshot.last_tiering_operation_status = "archival-in-progress"
    snapshot.last_tiering_operation_status_detail = "Archival in progress"
    snapshot.archive_completes_at = now + datetime.timedelta(hours=ARCHIVE_HOURS)
    return snapshot


_backend_describe_tier_status = EBSBackend.describe_snapshot_tier_status


def _describe_snapshot_tier_status_settling(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _settle_archivals(self)
    return _backend_describe_tier_status(self, *args, **kwargs)


def _refuse_archived(backend, snapshot_id, what):  # type: ignore[no-untyped-def]
    _settle_archivals(backend)
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is not None and snapshot.storage_tier == "archive":
        raise _client_error("IncorrectState", f"The snapshot {snapshot_id} is archived and cannot be {what}")


_copy_honouring = ElasticBlockStore.copy_snapshot


def _copy_snapshot_unless_archived(self):  # type: ignore[no-untyped-def]
    source_region = self._get_param("SourceRegion") or self.ec2_backend.region_name
    for _, backend in _created_backends(source_region):
        _refuse_archived(backend, self._get_param("SourceSnapshotId"), "copied")
    return _copy_honouring(self)


_modify_snapshot_attribute = ElasticBlockStore.modify_snapshot_attribute


def _modify_snapshot_attribute_unless_archived(self):  # type: ignore[no-untyped-def]
    if self._get_param("OperationType") == "add":
        _refuse_archived(self.ec2_backend, self._get_param("SnapshotId"), "shared")
    return _modify_snapshot_attribute(self)


_describe_settling_copies = EBSBackend.describe_snapshots


def _describe_snapshots_settling(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _settle_archivals(self)
    return _describe_settling_copies(self, *args, **kwargs)


_tier_status_response = ElasticBlockStore.describe_snapshot_tier_status
_snapshot_filter_value = Snapshot.get_filter_value


def _snapshot_filter_value_tiering(self, filter_name, method_name=None):  # type: ignore[no-untyped-def]
    if filter_name == "last-tiering-operation":
        return self.last_tiering_operation_status
    return _snapshot_filter_value(self, filter_name, method_name)


def _describe_snapshot_tier_status_paged(self):  # type: ignore[no-untyped-def]
    statuses = _tier_status_response(self).result["SnapshotTierStatuses"]
    max_results = int(self._get_param("MaxResults") or 0)
    if not max_results:
        return ActionResult({"SnapshotTierStatuses": statuses})
    start = int(self._get_param("NextToken") or 0)
    result = {"SnapshotTierStatuses": statuses[start:start + max_results]}
    if start + max_results < len(statuses):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


Snapshot.get_filter_value = _snapshot_filter_value_tiering
ElasticBlockStore.describe_snapshot_tier_status = _describe_snapshot_tier_status_paged
EBSBackend.modify_snapshot_tier = _modify_snapshot_tier_as_ec2
EBSBackend.describe_snapshot_tier_status = _describe_snapshot_tier_status_settling
EBSBackend.describe_snapshots = _describe_snapshots_settling
ElasticBlockStore.copy_snapshot = _copy_snapshot_unless_archived
ElasticBlockStore.modify_snapshot_attribute = _modify_snapshot_attribute_unless_archived
