"""The archive tier as EC2 documents it. moto moves a snapshot to the archive
tier at once and checks nothing. Here ModifySnapshotTier starts an archival
that is ``archival-in-progress`` (StorageTier still ``standard``) for
``ARCHIVE_HOURS`` hours of moto's clock, then ``archival-completed``
(StorageTier ``archive``, ArchivalCompleteTime the end), or
``archival-failed`` if the snapshot carries the tag ``moto:archive-fails``
(a test's way to see a failure). It is refused (codes as EC2 names them
where documented, else an assumption: ``ResourceLimitExceeded`` for the
quotas) for a snapshot not ``completed`` or already archived or archiving
(IncorrectState), behind a registered AMI (InvalidSnapshot.InUse), when
its volume has 25 snapshots archived or archiving, or the account 25
archivals in progress (ResourceLimitExceeded). An archived snapshot
cannot be copied or shared (IncorrectState) nor read by the EBS direct
APIs (ValidationException). The 90-day minimum is billing, which moto
does not do; the functions compute it.
"""

import datetime

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from .common import _client_error, _created_backends, original

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


def _describe_snapshot_tier_status_settling(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _settle_archivals(self)
    return original(EBSBackend, "describe_snapshot_tier_status")(self, *args, **kwargs)


def _refuse_archived(backend, snapshot_id, what):  # type: ignore[no-untyped-def]
    _settle_archivals(backend)
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is not None and snapshot.storage_tier == "archive":
        raise _client_error("IncorrectState", f"The snapshot {snapshot_id} is archived and cannot be {what}")


def _refuse_archived_source(self):  # type: ignore[no-untyped-def]
    """CopySnapshot of an archived snapshot is refused, wherever it is."""
    source_region = self._get_param("SourceRegion") or self.ec2_backend.region_name
    for _, backend in _created_backends(source_region):
        _refuse_archived(backend, self._get_param("SourceSnapshotId"), "copied")


def _modify_snapshot_attribute_unless_archived(self):  # type: ignore[no-untyped-def]
    if self._get_param("OperationType") == "add":
        _refuse_archived(self.ec2_backend, self._get_param("SnapshotId"), "shared")
    return original(ElasticBlockStore, "modify_snapshot_attribute")(self)


def _snapshot_filter_value_tiering(self, filter_name, method_name=None):  # type: ignore[no-untyped-def]
    if filter_name == "last-tiering-operation":
        return self.last_tiering_operation_status
    return original(Snapshot, "get_filter_value")(self, filter_name, method_name)


def _describe_snapshot_tier_status_paged(self):  # type: ignore[no-untyped-def]
    statuses = original(ElasticBlockStore, "describe_snapshot_tier_status")(self).result["SnapshotTierStatuses"]
    max_results = int(self._get_param("MaxResults") or 0)
    if not max_results:
        return ActionResult({"SnapshotTierStatuses": statuses})
    start = int(self._get_param("NextToken") or 0)
    result = {"SnapshotTierStatuses": statuses[start:start + max_results]}
    if start + max_results < len(statuses):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)
