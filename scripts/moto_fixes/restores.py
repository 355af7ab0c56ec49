"""Restores: block data for EC2 snapshots, and volumes made from snapshots as
EC2 makes them.

moto's GetSnapshotBlock knows only blocks written with PutSnapshotBlock; here
every block of the synthetic block maps (``blocks``) reads as EC2 returns it:

- 512 KiB of data determined by the volume, the block index and the snapshot
  that last wrote the block (its write generation), so a block a later
  snapshot did not rewrite reads the same from both, as EC2's incremental
  chain does;
- with ``x-amz-Checksum`` (base64 SHA-256 of the data),
  ``x-amz-Checksum-Algorithm`` ``SHA256`` and ``x-amz-Data-Length``;
- only with the block's token (the one ListSnapshotBlocks gives), else
  ValidationException, as EC2 refuses a token of another block.

CreateVolume from an encrypted snapshot without ``KmsKeyId`` takes the
snapshot's key (EC2: the volume is encrypted with the snapshot's key; moto
gives the account's default key).

Test hooks, tags read only by this emulator (never by the project's code):

- ``moto:corrupt-block`` on a snapshot (block indexes, ``3,17``, or ``*``):
  those blocks read with one byte changed and the checksum of the data as
  written, as a damaged block would;
- ``moto:break-chain`` on a snapshot: the blocks it shares with older
  snapshots read differently from them (with a matching checksum), as a
  broken incremental chain would;
- ``moto:fail-create-volume`` on a snapshot: a volume made from it goes to
  state ``error``, as EC2's volumes do when the snapshot cannot be read.
"""

import base64
import hashlib

from moto.ebs.responses import EBSResponse
from moto.ec2.models.elastic_block_store import EBSBackend, Volume

from .blocks import _ENTRY, _LINEAGES, _ebs_validation, _token, _writers
from .common import original

_DATA_CACHE = {}  # (volume, index, writer, variant) -> bytes; a test reads a few dozen


def _block_data(volume_id, index, writer, variant=""):  # type: ignore[no-untyped-def]
    key = (volume_id, index, writer, variant)
    data = _DATA_CACHE.get(key)
    if data is None:
        seed = hashlib.sha256(f"{volume_id}:{index}:{writer}:{variant}".encode()).digest()
        data = seed * (512 * 1024 // len(seed))
        if len(_DATA_CACHE) > 256:
            _DATA_CACHE.clear()
        _DATA_CACHE[key] = data
    return data


def _hook(snapshot, name):  # type: ignore[no-untyped-def]
    tags = snapshot.ec2_backend.tags.get(snapshot.id, {})
    return tags.get(name)


def _in(spec, index):  # type: ignore[no-untyped-def]
    if spec is None:
        return False
    spec = spec.strip()
    if spec == "*":
        return True
    return any(part.strip() == str(index) for part in spec.split(","))


def _get_snapshot_block_synthetic(self):  # type: ignore[no-untyped-def]
    snapshot_id = self._get_param("SnapshotId")
    entry = _ENTRY.get(snapshot_id)
    if entry is None:
        return original(EBSResponse, "get_snapshot_block")(self)
    if getattr(entry.snapshot, "storage_tier", "standard") == "archive":
        raise _ebs_validation("The snapshot is in the archive tier")
    index = int(self._get_param("BlockIndex"))
    token = self._get_param("BlockToken") or self.querystring.get("blockToken", [None])[0]
    lineage = _LINEAGES[entry.volume_id]
    written = _writers(lineage, entry.position, index, index)
    if not written or token != _token(written[0][2], index):
        raise _ebs_validation("The block token is not valid for this block of the snapshot")
    writer = written[0][2]
    variant = "broken" if writer != snapshot_id and _hook(entry.snapshot, "moto:break-chain") else ""
    data = _block_data(entry.volume_id, index, writer, variant)
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    if _in(_hook(entry.snapshot, "moto:corrupt-block"), index):
        data = bytes([data[0] ^ 0xFF]) + data[1:]
    headers = {
        "Content-Type": "application/octet-stream",
        "x-amz-Data-Length": str(len(data)),
        "x-amz-Checksum": checksum,
        "x-amz-Checksum-Algorithm": "SHA256",
    }
    return 200, headers, data


def _create_volume_as_ec2(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    """CreateVolume (the backend's): a volume from an encrypted snapshot
    takes the snapshot's key unless one is given; the failure hook."""
    snapshot_id = kwargs.get("snapshot_id") if "snapshot_id" in kwargs else (args[2] if len(args) > 2 else None)
    snapshot = self.get_snapshot(snapshot_id) if snapshot_id else None
    if snapshot is not None and snapshot.encrypted and not kwargs.get("kms_key_id"):
        kwargs["kms_key_id"] = snapshot.kms_key_id
        kwargs["encrypted"] = True
    volume = original(EBSBackend, "create_volume")(self, *args, **kwargs)
    if snapshot is not None and _hook(snapshot, "moto:fail-create-volume") is not None:
        volume.moto_error = True
    return volume


def _volume_status(self):  # type: ignore[no-untyped-def]
    if getattr(self, "moto_error", False):
        return "error"
    if self.attachment:
        return "in-use"
    return "available"
