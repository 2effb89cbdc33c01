"""Route 7's scheduled run: measure the live endpoint's captured traffic against its baseline.

One run, for the stack's endpoint:
1. find what is live: endpoint (must exist and serve) → endpoint config → its
   `closedloop:model-package` tag → the model package's `DriftCheckBaselines` (baseline.json) and
   `ModelMetrics.Bias.PostTrainingReport` (bias.json);
2. read the capture files written since the watermark, per production variant in key order (keys
   sort by time within a variant), file by file and line by line — never more than one file's
   counts beyond the run's own, whatever the traffic. Files younger than the settle time are left
   for the next run (SageMaker may still be uploading older ones), and so is everything once the
   invocation nears its deadline. Files captured before the live configuration took over are
   passed over: they were served by the previous model;
3. with at least `drift_min_records` rows, publish the drift metrics and move the watermark past
   every file that was read or skipped for good; with fewer, publish nothing and keep the
   watermark, so the rows count again in the next run.

A file that cannot be used (empty, truncated, unknown encoding…) is skipped with its reason in the
ledger. A file that could not be read to the end (a network error, a throttled GetObject) is unread
data: the watermark of its variant stays before it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ConfigDict, ValidationError

from closedloop import ledger_keys, lineage
from closedloop.aws import aws_errors, is_not_found
from closedloop.drift.baseline import Baseline, BiasReport
from closedloop.drift.capture import CHUNK_SIZE, CaptureFileSkipped, CaptureReadInterrupted, read_capture
from closedloop.drift.requests import build_put_metric_data_requests
from closedloop.drift.sketch import CaptureSketch, DriftPlan, DriftReport
from closedloop.errors import ClosedloopError, LockHeldError
from closedloop.events.base import validation_problems
from closedloop.events.scheduler import DriftMonitorRun
from closedloop.ledger import Clock, Decision, Ledger, utcnow
from closedloop.model import Model
from closedloop.observability import logger, metrics
from closedloop.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = "drift-monitor"
LIVE_STATUSES = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack"})
DEFAULT_SETTLE = timedelta(minutes=5)
DEADLINE_MARGIN_S = 60.0
RUN_LEASE = timedelta(minutes=16)  # longer than the function's timeout: a crashed run frees it
SKIPPED_IN_RESULT = 20
_KEY_TIME = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/(\d{2})/(\d{2})-(\d{2})-(\d{3})-[^/]*$")

RunResult = Literal["published", "insufficient-records", "skipped"]


class LiveModel(Model):
    """What the endpoint serves, and where its evidence and captured traffic are."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    endpoint_config: str
    model_package_arn: str
    capture_bucket: str
    capture_root: str  # "<prefix>/<endpoint>/": variants are the next level
    baseline_uri: str
    bias_report_uri: str | None = None
    serving_since: datetime | None = None


class SkippedFile(Model):
    model_config = ConfigDict(frozen=True)

    key: str
    reason: str
    detail: str


class DriftRunResult(Model):
    """What one run did: measured and published, waited for more records, or could not run."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    result: RunResult
    reason: str = ""
    model_package_arn: str | None = None
    records: int = 0
    files_read: int = 0
    files_skipped: int = 0
    files_passed_over: int = 0
    skipped: list[SkippedFile] = []
    stopped_early: str = ""
    metrics_published: int = 0
    watermark: dict[str, str] = {}
    watermark_advanced: bool = False
    report: DriftReport | None = None


class _NotMeasurable(Exception):
    """A reason not to measure this run (recorded), not a failure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Scan:
    sketch: CaptureSketch
    positions: dict[str, str]
    files_read: int = 0
    passed_over: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    stopped_early: list[str] = field(default_factory=list)


def key_time(key: str) -> datetime | None:
    """When a capture file was started, from its key (`…/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl`)."""
    match = _KEY_TIME.search(key)
    if match is None:
        return None
    year, month, day, hour, minute, second, milli = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=UTC)
    except ValueError:
        return None


# Drift plans by the digests of (baseline, bias report): (plan, why the bias report was not used).
_PLANS: dict[tuple[str, str], tuple[DriftPlan, str]] = {}
PLANS_KEPT = 4


def _build_plan(live: LiveModel, baseline_bytes: bytes, bias_bytes: bytes | None) -> tuple[DriftPlan, str]:
    """Parse the evidence files and prepare the plan.

    Raises:
        _NotMeasurable: the baseline is unusable (a bias report that is not only costs the warning).
    """
    try:
        baseline = Baseline.model_validate(json.loads(baseline_bytes))
    except (ValueError, ValidationError) as exc:
        raise _NotMeasurable("invalid-baseline", f"baseline {live.baseline_uri} is unusable: {_problem(exc)}") from None
    bias_report, problem = None, ""
    if bias_bytes is not None:
        try:
            bias_report = BiasReport.model_validate(json.loads(bias_bytes))
        except (ValueError, ValidationError) as exc:
            problem = _problem(exc)
    return DriftPlan(baseline, bias_report), problem


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key).

    Raises:
        ValueError: not an S3 URI.
    """
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


class DriftMonitor:
    """The drift monitor of the stack's endpoint. Clients come in; nothing is global."""

    def __init__(
        self,
        *,
        settings: Settings,
        s3: S3Client,
        sagemaker: SageMakerClient,
        cloudwatch: CloudWatchClient,
        ledger: Ledger,
        clock: Clock = utcnow,
        settle: timedelta = DEFAULT_SETTLE,
        lease: timedelta = RUN_LEASE,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._sagemaker = sagemaker
        self._cloudwatch = cloudwatch
        self._ledger = ledger
        self._clock = clock
        self._settle = settle
        self._lease = lease

    def run(self, trigger: DriftMonitorRun, remaining_s: Callable[[], float] | None = None) -> DriftRunResult:
        """Measure drift since the last run, publish it and record the run.

        Args:
            trigger: the scheduled invocation.
            remaining_s: seconds the invocation has left; reading stops `DEADLINE_MARGIN_S` before.

        Raises:
            ClosedloopError: an AWS call the run cannot do without failed (`retryable` says whether
                a retry helps); the watermark has not moved.
        """
        endpoint = self._settings.endpoint_name
        lock = f"drift-monitor#{endpoint}"
        # A name of its own per run: a schedule delivered twice at once (same execution id) measures once.
        holder = f"{trigger.execution_id}#{uuid.uuid4().hex[:12]}"
        try:
            self._ledger.acquire_lock(lock, holder, self._lease, reason="drift measurement")
        except LockHeldError as exc:
            result = DriftRunResult(
                endpoint=endpoint,
                result="skipped",
                reason=f"another run is measuring {endpoint} (until {exc.context.get('expires_at', '?')})",
            )
            return self._finish(trigger, result, code="run-in-progress")
        try:
            return self._measure(trigger, remaining_s)
        finally:
            try:
                self._ledger.release_lock(lock, holder)
            except ClosedloopError as exc:  # the lease frees it anyway
                logger.warning("drift run lock not released", error=exc.as_dict())

    # -- one measurement --------------------------------------------------------------------------

    def _measure(self, trigger: DriftMonitorRun, remaining_s: Callable[[], float] | None) -> DriftRunResult:
        endpoint = self._settings.endpoint_name
        try:
            live = self._live_model()
            plan = self._plan(live)
        except _NotMeasurable as exc:
            logger.info("drift not measured", endpoint=endpoint, reason=exc.message, code=exc.code)
            return self._finish(
                trigger, DriftRunResult(endpoint=endpoint, result="skipped", reason=exc.message), code=exc.code
            )
        state = self._ledger.get_state(ledger_keys.capture_watermark(endpoint)) or {}
        before = {str(k): str(v) for k, v in (state.get("variants") or {}).items()}
        scan = self._scan(live, plan, dict(before), remaining_s)
        report = plan.report(scan.sketch)
        common: dict[str, Any] = {
            "endpoint": endpoint,
            "model_package_arn": live.model_package_arn,
            "records": report.records,
            "files_read": scan.files_read,
            "files_skipped": len(scan.skipped),
            "files_passed_over": scan.passed_over,
            "skipped": scan.skipped[:SKIPPED_IN_RESULT],
            "stopped_early": "; ".join(scan.stopped_early),
            "report": report,
        }
        if scan.skipped:
            metrics.add_metric(name="CaptureFilesSkipped", unit=MetricUnit.Count, value=len(scan.skipped))
        minimum = self._settings.drift_min_records
        if report.records < minimum:
            reason = f"{report.records} captured records since the watermark, fewer than {minimum}: watermark kept"
            logger.info("too few records for a stable drift estimate", endpoint=endpoint, records=report.records)
            result = DriftRunResult(result="insufficient-records", reason=reason, watermark=before, **common)
            return self._finish(trigger, result, code="insufficient-records")
        now = self._clock()
        published = self._publish(report, endpoint, now)
        advanced = scan.positions != before
        if advanced:
            self._ledger.put_state(
                ledger_keys.capture_watermark(endpoint),
                {
                    "last_key": max(scan.positions.values()),
                    "variants": scan.positions,
                    "updated_at": now.isoformat(),
                    "model_package_arn": live.model_package_arn,
                },
            )
        result = DriftRunResult(
            result="published",
            metrics_published=published,
            watermark=scan.positions,
            watermark_advanced=advanced,
            **common,
        )
        logger.info(
            "drift published",
            endpoint=endpoint,
            records=report.records,
            max_feature_psi=report.max_feature_psi,
            max_psi_feature=report.max_psi_feature,
            prediction_ks=report.prediction_ks,
            bias_drift=report.bias.drift if report.bias else None,
        )
        return self._finish(trigger, result, code="published")

    def _finish(self, trigger: DriftMonitorRun, result: DriftRunResult, *, code: str) -> DriftRunResult:
        report = result.report
        details: dict[str, Any] = {
            "code": code,
            "model_package_arn": result.model_package_arn,
            "records": result.records,
            "files_read": result.files_read,
            "files_skipped": result.files_skipped,
            "files_passed_over": result.files_passed_over,
            "stopped_early": result.stopped_early,
            "metrics_published": result.metrics_published,
            "watermark": result.watermark,
            "watermark_advanced": result.watermark_advanced,
            "scheduled_time": trigger.scheduled_time.isoformat(),
        }
        if report is not None:
            details.update(
                max_feature_psi=report.max_feature_psi,
                max_psi_feature=report.max_psi_feature,
                max_feature_ks=report.max_feature_ks,
                max_ks_feature=report.max_ks_feature,
                prediction_psi=report.prediction_psi,
                prediction_ks=report.prediction_ks,
                bias_drift=report.bias.drift if report.bias else None,
                bias_note=report.bias_note,
                invalid_rows=report.invalid_rows,
                invalid_requests=report.invalid_requests,
            )
        self._ledger.record(
            Decision(
                route=ROUTE,
                event_id=trigger.execution_id,
                business_key=f"drift:{result.endpoint}",
                action="measure_drift",
                result=result.result,
                reason=result.reason,
                details=details,
            )
        )
        if result.result != "published":
            metrics.add_metric(name="DriftRunsWithoutMetrics", unit=MetricUnit.Count, value=1)
        return result

    # -- what is live -----------------------------------------------------------------------------

    def _live_model(self) -> LiveModel:
        """The endpoint's live model package and its evidence.

        Raises:
            _NotMeasurable: no endpoint, not serving, capture off, no package or no baseline.
            ClosedloopError: a SageMaker call failed.
        """
        endpoint = self._settings.endpoint_name
        try:
            with aws_errors("sagemaker:DescribeEndpoint", passthrough=is_not_found):
                described = self._sagemaker.describe_endpoint(EndpointName=endpoint)
        except ClientError:
            raise _NotMeasurable("no-endpoint", f"endpoint {endpoint} does not exist") from None
        status = described["EndpointStatus"]
        if status not in LIVE_STATUSES:
            raise _NotMeasurable("endpoint-not-live", f"endpoint {endpoint} is {status}")
        capture = described.get("DataCaptureConfig") or {}
        if capture and not capture.get("EnableCapture", True):
            raise _NotMeasurable("capture-disabled", f"endpoint {endpoint} does not capture data")
        bucket, root = self._capture_location(capture.get("DestinationS3Uri"), endpoint)
        config_name = described["EndpointConfigName"]
        with aws_errors("sagemaker:DescribeEndpointConfig"):
            config_arn = self._sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["EndpointConfigArn"]
        package_arn = self._tagged_package(config_arn) or self._recorded_package(config_name)
        if package_arn is None:
            raise _NotMeasurable(
                "unknown-model", f"endpoint config {config_name} names no model package ({lineage.MODEL_PACKAGE} tag)"
            )
        with aws_errors("sagemaker:DescribeModelPackage"):
            package = self._sagemaker.describe_model_package(ModelPackageName=package_arn)
        baseline = package.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).get("Statistics", {})
        if not baseline.get("S3Uri"):
            raise _NotMeasurable("no-baseline", f"model package {package_arn} has no drift baseline")
        bias = package.get("ModelMetrics", {}).get("Bias", {}).get("PostTrainingReport", {})
        return LiveModel(
            endpoint=endpoint,
            endpoint_config=config_name,
            model_package_arn=package_arn,
            capture_bucket=bucket,
            capture_root=root,
            baseline_uri=baseline["S3Uri"],
            bias_report_uri=bias.get("S3Uri"),
            serving_since=described.get("LastModifiedTime"),
        )

    def _capture_location(self, destination: str | None, endpoint: str) -> tuple[str, str]:
        """The capture bucket and the key prefix of this endpoint's files in it."""
        if destination:
            bucket, prefix = split_s3_uri(destination.rstrip("/") + "/")
        else:
            bucket, prefix = self._settings.capture_bucket, self._settings.capture_prefix
        prefix = prefix.strip("/")
        return bucket, f"{prefix}/{endpoint}/" if prefix else f"{endpoint}/"

    def _tagged_package(self, config_arn: str) -> str | None:
        with aws_errors("sagemaker:ListTags"):
            tags = self._sagemaker.list_tags(ResourceArn=config_arn, MaxResults=100).get("Tags", [])
        value = next((t["Value"] for t in tags if t["Key"] == lineage.MODEL_PACKAGE), None)
        return value if value and value.startswith("arn:") else None

    def _recorded_package(self, config_name: str) -> str | None:
        """The rollout's record of what is live, when it is about this very endpoint config."""
        state = self._ledger.get_state(ledger_keys.endpoint_state(self._settings.endpoint_name)) or {}
        if state.get("endpoint_config") == config_name and state.get("live_model_package_arn"):
            return str(state["live_model_package_arn"])
        return None

    def _plan(self, live: LiveModel) -> DriftPlan:
        """The live model's drift plan, built once per warm container for the same evidence files.

        Every run reads the baseline and bias report again (a new version brings new files); only
        when their bytes are those of a plan already built is the parsing and preparing skipped.
        """
        baseline_bytes = self._read(live.baseline_uri)
        bias_bytes, bias_problem = None, ""
        if live.bias_report_uri:
            try:
                bias_bytes = self._read(live.bias_report_uri)
            except _NotMeasurable as exc:
                bias_problem = _problem(exc)
        key = (hashlib.sha256(baseline_bytes).hexdigest(), hashlib.sha256(bias_bytes or b"").hexdigest())
        if key not in _PLANS:
            _PLANS[key] = _build_plan(live, baseline_bytes, bias_bytes)
            while len(_PLANS) > PLANS_KEPT:
                _PLANS.pop(next(iter(_PLANS)))
        plan, parse_problem = _PLANS[key]
        if bias_problem or parse_problem:
            logger.warning(
                "bias report unusable; the baseline's DPPL is the reference", error=bias_problem or parse_problem
            )
        return plan

    def _read(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        try:
            with aws_errors("s3:GetObject(evidence)", passthrough=is_not_found):
                body: bytes = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            raise _NotMeasurable("no-baseline", f"{uri} does not exist") from None
        return body

    # -- captured traffic -------------------------------------------------------------------------

    def _scan(
        self,
        live: LiveModel,
        plan: DriftPlan,
        positions: dict[str, str],
        remaining_s: Callable[[], float] | None,
    ) -> _Scan:
        scan = _Scan(sketch=plan.new_sketch(), positions=positions)
        newest = self._clock() - self._settle
        for variant in self._variants(live):
            for obj in self._objects(live, variant, positions.get(variant, "")):
                key = obj["Key"]
                at = key_time(key) or obj["LastModified"]
                if at > newest:
                    break  # younger files (and all after them) are read next run
                if remaining_s is not None and remaining_s() < DEADLINE_MARGIN_S:
                    scan.stopped_early.append("deadline: the rest is read next run")
                    return scan
                if live.serving_since is not None and at < live.serving_since:
                    scan.passed_over += 1
                    positions[variant] = key
                    continue
                outcome = self._read_file(live.capture_bucket, obj, plan)
                if isinstance(outcome, SkippedFile):
                    self._record_skipped(live, obj, outcome)
                    scan.skipped.append(outcome)
                elif isinstance(outcome, CaptureSketch):
                    scan.sketch.merge(outcome)
                    scan.files_read += 1
                else:
                    scan.stopped_early.append(f"{key} was not read to the end ({outcome}); read again next run")
                    break
                positions[variant] = key
        return scan

    def _variants(self, live: LiveModel) -> list[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        variants: list[str] = []
        with aws_errors("s3:ListObjectsV2(variants)"):
            for page in paginator.paginate(Bucket=live.capture_bucket, Prefix=live.capture_root, Delimiter="/"):
                variants.extend(
                    p["Prefix"][len(live.capture_root) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                )
        return sorted(v for v in variants if v)

    def _objects(self, live: LiveModel, variant: str, start_after: str) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        prefix = f"{live.capture_root}{variant}/"
        arguments: dict[str, Any] = {"Bucket": live.capture_bucket, "Prefix": prefix}
        if start_after:
            arguments["StartAfter"] = start_after
        with aws_errors("s3:ListObjectsV2(capture)"):
            for page in paginator.paginate(**arguments):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):
                        yield dict(obj)

    def _read_file(self, bucket: str, obj: dict[str, Any], plan: DriftPlan) -> CaptureSketch | SkippedFile | str:
        """Count one capture file into its own sketch: the sketch, why it was skipped, or why unread."""
        key = obj["Key"]
        try:
            with aws_errors("s3:GetObject(capture)", passthrough=is_not_found):
                response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError:
            return SkippedFile(key=key, reason="gone", detail="deleted before it was read")
        except ClosedloopError as exc:
            return exc.message
        body = response["Body"]
        sketch = plan.new_sketch()
        try:
            for request in read_capture(body.iter_chunks(CHUNK_SIZE), expected_bytes=response.get("ContentLength")):
                sketch.add_request(request.inputs, request.outputs)
        except CaptureFileSkipped as exc:
            return SkippedFile(key=key, reason=exc.reason, detail=exc.detail)
        except (CaptureReadInterrupted, BotoCoreError) as exc:
            return _short(exc)
        finally:
            body.close()
        return sketch

    def _record_skipped(self, live: LiveModel, obj: dict[str, Any], skipped: SkippedFile) -> None:
        logger.warning("capture file skipped", key=skipped.key, reason=skipped.reason, detail=skipped.detail)
        self._ledger.record(
            Decision(
                route=ROUTE,
                event_id=str(obj.get("ETag", "")).strip('"') or skipped.key,
                business_key=f"capture:{live.capture_bucket}/{skipped.key}"[:1400],
                action="read_capture_file",
                result="skipped",
                reason=f"{skipped.reason}: {skipped.detail}",
                details={"reason": skipped.reason, "bytes": obj.get("Size"), "endpoint": live.endpoint},
            )
        )

    # -- publishing -------------------------------------------------------------------------------

    def _publish(self, report: DriftReport, endpoint: str, at: datetime) -> int:
        requests = build_put_metric_data_requests(
            report, namespace=self._settings.drift_metrics_namespace, endpoint=endpoint, at=at
        )
        for request in requests:
            with aws_errors("cloudwatch:PutMetricData"):
                self._cloudwatch.put_metric_data(**request)
        return sum(len(r["MetricData"]) for r in requests)


def _problem(exc: BaseException) -> str:
    """Why a document was refused — where and what, never the values it held."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{p['at']}: {p['problem']}" for p in validation_problems(exc)[:3])
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
