"""Adapter over SageMaker hosting for the rollout: the endpoint, its configs and models, and the
CloudWatch alarms a blue/green deployment is guarded by.

Creating what already exists is not an error here (names are deterministic, so it is the same
thing); an endpoint that is busy with another deployment is `EndpointBusyError`, retryable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from closedloop import lineage
from closedloop.aws import aws_errors, error_code, error_message, is_already_exists, is_not_found
from closedloop.deploy.models import Endpoint, LiveVersion
from closedloop.errors import EndpointBusyError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.type_defs import TagTypeDef

LINEAGE_TAG_KEYS = frozenset(
    {
        lineage.MODEL_PACKAGE,
        lineage.MODEL_VERSION,
        lineage.PIPELINE_EXECUTION,
        lineage.PREPARED_MANIFEST,
        lineage.CODE_VERSION,
        lineage.APPROVAL,
    }
)


def is_in_progress(exc: ClientError) -> bool:
    """UpdateEndpoint refused because a deployment is running ("Cannot update in-progress endpoint")."""
    message = error_message(exc).lower()
    return error_code(exc) == "ValidationException" and ("in-progress" in message or "in progress" in message)


class Hosting:
    """Reads and changes one endpoint (the stack's), and creates the models and configs it serves."""

    def __init__(self, sagemaker: SageMakerClient, endpoint_name: str) -> None:
        self._sagemaker = sagemaker
        self.endpoint_name = endpoint_name

    def describe_endpoint(self) -> Endpoint | None:
        """The endpoint now; None when it does not exist.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        try:
            with aws_errors("sagemaker:DescribeEndpoint", passthrough=is_not_found):
                described = self._sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError:
            return None
        return Endpoint.from_description(described)

    def config_tags(self, endpoint: Endpoint, config_name: str | None = None) -> dict[str, str]:
        """The tags of an endpoint config of this endpoint (its lineage); {} when the config is gone.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        try:
            with aws_errors("sagemaker:ListTags(endpoint-config)", passthrough=is_not_found):
                response = self._sagemaker.list_tags(ResourceArn=endpoint.config_arn(config_name), MaxResults=100)
        except ClientError:
            return {}
        return {tag["Key"]: tag["Value"] for tag in response.get("Tags", [])}

    def serving(self, endpoint: Endpoint, config_name: str | None = None) -> LiveVersion | None:
        """Which model package version a config of this endpoint serves, by its lineage tags."""
        name = config_name or endpoint.config_name
        tags = self.config_tags(endpoint, name)
        arn = tags.get(lineage.MODEL_PACKAGE, "")
        if not arn:
            return None
        version = tags.get(lineage.MODEL_VERSION, "")
        return LiveVersion(
            model_package_arn=arn, version=int(version) if version.isdigit() else None, endpoint_config=name
        )

    def ensure_model(self, request: Mapping[str, Any]) -> bool:
        """Create the model unless it exists; True when it was created now.

        Raises:
            AwsServiceError / ThrottledError / ResourceLimitError: it could not be created.
        """
        try:
            with aws_errors("sagemaker:CreateModel", passthrough=is_already_exists):
                self._sagemaker.create_model(**request)
        except ClientError:
            return False
        return True

    def ensure_endpoint_config(self, request: Mapping[str, Any]) -> bool:
        """Create the endpoint config unless it exists; True when it was created now.

        Raises:
            AwsServiceError / ThrottledError / ResourceLimitError: it could not be created.
        """
        try:
            with aws_errors("sagemaker:CreateEndpointConfig", passthrough=is_already_exists):
                self._sagemaker.create_endpoint_config(**request)
        except ClientError:
            return False
        return True

    def create_endpoint(self, request: Mapping[str, Any]) -> None:
        """Create the endpoint (first deployment).

        Raises:
            EndpointBusyError: it exists already (created since it was looked up): look again later.
            AwsServiceError / ThrottledError / ResourceLimitError: it could not be created.
        """
        try:
            with aws_errors("sagemaker:CreateEndpoint", passthrough=is_already_exists):
                self._sagemaker.create_endpoint(**request)
        except ClientError as exc:
            raise EndpointBusyError(
                "the endpoint was created by someone else in the meantime", endpoint=self.endpoint_name
            ) from exc

    def update_endpoint(self, request: Mapping[str, Any]) -> None:
        """Start a blue/green deployment of a new config.

        Raises:
            EndpointBusyError: another deployment is running (retry later; nothing was changed).
            AwsServiceError / ThrottledError / ResourceLimitError: it could not be started.
        """
        try:
            with aws_errors("sagemaker:UpdateEndpoint", passthrough=is_in_progress):
                self._sagemaker.update_endpoint(**request)
        except ClientError as exc:
            raise EndpointBusyError(
                "the endpoint is being updated by another deployment", endpoint=self.endpoint_name
            ) from exc

    def tag_endpoint(self, endpoint: Endpoint, tags: Mapping[str, str]) -> None:
        """Copy a config's lineage onto the endpoint, so the console shows what serves.

        Raises:
            AwsServiceError / ThrottledError: the tags could not be written.
        """
        lineage_tags: list[TagTypeDef] = [
            {"Key": k, "Value": v} for k, v in sorted(tags.items()) if k in LINEAGE_TAG_KEYS
        ]
        if not lineage_tags:
            return
        with aws_errors("sagemaker:AddTags(endpoint)"):
            self._sagemaker.add_tags(ResourceArn=endpoint.arn, Tags=lineage_tags)


def alarm_states(cloudwatch: CloudWatchClient, names: Sequence[str]) -> dict[str, str]:
    """The state (OK, ALARM, INSUFFICIENT_DATA) of each alarm among `names` that exists.

    A drift alarm may not exist yet; an alarm that is missing is simply absent from the answer.

    Raises:
        AwsServiceError / ThrottledError: CloudWatch could not be read.
    """
    if not names:
        return {}
    found: dict[str, str] = {}
    paginator = cloudwatch.get_paginator("describe_alarms")
    with aws_errors("cloudwatch:DescribeAlarms"):
        for page in paginator.paginate(AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            found.update(_states(page.get("MetricAlarms", [])))
            found.update(_states(page.get("CompositeAlarms", [])))
    return found


def _states(alarms: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(alarm["AlarmName"]): str(alarm.get("StateValue", "")) for alarm in alarms}
