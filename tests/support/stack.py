"""The stack's stateful resources, created in moto the way `template.yaml` declares them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from closedloop.settings import Settings

REGION = "eu-west-1"
ACCOUNT = "123456789012"


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    clients: dict[str, object] = field(default_factory=dict)

    @property
    def data_bucket(self) -> str:
        return self.settings.data_bucket


def stack_env(engine: str = "processing") -> dict[str, str]:
    """The environment the template gives every function (Globals.Function.Environment)."""
    return {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "CLOSEDLOOP_ACCOUNT_ID": ACCOUNT,
        "STAGE": "dev",
        "BUILD_ACCOUNT_ID": "",
        "PROMOTE_FROM_ACCOUNT_ID": "",
        "STAGE_ACCOUNT_IDS": "",
        "POWERTOOLS_METRICS_NAMESPACE": "closedloop",
        "POWERTOOLS_SERVICE_NAME": "closedloop-test",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "CLOSEDLOOP_STACK_NAME": "closedloop-test",
        "DATA_BUCKET": "closedloop-test-data",
        "QUARANTINE_BUCKET": "closedloop-test-quarantine",
        "ARTIFACTS_BUCKET": "closedloop-test-artifacts",
        "LEDGER_TABLE": "closedloop-test-ledger",
        "IDEMPOTENCY_TABLE": "closedloop-test-idempotency",
        "NOTIFICATION_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:closedloop-test-notifications",
        "RAW_PREFIX": "raw/",
        "DATA_PREP_ENGINE": engine,
        "PREP_JOB_PREFIX": "closedloop-prep",
        "GLUE_JOB_NAME": "closedloop-prep" if engine in ("glue", "auto") else "",
        "GLUE_SPARK_JOB_NAME": "closedloop-prep-spark" if engine in ("glue-spark", "auto") else "",
        "PREP_SPARK_THRESHOLD_BYTES": "1073741824",
        "PROCESSING_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-DataPrepRole",
        "PROCESSING_IMAGE_URI": f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
        "PROCESSING_INSTANCE_TYPE": "ml.m5.large",
        "PSEUDONYMISATION_SECRET_ARN": "closedloop-test-pseudonymisation-key",
        "PIPELINE_NAME": "closedloop-training",
        "RESOURCE_PREFIX": "closedloop",
        "MODEL_LINES": "loans,churn",
        "MODEL_PACKAGE_GROUP": "closedloop-loans",
        "PIPELINE_MAX_RUNTIME_SECONDS": "14400",
        "APPROVAL_MODE": "auto",
        "APPROVERS": f"arn:aws:iam::{ACCOUNT}:role/ComplianceOfficer",
        "MIN_AUC": "0.75",
        "MIN_F1": "0.6",
        "MIN_ACCURACY": "0.7",
        "CHAMPION_TOLERANCE": "0.01",
        "MIN_DISPARATE_IMPACT": "0.8",
        "MAX_ABS_DPPL": "0.1",
        "ENDPOINT_NAME": "closedloop-loans",
        "MODEL_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-ModelExecutionRole",
        "CAPTURE_BUCKET": "closedloop-test-capture",
        "CAPTURE_SAMPLING_PERCENT": "100",
        "ENDPOINT_INSTANCE_TYPE": "ml.m5.large",
        "ENDPOINT_INSTANCE_COUNT": "2",
        "TRAFFIC_ROUTING": "CANARY",
        "CANARY_SIZE_PERCENT": "10",
        "LINEAR_STEP_PERCENT": "25",
        "TRAFFIC_WAIT_SECONDS": "300",
        "TERMINATION_WAIT_SECONDS": "600",
        "MAX_EXECUTION_TIMEOUT_SECONDS": "3600",
        "ALARM_PREFIX": "closedloop-loans-",  # as the loans line binds it (closedloop.line.bind_line)
        "EXTRA_ALARM_NAMES": "",
        # the loans line's, as bind_line sets them for a service driven directly
        "RETRAINING_ALARM_NAMES": ",".join(
            f"closedloop-loans-drift-{k}" for k in ("features", "predictions", "bias", "attributions")
        ),
        "MAX_ALARM_AGE_SECONDS": "3600",
        "RETRAIN_COOLDOWN_SECONDS": "21600",
        "DRIFT_METRICS_NAMESPACE": "closedloop/Drift",
        "DRIFT_MIN_RECORDS": "500",
        "DRIFT_CAPTURE_SETTLE_SECONDS": "300",
        "DRIFT_PSI_THRESHOLD": "0.2",
        "DRIFT_KS_THRESHOLD": "0.15",
        "BIAS_DRIFT_THRESHOLD": "0.1",
        "ATTRIBUTION_NDCG_THRESHOLD": "0.9",
    }


def create_ledger_table(ddb: Any, name: str) -> None:
    """The ledger table as the template declares it (keys and the `by_day` index)."""
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in ("pk", "sk", "gsi1pk", "gsi1sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_day",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def provision(env: dict[str, str]) -> Stack:
    """Create buckets, tables, topic, secret (and the Glue job) inside an active moto mock."""
    settings = Settings.from_environ(env)
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (
        settings.data_bucket,
        settings.quarantine_bucket,
        settings.artifacts_bucket,
        settings.capture_bucket,
    ):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_ledger_table(ddb, settings.ledger_table)
    ddb.create_table(
        TableName=settings.idempotency_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    boto3.client("sns", region_name=REGION).create_topic(Name="closedloop-test-notifications")
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=settings.pseudonymisation_secret_arn, SecretString=secrets.token_hex(32)
    )
    create_feature_groups(settings)
    if settings.glue_job_name:
        boto3.client("glue", region_name=REGION).create_job(
            Name=settings.glue_job_name,
            Role=settings.processing_role_arn,
            Command={"Name": "pythonshell", "ScriptLocation": "s3://closedloop-test-artifacts/prepare.py"},
        )
    if settings.glue_spark_job_name:
        boto3.client("glue", region_name=REGION).create_job(
            Name=settings.glue_spark_job_name,
            Role=settings.processing_role_arn,
            Command={"Name": "glueetl", "ScriptLocation": "s3://closedloop-test-artifacts/spark_prepare.py"},
            GlueVersion="5.0",
        )
    return Stack(env=env, settings=settings)


def notification_inbox(settings: Settings, queue_name: str) -> Callable[[], list[dict[str, Any]]]:
    """Subscribe a new SQS queue to the stack's topic; the function returned reads what was published."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns", region_name=REGION).subscribe(
        TopicArn=settings.notification_topic_arn, Protocol="sqs", Endpoint=arn
    )

    def read() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    return read


def create_feature_groups(settings: Settings) -> list[str]:
    """Each served line's feature group (`feature_store.enabled`), as the template declares it."""
    from closedloop.featurestore import build_create_feature_group_request
    from closedloop.line import LineResources, load_line

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    created = []
    for name in settings.model_lines:
        line = load_line(name)
        if not line.feature_store.enabled:
            continue
        group = LineResources.of("closedloop", settings.raw_prefix, name).feature_group
        sagemaker.create_feature_group(
            **build_create_feature_group_request(
                line.feature_store,
                line.dataset_policy(),
                name=group,
                offline_s3_uri=f"s3://{settings.data_bucket}/feature-store",
                role_arn=f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-FeatureStoreRole",
            )
        )
        created.append(group)
    return created
