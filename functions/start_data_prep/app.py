"""Route 1: S3 `Object Created` under raw/ (EventBridge → SQS batch) → one data-preparation run per dataset."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.dataprep.batch import ArrivalBatch
from closedloop.dataprep.quarantine import EmptyUploadQuarantine
from closedloop.dataprep.service import DataPrepService
from closedloop.idempotency import persistence_layer
from closedloop.ledger import Ledger
from closedloop.observability import SQS_CORRELATION, logger, metrics, tracer
from closedloop.settings import load_settings

settings = load_settings()
ledger = Ledger(settings.ledger_table, aws.dynamodb())
arrivals = ArrivalBatch(
    settings=settings,
    ledger=ledger,
    service=DataPrepService(
        settings=settings,
        s3=aws.s3(),
        sagemaker=aws.sagemaker(),
        glue=aws.glue(),
        ledger=ledger,
        idempotency_store=persistence_layer(settings.idempotency_table, aws.dynamodb()),
    ),
    quarantine=EmptyUploadQuarantine(quarantine_bucket=settings.quarantine_bucket, s3=aws.s3(), ledger=ledger),
)


@logger.inject_lambda_context(correlation_id_path=SQS_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start data preparation for a batch of raw uploads; returns the partial batch response."""
    return dict(arrivals.handle(event, context))
