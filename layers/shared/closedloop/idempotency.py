"""Powertools idempotency on DynamoDB, keyed by business key — never by the envelope id.

Duplicates of S3 and SageMaker events can arrive with new envelope ids, so every side effect is
guarded by a key built from what the event is about (bucket+key+version, package ARN+status,
alarm+state time, preparation run id). `raise_on_no_idempotency_key=True`: an event without its key
is an error that goes to a DLQ; it never runs unprotected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import jmespath  # type: ignore[import-untyped]
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyKeyError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from pydantic import BaseModel

from closedloop.errors import AwsServiceError, ClosedloopError, InvalidEventError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

ModelT = TypeVar("ModelT", bound=BaseModel)


def persistence_layer(table_name: str, client: DynamoDBClient) -> Callable[[], DynamoDBPersistenceLayer]:
    """The idempotency store (table with key `id`, TTL attribute `expiration`), built on first use."""
    return lambda: DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)


class Once(Generic[ModelT]):
    """`func` guarded to run once per business key (JMESPath `key` into the `data_argument` model).

    A second call with the same key returns the first call's result without running `func`.
    Powertools errors become closedloop errors: a call already in progress and an unreachable
    store are retryable (nothing ran); a missing key is an invalid event.
    Call `register_lambda_context` per invocation so that an in-progress record of a crashed
    invocation expires with that invocation, not after the whole TTL.
    """

    def __init__(
        self,
        func: Callable[..., ModelT],
        *,
        key: str,
        data_argument: str,
        output: type[ModelT],
        store: BasePersistenceLayer | Callable[[], BasePersistenceLayer],
        ttl_seconds: int,
        key_prefix: str,
    ) -> None:
        self.key = key
        self._data_argument = data_argument
        self._config = IdempotencyConfig(
            event_key_jmespath=key,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=ttl_seconds,
        )

        def build() -> Callable[..., Any]:
            return idempotent_function(  # type: ignore[no-any-return]
                func,
                data_keyword_argument=data_argument,
                persistence_store=store if isinstance(store, BasePersistenceLayer) else store(),
                config=self._config,
                output_serializer=PydanticSerializer(model=output),
                key_prefix=key_prefix,
            )

        # The store (and its DynamoDB client) is built on first use, not at import.
        self._build = build
        self._guarded: Callable[..., Any] | None = None

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        if context is not None:
            self._config.register_lambda_context(context)

    def __call__(self, **kwargs: Any) -> ModelT:
        if self._guarded is None:
            self._guarded = self._build()
        if _partial_key(self.key, kwargs.get(self._data_argument)):
            raise InvalidEventError("event has only part of its idempotency key", key=self.key)
        try:
            result: ModelT = self._guarded(**kwargs)
        except IdempotencyAlreadyInProgressError as exc:
            raise ClosedloopError(
                "the same business key is being handled right now", retryable=True, cause=type(exc).__name__
            ) from exc
        except IdempotencyKeyError as exc:
            raise InvalidEventError("event has no idempotency key", key=self.key) from exc
        except IdempotencyPersistenceLayerError as exc:
            raise AwsServiceError("idempotency store unavailable", retryable=True) from exc
        return result


def _partial_key(expression: str, data: Any) -> bool:
    """A key made of several fields with one of them missing: Powertools guards it as a key."""
    document = data.model_dump() if isinstance(data, BaseModel) else data
    parts = jmespath.search(expression, document)
    return isinstance(parts, list) and any(part is None or part == "" for part in parts)
