"""An EC2 call moto lacks (it answers with an error, which the SDK retries),
answered as EC2 answers an account that never used the feature:
GetSnapshotBlockPublicAccessState is ``unblocked``, EC2's default.
"""

from moto.core.responses import ActionResult


def _get_snapshot_block_public_access_state(self):  # type: ignore[no-untyped-def]
    return ActionResult({"State": "unblocked"})
