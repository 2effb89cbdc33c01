"""Route 2's decision: a finished preparation run starts the training pipeline — or is reported.

* Success (Processing `Completed`, Glue `SUCCEEDED`): follow the run's manifests to the prepared
  data; refuse to train on 0 rows (ledger + notification); otherwise start the pipeline with the
  data's URI and lineage (`build_start_pipeline_request`, token ("upload", run id)) and record the
  data as the group's latest prepared data (`ledger_keys.latest_prepared`), unless a newer run's
  data is already recorded there.
* Failure, timeout or stop: a notification with the reason and a ledger entry. Nothing is retried:
  a preparation that failed needs a person (or a new upload).

Once per preparation run: a Processing job and a Glue run of the same run (an engine switched
mid-flight), or the same event twice, start one execution — the decision is idempotent on the run
id (Powertools idempotency), and the start itself carries a `ClientRequestToken` from the run id,
so even a crash between "started" and "recorded" starts nothing new on the retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from pydantic import ConfigDict, computed_field

from closedloop import ledger_keys, routes
from closedloop.aws import aws_errors, error_code, is_not_found
from closedloop.errors import ClosedloopError, InvalidEventError
from closedloop.events.jobs import GlueJobStateChangeEvent, ProcessingJobStateChangeEvent
from closedloop.ledger import Ledger
from closedloop.line import LineCatalog
from closedloop.model import Model
from closedloop.notify import Notifier
from closedloop.observability import logger, metrics
from closedloop.route_output import RouteOutput
from closedloop.s3uri import split_s3_uri
from closedloop.settings import Settings
from closedloop.training.pipeline import TrainingPipeline
from closedloop.training.prepared import (
    PreparedData,
    RunArguments,
    dataset_of,
    read_prepared,
    run_arguments,
)
from closedloop.training.requests import build_start_pipeline_request, client_request_token

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.DATA_PREPARED.name
ACTION = "start_training"
MAX_REASON = 1000

PrepState = Literal["succeeded", "failed", "timeout", "stopped"]
GLUE_STATES: dict[str, PrepState] = {
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "TIMEOUT": "timeout",
    "STOPPED": "stopped",
}
PROCESSING_STATES: dict[str, PrepState] = {"Completed": "succeeded", "Failed": "failed", "Stopped": "stopped"}


def undeclared_pii_details(prepared: PreparedData) -> dict[str, object]:
    """What the run did about undeclared PII, for the ledger: the policy's choice and its counts."""
    return {
        "undeclared_pii_action": prepared.undeclared_pii_action,
        "undeclared_pii_files": prepared.undeclared_pii_files,
        "quarantined_rows": prepared.quarantined_rows,
        "redacted_values": prepared.redacted_values,
    }


class PrepRunEnded(Model):
    """A preparation run's job reached a terminal state (engine-independent)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    engine: Literal["processing", "glue", "glue-spark"]
    job_name: str
    job_run_id: str | None = None
    state: PrepState
    reason: str = ""
    run_id: str
    dataset: str
    input_manifest_uri: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def idempotency_key(self) -> str:
        """Success is once per run (whatever engine reports it); a failure once per job and state."""
        if self.state == "succeeded":
            return f"{self.run_id}#train"
        return f"{self.run_id}#{self.engine}#{self.job_run_id or self.job_name}#{self.state}"

    @property
    def business_key(self) -> str:
        """The ledger key route 1 uses for the same run, so the run's decisions read as one story."""
        return f"run:{self.dataset}/{self.run_id}"


TrainingResult = Literal["started", "refused", "prep-failed"]


class TrainingOutcome(Model):
    """What route 2 did about one preparation run."""

    model_config = ConfigDict(frozen=True)

    result: TrainingResult
    run_id: str
    dataset: str
    engine: str
    job_name: str
    prep_state: PrepState
    reason: str = ""
    pipeline_name: str | None = None
    execution_arn: str | None = None
    prepared_manifest_uri: str | None = None
    data_uri: str | None = None
    rows: int | None = None
    latest_prepared_updated: bool = False

    @classmethod
    def of(cls, ended: PrepRunEnded, result: TrainingResult, **fields: Any) -> TrainingOutcome:
        """The outcome for one run: the run as the event names it, and what route 2 did about it."""
        return cls(
            result=result,
            run_id=ended.run_id,
            dataset=ended.dataset,
            engine=ended.engine,
            job_name=ended.job_name,
            prep_state=ended.state,
            **fields,
        )


class TrainingStarter:
    """Turns the end of a preparation run into a pipeline execution or a report. Clients come in."""

    def __init__(
        self,
        *,
        settings: Settings,
        s3: S3Client,
        sagemaker: SageMakerClient,
        glue: GlueClient,
        ledger: Ledger,
        notifier: Notifier,
        idempotency_store: BasePersistenceLayer | Callable[[], BasePersistenceLayer],
    ) -> None:
        self._settings = settings
        self._lines = LineCatalog(settings)
        self._s3 = s3
        self._sagemaker = sagemaker
        self._pipeline = TrainingPipeline(sagemaker)
        self._glue = glue
        self._ledger = ledger
        self._output = RouteOutput(routes.DATA_PREPARED, ledger, notifier, settings=settings)
        self._decide_once = self._output.once(
            self._decide,
            action=ACTION,
            key="idempotency_key",
            data_argument="ended",
            output=TrainingOutcome,
            store=idempotency_store,
        )

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._output.register_lambda_context(context)

    def handle(self, event: GlueJobStateChangeEvent | ProcessingJobStateChangeEvent) -> TrainingOutcome:
        """Start training on a successful preparation run, or report a failed one (once per run).

        Raises:
            InvalidEventError: the job is not one of this stack's preparation jobs, or names no run.
            MissingEvidenceError: the run succeeded but its manifests are missing or malformed.
            AwsServiceError / ThrottledError / ResourceLimitError: an AWS call failed (retryable ones
                come back through Lambda's retries; the rest end in the on-failure destination).
        """
        ended = self.identify(event)
        logger.append_keys(prep_run_id=ended.run_id, dataset=ended.dataset, engine=ended.engine)
        return self._decide_once(ended=ended)

    # -- which run ---------------------------------------------------------------------------------

    def identify(self, event: GlueJobStateChangeEvent | ProcessingJobStateChangeEvent) -> PrepRunEnded:
        """The preparation run behind a job event (from the event, or the job's description).

        Raises:
            InvalidEventError: not this stack's preparation job, or no run in its arguments.
        """
        if isinstance(event, ProcessingJobStateChangeEvent):
            detail = event.detail
            if not detail.job_name.startswith(f"{self._settings.prep_job_prefix}-"):
                raise InvalidEventError("the Processing job is not one of this stack's preparation jobs")
            arguments = detail.app_specification.container_arguments if detail.app_specification else []
            if not arguments:
                arguments = self._processing_arguments(detail.job_name)
            args = run_arguments(arguments)
            state = PROCESSING_STATES[detail.status]
            reason = detail.failure_reason or detail.exit_message or ""
            engine: Literal["processing", "glue", "glue-spark"] = "processing"
            job_run_id = None
            job_name = detail.job_name
        else:
            glue = event.detail
            spark_job = self._settings.glue_spark_job_name
            if glue.job_name not in {self._settings.prep_job_prefix, self._settings.glue_job_name, spark_job} - {""}:
                raise InvalidEventError("the Glue job is not this stack's preparation job")
            args = run_arguments(self._glue_arguments(glue.job_name, glue.job_run_id))
            state = GLUE_STATES[glue.state]
            reason = glue.message if state != "succeeded" else ""
            engine = "glue-spark" if spark_job and glue.job_name == spark_job else "glue"
            job_run_id, job_name = glue.job_run_id, glue.job_name
        dataset = dataset_of(args.manifest_uri, self._settings.manifests_prefix)
        if not dataset or split_s3_uri(args.manifest_uri)[0] != self._settings.data_bucket:
            raise InvalidEventError("the job's manifest is not under this stack's data bucket and manifests prefix")
        return PrepRunEnded(
            event_id=event.id,
            engine=engine,
            job_name=job_name,
            job_run_id=job_run_id,
            state=state,
            reason=reason[:MAX_REASON],
            run_id=args.run_id,
            dataset=dataset,
            input_manifest_uri=args.manifest_uri,
        )

    def _processing_arguments(self, job_name: str) -> list[str]:
        try:
            with aws_errors("sagemaker:DescribeProcessingJob", passthrough=is_not_found):
                described = self._sagemaker.describe_processing_job(ProcessingJobName=job_name)
        except ClientError:
            raise InvalidEventError("the Processing job does not exist") from None
        return list(described.get("AppSpecification", {}).get("ContainerArguments", []))

    def _glue_arguments(self, job_name: str, run_id: str) -> dict[str, str]:
        try:
            # Glue says EntityNotFoundException for a run id it does not know
            with aws_errors(
                "glue:GetJobRun",
                passthrough=lambda exc: is_not_found(exc) or error_code(exc) == "EntityNotFoundException",
            ):
                run = self._glue.get_job_run(JobName=job_name, RunId=run_id)
        except ClientError:
            raise InvalidEventError("the Glue job run does not exist") from None
        return dict(run.get("JobRun", {}).get("Arguments", {}))

    # -- the decision --------------------------------------------------------------------------------

    def _decide(self, ended: PrepRunEnded) -> TrainingOutcome:
        if ended.state != "succeeded":
            return self._report_failure(ended)
        try:
            prepared = read_prepared(self._s3, RunArguments(manifest_uri=ended.input_manifest_uri, run_id=ended.run_id))
        except ClosedloopError as exc:
            self._record(ended, "failed", exc.message, {**exc.as_dict(), "job": ended.job_name})
            raise
        if prepared.rows == 0 or not prepared.data_uri:
            return self._refuse(ended, prepared)
        return self._start(ended, prepared)

    def _report_failure(self, ended: PrepRunEnded) -> TrainingOutcome:
        reason = ended.reason or f"the {ended.engine} job ended {ended.state} without a reason"
        details = {"engine": ended.engine, "job": ended.job_name, "job_run_id": ended.job_run_id}
        self._record(ended, ended.state, reason, details)
        self._output.notify(
            f"data preparation {ended.state}: {ended.dataset} run {ended.run_id}",
            severity="WARNING" if ended.state == "stopped" else "ERROR",
            dataset=ended.dataset,
            run_id=ended.run_id,
            state=ended.state,
            reason=reason,
            what_next="nothing is retried automatically: fix the cause and upload again, or redrive the run",
            **details,
        )
        metrics.add_metric(name="PrepRunsFailed", unit=MetricUnit.Count, value=1)
        logger.warning("preparation run did not succeed", extra={"state": ended.state, "job": ended.job_name})
        return TrainingOutcome.of(
            ended,
            "prep-failed",
            reason=reason,
        )

    def _refuse(self, ended: PrepRunEnded, prepared: PreparedData) -> TrainingOutcome:
        reason = "the preparation run prepared 0 rows: there is nothing to train on"
        details = {
            "rows": prepared.rows,
            "prepared_files": prepared.prepared_files,
            "quarantined_files": prepared.quarantined_files,
            "prepared_manifest": prepared.prepared_manifest_uri,
            **undeclared_pii_details(prepared),
        }
        self._record(ended, "refused", reason, details)
        self._output.notify(
            f"no training: {ended.dataset} run {ended.run_id} prepared 0 rows",
            severity="WARNING",
            dataset=ended.dataset,
            run_id=ended.run_id,
            reason=reason,
            what_next="see the quarantine reports of the run's files",
            **details,
        )
        metrics.add_metric(name="TrainingRefused", unit=MetricUnit.Count, value=1)
        return TrainingOutcome.of(
            ended,
            "refused",
            reason=reason,
            prepared_manifest_uri=prepared.prepared_manifest_uri,
            rows=0,
        )

    def _start(self, ended: PrepRunEnded, prepared: PreparedData) -> TrainingOutcome:
        settings = self._lines.settings_for(ended.dataset)  # the line's group; another line is never touched
        assert prepared.data_uri is not None
        request = build_start_pipeline_request(
            pipeline_name=settings.pipeline_name,
            input_data_uri=prepared.data_uri,
            prepared_manifest_uri=prepared.prepared_manifest_uri,
            prep_run_id=prepared.run_id,
            code_version=prepared.code_version,
            trigger="upload",
            trigger_reason=(
                f"new prepared data: {prepared.dataset} run {prepared.run_id}, {prepared.rows} rows "
                f"from {prepared.prepared_files} files ({prepared.quarantined_files} quarantined)"
            ),
            model_group=settings.model_package_group,
            client_request_token=client_request_token("upload", prepared.run_id),
        )
        try:
            execution_arn = self._pipeline.start(request)
        except ClosedloopError as exc:
            self._record(ended, "failed", exc.message, {**exc.as_dict(), "pipeline": settings.pipeline_name})
            raise
        updated = self._remember_latest(prepared, settings.model_package_group)
        details = {
            "engine": ended.engine,
            "job": ended.job_name,
            "pipeline": settings.pipeline_name,
            "execution_arn": execution_arn,
            "rows": prepared.rows,
            "prepared_manifest": prepared.prepared_manifest_uri,
            "data_uri": prepared.data_uri,
            "code_version": prepared.code_version,
            "latest_prepared_updated": updated,
            **undeclared_pii_details(prepared),
        }
        self._record(ended, "started", "", details)
        metrics.add_metric(name="TrainingStarted", unit=MetricUnit.Count, value=1)
        logger.info("training started", extra={"execution_arn": execution_arn, "rows": prepared.rows})
        return TrainingOutcome.of(
            ended,
            "started",
            pipeline_name=settings.pipeline_name,
            execution_arn=execution_arn,
            prepared_manifest_uri=prepared.prepared_manifest_uri,
            data_uri=prepared.data_uri,
            rows=prepared.rows,
            latest_prepared_updated=updated,
        )

    def _remember_latest(self, prepared: PreparedData, group: str) -> bool:
        """Record the group's latest prepared data — unless a newer run's is already there.

        Events can arrive out of order; "latest" is the newest preparation, not the last event.
        """
        name = ledger_keys.latest_prepared(group)
        current = self._ledger.get_state(name)
        if (
            current
            and current.get("prepared_at")
            and prepared.prepared_at is not None
            and datetime.fromisoformat(str(current["prepared_at"])) > prepared.prepared_at
        ):
            return False
        self._ledger.put_state(
            name,
            {
                "prepared_manifest_uri": prepared.prepared_manifest_uri,
                "data_uri": prepared.data_uri,
                "prep_run_id": prepared.run_id,
                "dataset": prepared.dataset,
                "code_version": prepared.code_version,
                "rows": prepared.rows,
                "prepared_at": prepared.prepared_at.isoformat() if prepared.prepared_at else None,
            },
        )
        return True

    def _record(self, ended: PrepRunEnded, result: str, reason: str, details: Mapping[str, object]) -> None:
        self._output.record(
            event_id=ended.event_id,
            business_key=ended.business_key,
            action=ACTION,
            result=result,
            reason=reason,
            details=details,
            omit_none=True,
        )
