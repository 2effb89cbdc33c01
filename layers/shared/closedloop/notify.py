"""Notifications to the stack's SNS topic: what a person should know, never data values."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from closedloop.aws import aws_errors

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

Severity = Literal["INFO", "WARNING", "ERROR"]
MAX_SUBJECT = 100


class Notifier:
    """Publishes structured notifications (a subject line and a JSON body) to one topic."""

    def __init__(self, topic_arn: str, client: SNSClient) -> None:
        self._topic_arn = topic_arn
        self._client = client

    def send(self, *, route: str, subject: str, severity: Severity = "INFO", **facts: Any) -> str:
        """Publish one notification; returns the SNS message id.

        Raises:
            AwsServiceError / ThrottledError: the topic could not be published to.
        """
        line = f"[closedloop {severity}] {subject}"
        if len(line) > MAX_SUBJECT:
            line = line[: MAX_SUBJECT - 1] + "…"
        body = json.dumps({"route": route, "severity": severity, "subject": subject, **facts}, default=str, indent=1)
        with aws_errors("sns:Publish"):
            response = self._client.publish(
                TopicArn=self._topic_arn,
                Subject=line.encode("ascii", "replace").decode("ascii"),
                Message=body,
                MessageAttributes={
                    "route": {"DataType": "String", "StringValue": route},
                    "severity": {"DataType": "String", "StringValue": severity},
                },
            )
        return response["MessageId"]
