"""What moto's EC2 does differently from EC2, fixed where this project relies
on it, each fix matching what EC2 documents (docs/development.md, "The
emulator"). One module per theme:

- ``copies``: copies as EC2 makes them (the volume's key, ``Encrypted``,
  cross-region and cross-account copies pending for 30 minutes, the
  placeholder VolumeId, copies of snapshots shared with the caller);
- ``sharing``: DescribeSnapshots across accounts (``RestorableByUserIds``,
  ``OwnerIds``) and its pages;
- ``locks``: snapshot locks, which moto lacks;
- ``images``: an AMI backed by the snapshot RegisterImage names;
- ``blocks``: synthetic block maps, so the EBS direct APIs read EC2
  snapshots;
- ``restores``: block data for GetSnapshotBlock, volumes made from
  encrypted snapshots under their key, and the drills' test hooks;
- ``tiers``: the archive tier as EC2 documents it;
- ``missing``: a call moto lacks, answered as EC2 does by default, and a
  parameter it ignores (CreateSnapshots' ``ExcludeDataVolumeIds``);
- ``speed``: three for speed, not behaviour.

Every patch is in the one table below, each method of moto once: where two
themes change one method (CreateSnapshot: the volume's key and the block
map; DescribeSnapshots: copies and archivals settling; CopySnapshot:
archived sources refused, then ``Encrypted`` honoured) one function here
does both, in that order. The originals are kept in ``common.ORIGINAL``.

Imported (through scripts/moto_ebs_fixes.py) by scripts/moto_server.py (the
integration tests' server), scripts/moto_sim_clock.py (make demo's) and
scripts/demo.py. Everything else is moto as released (moto[server] pinned in
requirements-dev.txt).
"""

import moto.backends
import moto.ec2.models.elastic_block_store
import moto.ec2.utils
from moto.ebs.responses import EBSResponse
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot, Volume
from moto.ec2.responses import EC2Response
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from . import blocks, copies, images, locks, missing, restores, sharing, speed, tiers
from .common import ORIGINAL, original


def _create_snapshot(self, volume_id, *args, **kwargs):  # type: ignore[no-untyped-def]
    """CreateSnapshot: the volume's key (copies), then the block map (blocks)."""
    snapshot = original(EBSBackend, "create_snapshot")(self, volume_id, *args, **kwargs)
    copies._give_volume_key(snapshot)
    blocks._record_lineage(snapshot)
    return snapshot


def _describe_snapshots(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    """DescribeSnapshots (the backend's): archivals (tiers), then copies
    (copies) settle by moto's clock first."""
    tiers._settle_archivals(self)
    copies._settle_copies(self)
    return original(EBSBackend, "describe_snapshots")(self, *args, **kwargs)


def _copy_snapshot(self):  # type: ignore[no-untyped-def]
    """CopySnapshot (the response): an archived source refused (tiers), then
    ``Encrypted`` and the copy's pending time honoured (copies)."""
    tiers._refuse_archived_source(self)
    return copies._copy_snapshot_honouring_encrypted(self)


# (owner, attribute, replacement): each (owner, attribute) once.
PATCHES = [
    # copies
    (EBSBackend, "create_snapshot", _create_snapshot),
    (EBSBackend, "copy_snapshot", copies._copy_snapshot_shared_with_me),
    (ElasticBlockStore, "copy_snapshot", _copy_snapshot),
    (EBSBackend, "describe_snapshots", _describe_snapshots),
    (Snapshot, "volume_id", property(copies._snapshot_volume_id)),
    # sharing
    (ElasticBlockStore, "describe_snapshots", sharing._describe_snapshots_paged),
    # locks
    (EC2Response, "describe_locked_snapshots", locks._describe_locked_snapshots),
    (EC2Response, "lock_snapshot", locks._lock_snapshot),
    (EC2Response, "unlock_snapshot", locks._unlock_snapshot),
    (EBSBackend, "delete_snapshot", locks._delete_snapshot_unless_locked),
    # images
    (AmisResponse, "register_image", images._register_image_backed_by_its_snapshot),
    # blocks
    (EBSResponse, "list_snapshot_blocks", blocks._list_snapshot_blocks_synthetic),
    (EBSResponse, "list_changed_blocks", blocks._list_changed_blocks_synthetic),
    (Snapshot, "full_snapshot_size_in_bytes", property(blocks._full_size)),
    # restores
    (EBSResponse, "get_snapshot_block", restores._get_snapshot_block_synthetic),
    (EBSBackend, "create_volume", restores._create_volume_as_ec2),
    (Volume, "status", property(restores._volume_status)),
    # tiers
    (EBSBackend, "modify_snapshot_tier", tiers._modify_snapshot_tier_as_ec2),
    (EBSBackend, "describe_snapshot_tier_status", tiers._describe_snapshot_tier_status_settling),
    (ElasticBlockStore, "describe_snapshot_tier_status", tiers._describe_snapshot_tier_status_paged),
    (ElasticBlockStore, "modify_snapshot_attribute", tiers._modify_snapshot_attribute_unless_archived),
    (Snapshot, "get_filter_value", tiers._snapshot_filter_value_tiering),
    # missing
    (EC2Response, "get_snapshot_block_public_access_state", missing._get_snapshot_block_public_access_state),
    (EBSBackend, "create_snapshots", missing._create_snapshots_excluding),
    # speed
    (TaggedEC2Resource, "get_tags", speed._own_tags),
    (moto.ec2.utils, "generic_filter", speed._generic_filter_literal_sets),
    (moto.ec2.models.elastic_block_store, "generic_filter", speed._generic_filter_literal_sets),
    (moto.backends, "list_of_moto_modules", speed._list_of_moto_modules),
]


def _install():  # type: ignore[no-untyped-def]
    if ORIGINAL:
        return  # imported twice (as a script's module and a package): once
    seen = set()
    for owner, name, replacement in PATCHES:
        assert (owner, name) not in seen, f"{owner}.{name} is patched twice"
        seen.add((owner, name))
        ORIGINAL[(owner, name)] = getattr(owner, name, None)
        setattr(owner, name, replacement)


_install()
