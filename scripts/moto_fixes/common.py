"""What the themes share: the methods as moto released them, EC2's error, the
accounts' backends of a region, and the copies made (which have no block map)."""

ORIGINAL = {}  # (owner, attribute) -> the attribute as moto released it


def original(owner, name):  # type: ignore[no-untyped-def]
    """The attribute ``name`` of ``owner`` as moto released it (the patches
    table of ``moto_fixes`` replaces each once and keeps the original here)."""
    return ORIGINAL[(owner, name)]


# Snapshots CopySnapshot made: the EBS direct APIs have no block map of them.
_copied_snapshot_ids = set()


def _client_error(code, message):  # type: ignore[no-untyped-def]
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def _created_backends(region):  # type: ignore[no-untyped-def]
    """Every account's EC2 backend of `region` that exists, without creating any."""
    from moto.ec2.models import ec2_backends

    for account_id in list(dict.keys(ec2_backends)):
        regions = dict.get(ec2_backends, account_id)
        backend = dict.get(regions, region) if regions is not None else None
        if backend is not None:
            yield account_id, backend
