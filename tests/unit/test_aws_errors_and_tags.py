"""Error translation at the adapter edge, and tag values SageMaker accepts."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from closedloop import lineage
from closedloop.aws import is_already_exists, is_not_found, translate
from closedloop.errors import AwsServiceError, ResourceLimitError, ThrottledError

SAGEMAKER_TAG_VALUE = re.compile(r"^([\w\s.:/=+\-@]*)$")


def client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "kind", "retryable"),
    [
        (client_error("ThrottlingException"), ThrottledError, True),
        (client_error("ResourceLimitExceeded", "too many jobs"), ResourceLimitError, True),
        (client_error("ConcurrentRunsExceededException"), ResourceLimitError, True),
        (client_error("InternalFailure", status=500), AwsServiceError, True),
        (client_error("ValidationException", "bad"), AwsServiceError, False),
        (client_error("AccessDeniedException", status=403), AwsServiceError, False),
        (EndpointConnectionError(endpoint_url="https://x"), AwsServiceError, True),
        (ParamValidationError(report="missing RoleArn"), AwsServiceError, False),
    ],
)
def test_translation_says_whether_a_retry_can_help(exc: Exception, kind: type, retryable: bool) -> None:
    translated = translate(exc, "sagemaker:Op")  # type: ignore[arg-type]
    assert type(translated) is kind
    assert translated.retryable is retryable
    assert translated.as_dict()["operation"] == "sagemaker:Op"


def test_not_found_and_already_exists_speak_sagemakers_words() -> None:
    assert is_not_found(client_error("ValidationException", "Could not find model package arn:x"))
    assert is_not_found(client_error("NoSuchKey"))
    assert not is_not_found(client_error("ValidationException", "Invalid name"))
    assert is_already_exists(client_error("ValidationException", 'Cannot create already existing model "arn:x".'))
    assert is_already_exists(client_error("ResourceInUse", "exists"))
    assert not is_already_exists(client_error("ValidationException", "Invalid name"))


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:sagemaker:eu-west-1:1:model-package/g/3",
        "s3://b/" + "k/" * 200 + "manifest.json",
        "policy v1 → auto (é)",
    ],
)
def test_tag_values_are_valid_for_sagemaker(value: str) -> None:
    tagged = lineage.tag_value(value)
    assert len(tagged) <= 256
    assert SAGEMAKER_TAG_VALUE.match(tagged), tagged
    if len(value) > 256:
        assert tagged.endswith("manifest.json") and tagged.startswith("...")
