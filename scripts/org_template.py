"""make org-template: the stack as CloudFormation StackSets can deploy it to
every account of an organisation (StackSets refuse templates with the SAM
transform), and the template of the artifact buckets the member accounts
read the function code from.

    org_template.py OUT_DIR

Writes OUT_DIR/org-template.json: template.yaml after the SAM transform
(scripts/sam_transform.py, offline), each function's code read from
`<ArtifactBucketPrefix>-<region>` at `<ArtifactKeyPrefix><Function>.zip`
(the zips `make package` makes, one bucket per region: Lambda reads code
only from a bucket in its own region). And OUT_DIR/org-artifact-buckets.yaml:
one such bucket, for the management (or delegated administrator) account,
readable by every principal of the organisation (`aws:PrincipalOrgID`) and
nobody else, TLS only. See docs/operations.md, "Every account of an
organisation".
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam_transform import transformed  # noqa: E402

BUCKETS = """AWSTemplateFormatVersion: "2010-09-09"
Description: >
  Artifact bucket of the EBS snapshot lifecycle stack for one region, read by
  every account of the organisation (deploy once per region the stack set covers).
Parameters:
  ArtifactBucketPrefix:
    Type: String
    AllowedPattern: "^[a-z0-9][a-z0-9.-]{1,40}$"
    Description: The bucket is named <prefix>-<region>.
  OrganizationId:
    Type: String
    AllowedPattern: "^o-[a-z0-9]{10,32}$"
    Description: The organisation whose accounts may read the function code.
Resources:
  ArtifactBucket:
    Type: AWS::S3::Bucket
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_18
            comment: Holds build artifacts only; CloudTrail data events log reads if wanted.
    Properties:
      BucketName: !Sub "${ArtifactBucketPrefix}-${AWS::Region}"
      VersioningConfiguration:
        Status: Enabled
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault:
              SSEAlgorithm: AES256
  ArtifactBucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref ArtifactBucket
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: OrganisationReadsTheCode
            Effect: Allow
            Principal: "*"
            Action: s3:GetObject
            Resource: !Sub "${ArtifactBucket.Arn}/*"
            Condition:
              StringEquals:
                "aws:PrincipalOrgID": !Ref OrganizationId
          - Sid: TlsOnly
            Effect: Deny
            Principal: "*"
            Action: "s3:*"
            Resource:
              - !GetAtt ArtifactBucket.Arn
              - !Sub "${ArtifactBucket.Arn}/*"
            Condition:
              Bool:
                "aws:SecureTransport": "false"
Outputs:
  ArtifactBucketName:
    Value: !Ref ArtifactBucket
"""


def org_template() -> dict:
    document = transformed()
    document["Parameters"]["ArtifactBucketPrefix"] = {
        "Type": "String",
        "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,40}$",
        "Description": "The function code is read from <prefix>-<region> (org-artifact-buckets.yaml).",
    }
    document["Parameters"]["ArtifactKeyPrefix"] = {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^[A-Za-z0-9!_.*'()/-]{0,200}$",
        "Description": "Key prefix of the zips in the bucket, e.g. ebs-lifecycle/1.2.0/",
    }
    for name, resource in document["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            resource["Properties"]["Code"] = {
                "S3Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
                "S3Key": {"Fn::Sub": "${ArtifactKeyPrefix}" + name + ".zip"},
            }
    return document


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "org-template.json"), "w") as f:
        json.dump(org_template(), f, indent=1, sort_keys=True)
    with open(os.path.join(out, "org-artifact-buckets.yaml"), "w") as f:
        f.write(BUCKETS)
    print(f"wrote {out}/org-template.json and {out}/org-artifact-buckets.yaml")
