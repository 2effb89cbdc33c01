"""Run a SageMaker pipeline execution locally, step by step, from the generated definition.

The executor walks `pipelines/definition.json` — the same definition `closedloop pipeline upsert` sends to
SageMaker — in dependency order, evaluates its expressions (`Get`, `Std:Join`, `Std:JsonGet`) against
the execution's parameters and the steps' properties, and runs each step the way its container
would: a Training step runs the estimator's entry point with SageMaker's environment variables and
channels and tars `/opt/ml/model`; a Processing step goes through the job runner; a RegisterModel
step calls CreateModelPackage; a Condition step evaluates its conditions; a ClarifyCheck step reads
its processing job's inputs (Clarify's analysis configuration and dataset) and computes Clarify's
`analysis.json` with the open-source libraries Clarify is built on (`closedloop_ops.local.clarify`).
A step type it does not know is an error: there is no second, hand-kept list of steps.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop_ops.local.emitter import ACCOUNT, Emitter
from closedloop_ops.local.jobs import JobRunner, _download, _upload
from closedloop_ops.local.provision import LocalStack


class PipelineError(Exception):
    """The definition asks for something the local executor cannot do (names the step and why)."""


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class StepRecord:
    name: str
    type: str
    status: str
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecutionRecord:
    execution_arn: str
    status: str
    steps: list[StepRecord]
    model_package_arn: str | None = None
    failure_reason: str = ""


def _scalar(value: Any) -> Any:
    """Hyperparameters are JSON-encoded strings in the definition ("\\"train.py\\"")."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class PipelineExecutor:
    """Executes pipeline executions that are `Executing` in moto."""

    def __init__(self, stack: LocalStack, emitter: Emitter, runner: JobRunner, code_dir: Path) -> None:
        self.stack = stack
        self.emitter = emitter
        self.runner = runner
        self.code_dir = code_dir
        self.workdir = Path(tempfile.mkdtemp(prefix="closedloop-pipeline-"))
        self.records: list[ExecutionRecord] = []
        self._done: set[str] = set()
        self.on_step: Callable[[str, StepRecord], None] | None = None

    # -- discovery ----------------------------------------------------------------------------

    def run_pending(self) -> int:
        sm = self.stack.client("sagemaker")
        ran = 0
        for pipeline in sm.list_pipelines()["PipelineSummaries"]:
            name = pipeline["PipelineName"]
            for summary in sm.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]:
                arn = summary["PipelineExecutionArn"]
                if arn in self._done or summary.get("PipelineExecutionStatus") not in {"Executing", None}:
                    continue
                self._done.add(arn)
                self.execute(name, arn)
                ran += 1
        return ran

    # -- one execution ------------------------------------------------------------------------

    def execute(self, pipeline_name: str, execution_arn: str) -> ExecutionRecord:
        sm = self.stack.client("sagemaker")
        pipeline = sm.describe_pipeline(PipelineName=pipeline_name)
        definition = json.loads(pipeline["PipelineDefinition"])
        execution = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        given = {
            p["Name"]: p["Value"]
            for p in sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution_arn)["PipelineParameters"]
        }
        parameters = {p["Name"]: given.get(p["Name"], p.get("DefaultValue")) for p in definition.get("Parameters", [])}
        context = _Context(
            parameters=parameters,
            execution_arn=execution_arn,
            pipeline_name=pipeline_name,
            execution_id=execution_arn.rsplit("/", 1)[1],
        )
        steps = {step["Name"]: step for step in definition["Steps"]}
        record = ExecutionRecord(execution_arn=execution_arn, status="Executing", steps=[])
        status, reason = "Succeeded", ""
        try:
            for name in _order(steps):
                if name in context.skipped:
                    continue
                self._run_step(steps[name], context, record, steps)
        except StepFailed as failure:
            status, reason = "Failed", failure.reason
        record.status, record.failure_reason = status, reason
        record.model_package_arn = context.model_package_arn
        _finish_execution(self.stack.region, pipeline_name, execution_arn, status, reason)
        self.emitter.publish(
            self.emitter.pipeline_execution_status_change(
                pipeline_arn=pipeline["PipelineArn"],
                execution_arn=execution_arn,
                display_name=execution.get("PipelineExecutionDisplayName", ""),
                current=status,
                previous="Executing",
                started=execution.get("CreationTime"),
                ended=time.time(),
                description=execution.get("PipelineExecutionDescription", ""),
            )
        )
        self.records.append(record)
        return record

    def _run_step(
        self, step: dict[str, Any], context: _Context, record: ExecutionRecord, steps: dict[str, dict[str, Any]]
    ) -> None:
        kind = step["Type"]
        handler = {
            "Training": self._training,
            "Processing": self._processing,
            "RegisterModel": self._register,
            "Model": self._model,
            "Condition": self._condition,
            "Fail": self._fail,
            "ClarifyCheck": self._clarify_check,
        }.get(kind)
        if handler is None:
            raise PipelineError(f"step {step['Name']}: type {kind} cannot run locally")
        started = time.perf_counter()
        detail: dict[str, Any] = {}
        try:
            detail = handler(step, context, steps) or {}
        except StepFailed as failure:
            record.steps.append(
                StepRecord(step["Name"], kind, "Failed", time.perf_counter() - started, {"reason": failure.reason})
            )
            self._record_step(context, step["Name"], "Failed", {}, failure.reason)
            raise
        step_record = StepRecord(step["Name"], kind, "Succeeded", time.perf_counter() - started, detail)
        record.steps.append(step_record)
        self._record_step(context, step["Name"], "Succeeded", self._metadata(kind, step["Name"], context), "")
        if self.on_step:
            self.on_step(context.execution_arn, step_record)

    def _metadata(self, kind: str, name: str, context: _Context) -> dict[str, Any]:
        """The step metadata ListPipelineExecutionSteps shows on AWS."""
        props = context.properties.get(name, {})
        arn = f"arn:aws:sagemaker:{self.stack.region}:{ACCOUNT}"
        metadata: dict[str, Callable[[], dict[str, Any]]] = {
            "Training": lambda: {"TrainingJob": {"Arn": props.get("TrainingJobArn", "")}},
            "Processing": lambda: {
                "ProcessingJob": {"Arn": f"{arn}:processing-job/{props.get('ProcessingJobName', '').lower()}"}
            },
            "RegisterModel": lambda: {"RegisterModel": {"Arn": props.get("ModelPackageArn", "")}},
            "Model": lambda: {"Model": {"Arn": f"{arn}:model/{props.get('ModelName', '').lower()}"}},
            "Condition": lambda: {"Condition": {"Outcome": str(props.get("Outcome", "")).lower()}},
            "ClarifyCheck": lambda: {"ClarifyCheck": props.get("Metadata", {})},
        }
        return metadata[kind]() if kind in metadata else {}

    def _record_step(self, context: _Context, name: str, status: str, metadata: dict[str, Any], reason: str) -> None:
        from closedloop_ops.moto_ext.pipelines import record_execution_step

        record_execution_step(
            ACCOUNT,
            self.stack.region,
            context.execution_arn,
            name=name,
            status=status,
            metadata=metadata,
            failure_reason=reason,
        )

    # -- step types ---------------------------------------------------------------------------

    def _training(self, step: dict[str, Any], context: _Context, _: Any) -> dict[str, Any]:
        args = context.resolve(step["Arguments"])
        job = f"pipelines-{context.execution_id}-{step['Name']}"[:63]
        root = self.workdir / job
        shutil.rmtree(root, ignore_errors=True)
        model_dir, output_dir = root / "model", root / "output" / "data"
        model_dir.mkdir(parents=True)
        output_dir.mkdir(parents=True)
        s3 = self.stack.client("s3")
        channels: dict[str, str] = {}
        for channel in args.get("InputDataConfig", []):
            local = root / "input" / "data" / channel["ChannelName"]
            _download(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], local)
            channels[channel["ChannelName"]] = str(local)
        hyper = {k: _scalar(v) for k, v in args.get("HyperParameters", {}).items()}
        program = hyper.pop("sagemaker_program", None)
        submit = hyper.pop("sagemaker_submit_directory", None)
        for internal in [k for k in hyper if k.startswith("sagemaker_")]:
            hyper.pop(internal)
        if not program:
            raise PipelineError(f"step {step['Name']}: no entry point (sagemaker_program) to run locally")
        code = root / "code"
        self._fetch_code(submit, program, code)
        env = {
            **self.runner._environment(self._role(args["RoleArn"])),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(output_dir),
            "SM_HPS": json.dumps(hyper),
            "SM_CHANNELS": json.dumps(sorted(channels)),
            **{f"SM_CHANNEL_{name.upper()}": path for name, path in channels.items()},
            **{f"SM_HP_{k.upper()}": str(v) for k, v in hyper.items()},
            **{k: str(v) for k, v in args.get("Environment", {}).items()},
        }
        argv = [sys.executable, str(code / program)]
        for key, value in hyper.items():
            argv += [f"--{key}", str(value)]
        code_rc, tail = self.runner._run(argv, env, code)
        if code_rc != 0:
            raise StepFailed(step["Name"], f"AlgorithmError: {tail or f'exit code {code_rc}'}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path in sorted(model_dir.rglob("*")):
                archive.add(path, arcname=path.relative_to(model_dir).as_posix())
        output_path = args["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        bucket, _, prefix = output_path.removeprefix("s3://").partition("/")
        key = f"{prefix}/{job}/output/model.tar.gz".lstrip("/")
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        artifacts = f"s3://{bucket}/{key}"
        context.properties[step["Name"]] = {
            "ModelArtifacts": {"S3ModelArtifacts": artifacts},
            "TrainingJobName": job,
            "TrainingJobArn": f"arn:aws:sagemaker:{self.stack.region}:{ACCOUNT}:training-job/{job}",
        }
        return {"model": artifacts}

    def _role(self, role_arn: str) -> str:
        """The role a step's job runs as: the definition's, or — for the offline definition, generated
        for a placeholder account — the stack's own pipeline role (what `make pipeline` stands in for)."""
        if role_arn.split(":")[4:5] == [self.stack.account]:
            return role_arn
        return str(self.stack.outputs.get("TrainingPipelineRoleArn") or role_arn)

    def _fetch_code(self, submit: str | None, program: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if submit and str(submit).startswith("s3://"):
            bucket, _, key = str(submit).removeprefix("s3://").partition("/")
            body = self.stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
                archive.extractall(target, filter="data")
        else:
            shutil.copytree(self.code_dir, target, dirs_exist_ok=True)
        if not (target / program).is_file():
            raise PipelineError(f"entry point {program} is not in the step's code")

    def _processing(self, step: dict[str, Any], context: _Context, _: Any) -> dict[str, Any]:
        args = context.resolve(step["Arguments"])
        job = f"pipelines-{context.execution_id}-{step['Name']}"[:63]
        described = {
            **args,
            "ProcessingJobName": job,
            "Environment": args.get("Environment", {}),
            "RoleArn": self._role(args["RoleArn"]),
        }
        status, reason = self.runner._run_processing(described)
        if status != "Completed":
            raise StepFailed(step["Name"], reason)
        outputs = {
            o["OutputName"]: {"S3Output": {"S3Uri": o["S3Output"]["S3Uri"]}}
            for o in args.get("ProcessingOutputConfig", {}).get("Outputs", [])
        }
        context.properties[step["Name"]] = {
            "ProcessingJobName": job,
            "ProcessingOutputConfig": {"Outputs": outputs},
        }
        for property_file in step.get("PropertyFiles", []):
            uri = (
                outputs[property_file["OutputName"]]["S3Output"]["S3Uri"].rstrip("/") + "/" + property_file["FilePath"]
            )
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            body = self.stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            context.property_files[(step["Name"], property_file["PropertyFileName"])] = json.loads(body)
        return {"outputs": {name: o["S3Output"]["S3Uri"] for name, o in outputs.items()}}

    def _register(self, step: dict[str, Any], context: _Context, _: Any) -> dict[str, Any]:
        args = context.resolve(step["Arguments"])
        request = {
            k: v
            for k, v in args.items()
            if k
            in {
                "ModelPackageGroupName",
                "ModelPackageDescription",
                "InferenceSpecification",
                "ModelMetrics",
                "DriftCheckBaselines",
                "ModelApprovalStatus",
                "CustomerMetadataProperties",
                "MetadataProperties",
                "Domain",
                "Task",
                "SamplePayloadUrl",
                "Tags",
            }
        }
        arn = self.stack.client("sagemaker").create_model_package(**request)["ModelPackageArn"]
        context.model_package_arn = arn
        context.properties[step["Name"]] = {"ModelPackageArn": arn}
        return {"model_package": arn}

    def _model(self, step: dict[str, Any], context: _Context, _: Any) -> dict[str, Any]:
        args = context.resolve(step["Arguments"])
        name = f"pipelines-{context.execution_id}-{step['Name']}"[:63]
        self.stack.client("sagemaker").create_model(ModelName=name, **args)
        context.properties[step["Name"]] = {"ModelName": name}
        return {"model": name}

    def _condition(self, step: dict[str, Any], context: _Context, steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
        args = step["Arguments"]
        outcome = all(_compare(context.resolve(c)) for c in args.get("Conditions", []))
        skipped = args.get("ElseSteps", []) if outcome else args.get("IfSteps", [])
        for skipped_step in skipped:
            context.skipped |= _downstream(
                skipped_step["Name"] if isinstance(skipped_step, dict) else skipped_step, steps
            )
        context.properties[step["Name"]] = {"Outcome": outcome}
        return {"outcome": outcome}

    def _clarify_check(self, step: dict[str, Any], context: _Context, _: Any) -> dict[str, Any]:
        """A Clarify check: its processing job's inputs as the definition gives them, `analysis.json` out.

        The check computes and registers its result as the new baseline (`RegisterNewBaseline`);
        comparing against an earlier baseline (`SkipCheck` false) is not done locally.
        """
        from closedloop_ops.local.clarify import ClarifyCheckError, run_check

        args = context.resolve(step["Arguments"])
        inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in args.get("ProcessingInputs", [])}
        outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
        if set(inputs) != {"analysis_config", "dataset"} or len(outputs) != 1:
            raise PipelineError(f"step {step['Name']}: a Clarify check takes analysis_config and dataset, one output")
        skip = context.resolve(step.get("SkipCheck", False))
        register = context.resolve(step.get("RegisterNewBaseline", False))
        supplied = context.resolve(step.get("SuppliedBaselineConstraints"))
        if str(skip).lower() != "true":
            raise PipelineError(
                f"step {step['Name']}: a drift check against a baseline (SkipCheck false) cannot run locally"
            )
        model_name = context.resolve(step.get("ModelName"))
        model_data = None
        if model_name:
            described = self.stack.client("sagemaker").describe_model(ModelName=model_name)
            model_data = described.get("PrimaryContainer", {}).get("ModelDataUrl")
        try:
            calculated, measured = run_check(
                self.stack.client("s3"),
                check_type=str(step["CheckType"]),
                config_uri=inputs["analysis_config"],
                dataset_uri=inputs["dataset"],
                output_uri=outputs[0]["S3Output"]["S3Uri"],
                model_data_url=model_data,
            )
        except ClarifyCheckError as exc:
            raise StepFailed(step["Name"], f"ClientError: {exc}") from None
        used = calculated if str(register).lower() == "true" or not supplied else supplied
        context.properties[step["Name"]] = {
            "CalculatedBaselineConstraints": calculated,
            "BaselineUsedForDriftCheckConstraints": used,
            "Metadata": {
                "CheckType": step["CheckType"],
                "CalculatedBaselineConstraints": calculated,
                "BaselineUsedForDriftCheckConstraints": used,
                "ModelPackageGroupName": context.resolve(step.get("ModelPackageGroupName")) or "",
                "RegisterNewBaseline": str(register).lower() == "true",
                "SkipCheck": True,
            },
        }
        return {"analysis": calculated, **measured}

    def _fail(self, step: dict[str, Any], context: _Context, _: Any) -> dict[str, Any]:
        message = context.resolve(step.get("Arguments", {}).get("ErrorMessage", "Fail step reached"))
        raise StepFailed(step["Name"], str(message))


@dataclass
class _Context:
    parameters: dict[str, Any]
    execution_arn: str
    pipeline_name: str
    execution_id: str
    properties: dict[str, Any] = field(default_factory=dict)
    property_files: dict[tuple[str, str], Any] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    model_package_arn: str | None = None

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return str(join.get("On", "")).join(str(self.resolve(v)) for v in join["Values"])
        if set(value) == {"Std:JsonGet"}:
            spec = value["Std:JsonGet"]
            reference = spec["PropertyFile"]["Get"] if isinstance(spec["PropertyFile"], dict) else spec["PropertyFile"]
            _, step, _, file_name = reference.split(".", 3)
            document = self.property_files[(step, file_name)]
            return _json_path(document, spec["Path"])
        return {k: self.resolve(v) for k, v in value.items()}

    def _get(self, path: str) -> Any:
        if path.startswith("Parameters."):
            return self.parameters[path.split(".", 1)[1]]
        if path.startswith("Execution."):
            attribute = path.split(".", 1)[1]
            return {
                "PipelineExecutionArn": self.execution_arn,
                "PipelineExecutionId": self.execution_id,
                "PipelineName": self.pipeline_name,
                "StartDateTime": "",
                "CurrentDateTime": "",
            }[attribute]
        if path.startswith("Steps."):
            _, step, rest = path.split(".", 2)
            value: Any = self.properties.get(step)
            if value is None:
                raise PipelineError(f"{path}: step {step} has not run")
            for part in rest.replace("[", ".").replace("]", "").replace("'", "").split("."):
                value = value[part]
            return value
        raise PipelineError(f"cannot resolve {path} locally")


def _finish_execution(region: str, pipeline_name: str, execution_arn: str, status: str, reason: str) -> None:
    """Mark the execution finished in moto (the executor ran its steps)."""
    from moto.core.utils import utcnow
    from moto.sagemaker.models import sagemaker_backends

    execution = sagemaker_backends[ACCOUNT][region].pipelines[pipeline_name].pipeline_executions[execution_arn]
    execution.pipeline_execution_status = status
    execution.last_modified_time = utcnow()
    if reason:
        execution.pipeline_execution_failure_reason = reason


def _json_path(document: Any, path: str) -> Any:
    value = document
    for part in path.replace("[", ".").replace("]", "").split("."):
        if part:
            value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _compare(condition: dict[str, Any]) -> bool:
    kind = condition["Type"]
    left, right = condition.get("LeftValue"), condition.get("RightValue")
    if kind == "Not":
        return not _compare(condition["Condition"])
    if kind == "Or":
        return any(_compare(c) for c in condition["Conditions"])
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda a, b: a == b,
        "GreaterThan": lambda a, b: float(a) > float(b),
        "GreaterThanOrEqualTo": lambda a, b: float(a) >= float(b),
        "LessThan": lambda a, b: float(a) < float(b),
        "LessThanOrEqualTo": lambda a, b: float(a) <= float(b),
        "In": lambda a, b: a in b,
    }
    if kind not in comparisons:
        raise PipelineError(f"condition type {kind} cannot be evaluated locally")
    return comparisons[kind](left, right)


def _depends(step: dict[str, Any]) -> set[str]:
    found = set(step.get("DependsOn", []))

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "Get" and isinstance(item, str) and item.startswith("Steps."):
                    found.add(item.split(".")[1])
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(step.get("Arguments", {}))
    walk(step.get("PropertyFiles", []))
    return found


def _order(steps: dict[str, dict[str, Any]]) -> list[str]:
    """Step names in an order that runs every step after the steps it depends on."""
    ordered: list[str] = []
    pending = dict(steps)
    while pending:
        ready = sorted(name for name, step in pending.items() if (_depends(step) & set(steps)) <= set(ordered))
        if not ready:
            raise PipelineError(f"steps depend on each other in a cycle: {sorted(pending)}")
        for name in ready:
            ordered.append(name)
            pending.pop(name)
    return ordered


def _downstream(name: str, steps: dict[str, dict[str, Any]]) -> set[str]:
    found = {name}
    changed = True
    while changed:
        changed = False
        for other, step in steps.items():
            if other not in found and _depends(step) & found:
                found.add(other)
                changed = True
    return found


def upload_step_code(stack: LocalStack, definition: dict[str, Any], code_dir: Path) -> list[str]:
    """Put the step code the definition references into S3, as the SDK did when it generated it.

    Generation ran against an emulated account, so the S3 objects it uploaded are not in this
    stack's moto: scripts (`….py`) are uploaded from `code_dir` by file name, source bundles
    (`sourcedir.tar.gz`) are rebuilt from it.
    """
    s3 = stack.client("s3")
    uploaded: list[str] = []
    existing_buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}

    def ensure(bucket: str) -> None:
        if bucket not in existing_buckets:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": stack.region})
            existing_buckets.add(bucket)

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, str):
            text = _scalar(value) if value.startswith('"') else value
            if not isinstance(text, str) or not text.startswith("s3://"):
                return
            bucket, _, key = text.removeprefix("s3://").partition("/")
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".tar.gz") and "sourcedir" in name:
                ensure(bucket)
                buffer = io.BytesIO()
                with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                    for path in sorted(code_dir.glob("*.py")):
                        archive.add(path, arcname=path.name)
                s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
                uploaded.append(text)
            elif name.endswith(".py") and (code_dir / name).is_file():
                ensure(bucket)
                s3.put_object(Bucket=bucket, Key=key, Body=(code_dir / name).read_bytes())
                uploaded.append(text)

    visit(definition.get("Steps", []))
    return uploaded


__all__ = ["PipelineError", "PipelineExecutor", "StepFailed", "_upload", "upload_step_code"]
