"""Adapter over CloudWatch alarms for route 6: what the alarm that fired says about itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from closedloop.aws import aws_errors, is_not_found

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient


class Alarms:
    """Reads the tags of CloudWatch alarms (`closedloop:model-group` says which group an alarm retrains)."""

    def __init__(self, cloudwatch: CloudWatchClient) -> None:
        self._cloudwatch = cloudwatch

    def tags(self, alarm_arn: str) -> dict[str, str] | None:
        """The alarm's tags; None when the alarm no longer exists.

        Raises:
            AwsServiceError / ThrottledError: CloudWatch could not be read.
        """
        try:
            with aws_errors("cloudwatch:ListTagsForResource", passthrough=is_not_found):
                response = self._cloudwatch.list_tags_for_resource(ResourceARN=alarm_arn)
        except ClientError:
            return None
        return {tag["Key"]: tag["Value"] for tag in response.get("Tags", [])}
