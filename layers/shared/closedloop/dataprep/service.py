"""Route 1's side effects: start one preparation run per dataset, exactly once.

Three guards stand between a duplicate delivery and a second job:
1. raw objects already taken by a run are dropped (ledger `OBJECT#…` items), so the same file
   redelivered in another batch starts nothing;
2. the run id is a hash of the batch content, and starting a run is idempotent on it (Powertools
   idempotency on DynamoDB);
3. the job itself is found before it is started — the Processing job by its deterministic name,
   the Glue run by its `--run-id` argument — so a retry after a crash between "job started" and
   "idempotency record saved" starts nothing new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import ConfigDict

from closedloop import routes
from closedloop.aws import aws_errors, is_already_exists, is_not_found
from closedloop.dataprep.arrival import DataPrepRun, RawObject, plan_runs
from closedloop.dataprep.policy import load_policy
from closedloop.dataprep.requests import (
    SCRIPT_NAME,
    build_glue_job_run_request,
    build_prep_manifest,
    build_processing_job_request,
    bundle_sha256,
    code_key,
    manifest_key,
    prep_job_name,
)
from closedloop.errors import ClosedloopError, UnknownDatasetError
from closedloop.featurestore import ingestion_plan
from closedloop.ledger import Ledger
from closedloop.line import LineResources, load_line
from closedloop.model import Model
from closedloop.route_output import RouteOutput
from closedloop.settings import DataPrepEngine, Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.DATA_ARRIVAL.name
ACTION = "start_data_prep"
GLUE_RUN_LOOKBACK_PAGES = 4


class DataPrepStarted(Model):
    """A preparation run that is running (started now or found already started)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    dataset: str
    engine: DataPrepEngine
    job_name: str
    job_run_id: str | None = None
    manifest_uri: str
    objects: int
    found_existing: bool = False


class RunOutcome(Model):
    """What happened to one dataset's objects of a batch."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    result: Literal["started", "duplicate", "failed"]
    identities: tuple[str, ...]
    run: DataPrepStarted | None = None
    error: dict[str, object] | None = None
    retryable: bool = False


def prep_code_bundle() -> dict[str, bytes]:
    """The preparation code shipped in this package, by relative path: the script Glue and
    Processing run, its detector module, and the wheels of the detector libraries."""
    package = resources.files("closedloop.prep")
    files = {name: package.joinpath(name).read_bytes() for name in (SCRIPT_NAME, "detectors.py")}
    for wheel in package.joinpath("wheels").iterdir():
        if wheel.name.endswith(".whl"):
            files[f"wheels/{wheel.name}"] = wheel.read_bytes()
    return files


class DataPrepService:
    """Starts preparation runs for batches of raw objects. Clients come in; nothing is global."""

    def __init__(
        self,
        *,
        settings: Settings,
        s3: S3Client,
        sagemaker: SageMakerClient,
        glue: GlueClient,
        ledger: Ledger,
        idempotency_store: BasePersistenceLayer | Callable[[], BasePersistenceLayer],
        code: Callable[[], dict[str, bytes]] = prep_code_bundle,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._sagemaker = sagemaker
        self._glue = glue
        self._ledger = ledger
        self._code = code
        self._output = RouteOutput(routes.DATA_ARRIVAL, ledger, settings=settings)
        self._start_once = self._output.once(
            self._start,
            action=ACTION,
            key="run_id",
            data_argument="run",
            output=DataPrepStarted,
            store=idempotency_store,
        )

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._output.register_lambda_context(context)

    def prepare(self, objects: Sequence[RawObject]) -> list[RunOutcome]:
        """Start one run per dataset for the new objects of a batch; never raises per dataset.

        Objects a run already took are reported as `duplicate`; a dataset whose run could not be
        started is `failed` with the structured error and whether a retry can help.
        """
        outcomes = []
        for candidate in plan_runs(objects):
            try:
                outcomes.append(self._prepare_dataset(candidate))
            except ClosedloopError as exc:
                self._record_failure(candidate, exc)
                outcomes.append(
                    RunOutcome(
                        dataset=candidate.dataset,
                        result="failed",
                        identities=tuple(candidate.identities),
                        error=exc.as_dict(),
                        retryable=exc.retryable,
                    )
                )
        return outcomes

    def _record_failure(self, candidate: DataPrepRun, exc: ClosedloopError) -> None:
        try:
            self._output.record(
                event_id=min(obj.event_id for obj in candidate.objects),
                business_key=f"run:{candidate.dataset}/{candidate.run_id}",
                action=ACTION,
                result="failed",
                reason=exc.message,
                details={**exc.as_dict(), "objects": len(candidate.objects)},
            )
        except ClosedloopError:  # the ledger itself is down: the batch item failure still reports it
            return

    def _prepare_dataset(self, candidate: DataPrepRun) -> RunOutcome:
        consumed = self._ledger.consumed_objects(candidate.identities)
        fresh = tuple(obj for obj in candidate.objects if obj.identity not in consumed)
        event_id = min(obj.event_id for obj in candidate.objects)
        if not fresh:
            for run_id in sorted(set(consumed.values())):
                # a run that took these objects and died before writing down its start
                self._ledger.settle_intent(f"run:{candidate.dataset}/{run_id}", ROUTE, ACTION)
            self._output.record(
                event_id=event_id,
                business_key=f"run:{candidate.dataset}/{sorted(set(consumed.values()))[0]}",
                action=ACTION,
                result="duplicate",
                reason="every object of the batch was already taken by a preparation run",
                details={"objects": len(candidate.objects), "runs": sorted(set(consumed.values()))},
            )
            return RunOutcome(dataset=candidate.dataset, result="duplicate", identities=tuple(candidate.identities))
        run = DataPrepRun(dataset=candidate.dataset, objects=fresh)
        started_decision = self._output.decision(
            event_id=event_id,
            business_key=f"run:{run.dataset}/{run.run_id}",
            action=ACTION,
            result="started",
            details={
                "engine": self.engine_for(run).value,
                "input_bytes": sum(obj.size or 0 for obj in run.objects),
                "job": self._job_name(run),
                "manifest": self._manifest_uri(run),
                "objects": len(fresh),
                "duplicates_dropped": len(candidate.objects) - len(fresh),
            },
        )
        with self._ledger.intent(started_decision, withdraw_on=ClosedloopError):
            started = self._start_once(run=run)
        self._ledger.mark_consumed(run.identities, run.run_id)
        self._ledger.record(
            started_decision.model_copy(
                update={
                    "reason": "found already running" if started.found_existing else "",
                    "details": {
                        **started_decision.details,
                        "job": started.job_name,
                        "job_run_id": started.job_run_id,
                        "manifest": started.manifest_uri,
                    },
                }
            )
        )
        return RunOutcome(dataset=run.dataset, result="started", identities=tuple(candidate.identities), run=started)

    def engine_for(self, run: DataPrepRun) -> DataPrepEngine:
        """The engine that prepares `run`: the stack's, or with `auto` the Glue Spark job from
        `spark_threshold_bytes` of input (the sizes S3 reported in the upload events), else the
        Glue Python shell job. A run's objects are fixed, so a retry chooses the same engine."""
        engine = self._settings.data_prep_engine
        if engine is not DataPrepEngine.AUTO:
            return engine
        size = sum(obj.size or 0 for obj in run.objects)
        return DataPrepEngine.GLUE_SPARK if size >= self._settings.spark_threshold_bytes else DataPrepEngine.GLUE

    def _job_name(self, run: DataPrepRun) -> str:
        engine = self.engine_for(run)
        if engine is DataPrepEngine.GLUE:
            return self._settings.glue_job_name
        if engine is DataPrepEngine.GLUE_SPARK:
            return self._settings.glue_spark_job_name
        return prep_job_name(self._settings.prep_job_prefix, run.dataset, run.run_id)

    def _manifest_uri(self, run: DataPrepRun) -> str:
        key = manifest_key(self._settings.manifests_prefix, run.dataset, run.run_id)
        return f"s3://{self._settings.data_bucket}/{key}"

    def _start(self, run: DataPrepRun) -> DataPrepStarted:
        """Write the run's manifest and start its job, unless the job already exists."""
        settings = self._settings
        policy = load_policy(run.dataset)
        manifest = build_prep_manifest(
            run,
            policy,
            data_bucket=settings.data_bucket,
            prepared_prefix=settings.prepared_prefix,
            quarantine_bucket=settings.quarantine_bucket,
            secret_arn=settings.pseudonymisation_secret_arn,
            feature_store=self._ingestion_plan(run.dataset),
        )
        key = manifest_key(settings.manifests_prefix, run.dataset, run.run_id)
        with aws_errors("s3:PutObject(manifest)"):
            self._s3.put_object(
                Bucket=settings.data_bucket,
                Key=key,
                Body=json.dumps(manifest, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
            )
        manifest_uri = f"s3://{settings.data_bucket}/{key}"
        engine = self.engine_for(run)
        if engine in (DataPrepEngine.GLUE, DataPrepEngine.GLUE_SPARK):
            return self._start_glue(run, manifest_uri, engine)
        return self._start_processing(run, manifest_uri)

    def _ingestion_plan(self, line: str) -> dict[str, Any] | None:
        """The line's feature group ingestion for the run's manifest (None: the line ingests none)."""
        try:
            spec = load_line(line)
        except UnknownDatasetError:  # a dataset policy with no line file of its own (a test's) has no group
            return None
        owned = LineResources.of(self._settings.resource_prefix, self._settings.raw_prefix, line)
        return ingestion_plan(spec.feature_store, spec, owned.feature_group)

    def _start_processing(self, run: DataPrepRun, manifest_uri: str) -> DataPrepStarted:
        settings = self._settings
        name = prep_job_name(settings.prep_job_prefix, run.dataset, run.run_id)
        result = DataPrepStarted(
            run_id=run.run_id,
            dataset=run.dataset,
            engine=DataPrepEngine.PROCESSING,
            job_name=name,
            manifest_uri=manifest_uri,
            objects=len(run.objects),
        )
        if self._processing_job_exists(name):
            return result.model_copy(update={"found_existing": True})
        request = build_processing_job_request(
            job_name=name,
            run=run,
            manifest_uri=manifest_uri,
            code_uri=self._code_uri,
            role_arn=settings.processing_role_arn,
            image_uri=settings.processing_image_uri,
            instance_type=settings.processing_instance_type,
            max_runtime_s=settings.processing_max_runtime_s,
        )
        try:
            with aws_errors("sagemaker:CreateProcessingJob", passthrough=is_already_exists):
                self._sagemaker.create_processing_job(**request)
        except ClientError:
            return result.model_copy(update={"found_existing": True})
        return result

    def _processing_job_exists(self, name: str) -> bool:
        try:
            with aws_errors("sagemaker:DescribeProcessingJob", passthrough=is_not_found):
                self._sagemaker.describe_processing_job(ProcessingJobName=name)
        except ClientError:
            return False
        return True

    def _start_glue(self, run: DataPrepRun, manifest_uri: str, engine: DataPrepEngine) -> DataPrepStarted:
        job = self._job_name(run)
        result = DataPrepStarted(
            run_id=run.run_id,
            dataset=run.dataset,
            engine=engine,
            job_name=job,
            manifest_uri=manifest_uri,
            objects=len(run.objects),
        )
        existing = self._find_glue_run(job, run.run_id)
        if existing is not None:
            return result.model_copy(update={"job_run_id": existing, "found_existing": True})
        script_uri = self._code_uri
        prefix = script_uri.rsplit("/", 1)[0]
        # the Python shell job runs prepare.py itself; the Spark job's tasks import it
        shipped = [name for name in self._code_names if engine is DataPrepEngine.GLUE_SPARK or name != SCRIPT_NAME]
        request = build_glue_job_run_request(
            glue_job_name=job,
            run=run,
            manifest_uri=manifest_uri,
            extra_py_files=[f"{prefix}/{name}" for name in shipped],
            engine=engine.value,
        )
        with aws_errors("glue:StartJobRun"):
            response = self._glue.start_job_run(**request)
        return result.model_copy(update={"job_run_id": response["JobRunId"]})

    def _find_glue_run(self, job: str, run_id: str) -> str | None:
        """The id of a recent run of `job` started for `run_id`, if there is one."""
        token: str | None = None
        for _ in range(GLUE_RUN_LOOKBACK_PAGES):
            with aws_errors("glue:GetJobRuns"):
                page = (
                    self._glue.get_job_runs(JobName=job, MaxResults=200, NextToken=token)
                    if token
                    else self._glue.get_job_runs(JobName=job, MaxResults=200)
                )
            for job_run in page.get("JobRuns", []):
                if job_run.get("Arguments", {}).get("--run-id") == run_id:
                    return job_run["Id"]
            token = page.get("NextToken")
            if not token:
                return None
        return None

    @cached_property
    def _code_files(self) -> dict[str, bytes]:
        return self._code()

    @property
    def _code_names(self) -> list[str]:
        return sorted(self._code_files)

    @cached_property
    def _code_uri(self) -> str:
        """Upload the preparation code once, content-addressed, and return the script's S3 URI.

        The script goes last: when it is there, the whole bundle is (a crash midway uploads the
        rest again on the next start).
        """
        files = self._code_files
        digest = bundle_sha256(files)
        bucket = self._settings.artifacts_bucket
        script_key = code_key(digest)
        try:
            with aws_errors("s3:HeadObject(code)", passthrough=is_not_found):
                self._s3.head_object(Bucket=bucket, Key=script_key)
        except ClientError:
            for name in sorted(files, key=lambda n: n == SCRIPT_NAME):
                content_type = "text/x-python" if name.endswith(".py") else "application/zip"
                with aws_errors("s3:PutObject(code)"):
                    self._s3.put_object(
                        Bucket=bucket, Key=code_key(digest, name), Body=files[name], ContentType=content_type
                    )
        return f"s3://{bucket}/{script_key}"
