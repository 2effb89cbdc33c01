"""What a line's feature group holds, for reports: counted from its offline store, never its values.

`offline_store_counts` lists the group's offline store (Parquet under `ResolvedOutputS3Uri`, as
Feature Store writes it) and counts its records: every record written, the delete markers among
them, and the distinct record identifiers whose latest record is not deleted. Listing the store
is also what makes the local emulator deliver what was put before (`closedloop_ops.moto_ext.
featurestore`), so the count includes every record the preparation ingested.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from closedloop.featurestore import build_create_feature_group_request
from closedloop.line import LineResources, load_line

OFFLINE_STORE_PREFIX = "feature-store"
ROLE_LOGICAL_ID = "FeatureStoreRole"


def feature_group_resource(line: str, condition: str | None = None, spec: Any = None) -> dict[str, Any]:
    """The line's `AWS::SageMaker::FeatureGroup` in template.yaml (CloudFormation intrinsics as JSON).

    The properties are `closedloop.featurestore.build_create_feature_group_request`'s, with the
    stack's prefix, its data bucket (`s3://<DataBucket>/feature-store`) and `FeatureStoreRole`.
    """
    spec = spec if spec is not None else load_line(line)
    request = build_create_feature_group_request(
        spec.feature_store, spec, name="NAME", offline_s3_uri="URI", role_arn="ROLE"
    )
    request["FeatureGroupName"] = {"Fn::Sub": f"${{ResourcePrefix}}-{line}"}
    request["OfflineStoreConfig"]["S3StorageConfig"]["S3Uri"] = {
        "Fn::Sub": f"s3://${{DataBucket}}/{OFFLINE_STORE_PREFIX}"
    }
    request["RoleArn"] = {"Fn::GetAtt": [ROLE_LOGICAL_ID, "Arn"]}
    resource: dict[str, Any] = {
        "Type": "AWS::SageMaker::FeatureGroup",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": request,
    }
    if condition:
        resource = {"Condition": condition, **resource}
    return resource


def feature_store_role() -> dict[str, Any]:
    """`FeatureStoreRole`: what Feature Store needs to write the offline store under the data bucket."""
    account_arn = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}"
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            },
            "Policies": [
                {
                    "PolicyName": "offline-store",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "WriteOfflineStore",
                                "Effect": "Allow",
                                "Action": ["s3:PutObject", "s3:GetObject"],
                                "Resource": {"Fn::Sub": f"${{DataBucket.Arn}}/{OFFLINE_STORE_PREFIX}/*"},
                            },
                            {
                                "Sid": "CheckTheBucket",
                                "Effect": "Allow",
                                "Action": "s3:GetBucketAcl",
                                "Resource": {"Fn::GetAtt": ["DataBucket", "Arn"]},
                            },
                            {
                                "Sid": "GlueTable",
                                "Effect": "Allow",
                                "Action": [
                                    "glue:GetDatabase",
                                    "glue:CreateDatabase",
                                    "glue:GetTable",
                                    "glue:CreateTable",
                                    "glue:UpdateTable",
                                ],
                                "Resource": [
                                    {"Fn::Sub": f"{account_arn}:catalog"},
                                    {"Fn::Sub": f"{account_arn}:database/sagemaker_featurestore"},
                                    {"Fn::Sub": f"{account_arn}:table/sagemaker_featurestore/*"},
                                ],
                            },
                        ],
                    },
                }
            ],
        },
    }


class FeatureGroupMissingError(LookupError):
    """The line has no feature group in this stack."""


def offline_store_counts(sagemaker: Any, s3: Any, feature_group: str) -> dict[str, Any]:
    """Counts of the group's offline store: `records`, `deleted_markers`, `live_identifiers`, `files`.

    Raises:
        FeatureGroupMissingError: no feature group of that name (or it has no offline store).
    """
    import pyarrow.parquet as pq

    try:
        described = sagemaker.describe_feature_group(FeatureGroupName=feature_group)
    except sagemaker.exceptions.ResourceNotFound:
        raise FeatureGroupMissingError(f"no feature group {feature_group}") from None
    storage = (described.get("OfflineStoreConfig") or {}).get("S3StorageConfig") or {}
    resolved = storage.get("ResolvedOutputS3Uri")
    if not resolved:
        raise FeatureGroupMissingError(f"feature group {feature_group} has no offline store")
    record_id = described["RecordIdentifierFeatureName"]
    event_time = described["EventTimeFeatureName"]
    bucket, _, prefix = resolved.removeprefix("s3://").partition("/")
    latest: dict[str, tuple[float, bool]] = {}
    records = deleted = files = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".parquet"):
                continue
            files += 1
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body), columns=[record_id, event_time, "is_deleted"])
            for row in table.to_pylist():
                records += 1
                deleted += bool(row["is_deleted"])
                key, when = str(row[record_id]), _seconds(row[event_time])
                if key not in latest or when >= latest[key][0]:
                    latest[key] = (when, bool(row["is_deleted"]))
    return {
        "feature_group": feature_group,
        "records": records,
        "deleted_markers": deleted,
        "live_identifiers": sum(1 for _, gone in latest.values() if not gone),
        "files": files,
    }


def _seconds(value: Any) -> float:
    """An event time (ISO-8601 UTC text or seconds since the epoch) as seconds."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def ingested_record_count(stack: Any, line: str) -> int | None:
    """The records ever written to a line's feature group on a local stack (None: the line has none).

    `stack` is a `closedloop_ops.local.provision.LocalStack`; the group is named as the line's
    other resources are (`LineResources.feature_group`, with the stack's `ResourcePrefix`).
    """
    prefix = stack.parameters.get("ResourcePrefix", "closedloop")
    group = LineResources.of(prefix, "raw/", line).feature_group
    try:
        counts = offline_store_counts(stack.client("sagemaker"), stack.client("s3"), group)
    except FeatureGroupMissingError:
        return None
    return int(counts["records"] - counts["deleted_markers"])
