"""Copies as EC2 makes them (moto completes every copy at once, keeps the
source's VolumeId, and ignores ``Encrypted``):

- A snapshot of an encrypted volume reports the volume's KMS key
  (``KmsKeyId``); moto leaves it empty. check-encryption compares keys.
- CopySnapshot with ``Encrypted=true`` and no ``KmsKeyId`` encrypts the copy
  with the region's default EBS key; moto leaves the copy unencrypted.
  check-encryption's remediation is exactly that copy.
- A copy to another region (CopySnapshot with a ``SourceRegion`` other than
  its own) or from another account is ``pending`` for ``COPY_MINUTES`` (30)
  minutes of moto's clock, then ``completed``, or ``error`` if its KMS key
  was disabled or scheduled for deletion meanwhile; its VolumeId is EC2's
  placeholder ``vol-ffffffff``. (Copies within a region, check-encryption's,
  still complete at once.)
- CopySnapshot of a snapshot another account shared with the caller copies
  it into the caller's account; moto looks for the source in the caller's
  own account only (``InvalidSnapshot.NotFound``).
"""

import datetime

from moto.core.utils import utcnow
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from .blocks import record_copy
from .common import _copied_snapshot_ids, original

COPY_MINUTES = 30
_PLACEHOLDER_VOLUME = "vol-ffffffff"


def _give_volume_key(snapshot):  # type: ignore[no-untyped-def]
    if snapshot.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = snapshot.volume.kms_key_id


def _copy_snapshot_shared_with_me(self, source_snapshot_id, source_region, description, kms_key_id):  # type: ignore[no-untyped-def]
    from moto.ec2.models.elastic_block_store import Snapshot as MotoSnapshot
    from moto.ec2.utils import random_snapshot_id

    from .sharing import _shared_with

    for snapshot in _shared_with(self.account_id, source_region, set()):
        if snapshot.id == source_snapshot_id:
            copy = MotoSnapshot(self, random_snapshot_id(), volume=snapshot.volume, description=description,
                                encrypted=snapshot.encrypted, kms_key_id=kms_key_id)
            # A copy from another account takes time, as one from another region.
            copy.status = "pending"
            copy.copy_completes_at = copy.start_time + datetime.timedelta(minutes=COPY_MINUTES)
            copy.copied_from = source_snapshot_id
            record_copy(copy)
            self.snapshots[copy.id] = copy
            return copy
    return original(EBSBackend, "copy_snapshot")(self, source_snapshot_id, source_region, description, kms_key_id)


def _copy_snapshot_honouring_encrypted(self):  # type: ignore[no-untyped-def]
    before = set(self.ec2_backend.snapshots)
    result = original(ElasticBlockStore, "copy_snapshot")(self)
    encrypted = str(self._get_param("Encrypted", "false")).lower() == "true"
    source_region = self._get_param("SourceRegion")
    for snapshot_id in set(self.ec2_backend.snapshots) - before:
        snapshot = self.ec2_backend.snapshots[snapshot_id]
        snapshot.copied_from = self._get_param("SourceSnapshotId")
        _copied_snapshot_ids.add(snapshot_id)
        record_copy(snapshot)
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


def _snapshot_volume_id(self):  # type: ignore[no-untyped-def]
    if getattr(self, "copy_completes_at", None) is not None:
        return _PLACEHOLDER_VOLUME
    return self.volume.id
