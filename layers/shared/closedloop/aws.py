"""AWS clients and error translation: the only module that builds boto3 clients.

Clients are built lazily, once per process, with adaptive retries (throttling is retried by the
client, with backoff, before it ever reaches domain code). `AWS_ENDPOINT_URL` — which boto3 reads
itself — points them at the local emulator; nothing in closedloop knows whether it runs locally.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from closedloop.errors import AwsServiceError, ClosedloopError, ResourceLimitError, ThrottledError
from closedloop.tracing import tracer

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="closedloop",
)

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
LIMIT_CODES = frozenset(
    {"ResourceLimitExceeded", "ConcurrentRunsExceededException", "ResourceNumberLimitExceededException"}
)


class _LazyClient:
    """A client built on first use: importing a handler costs nothing for the clients it holds.

    Building a botocore client loads its service model (SageMaker's is megabytes of JSON), so
    clients a cold start never calls are never built. All clients share one session, so the
    endpoint and partition data are loaded once per process.
    """

    __slots__ = ("_client", "_service")

    def __init__(self, service: str) -> None:
        self._service = service
        self._client: Any = None

    def _real(self) -> Any:
        if self._client is None:
            session = _session(os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_ENDPOINT_URL", ""))
            self._client = session.client(self._service, config=RETRY_CONFIG)  # type: ignore[call-overload]
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LazyClient.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._real(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._real(), name)


@cache
def _session(identity: str, endpoint: str) -> boto3.session.Session:
    """One session per identity (one on Lambda; one per function role in the local loop), its AWS
    calls traced on the invocations Lambda samples (closedloop.tracing)."""
    session = boto3.session.Session()
    tracer.instrument(session.events)
    return session


@cache
def _client(service: str) -> Any:
    return _LazyClient(service)


def s3() -> S3Client:
    return _client("s3")  # type: ignore[no-any-return]


def sagemaker() -> SageMakerClient:
    return _client("sagemaker")  # type: ignore[no-any-return]


def glue() -> GlueClient:
    return _client("glue")  # type: ignore[no-any-return]


def dynamodb() -> DynamoDBClient:
    return _client("dynamodb")  # type: ignore[no-any-return]


def sns() -> SNSClient:
    return _client("sns")  # type: ignore[no-any-return]


def sqs() -> SQSClient:
    return _client("sqs")  # type: ignore[no-any-return]


def cloudwatch() -> CloudWatchClient:
    return _client("cloudwatch")  # type: ignore[no-any-return]


def events() -> EventBridgeClient:
    return _client("events")  # type: ignore[no-any-return]


def secretsmanager() -> SecretsManagerClient:
    return _client("secretsmanager")  # type: ignore[no-any-return]


def reset_clients() -> None:
    """Forget built clients (after the environment's endpoint or credentials change)."""
    _client.cache_clear()
    _session.cache_clear()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def translate(exc: ClientError | BotoCoreError, operation: str) -> ClosedloopError:
    """Map an AWS error to the domain error that says whether a retry can help."""
    if isinstance(exc, ParamValidationError):  # our request is malformed: no retry can help
        return AwsServiceError(f"{operation}: {exc}", retryable=False, operation=operation)
    if isinstance(exc, BotoCoreError):  # connection, timeout, credentials refresh: transient
        return AwsServiceError(f"{operation}: {exc}", retryable=True, operation=operation)
    code = error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in THROTTLING_CODES:
        return ThrottledError(f"{operation} throttled", operation=operation, aws_error=code)
    if code in LIMIT_CODES:
        return ResourceLimitError(f"{operation}: {error_message(exc)}", operation=operation, aws_error=code)
    return AwsServiceError(
        f"{operation}: {code}: {error_message(exc)}", retryable=status >= 500, operation=operation, aws_error=code
    )


@contextmanager
def aws_errors(operation: str, *, passthrough: Callable[[ClientError], bool] | None = None) -> Iterator[None]:
    """Translate errors raised inside the block; `passthrough` lets a caller handle some itself."""
    try:
        yield
    except ClientError as exc:
        if passthrough is not None and passthrough(exc):
            raise
        raise translate(exc, operation) from exc
    except BotoCoreError as exc:
        raise translate(exc, operation) from exc


def is_not_found(exc: ClientError) -> bool:
    """The resource does not exist (S3 404s, SageMaker's ValidationException "Could not find…")."""
    code = error_code(exc)
    return code in {"404", "NoSuchKey", "NotFound", "ResourceNotFound", "ResourceNotFoundException"} or (
        code == "ValidationException"
        and any(words in error_message(exc).lower() for words in ("not found", "could not find", "does not exist"))
    )


def is_already_exists(exc: ClientError) -> bool:
    """A create call found the resource already there (SageMaker names are unique per account)."""
    code = error_code(exc)
    message = error_message(exc).lower()
    return code in {"ResourceInUse", "ResourceInUseException", "AlreadyExistsException"} or (
        code == "ValidationException"
        # SageMaker hosting says 'Cannot create already existing model "arn:…"' (endpoint, endpoint configuration)
        and any(words in message for words in ("already exists", "already existing", "must be unique"))
    )
