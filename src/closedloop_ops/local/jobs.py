"""Run the stack's jobs locally: the same scripts the Processing, Glue and pipeline containers run.

A Processing job runs its `ContainerEntrypoint` with its `ContainerArguments`; its S3 inputs are
downloaded to their `LocalPath` and its outputs uploaded from theirs, with `/opt/ml/processing`
mapped to a work directory. A job of SageMaker Clarify's container (`sagemaker-clarify-processing`,
no entrypoint: the image's own) runs its explainability analysis with the open-source libraries
Clarify is built on (`closedloop_ops.local.clarify.run_explainability_job`). A Glue job run runs
the job's script with its arguments. When a job ends, the runner marks it finished in moto and
publishes the state-change event AWS would send.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop.s3uri import split_s3_uri
from closedloop_ops.local.emitter import ACCOUNT, Emitter
from closedloop_ops.local.provision import LocalStack
from closedloop_ops.local.zygote import Zygote, run_fresh
from closedloop_ops.moto_ext import jobs as moto_jobs

PROCESSING_ROOT = "/opt/ml/processing"
CLARIFY_REPOSITORY = "/sagemaker-clarify-processing:"
ZYGOTE = Zygote()  # one per process, started by the first job; it ends when this process does


class JobError(Exception):
    """A job's configuration cannot run locally (not a script failure: those fail the job)."""


@dataclass
class JobRecord:
    kind: str
    name: str
    status: str
    seconds: float
    reason: str = ""


@dataclass
class JobRunner:
    """Finds jobs that are running in moto, runs them, finishes them and publishes their events."""

    stack: LocalStack
    emitter: Emitter
    prep_script: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="closedloop-jobs-")))
    records: list[JobRecord] = field(default_factory=list)
    timeout_s: int = 600

    def run_pending(self) -> int:
        """Run every job that is still running; returns how many ran."""
        return self._run_processing_jobs() + self._run_glue_runs()

    # -- credentials and environment --------------------------------------------------------------

    def _environment(self, role_arn: str) -> dict[str, str]:
        creds = self.stack.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="local-job")["Credentials"]
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
        return {
            **keep,
            "AWS_ENDPOINT_URL": self.stack.endpoint_url,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
            "PYTHONUNBUFFERED": "1",
        }

    def _run(self, argv: list[str], env: dict[str, str], cwd: Path, *, fresh: bool = False) -> tuple[int, str]:
        """Run a job's script (forked from the zygote, or with `fresh` a new interpreter); (exit code,
        the last line it printed when it failed)."""
        import time

        started = time.perf_counter()
        if fresh or argv[0] != sys.executable:
            code, output = run_fresh(argv, env, cwd, self.timeout_s)
        else:
            code, output = ZYGOTE.run(argv, env, cwd, self.timeout_s)
        self._last_seconds = time.perf_counter() - started
        tail = output.strip().splitlines()[-1:] if code else []
        return code, tail[0][:500] if tail else ""

    # -- Processing ---------------------------------------------------------------------------

    def _run_processing_jobs(self) -> int:
        sm = self.stack.client("sagemaker")
        ran = 0
        for summary in sm.list_processing_jobs(StatusEquals="InProgress", MaxResults=100)["ProcessingJobSummaries"]:
            described = sm.describe_processing_job(ProcessingJobName=summary["ProcessingJobName"])
            if described.get("ProcessingJobStatus") != "InProgress":
                continue
            status, reason = self._run_processing(described)
            moto_jobs.finish_processing_job(ACCOUNT, self.stack.region, described["ProcessingJobName"], status, reason)
            self.records.append(
                JobRecord("processing", described["ProcessingJobName"], status, self._last_seconds, reason)
            )
            final = sm.describe_processing_job(ProcessingJobName=described["ProcessingJobName"])
            self.emitter.publish(self.emitter.processing_job_state_change(final))
            ran += 1
        return ran

    def _run_processing(self, described: dict[str, Any]) -> tuple[str, str]:
        root = self.workdir / described["ProcessingJobName"]
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        s3 = self.stack.client("s3")
        for item in described.get("ProcessingInputs", []):
            if "S3Input" in item:
                _download(s3, item["S3Input"]["S3Uri"], self._local(root, item["S3Input"]["LocalPath"]))
        outputs = described.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            self._local(root, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        app = described["AppSpecification"]
        if CLARIFY_REPOSITORY in app.get("ImageUri", "") and not app.get("ContainerEntrypoint"):
            return self._run_clarify(described, root)
        entry = [self._map(root, part) for part in app.get("ContainerEntrypoint", [])]
        if not entry:
            raise JobError(f"{described['ProcessingJobName']}: no ContainerEntrypoint to run locally")
        if entry[0] in {"python", "python3"}:
            entry[0] = sys.executable
        argv = entry + [self._map(root, part) for part in app.get("ContainerArguments", [])]
        env = {**self._environment(described["RoleArn"]), **described.get("Environment", {})}
        code, tail = self._run(argv, env, root)
        if code != 0:
            return "Failed", f"AlgorithmError: {tail or f'exit code {code}'}"
        for item in outputs:
            _upload(s3, self._local(root, item["S3Output"]["LocalPath"]), item["S3Output"]["S3Uri"])
        return "Completed", ""

    def _run_clarify(self, described: dict[str, Any], root: Path) -> tuple[str, str]:
        """Clarify's container: `analysis_config` and `dataset` in, `analysis.json` to its one output."""
        import time

        from closedloop_ops.local.clarify import ClarifyCheckError, run_explainability_job

        inputs = {
            item["InputName"]: self._local(root, item["S3Input"]["LocalPath"])
            for item in described.get("ProcessingInputs", [])
            if "S3Input" in item
        }
        outputs = described.get("ProcessingOutputConfig", {}).get("Outputs", [])
        if set(inputs) != {"analysis_config", "dataset"} or len(outputs) != 1:
            raise JobError(
                f"{described['ProcessingJobName']}: a Clarify job takes analysis_config and dataset, one output"
            )
        target = self._local(root, outputs[0]["S3Output"]["LocalPath"])
        started = time.perf_counter()
        try:
            run_explainability_job(
                self.stack.client("s3"),
                self.stack.client("sagemaker"),
                config_dir=inputs["analysis_config"],
                data_dir=inputs["dataset"],
                output_dir=target,
            )
        except ClarifyCheckError as exc:
            return "Failed", f"ClientError: {exc}"
        finally:
            self._last_seconds = time.perf_counter() - started
        _upload(self.stack.client("s3"), target, outputs[0]["S3Output"]["S3Uri"])
        return "Completed", ""

    @staticmethod
    def _local(root: Path, container_path: str) -> Path:
        if not container_path.startswith(PROCESSING_ROOT):
            raise JobError(f"container path {container_path} is outside {PROCESSING_ROOT}")
        return root / container_path[len(PROCESSING_ROOT) :].lstrip("/")

    @staticmethod
    def _map(root: Path, argument: str) -> str:
        return argument.replace(PROCESSING_ROOT, str(root)) if argument.startswith(PROCESSING_ROOT) else argument

    # -- Glue ---------------------------------------------------------------------------------

    def _run_glue_runs(self) -> int:
        glue = self.stack.client("glue")
        ran = 0
        for job in glue.get_jobs()["Jobs"]:
            for run in glue.get_job_runs(JobName=job["Name"])["JobRuns"]:
                if run["JobRunState"] not in {"STARTING", "RUNNING"}:
                    continue
                arguments = {**job.get("DefaultArguments", {}), **run.get("Arguments", {})}
                # a Spark job (glueetl) runs its script on local pyspark, the Python shell job the script itself
                spark = job.get("Command", {}).get("Name") == "glueetl"
                script = self.prep_script.with_name("spark_prepare.py") if spark else self.prep_script
                argv = [sys.executable, str(script)]
                for key, value in arguments.items():
                    argv += [key, str(value)]
                code, tail = self._run(argv, self._environment(job["Role"]), self.workdir, fresh=spark)
                state, message = (
                    ("SUCCEEDED", "Job run succeeded")
                    if code == 0
                    else ("FAILED", tail or f"Command failed with exit code {code}")
                )
                moto_jobs.finish_glue_run(ACCOUNT, self.stack.region, job["Name"], run["Id"], state, message)
                self.records.append(
                    JobRecord("glue", f"{job['Name']}/{run['Id']}", state, self._last_seconds, message if code else "")
                )
                self.emitter.publish(
                    self.emitter.glue_job_state_change(
                        job_name=job["Name"], run_id=run["Id"], state=state, message=message
                    )
                )
                ran += 1
        return ran


def _download(s3: Any, uri: str, target: Path) -> None:
    bucket, prefix = split_s3_uri(uri, key_required=False)
    target.mkdir(parents=True, exist_ok=True)
    paginator = s3.get_paginator("list_objects_v2")
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
            found = True
    if not found:
        raise JobError(f"input {uri} is empty")


def _upload(s3: Any, source: Path, uri: str) -> None:
    bucket, prefix = split_s3_uri(uri, key_required=False)
    prefix = prefix.rstrip("/")
    for path in sorted(source.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(source).as_posix()}" if prefix else path.relative_to(source).as_posix()
            s3.upload_file(str(path), bucket, key)
