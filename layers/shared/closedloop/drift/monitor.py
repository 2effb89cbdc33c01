"""Route 7's scheduled run: measure the live endpoint's captured traffic against its baseline.

One run, for the stack's endpoint, one step per piece:
1. take the endpoint's run lock (`run_lock`): a run already measuring it makes this one a skip;
2. find what is live (`live`, over SageMaker: `serving`) and its drift plan (`plans`, from the
   evidence files: `evidence`);
3. read the capture files written since the watermark (`scan`, over S3: `traffic`) — never more
   than one file's counts beyond the run's own, whatever the traffic;
4. with at least `drift_min_records` rows, publish the drift metrics (`publisher`) and move the
   watermark past every file that was read or skipped for good; with fewer, publish nothing and
   keep the watermark, so the rows count again in the next run;
5. feature attribution drift (`explain`): read the line's Clarify job that ended since (its nDCG
   against the version's explainability baseline → `AttributionNdcg`), and for a measured window
   of a version with such a baseline, start the window's job — one at a time;
6. record the run in the ledger, whatever it did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ConfigDict

from closedloop import routes
from closedloop.drift.evidence import EvidenceFiles
from closedloop.drift.explain import AttributionDrift, AttributionJobs, AttributionOutcome, window_digest
from closedloop.drift.live import LiveModel, find_live_model
from closedloop.drift.plans import drift_plan
from closedloop.drift.publisher import DriftPublisher
from closedloop.drift.reasons import NotMeasurable
from closedloop.drift.run_lock import DriftRunLock
from closedloop.drift.sample import RowSample
from closedloop.drift.scan import CaptureScanner
from closedloop.drift.serving import Serving
from closedloop.drift.sketch import DriftReport
from closedloop.drift.traffic import CapturedTraffic, SkippedFile, key_time
from closedloop.errors import ClosedloopError, LockHeldError
from closedloop.events.scheduler import DriftMonitorRun
from closedloop.ledger import Clock, Ledger, utcnow
from closedloop.model import Model
from closedloop.observability import logger, metrics
from closedloop.route_output import RouteOutput
from closedloop.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

__all__ = ["DriftMonitor", "DriftRunResult", "key_time"]  # key_time: the capture key's clock, kept importable here

ROUTE = routes.DRIFT_MONITOR.name
DEFAULT_SETTLE = timedelta(minutes=5)
RUN_LEASE = timedelta(minutes=16)  # longer than the function's timeout: a crashed run frees it
SKIPPED_IN_RESULT = 20

RunResult = Literal["published", "insufficient-records", "skipped"]


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
    # feature attribution drift: the job read this run (ended), and what was done about this window
    attribution_read: AttributionOutcome | None = None
    attribution_job: AttributionOutcome | None = None


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
        self._ledger = ledger
        self._clock = clock
        self._output = RouteOutput(routes.DRIFT_MONITOR, ledger, settings=settings)
        self._lock = DriftRunLock(ledger, lease=lease)
        self._serving = Serving(sagemaker, settings.endpoint_name)
        self._evidence = EvidenceFiles(s3)
        self._capture = CaptureScanner(CapturedTraffic(s3), ledger, clock=clock, settle=settle, output=self._output)
        self._publisher = DriftPublisher(cloudwatch, settings.drift_metrics_namespace)
        self._attributions = AttributionDrift(
            settings=settings,
            jobs=AttributionJobs(sagemaker, s3),
            evidence=self._evidence,
            serving=self._serving,
            ledger=ledger,
            publisher=self._publisher,
            output=self._output,
        )

    def handle(self, trigger: DriftMonitorRun, remaining_s: Callable[[], float] | None = None) -> DriftRunResult:
        """Measure drift since the last run, publish it and record the run.

        Args:
            trigger: the scheduled invocation.
            remaining_s: seconds the invocation has left; reading stops `scan.DEADLINE_MARGIN_S` before.

        Raises:
            ClosedloopError: an AWS call the run cannot do without failed (`retryable` says whether
                a retry helps); the watermark has not moved.
        """
        endpoint = self._settings.endpoint_name
        try:
            holder = self._lock.acquire(endpoint, trigger.execution_id)
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
            self._lock.release(endpoint, holder)

    def _measure(self, trigger: DriftMonitorRun, remaining_s: Callable[[], float] | None) -> DriftRunResult:
        endpoint = self._settings.endpoint_name
        try:
            live = find_live_model(self._serving, self._ledger, self._settings)
            plan = drift_plan(live, self._evidence)
        except NotMeasurable as exc:
            logger.info("drift not measured", endpoint=endpoint, reason=exc.message, code=exc.code)
            return self._finish(
                trigger, DriftRunResult(endpoint=endpoint, result="skipped", reason=exc.message), code=exc.code
            )
        before = self._capture.watermark(endpoint)
        read, explain_not = self._follow_up(trigger, live)
        sample = None if explain_not else self._attributions.new_sample(live, before)
        scan = self._capture.scan(live, plan, before, remaining_s, sample)
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
            "attribution_read": read,
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
        published = self._publisher.publish(report, endpoint=endpoint, at=now)
        advanced = scan.positions != before
        features = list(plan.baseline.feature_order)
        job = self._explain(trigger, live, scan.sample, (before, scan.positions), features, explain_not, advanced)
        if advanced:
            self._capture.move_watermark(live, scan.positions, now)
        result = DriftRunResult(
            result="published",
            metrics_published=published,
            watermark=scan.positions,
            watermark_advanced=advanced,
            attribution_job=job,
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

    def _follow_up(self, trigger: DriftMonitorRun, live: LiveModel) -> tuple[AttributionOutcome | None, str]:
        """Read the line's attribution job in flight; and why this run's window is not to be explained.

        A failure to read it costs the attribution figure, not the drift metrics: the job stays in
        flight (read again next run) and no other is started meanwhile.
        """
        try:
            read = self._attributions.follow_up(trigger, live, self._clock())
        except ClosedloopError as exc:
            logger.warning("attribution job not read", endpoint=live.endpoint, error=exc.as_dict())
            reason = f"the line's attribution job could not be read: {exc.message}"
            return AttributionOutcome(status="failed", reason=reason), reason
        why_not = self._attributions.why_not(live)
        if not why_not and read is not None and read.status == "running":
            why_not = f"the line's attribution job {read.job_name} is still running"
        return read, why_not

    def _explain(
        self,
        trigger: DriftMonitorRun,
        live: LiveModel,
        sample: RowSample | None,
        window: tuple[dict[str, str], dict[str, str]],
        features: list[str],
        why_not: str,
        advanced: bool,
    ) -> AttributionOutcome:
        """Start the measured window's explainability job, or record why its window is not explained."""
        if why_not:
            return self._attributions.skip(why_not)
        if not advanced:
            return self._attributions.skip("no new capture file since the last window")
        digest = window_digest(live.endpoint, live.model_package_arn, *window)
        return self._attributions.start(trigger, live, sample, digest, features)

    def _finish(self, trigger: DriftMonitorRun, result: DriftRunResult, *, code: str) -> DriftRunResult:
        """Record the run in the ledger (what it measured, if anything) and count runs without metrics."""
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
        if result.attribution_read is not None:
            details.update(
                attribution_read=result.attribution_read.status, attribution_ndcg=result.attribution_read.ndcg
            )
        if result.attribution_job is not None:
            details.update(
                attribution_job=result.attribution_job.status, attribution_reason=result.attribution_job.reason
            )
        self._output.record(
            event_id=trigger.execution_id,
            business_key=f"drift:{result.endpoint}",
            action="measure_drift",
            result=result.result,
            reason=result.reason,
            details=details,
        )
        if result.result != "published":
            metrics.add_metric(name="DriftRunsWithoutMetrics", unit=MetricUnit.Count, value=1)
        return result
