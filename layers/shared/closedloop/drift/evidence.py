"""Adapter over S3 for the drift monitor: the evidence files a model package names (baseline, bias report)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from closedloop.aws import aws_errors, is_not_found
from closedloop.s3uri import split_s3_uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class EvidenceFiles:
    """Reads evidence files whole (they are small JSON documents)."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def read(self, uri: str) -> bytes | None:
        """The bytes of the file at `uri`; None when it does not exist.

        Raises:
            InvalidEventError: `uri` is not an s3:// URI with a key.
            AwsServiceError / ThrottledError: S3 could not be read.
        """
        bucket, key = split_s3_uri(uri)
        try:
            with aws_errors("s3:GetObject(evidence)", passthrough=is_not_found):
                body: bytes = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None
        return body
