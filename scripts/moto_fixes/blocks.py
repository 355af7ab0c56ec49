"""Synthetic block maps: EC2 snapshots readable by the EBS direct APIs.

moto's EBS direct APIs know only snapshots made with StartSnapshot (512-byte
blocks, ListChangedBlocks walking only the first snapshot, no pages), and its
DescribeSnapshots has no FullSnapshotSizeInBytes. Here every snapshot that
CreateSnapshot(s) makes of a volume gets a deterministic block map inherited
along that volume's snapshots, as EC2 keeps them:

- blocks are 512 KiB (EC2's), a volume of G GiB has G x 2048 of them;
- the first snapshot of a volume holds blocks [0, fill x blocks), fill
  25-74 % by a seed from the volume id (crc32);
- each later one holds the previous one's blocks with one extent rewritten
  since: blocks x rate x days since the previous snapshot (at least 1), rate
  0.2-1 %/day by the same seed, at an offset from the seed and the snapshot's
  position (wrapping at the end of the volume);
- a volume tag ``moto:writes`` (``0-99,200-209``: block ranges, inclusive)
  replaces the pattern for the next snapshot of the volume, so a test can
  write a map by hand; the tag is consumed.

ListSnapshotBlocks and ListChangedBlocks (the second snapshot newer, of the
same volume: only blocks that differ, with the token of each side that has
the block) page by ``MaxResults`` (100-10,000) and ``NextToken`` or
``StartingBlockIndex``, in block order; DescribeSnapshots reports
``FullSnapshotSizeInBytes`` (blocks held x 512 KiB). Deleted snapshots stay
in the lineage (their blocks live on in later snapshots, as on EC2). A copy
made with CopySnapshot in the same account holds its source's blocks (EC2
copies the data): it reads as its source, and ListChangedBlocks between two
copies of a volume answers as between their sources ([`record_copy`]); so
does a copy a vault account makes of a snapshot shared with it. Test hook: a
snapshot tagged ``moto:unrelated`` makes ListChangedBlocks with it answer
ValidationException ``UNRELATED_SNAPSHOTS`` (EBS's answer for a copy made
in full, not incremental on the one before it).
"""

import binascii
import datetime

from moto.core.utils import utcnow
from moto.ebs.responses import EBSResponse

from .common import _copied_snapshot_ids, original

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


def record_copy(copy):  # type: ignore[no-untyped-def]
    """The copy's entry at its source's place in the source volume's lineage."""
    source = _ENTRY.get(getattr(copy, "copied_from", None) or "")
    if source is None:
        return
    entry = _Entry(copy.id, source.volume_id, source.position, [], source.blocks, source.volume_gib)
    entry.created = source.created
    entry.snapshot = copy
    _ENTRY[copy.id] = entry


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
        return original(EBSResponse, "list_snapshot_blocks")(self)
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
        return original(EBSResponse, "list_changed_blocks")(self)
    lineage = _LINEAGES[second.volume_id]
    if first_id and any(_unrelated(i) for i in (first_id, second_id)):
        raise _ebs_validation("UNRELATED_SNAPSHOTS: the snapshots are not of one lineage")
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


def _unrelated(snapshot_id):  # type: ignore[no-untyped-def]
    """Test hook: a snapshot tagged ``moto:unrelated`` is compared with no
    other (as EBS refuses a copy made in full against its predecessor)."""
    entry = _ENTRY.get(snapshot_id)
    if entry is None:
        return False
    snapshot = entry.snapshot
    return "moto:unrelated" in snapshot.ec2_backend.tags.get(snapshot.id, {})


def _archived(entry):  # type: ignore[no-untyped-def]
    return getattr(entry.snapshot, "storage_tier", "standard") == "archive"
