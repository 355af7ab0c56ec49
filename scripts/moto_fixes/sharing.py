"""Sharing with another account, which moto keeps apart but does not let
through (a vault account is the same template in a second account; moto
acts as the account of assumed-role credentials), and DescribeSnapshots'
pages, which moto ignores:

- DescribeSnapshots with ``RestorableByUserIds`` (or ``OwnerIds`` naming
  another account) lists the other accounts' snapshots of the region whose
  ``createVolumePermission`` names the caller, and of the caller's own only
  those the accounts named may restore, as EC2 does; moto ignores both
  parameters and lists the caller's own.
- DescribeSnapshots honours ``MaxResults`` and ``NextToken`` (an offset into
  the filtered list), as EC2 pages at up to 1,000. Without it a large
  account comes back in one response, which is neither what the functions'
  paginators meet on AWS nor a fair measure of their memory.
"""

from moto.core.responses import ActionResult

from .common import _created_backends
from .copies import _settle_copies


def _shared_with(account_id, region, owners):  # type: ignore[no-untyped-def]
    for owner, backend in _created_backends(region):
        if owner == account_id or (owners and owner not in owners):
            continue
        _settle_copies(backend)
        for snapshot in backend.snapshots.values():
            if account_id in snapshot.create_volume_permission_userids \
                    or "all" in snapshot.create_volume_permission_groups:
                yield snapshot


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
