"""How long moto (with scripts/moto_ebs_fixes.py) takes to answer one page of
the DescribeSnapshots calls the functions make, at a given account size.

In-process (moto's mock, no HTTP): VOLUMES volumes with ten managed snapshots
each, then one 1,000-snapshot page of each call, timed.

    .venv/bin/python scripts/bench_moto_describe.py 10000
    .venv/bin/python scripts/bench_moto_describe.py 10000 --moto-filters

``--moto-filters``: moto's own filter matching (one ``fnmatch`` per value
per snapshot) instead of the fix's, for the comparison in README.md.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

import moto.ec2.models.elastic_block_store  # noqa: E402
import moto.ec2.utils  # noqa: E402

_MOTO_GENERIC_FILTER = moto.ec2.utils.generic_filter

import moto_ebs_fixes  # noqa: E402,F401  (applies the fixes on import)
import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    volumes = int(args[0]) if args else 10000
    if "--moto-filters" in sys.argv:
        moto.ec2.utils.generic_filter = _MOTO_GENERIC_FILTER
        moto.ec2.models.elastic_block_store.generic_filter = _MOTO_GENERIC_FILTER
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench")
        backend = ec2_backends[ACCOUNT][REGION]
        began = time.monotonic()
        ids = []
        for _ in range(volumes):
            volume = backend.create_volume(size=8, zone_name=f"{REGION}a", encrypted=True)
            backend.create_tags([volume.id], {"Backup": "scale"})
            ids.append(volume.id)
        for day in range(1, 11):
            for volume in ids:
                snapshot = backend.create_snapshot(volume, f"bench {volume} day {day}")
                backend.create_tags([snapshot.id], {
                    "lifecycle:managed-by": "bench", "lifecycle:policy": "scale",
                    "lifecycle:slot": f"2026-02-{day:02d}T00:00:00Z", "lifecycle:state": "completed",
                    "lifecycle:volume-id": volume})
        print(f"{volumes} volumes, {volumes * 10} snapshots seeded in {time.monotonic() - began:.1f} s")
        calls = {
            "tag:lifecycle:managed-by (the listing at the start)":
                [{"Name": "tag:lifecycle:managed-by", "Values": ["bench"]}],
            "volume-id, 200 values (a batch's anyone's)":
                [{"Name": "volume-id", "Values": ids[:200]}],
            "tag:lifecycle:managed-by and tag:lifecycle:volume-id, 200 values (a batch's own)":
                [{"Name": "tag:lifecycle:managed-by", "Values": ["bench"]},
                 {"Name": "tag:lifecycle:volume-id", "Values": ids[:200]}],
        }
        for name, filters in calls.items():
            began = time.monotonic()
            page = ec2.describe_snapshots(OwnerIds=["self"], MaxResults=1000, Filters=filters)
            print(f"{time.monotonic() - began:6.2f} s  {len(page['Snapshots'])} snapshots  {name}")


if __name__ == "__main__":
    main()
