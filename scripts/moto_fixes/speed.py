"""For speed, not behaviour (the results are the same):

- Rendering a resource's tags scans every tag in the region (moto's
  ``describe_tags`` with a resource-id filter), so describing N snapshots
  costs O(N x all tags). It reads the resource's own tags instead. Without
  it a year of the demo, or an account with thousands of snapshots, spends
  its time in that loop.
- Each request lists moto's package directory (about 150 stat calls) to
  find its service; the list never changes while the server runs, so it is
  read once.
- A filter's values are matched as shell patterns, one ``fnmatch`` per value
  per resource: a 200-value ``volume-id`` filter over 100,000 snapshots is
  20 million calls, 9-10 s a page, so the report's batch describes passed
  the SDK's 20 s attempt timeout. Values without a pattern character
  (``*``, ``?``, ``[``) are compared as a set.
"""

import moto.backends
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_MOTO_MODULES = tuple(moto.backends.list_of_moto_modules())


def _list_of_moto_modules():  # type: ignore[no-untyped-def]
    return _MOTO_MODULES


def _own_tags(self):  # type: ignore[no-untyped-def]
    if not self.id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    return [
        {"resource_id": self.id, "key": key, "value": value, "resource_type": kind}
        for key, value in self.ec2_backend.tags.get(self.id, {}).items()
    ]


def _generic_filter_literal_sets(filters, objects):  # type: ignore[no-untyped-def]
    from moto.ec2.utils import is_filter_matching

    for name, values in (filters or {}).items():
        literal = isinstance(values, list) and all(
            isinstance(v, str) and not any(c in v for c in "*?[") for v in values
        )
        if not literal:
            objects = [obj for obj in objects if is_filter_matching(obj, name, values)]
            continue
        wanted = frozenset(values)

        def matches(obj, name=name, values=values, wanted=wanted):  # type: ignore[no-untyped-def]
            value = obj.get_filter_value(name)
            if isinstance(value, str):
                return value in wanted
            return is_filter_matching(obj, name, values)

        objects = [obj for obj in objects if matches(obj)]
    return objects
