"""What moto's EC2 does differently from EC2, fixed where this project relies on it.

Imported by scripts/moto_server.py (the integration tests' server) and by
scripts/demo.py (which runs moto in-process). Two fixes, both to match what
EC2 documents:

- A snapshot of an encrypted volume reports the volume's KMS key
  (``KmsKeyId``); moto leaves it empty. check-encryption compares keys.
- CopySnapshot with ``Encrypted=true`` and no ``KmsKeyId`` encrypts the copy
  with the region's default EBS key; moto leaves the copy unencrypted.
  check-encryption's remediation is exactly that copy.

Everything else is moto as released (moto[server] pinned in requirements-dev.txt).
"""

from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

_create_snapshot = EBSBackend.create_snapshot
_copy_snapshot = ElasticBlockStore.copy_snapshot


def _create_snapshot_with_volume_key(self, volume_id, *args, **kwargs):  # type: ignore[no-untyped-def]
    snapshot = _create_snapshot(self, volume_id, *args, **kwargs)
    if snapshot.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = snapshot.volume.kms_key_id
    return snapshot


def _copy_snapshot_honouring_encrypted(self):  # type: ignore[no-untyped-def]
    before = set(self.ec2_backend.snapshots)
    result = _copy_snapshot(self)
    if str(self._get_param("Encrypted", "false")).lower() == "true":
        for snapshot_id in set(self.ec2_backend.snapshots) - before:
            snapshot = self.ec2_backend.snapshots[snapshot_id]
            snapshot.encrypted = True
            if not snapshot.kms_key_id:
                snapshot.kms_key_id = self.ec2_backend._create_default_encryption_key()
    return result


EBSBackend.create_snapshot = _create_snapshot_with_volume_key
ElasticBlockStore.copy_snapshot = _copy_snapshot_honouring_encrypted
