"""template.yaml as CloudFormation receives it after the SAM transform, on
stdout as JSON, offline (no AWS call): what the tests check of the resources
SAM generates (the functions' resource policies, the schedules' roles), and
the base of the organisation template (scripts/org_template.py).

    sam_transform.py

The functions' CodeUri (a local path that `sam build` replaces) is given a
placeholder S3 URI, which the transform requires; org_template.py replaces
it with the organisation's artifact buckets.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lambda_emulator import REGION, template  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402


class _NoManagedPolicies:
    """The template names no AWS managed policy, so none is looked up."""

    def load(self) -> dict:
        return {}


def transformed() -> dict:
    """The SAM template, transformed to plain CloudFormation."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    document = template()
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://placeholder/function.zip"
    return transform(document, {}, _NoManagedPolicies())


if __name__ == "__main__":
    json.dump(transformed(), sys.stdout)
