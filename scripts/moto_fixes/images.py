"""RegisterImage with a snapshot in its block device mappings makes an AMI
backed by that snapshot (moto ignores the mappings and invents a snapshot
of its own), so DescribeImages names it and DeleteSnapshot refuses it with
``InvalidSnapshot.InUse``, as EC2 does. Expiry's AMI protection is shown
against that.
"""

import re

from moto.ec2.responses.amis import AmisResponse

from .common import original

_ROOT_SNAPSHOT = re.compile(r"^BlockDeviceMapping\.(\d+)\.Ebs\.SnapshotId$")


def _register_image_backed_by_its_snapshot(self):  # type: ignore[no-untyped-def]
    before = set(self.ec2_backend.amis)
    result = original(AmisResponse, "register_image")(self)
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
