"""Feature attribution drift of a captured window: a Clarify explainability job, then its nDCG.

Attributions of live traffic need the model and Kernel SHAP, which do not belong in Lambda. So a
run of the drift monitor that measured enough records, for a live version whose
`DriftCheckBaselines.Explainability` names a baseline, writes a sample of the window's rows as a
Clarify dataset and starts a SageMaker Processing job in Clarify's own container
(`sagemaker-clarify-processing`): the analysis configuration asks for `methods.shap` with the
baseline's settings and names the live SageMaker Model as the `predictor` (Clarify serves it on a
temporary shadow endpoint, never on the live one). A later run — or the same one, when the job has
already ended — reads the job's `analysis.json`, computes the nDCG of its global SHAP ranking
against the baseline's (`attributions.ndcg`) and publishes `AttributionNdcg`.

At most one job per line runs at a time: the job in flight is kept in the ledger state
`attribution-job#<endpoint>` and no other is started until it has ended and been read. The job's
name is derived from the line and the capture window (the live version and the watermarks before
and after), so a retried run of the same window finds its job instead of starting another.
Every step is a ledger decision of route 7 under `drift:<endpoint>`: `start_attribution_job`
(`started` / `failed`) and `measure_attribution_drift` (`published` / `not-published` / `failed`);
a window that is not explained (no baseline, a job still running, no rows) is said in the run's own
`measure_drift` decision (`attribution_job: skipped`, with the reason). A value measured for a
version that is no longer live is recorded, not published: the alarm speaks of what serves now.

Files, under the stack's capture bucket (they expire with the captured traffic):
`attributions/<endpoint>/<job>/config/analysis_config.json`, `…/dataset/data.csv`,
`…/output/analysis.json`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import ConfigDict

from closedloop import lineage
from closedloop.aws import aws_errors, is_already_exists, is_not_found
from closedloop.drift.attributions import global_shap_values, ndcg
from closedloop.drift.evidence import EvidenceFiles
from closedloop.drift.live import LiveModel
from closedloop.drift.publisher import DriftPublisher
from closedloop.drift.reasons import short
from closedloop.drift.sample import RowSample
from closedloop.drift.serving import Serving
from closedloop.errors import ClosedloopError
from closedloop.events.scheduler import DriftMonitorRun
from closedloop.ledger import Ledger
from closedloop.model import Model
from closedloop.observability import logger
from closedloop.route_output import RouteOutput
from closedloop.s3uri import split_s3_uri
from closedloop.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

SAMPLE_ROWS = 300  # rows explained per window (the pipeline's explainability check explains up to 300)
MAX_JOB_NAME = 63
PREFIX = "attributions"
CONFIG_INPUT = "/opt/ml/processing/input/config"  # where Clarify's container reads analysis_config.json
DATA_INPUT = "/opt/ml/processing/input/data"
RESULT_OUTPUT = "/opt/ml/processing/output"
ANALYSIS_FILE = "analysis.json"
# Clarify's `shap` settings when the baseline's analysis configuration cannot be read (the pipeline's)
DEFAULT_SHAP: dict[str, Any] = {
    "num_samples": 100,
    "num_clusters": 10,
    "agg_method": "mean_abs",
    "use_logit": False,
    "save_local_shap_values": False,
}
RUNNING = frozenset({"InProgress", "Stopping"})

AttributionStatus = Literal["started", "running", "published", "not-published", "failed", "skipped"]


def state_key(endpoint: str) -> str:
    """The ledger state of the line's attribution job in flight."""
    return f"attribution-job#{endpoint}"


def window_digest(endpoint: str, package_arn: str, before: dict[str, str], after: dict[str, str]) -> str:
    """A digest of one capture window: the endpoint, the version it served and the watermarks around it."""
    text = json.dumps([endpoint, package_arn, sorted(before.items()), sorted(after.items())])
    return hashlib.sha256(text.encode()).hexdigest()


def job_name(resource_prefix: str, line: str, digest: str) -> str:
    """`<prefix>-attr-<line>-<digest>`, at most 63 characters (the line is shortened, the digest kept).

    Never `<prefix>-prep-…`: route 2 takes the Processing jobs of that prefix for preparation runs.
    """
    head = f"{resource_prefix}-attr-"
    tail = f"-{digest[:12]}"
    room = MAX_JOB_NAME - len(head) - len(tail)
    return f"{head}{(line or 'stack')[:room].rstrip('-')}{tail}"


def build_analysis_config(
    *, headers: list[str], shap: dict[str, Any], model_name: str, instance_type: str
) -> dict[str, Any]:
    """Clarify's analysis configuration of the window: the features (no label: explainability needs
    none), Kernel SHAP with the baseline's settings, and the live model on a shadow endpoint."""
    return {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": list(headers),
        "methods": {"shap": dict(shap)},
        "predictor": {
            "model_name": model_name,
            "instance_type": instance_type,
            "initial_instance_count": 1,
            "content_type": "text/csv",
            "accept_type": "text/csv",
        },
    }


def build_attribution_job_request(
    *,
    job_name: str,
    role_arn: str,
    image_uri: str,
    instance_type: str,
    max_runtime_s: int,
    root_uri: str,
    model_package_arn: str,
    line: str,
) -> dict[str, Any]:
    """CreateProcessingJob of Clarify's container on one window (the inputs and output SageMaker
    Clarify's processor gives it: `analysis_config`, `dataset`, `analysis_result`)."""

    def s3_input(name: str, uri: str, local: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
                "S3CompressionType": "None",
            },
        }

    tags = [{"Key": lineage.MODEL_PACKAGE, "Value": model_package_arn}]
    if line:
        tags.append({"Key": "closedloop:model-line", "Value": line})
    return {
        "ProcessingJobName": job_name,
        "RoleArn": role_arn,
        "AppSpecification": {"ImageUri": image_uri},
        "ProcessingInputs": [
            s3_input("analysis_config", f"{root_uri}/config/analysis_config.json", CONFIG_INPUT),
            s3_input("dataset", f"{root_uri}/dataset/", DATA_INPUT),
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "analysis_result",
                    "S3Output": {"S3Uri": f"{root_uri}/output", "LocalPath": RESULT_OUTPUT, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type, "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "Tags": tags,
    }


class AttributionJob(Model):
    """A Processing job as DescribeProcessingJob says it is now (the fields the monitor uses)."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: str
    failure_reason: str = ""


class AttributionOutcome(Model):
    """What this run did about attribution drift (in the run's result and its ledger entries)."""

    model_config = ConfigDict(frozen=True)

    status: AttributionStatus
    job_name: str = ""
    reason: str = ""
    ndcg: float | None = None
    rows: int | None = None


class AttributionJobs:
    """Adapter over SageMaker Processing and S3 for the window's explainability job."""

    def __init__(self, sagemaker: SageMakerClient, s3: S3Client) -> None:
        self._sagemaker = sagemaker
        self._s3 = s3

    def describe(self, name: str) -> AttributionJob | None:
        """The job now; None when it does not exist.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        try:
            with aws_errors("sagemaker:DescribeProcessingJob", passthrough=is_not_found):
                described = self._sagemaker.describe_processing_job(ProcessingJobName=name)
        except ClientError:
            return None
        return AttributionJob(
            name=name,
            status=str(described.get("ProcessingJobStatus", "")),
            failure_reason=str(described.get("FailureReason", "")),
        )

    def start(self, request: dict[str, Any]) -> bool:
        """CreateProcessingJob; returns False when a job of that name already exists.

        Raises:
            AwsServiceError / ThrottledError / ResourceLimitError: the job could not be created.
        """
        try:
            with aws_errors("sagemaker:CreateProcessingJob", passthrough=is_already_exists):
                self._sagemaker.create_processing_job(**request)
        except ClientError:
            return False
        return True

    def put(self, uri: str, body: bytes, content_type: str) -> None:
        """Write one input file of the job.

        Raises:
            AwsServiceError / ThrottledError: S3 could not be written.
        """
        bucket, key = split_s3_uri(uri)
        with aws_errors("s3:PutObject(attributions)"):
            self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


class AttributionDrift:
    """Route 7's attribution drift of one line: start the window's job, read the one that ended."""

    def __init__(
        self,
        *,
        settings: Settings,
        jobs: AttributionJobs,
        evidence: EvidenceFiles,
        serving: Serving,
        ledger: Ledger,
        publisher: DriftPublisher,
        output: RouteOutput,
    ) -> None:
        self._settings = settings
        self._jobs = jobs
        self._evidence = evidence
        self._serving = serving
        self._ledger = ledger
        self._publisher = publisher
        self._output = output

    def why_not(self, live: LiveModel) -> str:
        """Why no window of this live version can be explained ("" when one can)."""
        if not self._settings.clarify_image_uri or not self._settings.attribution_job_role_arn:
            return "no Clarify image or job role is configured (CLARIFY_IMAGE_URI, ATTRIBUTION_JOB_ROLE_ARN)"
        if not self._settings.capture_bucket:
            return "no capture bucket is configured for the job's files (CAPTURE_BUCKET)"
        if not live.explainability_uri:
            return f"model package {live.model_package_arn} has no explainability baseline"
        return ""

    def new_sample(self, live: LiveModel, before: dict[str, str]) -> RowSample:
        """The run's sample of rows, seeded by the window's start (a retried run keeps the same rows)."""
        return RowSample(SAMPLE_ROWS, window_digest(live.endpoint, live.model_package_arn, before, {}))

    # -- the job that ended --------------------------------------------------------------------------

    def follow_up(self, trigger: DriftMonitorRun, live: LiveModel, at: datetime) -> AttributionOutcome | None:
        """Read the line's job in flight, if any: still running, or ended (measured and recorded).

        Returns None when no job is in flight.

        Raises:
            ClosedloopError: the ledger or SageMaker could not be read.
        """
        pending = self._ledger.get_state(state_key(live.endpoint)) or {}
        name = str(pending.get("job_name") or "")
        if not name:
            return None
        job = self._jobs.describe(name)
        if job is not None and job.status in RUNNING:
            logger.info("attribution job still running", endpoint=live.endpoint, job=name)
            return AttributionOutcome(status="running", job_name=name, reason=f"job {name} is {job.status}")
        if job is None:
            outcome = AttributionOutcome(status="failed", job_name=name, reason=f"job {name} does not exist")
        elif job.status != "Completed":
            kind = job.failure_reason.split(":", 1)[0][:60] if job.failure_reason else "no reason given"
            outcome = AttributionOutcome(status="failed", job_name=name, reason=f"job {name} {job.status}: {kind}")
        else:
            outcome = self._measure(live, pending, at)
        self._record_measured(trigger, live, pending, outcome)
        self._ledger.put_state(
            state_key(live.endpoint),
            {"job_name": "", "last_job": name, "last_status": outcome.status, "ended_at": at.isoformat()},
        )
        return outcome

    def _measure(self, live: LiveModel, pending: dict[str, Any], at: datetime) -> AttributionOutcome:
        name = str(pending["job_name"])
        rows = pending.get("rows")
        try:
            baseline = self._shap_values(str(pending["baseline_uri"]), "explainability baseline")
            current = self._shap_values(f"{pending['root_uri']}/output/{ANALYSIS_FILE}", "job's analysis")
        except ValueError as exc:
            return AttributionOutcome(status="failed", job_name=name, reason=short(exc), rows=rows)
        except ClosedloopError as exc:
            if exc.retryable:  # throttled or unavailable: the job stays in flight, read again next run
                raise
            # denied or malformed for good: waiting would block the line's attribution drift for ever
            return AttributionOutcome(status="failed", job_name=name, reason=exc.message, rows=rows)
        value = ndcg(baseline, current)
        if value is None:
            reason = "the explainability baseline attributes nothing: nDCG is undefined"
            return AttributionOutcome(status="failed", job_name=name, reason=reason, rows=rows)
        if pending.get("model_package_arn") != live.model_package_arn:
            logger.info("attribution drift of a version no longer live", endpoint=live.endpoint, ndcg=value, job=name)
            reason = "the explained version is no longer live: recorded, not published"
            return AttributionOutcome(status="not-published", job_name=name, reason=reason, ndcg=value, rows=rows)
        self._publisher.publish_attribution(value, endpoint=live.endpoint, at=at)
        logger.info("attribution drift published", endpoint=live.endpoint, ndcg=value, job=name)
        return AttributionOutcome(status="published", job_name=name, ndcg=value, rows=rows)

    def _shap_values(self, uri: str, what: str) -> dict[str, float]:
        """Raises ValueError (a reason without values) when the document is missing or not Clarify's."""
        body = self._evidence.read(uri)
        if body is None:
            raise ValueError(f"the {what} does not exist")
        try:
            return global_shap_values(json.loads(body))
        except ValueError as exc:
            raise ValueError(f"the {what} is unusable: {short(exc)}") from None

    def _record_measured(
        self, trigger: DriftMonitorRun, live: LiveModel, pending: dict[str, Any], outcome: AttributionOutcome
    ) -> None:
        threshold = self._settings.attribution_ndcg_threshold
        self._output.record(
            event_id=trigger.execution_id,
            business_key=f"drift:{live.endpoint}",
            action="measure_attribution_drift",
            result=outcome.status,
            reason=outcome.reason,
            details={
                "job": outcome.job_name,
                "model_package_arn": pending.get("model_package_arn"),
                "live_model_package_arn": live.model_package_arn,
                "attribution_ndcg": outcome.ndcg,
                "threshold": threshold,
                "below_threshold": outcome.ndcg is not None and outcome.ndcg < threshold,
                "rows": outcome.rows,
            },
        )

    # -- the window's job --------------------------------------------------------------------------

    def start(
        self, trigger: DriftMonitorRun, live: LiveModel, sample: RowSample | None, window: str, features: list[str]
    ) -> AttributionOutcome:
        """Write the window's dataset and configuration and start its Clarify job (once per window).

        A failure is recorded and returned, never raised: the drift metrics of the run stand.
        """
        name = job_name(self._settings.resource_prefix, self._settings.line, window)
        if sample is None or not sample.rows:
            return self.skip("no captured rows were kept for the analysis")
        try:
            return self._start(trigger, live, name, sample, features)
        except (ClosedloopError, ValueError) as exc:
            reason = exc.message if isinstance(exc, ClosedloopError) else short(exc)
            logger.warning("attribution job not started", endpoint=live.endpoint, job=name, error=reason)
            outcome = AttributionOutcome(status="failed", job_name=name, reason=reason)
            self._record_start(trigger, live, outcome, {})
            return outcome

    def _start(
        self, trigger: DriftMonitorRun, live: LiveModel, name: str, sample: RowSample, features: list[str]
    ) -> AttributionOutcome:
        settings = self._settings
        root = f"s3://{settings.capture_bucket}/{PREFIX}/{live.endpoint}/{name}"
        if self._jobs.describe(name) is not None:  # a retried run of this window: its job exists
            outcome = AttributionOutcome(status="started", job_name=name, reason="found the window's job")
            self._remember(live, name, root, rows=None)
            self._record_start(trigger, live, outcome, {"found_existing": True})
            return outcome
        model_name = self._serving.served_model(live.endpoint_config)
        if model_name is None:
            return self.skip(f"endpoint config {live.endpoint_config} names no model")
        dataset, rows = sample.to_csv(len(features))
        if not rows:
            return self.skip("no kept row has the model's columns")
        shap, shap_from = self._shap_settings(live)
        config = build_analysis_config(
            headers=features, shap=shap, model_name=model_name, instance_type=settings.endpoint_instance_type
        )
        request = build_attribution_job_request(
            job_name=name,
            role_arn=settings.attribution_job_role_arn,
            image_uri=settings.clarify_image_uri,
            instance_type=settings.processing_instance_type,
            max_runtime_s=settings.processing_max_runtime_s,
            root_uri=root,
            model_package_arn=live.model_package_arn,
            line=settings.line,
        )
        self._jobs.put(f"{root}/config/analysis_config.json", json.dumps(config, indent=1).encode(), "application/json")
        self._jobs.put(f"{root}/dataset/data.csv", dataset.encode(), "text/csv")
        details = {"rows": rows, "rows_seen": sample.seen, "model": model_name, "shap_settings_from": shap_from}
        decision = self._output.decision(
            event_id=trigger.execution_id,
            business_key=f"drift:{live.endpoint}",
            action="start_attribution_job",
            result="started",
            details={"job": name, "model_package_arn": live.model_package_arn, **details},
        )
        with self._ledger.intent(decision):
            created = self._jobs.start(request)
        self._remember(live, name, root, rows=rows)
        outcome = AttributionOutcome(
            status="started", job_name=name, rows=rows, reason="" if created else "found the window's job"
        )
        self._record_start(trigger, live, outcome, {**details, "found_existing": not created})
        logger.info("attribution job started", endpoint=live.endpoint, job=name, rows=rows)
        return outcome

    def _shap_settings(self, live: LiveModel) -> tuple[dict[str, Any], str]:
        """The baseline's `methods.shap` (from its analysis configuration), else Clarify's defaults here."""
        if live.explainability_config_uri:
            try:
                body = self._evidence.read(live.explainability_config_uri)
                shap = json.loads(body or b"{}").get("methods", {}).get("shap") if body else None
            except (ClosedloopError, ValueError, AttributeError):
                shap = None
            if isinstance(shap, dict):  # with its `baseline` (SHAP background), when it names one
                return dict(shap), "baseline-config"
        return dict(DEFAULT_SHAP), "defaults"

    def _remember(self, live: LiveModel, name: str, root: str, *, rows: int | None) -> None:
        self._ledger.put_state(
            state_key(live.endpoint),
            {
                "job_name": name,
                "root_uri": root,
                "model_package_arn": live.model_package_arn,
                "baseline_uri": live.explainability_uri,
                "rows": rows,
            },
        )

    @staticmethod
    def skip(reason: str) -> AttributionOutcome:
        """This run's window is not explained, and why (the run's own decision records it: no step was taken)."""
        return AttributionOutcome(status="skipped", reason=reason)

    def _record_start(
        self, trigger: DriftMonitorRun, live: LiveModel, outcome: AttributionOutcome, details: dict[str, Any]
    ) -> None:
        self._output.record(
            event_id=trigger.execution_id,
            business_key=f"drift:{live.endpoint}",
            action="start_attribution_job",
            result=outcome.status,
            reason=outcome.reason,
            details={"job": outcome.job_name, "model_package_arn": live.model_package_arn, **details},
        )


__all__ = [
    "AttributionDrift",
    "AttributionJobs",
    "AttributionOutcome",
    "build_analysis_config",
    "build_attribution_job_request",
    "job_name",
    "window_digest",
]
