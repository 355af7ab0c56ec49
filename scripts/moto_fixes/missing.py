"""What moto lacks, answered as EC2 does: a call (it answers with an error,
which the SDK retries) answered as for an account that never used the
feature (GetSnapshotBlockPublicAccessState is ``unblocked``, EC2's default),
and a parameter moto ignores (CreateSnapshots' ``ExcludeDataVolumeIds``).
"""

from moto.core.responses import ActionResult


def _get_snapshot_block_public_access_state(self):  # type: ignore[no-untyped-def]
    return ActionResult({"State": "unblocked"})


def _create_snapshots_excluding(self, instance_spec, description, tags):  # type: ignore[no-untyped-def]
    """CreateSnapshots honouring ``ExcludeDataVolumeIds`` (moto snapshots
    every data volume whatever it says). As EC2 documents: the data
    volumes listed are left out of the set, the root volume cannot be
    listed there (``ExcludeBootVolume`` leaves it out), and an id that is
    not a data volume of the instance is refused."""
    from moto.ec2.exceptions import InvalidParameterValueError

    instance = self.get_instance(instance_spec["InstanceId"])
    mappings = list(instance.get_block_device_mapping)
    excluded = instance_spec.get("ExcludeDataVolumeIds") or []
    if isinstance(excluded, dict):  # query-protocol shapes moto may hand over
        excluded = list(excluded.values())
    excluded = set(excluded)
    data = {m.volume_id for device, m in mappings if device != instance.root_device_name}
    for volume_id in excluded:
        if volume_id not in data:
            raise InvalidParameterValueError(volume_id)
    skip_root = str(instance_spec.get("ExcludeBootVolume", False)).lower() == "true"
    snapshots = []
    for device, m in mappings:
        if (device == instance.root_device_name and skip_root) or m.volume_id in excluded:
            continue
        snapshots.append(self.create_snapshot(m.volume_id, description=description))
    for snapshot in snapshots:
        snapshot.add_tags(tags)
    return snapshots
