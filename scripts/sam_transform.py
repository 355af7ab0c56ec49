"""template.yaml as CloudFormation receives it after the SAM transform, on
stdout as JSON, offline (no AWS call): what the tests check of the resources
SAM generates (the functions' resource policies, the schedules' roles).

    sam_transform.py

The functions' CodeUri (a local path that `sam build` replaces) is given a
placeholder S3 URI, which the transform requires and nothing checks.
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


os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
document = template()
for resource in document["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = "s3://placeholder/function.zip"
json.dump(transform(document, {}, _NoManagedPolicies()), sys.stdout)
