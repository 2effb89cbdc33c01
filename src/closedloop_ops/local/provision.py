"""Create what `template.yaml` declares inside a moto server, the way CloudFormation would.

Every resource of the transformed template is created with the same properties (evaluated
intrinsics); Lambda functions become `LocalFunction`s that the dispatcher runs in-process, and the
EventBridge rules that target them get a per-function SQS queue as target instead (moto cannot
deliver to Lambda) — the rules keep the template's own patterns. A resource type this module does
not know is an error, so the local loop cannot silently drift from the template.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from closedloop_ops.local.intrinsics import Resolver, Unresolved, references
from closedloop_ops.local.template import Template, TemplateError

ACCOUNT = "123456789012"


@dataclass
class Created:
    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    arn: str
    code_dir: Any
    handler: str
    environment: dict[str, str]
    timeout_s: int
    role_arn: str
    invoke_queue_url: str = ""
    invoke_queue_arn: str = ""
    maximum_retry_attempts: int = 2
    on_failure_arn: str = ""
    reserved_concurrency: int | None = None


@dataclass
class EventSourceMapping:
    function: str  # logical id
    queue_arn: str
    queue_url: str
    batch_size: int
    batching_window_s: int
    report_batch_item_failures: bool


@dataclass
class LocalSchedule:
    name: str
    expression: str
    function: str  # logical id
    input: str
    arn: str = ""
    dead_letter_arn: str = ""
    maximum_retry_attempts: int = 185


@dataclass
class LocalStack:
    """What was provisioned: physical ids, local functions, their triggers."""

    endpoint_url: str
    region: str
    stack_name: str
    account: str = ACCOUNT
    # boto3 keyword arguments for the account's credentials (none: moto's default account)
    credentials: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Created] = field(default_factory=dict)
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    mappings: list[EventSourceMapping] = field(default_factory=list)
    schedules: list[LocalSchedule] = field(default_factory=list)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule name → {pattern, targets}
    outputs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    def physical(self, logical_id: str) -> str:
        return self.resources[logical_id].physical_id

    def function_by_dir(self, directory: str) -> LocalFunction:
        for function in self.functions.values():
            if function.code_dir.name == directory:
                return function
        raise KeyError(directory)

    def client(self, service: str) -> Any:
        make: Any = boto3.client  # any service by name
        return make(service, endpoint_url=self.endpoint_url, region_name=self.region, **self.credentials)


def _suffix(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:12]  # noqa: S324 - a name, not security


class Provisioner:
    """Creates a template's resources in the moto server at `endpoint_url`."""

    def __init__(
        self,
        template: Template,
        *,
        endpoint_url: str,
        region: str,
        stack_name: str,
        parameters: dict[str, str] | None = None,
        account: str = ACCOUNT,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.stack = LocalStack(
            endpoint_url=endpoint_url,
            region=region,
            stack_name=stack_name,
            account=account,
            credentials=dict(credentials or {}),
        )
        values: dict[str, Any] = {name: spec.get("Default") for name, spec in template.parameters.items()}
        values.update(parameters or {})
        for name, spec in template.parameters.items():  # a list parameter is a list to Fn::Join / Fn::Select
            if str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<")) and isinstance(values[name], str):
                values[name] = [item.strip() for item in values[name].split(",")]
        missing = sorted(name for name, value in values.items() if value is None)
        if missing:
            raise TemplateError(f"parameters without a value: {', '.join(missing)}")
        self.stack.parameters = values
        self.resolver = Resolver(
            parameters=values,
            pseudo={
                "AWS::Region": region,
                "AWS::AccountId": account,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackName": stack_name,
                "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/{_suffix(stack_name)}",
            },
            mappings=template.cfn.get("Mappings", {}),
            conditions=template.cfn.get("Conditions", {}),
            ref=self._ref,
            get_att=self._get_att,
        )
        self._creators: dict[str, Callable[[str, dict[str, Any]], Created | None]] = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::DynamoDB::Table": self._table,
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::SNS::Topic": self._topic,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::IAM::Role": self._role,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::Version": self._version,
            "AWS::Lambda::Alias": self._alias,
            "AWS::Lambda::LayerVersion": self._layer,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::Lambda::Permission": self._skip,
            "AWS::Lambda::EventInvokeConfig": self._event_invoke_config,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::Events::Rule": self._rule,
            "AWS::Glue::Job": self._glue_job,
            "AWS::SageMaker::ModelPackageGroup": self._model_package_group,
            "AWS::SageMaker::FeatureGroup": self._feature_group,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::Scheduler::Schedule": self._schedule,
            "AWS::KMS::Key": self._kms_key,
            "AWS::KMS::Alias": self._kms_alias,
            "AWS::SNS::TopicPolicy": self._skip,
            "AWS::Events::EventBusPolicy": self._event_bus_policy,
            "AWS::IAM::Policy": self._iam_policy,
            "AWS::IAM::ManagedPolicy": self._managed_policy,
        }

    # -- driver -----------------------------------------------------------------------------

    def provision(self) -> LocalStack:
        """Create every resource in dependency order; returns the local stack."""
        resources = self.template.resources
        pending = {
            logical_id: spec
            for logical_id, spec in resources.items()
            if "Condition" not in spec or self.resolver.condition(spec["Condition"])
        }
        unknown = sorted({spec["Type"] for spec in pending.values() if spec["Type"] not in self._creators})
        if unknown:
            raise TemplateError(f"the local loop cannot create resource types: {', '.join(unknown)}")
        while pending:
            progressed = False
            for logical_id in sorted(pending):
                spec = pending[logical_id]
                deps = (references(spec.get("Properties", {})) | set(_as_list(spec.get("DependsOn")))) & set(pending)
                deps.discard(logical_id)
                if deps and not all(dep in self.stack.resources for dep in deps):
                    continue
                try:
                    props = self.resolver.resolve(spec.get("Properties", {}))
                except Unresolved:
                    continue
                created = self._creators[spec["Type"]](logical_id, props)
                self.stack.resources[logical_id] = created or Created(physical_id=logical_id)
                del pending[logical_id]
                progressed = True
            if not progressed:
                raise TemplateError(f"circular or unresolvable references among: {', '.join(sorted(pending))}")
        for name, output in self.template.cfn.get("Outputs", {}).items():
            if "Condition" in output and not self.resolver.condition(output["Condition"]):
                continue
            self.stack.outputs[name] = self.resolver.resolve(output["Value"])
        return self.stack

    def _ref(self, logical_id: str) -> Any:
        created = self.stack.resources.get(logical_id)
        if created is None:
            if logical_id not in self.template.resources:
                raise TemplateError(f"Ref to unknown {logical_id}")
            raise Unresolved(logical_id)
        return created.physical_id

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        created = self.stack.resources.get(logical_id)
        if created is None:
            if logical_id not in self.template.resources:
                raise TemplateError(f"Fn::GetAtt of {logical_id}.{attribute}: the template declares no {logical_id}")
            raise Unresolved(logical_id)
        if attribute not in created.attributes:
            raise TemplateError(f"{logical_id} has no attribute {attribute} locally")
        return created.attributes[attribute]

    def _name(self, logical_id: str, max_length: int = 64, lower: bool = False) -> str:
        stem = f"{self.stack.stack_name}-{logical_id}"
        name = f"{stem[: max_length - 13]}-{_suffix(self.stack.stack_name, logical_id).upper()}"
        return name.lower() if lower else name

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.stack.region}:{self.stack.account}:{resource}"

    def _client(self, service: str) -> Any:
        return self.stack.client(service)

    # -- creators ---------------------------------------------------------------------------

    def _skip(self, logical_id: str, props: dict[str, Any]) -> Created:
        return Created(physical_id=logical_id)

    def _bucket(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("BucketName") or self._name(logical_id, 63, lower=True)
        s3 = self._client("s3")
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.stack.region})
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "BucketEncryption" in props:
            rules = [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if props.get("LoggingConfiguration", {}).get("DestinationBucketName"):
            logging_config = props["LoggingConfiguration"]
            try:
                s3.put_bucket_logging(
                    Bucket=name,
                    BucketLoggingStatus={
                        "LoggingEnabled": {
                            "TargetBucket": logging_config["DestinationBucketName"],
                            "TargetPrefix": logging_config.get("LogFilePrefix", ""),
                        }
                    },
                )
            except ClientError as exc:  # moto checks legacy log-delivery ACLs; AWS accepts a bucket policy
                if exc.response["Error"]["Code"] != "InvalidTargetBucketForLogging":
                    raise
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        return Created(
            physical_id=name, attributes={"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}
        )

    def _bucket_policy(self, logical_id: str, props: dict[str, Any]) -> Created:
        self._client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
        return Created(physical_id=logical_id)

    def _table(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("TableName") or self._name(logical_id, 255)
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        sse = props.get("SSESpecification", {})
        if sse.get("SSEEnabled"):
            request["SSESpecification"] = {"Enabled": True}
            if sse.get("KMSMasterKeyId"):
                request["SSESpecification"].update(SSEType="KMS", KMSMasterKeyId=sse["KMSMasterKeyId"])
        if request["BillingMode"] == "PROVISIONED":
            request["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        ddb = self._client("dynamodb")
        arn = ddb.create_table(**request)["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        return Created(physical_id=name, attributes={"Arn": arn, "StreamArn": f"{arn}/stream/local"})

    def _queue(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("QueueName") or self._name(logical_id, 80)
        attributes = {
            key: json.dumps(value)
            if isinstance(value, dict)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
            for key, value in props.items()
            if key
            in {
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
                "RedrivePolicy",
                "SqsManagedSseEnabled",
                "MaximumMessageSize",
            }
        }
        sqs = self._client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Created(physical_id=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _queue_policy(self, logical_id: str, props: dict[str, Any]) -> Created:
        for url in props.get("Queues", []):
            self._client("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
        return Created(physical_id=logical_id)

    def _topic(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("TopicName") or self._name(logical_id, 256)
        attributes = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if props.get("KmsMasterKeyId") else {}
        arn = self._client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        return Created(physical_id=arn, attributes={"TopicArn": arn, "TopicName": name})

    def _secret(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("Name") or self._name(logical_id, 256)
        # A generated secret is derived from the stack and resource names: the same local stack gets
        # the same key (pseudonyms and held-out splits reproduce run after run); nothing real is in it.
        value = (
            props.get("SecretString") or hashlib.sha256(f"{self.stack.stack_name}/{logical_id}".encode()).hexdigest()
        )
        arn = self._client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        return Created(physical_id=arn, attributes={"Id": arn})

    def _role(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("RoleName") or self._name(logical_id, 64)
        iam = self._client("iam")
        role = iam.create_role(
            RoleName=name,
            Path=props.get("Path", "/"),
            AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
        )["Role"]
        for policy in props.get("Policies", []):
            document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        return Created(physical_id=name, attributes={"Arn": role["Arn"], "RoleId": role["RoleId"]})

    def _layer(self, logical_id: str, props: dict[str, Any]) -> Created:
        # The layer's package is importable in this process already (the project is installed).
        return Created(physical_id=self._arn("lambda", f"layer:{self._name(logical_id)}:1"))

    def _function(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("FunctionName") or self._name(logical_id, 64)
        arn = self._arn("lambda", f"function:{name}")
        code_dir = self.template.code_dirs.get(logical_id)
        if code_dir is None:
            raise TemplateError(f"{logical_id}: no local CodeUri")
        queue = self._queue(f"{logical_id}Invocations", {"VisibilityTimeout": int(props.get("Timeout", 3))})
        self._register_function(name, props, code_dir)
        self.stack.functions[logical_id] = LocalFunction(
            logical_id=logical_id,
            name=name,
            arn=arn,
            code_dir=code_dir,
            handler=props["Handler"],
            environment={k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
            timeout_s=int(props.get("Timeout", 3)),
            role_arn=props["Role"],
            invoke_queue_url=queue.physical_id,
            invoke_queue_arn=queue.attributes["Arn"],
            reserved_concurrency=props.get("ReservedConcurrentExecutions"),
        )
        return Created(physical_id=name, attributes={"Arn": arn})

    def _register_function(self, name: str, props: dict[str, Any], code_dir: Any) -> None:
        """Create the function in moto too, so Lambda's own APIs (configuration, Invoke) answer."""
        import io
        import zipfile

        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            for path in sorted(code_dir.glob("*.py")):
                bundle.write(path, arcname=path.name)
        request: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": props.get("Runtime", "python3.13"),
            "Role": props["Role"],
            "Handler": props["Handler"],
            "Code": {"ZipFile": archive.getvalue()},
            "Timeout": int(props.get("Timeout", 3)),
            "MemorySize": int(props.get("MemorySize", 128)),
            "Environment": {
                "Variables": {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
            },
        }
        if props.get("Architectures"):
            request["Architectures"] = props["Architectures"]
        self._client("lambda").create_function(**request)

    def _version(self, logical_id: str, props: dict[str, Any]) -> Created:
        """A published version (SAM's AutoPublishAlias), published in moto too so that Lambda's APIs answer."""
        function = self._function_by_ref(props["FunctionName"])
        version = self._client("lambda").publish_version(FunctionName=function.name)["Version"]
        return Created(physical_id=f"{function.arn}:{version}", attributes={"Version": version})

    def _alias(self, logical_id: str, props: dict[str, Any]) -> Created:
        """An alias: the function's ARN qualified by its name (what event sources invoke with SnapStart on).

        Invoking an alias runs the function's handler here: the local loop has one build of each function.
        """
        function = self._function_by_ref(props["FunctionName"])
        self._client("lambda").create_alias(
            FunctionName=function.name, Name=props["Name"], FunctionVersion=str(props["FunctionVersion"])
        )
        return Created(
            physical_id=f"{function.arn}:{props['Name']}", attributes={"AliasArn": f"{function.arn}:{props['Name']}"}
        )

    def _function_by_ref(self, value: str) -> LocalFunction:
        for function in self.stack.functions.values():
            if value in {function.name, function.arn} or value.startswith(function.arn + ":"):
                return function
        raise TemplateError(f"no local function {value}")

    def _event_source_mapping(self, logical_id: str, props: dict[str, Any]) -> Created:
        function = self._function_by_ref(props["FunctionName"])
        queue_arn = props["EventSourceArn"]
        if ":sqs:" not in queue_arn:
            raise TemplateError(f"{logical_id}: only SQS event sources run locally")
        url = self._client("sqs").get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        self.stack.mappings.append(
            EventSourceMapping(
                function=function.logical_id,
                queue_arn=queue_arn,
                queue_url=url,
                batch_size=int(props.get("BatchSize", 10)),
                batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            )
        )
        return Created(physical_id=_suffix(logical_id))

    def _event_invoke_config(self, logical_id: str, props: dict[str, Any]) -> Created:
        function = self._function_by_ref(props["FunctionName"])
        function.maximum_retry_attempts = int(props.get("MaximumRetryAttempts", 2))
        function.on_failure_arn = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", "")
        return Created(physical_id=logical_id)

    def _log_group(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("LogGroupName") or f"/aws/lambda/{self._name(logical_id)}"
        logs = self._client("logs")
        extra = {"kmsKeyId": props["KmsKeyId"]} if props.get("KmsKeyId") else {}
        logs.create_log_group(logGroupName=name, **extra)
        if props.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        return Created(physical_id=name, attributes={"Arn": self._arn("logs", f"log-group:{name}:*")})

    def _rule(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("Name") or self._name(logical_id, 64)
        events = self._client("events")
        request: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
        if "EventPattern" in props:
            request["EventPattern"] = json.dumps(props["EventPattern"])
        if "ScheduleExpression" in props:
            request["ScheduleExpression"] = props["ScheduleExpression"]
        arn = events.put_rule(**request)["RuleArn"]
        targets = []
        for target in props.get("Targets", []):
            local = dict(target)
            if ":lambda:" in target["Arn"]:
                function = self._function_by_ref(target["Arn"])
                local["Arn"] = function.invoke_queue_arn
            targets.append(local)
        if targets:
            events.put_targets(
                Rule=name,
                Targets=[
                    {
                        k: v
                        for k, v in t.items()
                        if k
                        in {
                            "Id",
                            "Arn",
                            "RoleArn",
                            "Input",
                            "InputPath",
                            "InputTransformer",
                            "DeadLetterConfig",
                            "RetryPolicy",
                        }
                    }
                    for t in targets
                ],
            )
        self.stack.rules[name] = {
            "pattern": props.get("EventPattern"),
            "targets": props.get("Targets", []),
            "logical_id": logical_id,
        }
        return Created(physical_id=name, attributes={"Arn": arn})

    def _event_bus_policy(self, logical_id: str, props: dict[str, Any]) -> Created:
        statement = {"Sid": props["StatementId"], **props["Statement"]}
        self._client("events").put_permission(
            EventBusName=props.get("EventBusName", "default"),
            Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
        )
        return Created(physical_id=props["StatementId"])

    def _glue_job(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("Name") or self._name(logical_id, 255)
        request = {
            k: v
            for k, v in props.items()
            if k
            in {
                "Role",
                "Command",
                "DefaultArguments",
                "GlueVersion",
                "MaxCapacity",
                "Timeout",
                "ExecutionProperty",
                "Description",
            }
        }
        request["Command"] = {**request["Command"], "ScriptLocation": "s3://local-code/prepare.py"}
        self._client("glue").create_job(Name=name, **request)
        return Created(physical_id=name)

    def _feature_group(self, logical_id: str, props: dict[str, Any]) -> Created:
        """CloudFormation's FeatureGroup properties are CreateFeatureGroup's (closedloop_ops.moto_ext.featurestore)."""
        keys = (
            "FeatureGroupName",
            "RecordIdentifierFeatureName",
            "EventTimeFeatureName",
            "FeatureDefinitions",
            "OnlineStoreConfig",
            "OfflineStoreConfig",
            "RoleArn",
            "Description",
            "Tags",
        )
        request = {key: props[key] for key in keys if props.get(key) is not None}
        request.setdefault("FeatureGroupName", self._name(logical_id, 64))
        arn = self._client("sagemaker").create_feature_group(**request)["FeatureGroupArn"]
        return Created(
            physical_id=request["FeatureGroupName"],
            attributes={"FeatureGroupName": request["FeatureGroupName"], "Arn": arn},
        )

    def _model_package_group(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("ModelPackageGroupName") or self._name(logical_id, 63)
        request: dict[str, Any] = {"ModelPackageGroupName": name}
        if props.get("ModelPackageGroupDescription"):
            request["ModelPackageGroupDescription"] = props["ModelPackageGroupDescription"]
        sagemaker = self._client("sagemaker")
        arn = sagemaker.create_model_package_group(**request)["ModelPackageGroupArn"]
        if props.get("ModelPackageGroupPolicy"):  # the resource policy, as CloudFormation applies it
            sagemaker.put_model_package_group_policy(
                ModelPackageGroupName=name, ResourcePolicy=json.dumps(props["ModelPackageGroupPolicy"])
            )
        return Created(physical_id=arn, attributes={"ModelPackageGroupArn": arn})

    def _alarm(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("AlarmName") or self._name(logical_id, 255)
        allowed = {
            "AlarmDescription",
            "ActionsEnabled",
            "OKActions",
            "AlarmActions",
            "InsufficientDataActions",
            "MetricName",
            "Namespace",
            "Statistic",
            "ExtendedStatistic",
            "Dimensions",
            "Period",
            "Unit",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "EvaluateLowSampleCountPercentile",
            "Metrics",
            "ThresholdMetricId",
            "Tags",
        }
        request = {k: v for k, v in props.items() if k in allowed}
        self._client("cloudwatch").put_metric_alarm(AlarmName=name, **request)
        return Created(physical_id=name, attributes={"Arn": self._arn("cloudwatch", f"alarm:{name}")})

    def _kms_key(self, logical_id: str, props: dict[str, Any]) -> Created:
        kms = self._client("kms")
        request: dict[str, Any] = {"Description": props.get("Description", logical_id)}
        if props.get("KeyPolicy"):
            request["Policy"] = json.dumps({"Version": "2012-10-17", **props["KeyPolicy"]})
        metadata = kms.create_key(**request)["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        return Created(physical_id=metadata["KeyId"], attributes={"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})

    def _kms_alias(self, logical_id: str, props: dict[str, Any]) -> Created:
        self._client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        return Created(physical_id=props["AliasName"])

    def _iam_policy(self, logical_id: str, props: dict[str, Any]) -> Created:
        iam = self._client("iam")
        document = json.dumps({"Version": "2012-10-17", **props["PolicyDocument"]})
        for role in props.get("Roles", []):
            iam.put_role_policy(RoleName=role, PolicyName=props["PolicyName"], PolicyDocument=document)
        return Created(physical_id=props["PolicyName"])

    def _managed_policy(self, logical_id: str, props: dict[str, Any]) -> Created:
        iam = self._client("iam")
        name = props.get("ManagedPolicyName") or self._name(logical_id, 128)
        document = json.dumps({"Version": "2012-10-17", **props["PolicyDocument"]})
        arn = iam.create_policy(PolicyName=name, PolicyDocument=document)["Policy"]["Arn"]
        for role in props.get("Roles", []):
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        return Created(physical_id=arn)

    def _schedule(self, logical_id: str, props: dict[str, Any]) -> Created:
        name = props.get("Name") or self._name(logical_id, 64)
        target = props["Target"]
        function = self._function_by_ref(target["Arn"])
        arn = self._arn("scheduler", f"schedule/default/{name}")
        self.stack.schedules.append(
            LocalSchedule(
                name=name,
                expression=props["ScheduleExpression"],
                function=function.logical_id,
                input=target.get("Input", "{}"),
                arn=arn,
                dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn", ""),
                maximum_retry_attempts=int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 185)),
            )
        )
        return Created(physical_id=name, attributes={"Arn": arn})


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
