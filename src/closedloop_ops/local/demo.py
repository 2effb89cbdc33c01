"""`make demo`: the whole closed loop on one machine, on the local loop, with a report.

Two model lines run side by side (`ModelLines=loans,churn`): synthetic loan applications and telecom
subscriptions with PII land in `raw/<line>/` → preparation strips the PII → the training pipeline
runs its real step scripts → a version of each line is registered in the line's model group → the
gate approves it → it is rolled out to the line's own endpoint → both endpoints serve predictions
and capture them → traffic from a changed world arrives at the loans endpoint only → the drift
monitor of each line publishes metrics → the loans alarms fire → the loans line is retrained on its
last prepared run, the only labelled data there is, and that version rolled out → the labelled
applications of the changed world arrive under `raw/loans/` → preparation and training start by
themselves, and the version that learnt the changed world is approved and rolled out blue/green,
while the churn line keeps its one version → the drift monitor measures the traffic the new version
serves. Every step is a real handler reacting to an event the template's rules routed.

The changed world is a concept drift (`synthetic.CONCEPT_DRIFT`): other applicants, and a new rule
behind the label, so the training world's model is wrong there, not only far from home. At the end
every version of the line is scored on a labelled hold-out of the changed world that no version was
trained on (`retraining_effect` of the report).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from closedloop.line import LineResources, load_line
from closedloop_ops import synthetic
from closedloop_ops.local.loop import LocalLoop
from closedloop_ops.local.report import retraining_effect_line, write_report
from closedloop_ops.stackref import StackRef, model_lines
from closedloop_ops.text import shorten

# Demo-sized settings, given as template parameters (the handlers read them as on AWS).
DEMO_PARAMETERS = {
    "ModelLines": "loans,churn",
    "BatchWindowSeconds": "0",
    "DriftCaptureSettleSeconds": "0",
    "DriftMinRecords": "300",
    "RetrainCooldownSeconds": "21600",
}
# The line whose traffic drifts (and so retrains); every other line sees traffic like its training data.
DRIFTED_LINE = "loans"
# Its changed world: the applicants move, and so does the rule that labels them.
DRIFTED_WORLD = synthetic.CONCEPT_DRIFT
# Seeds of the changed world's labelled data: the upload (trained on) and the hold-out (never uploaded).
NEW_WORLD_LABELS_SEED = 404
HOLDOUT_SEED = 505


def version_of(model_package_arn: str) -> int:
    """The version number a model package ARN ends in (`…:model-package/<group>/<version>`)."""
    return int(model_package_arn.rsplit("/", 1)[-1])


class DemoFailed(Exception):
    """The loop did not reach the next stage (the message says which, and the ledger why)."""


class WaitingForApprover(Exception):
    """Manual approval mode: the loop stands where a person takes over (the versions that wait, `<line>/<n>`)."""

    def __init__(self, versions: list[str]) -> None:
        super().__init__(f"version(s) {versions} wait for an approver")
        self.versions = versions


@dataclass
class Scenario:
    rows_per_file: int = 1000
    files: int = 3
    requests: int = 40
    rows_per_request: int = 10
    seed: int = 7
    holdout_rows: int = 2000


@dataclass
class Demo:
    loop: LocalLoop
    out_dir: Path
    say: Callable[[str], None]
    scenario: Scenario = field(default_factory=Scenario)
    started: float = field(default_factory=time.perf_counter)
    local_timeline: list[dict[str, Any]] = field(default_factory=list)
    inference_ids: list[str] = field(default_factory=list)
    inference_ids_by_line: dict[str, list[str]] = field(default_factory=dict)
    seeded_pii: set[str] = field(default_factory=set)
    seeded_pii_by_line: dict[str, set[str]] = field(default_factory=dict)
    _echoed: set[str] = field(default_factory=set)
    chaos_context: Any = None
    _last_drift_run: float = 0.0
    _execution_lines: dict[str, str | None] = field(default_factory=dict)
    # what each line's traffic was scored by (label → model package ARN), and its drift monitor runs
    served_by: dict[str, dict[str, str]] = field(default_factory=dict)
    drift_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    retraining_effect: dict[str, Any] | None = None
    # several accounts (`closedloop demo --accounts`): settle every stage's loop, not only this one's
    settle_all: Callable[[], int] | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def note(self, event: str, action: str, result: str, line: str | None = None) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = {"at": at, "route": "local", "event": event, "action": action, "result": result}
        self.local_timeline.append({**entry, "line": line} if line else entry)
        self.say(f"[{time.perf_counter() - self.started:5.1f}s] {event}: {action} → {result}")

    @property
    def lines(self) -> list[LineResources]:
        """The model lines the loop serves (its `ModelLines`), with the names each owns."""
        return model_lines(self.loop.output)

    def owned(self, line: str) -> LineResources:
        """The names the line owns.

        Raises:
            DemoFailed: the loop does not serve the line.
        """
        found = next((owned for owned in self.lines if owned.line == line), None)
        if found is None:
            raise DemoFailed(f"the loop does not serve the model line {line} (its ModelLines)")
        return found

    def stack_ref(self) -> StackRef:
        stack = self.loop.stack
        return StackRef(
            name=stack.stack_name,
            region=stack.region,
            outputs=stack.outputs,
            endpoint_url=stack.endpoint_url,
            credentials={"aws_access_key_id": "local", "aws_secret_access_key": "local"},
            local=True,
        )

    def setup(self) -> None:
        loop = self.loop
        if not loop.pipeline_upsert:
            raise RuntimeError("pipelines/definition.json is missing: run `make pipeline` and commit it")
        self.note("pipeline", "upsert pipelines/definition.json", loop.pipeline_upsert)
        loop.executor.on_step = lambda arn, step: self.note(
            "pipeline step",
            f"{step.name} ({step.type})",
            f"{step.status} in {step.seconds:.1f}s",
            line=self.line_of_execution(arn),
        )
        self.executor, self.watcher, self.hosting = loop.executor, loop.watcher, loop.hosting
        loop.dispatcher.on_invocation = self.echo_decisions

    def echo_decisions(self, _: object = None) -> None:
        """Print the decisions the handlers recorded since the last call (the live timeline)."""
        from closedloop.ledger import Ledger

        ledger = Ledger(self.loop.output("LedgerTableName"), self.loop.client("dynamodb"))
        since = getattr(self, "_echoed_until", datetime.now(UTC) - timedelta(minutes=5))
        for decision in ledger.decisions_since(since):
            if decision.decision_id in self._echoed:
                continue
            self._echoed.add(decision.decision_id)
            subject = (
                decision.business_key.rsplit("/", 2)[-2:]
                if decision.business_key.startswith("arn:")
                else [decision.business_key]
            )
            why = (
                f" ({shorten(decision.reason, 90)})"
                if decision.reason and decision.result not in {"started", "live"}
                else ""
            )
            self.say(
                f"[{time.perf_counter() - self.started:5.1f}s] {decision.route}: {decision.action} "
                f"{'/'.join(subject)[:60]} → {decision.result}{why}"
            )
        self._echoed_until = datetime.now(UTC) - timedelta(seconds=5)

    def teardown(self) -> None:
        self.loop.dispatcher.on_invocation = None

    def settle(self) -> None:
        if self.settle_all is not None:
            self.settle_all()
        else:
            self.loop.settle(max_passes=200)

    # -- the story ----------------------------------------------------------------------------

    def upload(self) -> None:
        """Every line's files (CSV and JSON Lines, alternately) under its raw prefix, `raw/<line>/`."""
        rows = self.scenario.rows_per_file * self.scenario.files
        for offset, owned in enumerate(self.lines):
            records = list(synthetic.DATASETS[owned.line].generate(rows, seed=self.scenario.seed + offset))
            self.upload_files(owned, records, "files with PII")

    def upload_new_world_labels(self) -> None:
        """The labelled applications of the drifted line's changed world, uploaded as the first ones were:
        as many files and rows, numbered after them, under the same raw prefix."""
        owned = self.owned(DRIFTED_LINE)
        rows = self.scenario.rows_per_file * self.scenario.files
        records = list(
            synthetic.DATASETS[DRIFTED_LINE].generate(rows, seed=NEW_WORLD_LABELS_SEED, drift=DRIFTED_WORLD, start=rows)
        )
        self.upload_files(owned, records, "labelled files of the drifted world", first_file=self.scenario.files)

    def upload_files(self, owned: LineResources, records: list[dict[str, str]], what: str, first_file: int = 0) -> None:
        """`records` in files of `rows_per_file` (CSV and JSON Lines, alternately) under `raw/<line>/<date>/`."""
        s3 = self.loop.client("s3")
        bucket = self.loop.output("DataBucketName")
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        dataset = synthetic.DATASETS[owned.line]
        seeded = synthetic.pii_values(records, dataset.pii_columns)
        self.seeded_pii |= seeded
        self.seeded_pii_by_line[owned.line] = self.seeded_pii_by_line.get(owned.line, set()) | seeded
        per_file = self.scenario.rows_per_file
        files = (len(records) + per_file - 1) // per_file
        for index in range(first_file, first_file + files):
            part = records[(index - first_file) * per_file : (index - first_file + 1) * per_file]
            body = synthetic.to_csv(part, dataset.columns) if index % 2 == 0 else synthetic.to_jsonl(part)
            suffix = "csv" if index % 2 == 0 else "jsonl"
            key = f"{owned.raw_prefix}{stamp}/{dataset.file_stem}-{index:03d}.{suffix}"
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        self.note(
            "upload",
            f"{files} {what} to {owned.raw_prefix}",
            f"{len(records)} {dataset.file_stem}, {len(seeded)} PII values",
            line=owned.line,
        )

    def serving(self, owned: LineResources) -> str:
        """The model package ARN of the version the line's endpoint serves.

        Raises:
            DemoFailed: the line's endpoint was never deployed.
        """
        sm = self.loop.client("sagemaker")
        try:
            endpoint = sm.describe_endpoint(EndpointName=owned.endpoint_name)
        except sm.exceptions.ClientError:
            raise DemoFailed(
                f"no model version of the line {owned.line} was deployed: see the approval gate's decision above"
            ) from None
        config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]}
        return str(tags["closedloop:model-package"])

    def baseline(self, package_arn: str, loop: LocalLoop | None = None) -> dict[str, Any]:
        """The training baseline of a model version (its feature order and protected attribute), read in
        `loop`'s account (default: this loop's; a stage's copy keeps its source's baseline)."""
        loop = loop or self.loop
        package = loop.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
        uri = package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        document: dict[str, Any] = json.loads(loop.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        return document

    @staticmethod
    def request_rows(baseline: dict[str, Any], rows: list[dict[str, str]]) -> str:
        """Rows as a model's `text/csv` request: its features in its order, then the protected attribute."""
        columns = [*baseline["feature_order"], baseline["protected_attribute"]]
        return "\n".join(",".join(row[c] for c in columns) for row in rows)

    def traffic(self, line: str, label: str, seed: int, drift: synthetic.Drift | None = None) -> None:
        """Score a batch of the line's records on its endpoint; `drift` (loans only) moves them away from training."""
        owned = self.owned(line)
        dataset = synthetic.DATASETS[line]
        package_arn = self.serving(owned)
        self.served_by.setdefault(line, {})[label] = package_arn
        baseline = self.baseline(package_arn)
        count = self.scenario.requests * self.scenario.rows_per_request
        rows = list(dataset.generate(count, seed=seed, **({"drift": drift} if drift is not None else {})))
        client = self.loop.client("sagemaker-runtime")
        positives = 0
        for start in range(0, len(rows), self.scenario.rows_per_request):
            body = self.request_rows(baseline, rows[start : start + self.scenario.rows_per_request])
            inference_id = f"demo-{line}-{label}-{uuid.uuid4().hex[:12]}"
            response = client.invoke_endpoint(
                EndpointName=owned.endpoint_name,
                ContentType="text/csv",
                Accept="text/csv",
                Body=body.encode(),
                InferenceId=inference_id,
            )
            scores = [float(s) for s in response["Body"].read().decode().split()]
            positives += sum(score >= 0.5 for score in scores)
            self.inference_ids.append(inference_id)
            self.inference_ids_by_line.setdefault(line, []).append(inference_id)
        written = self.hosting.flush()
        self.note(
            "traffic",
            f"{len(rows)} {label} {dataset.file_stem} scored by {owned.endpoint_name}",
            f"{positives / len(rows):.0%} {load_line(line).label}; {written} requests captured",
            line=line,
        )

    def drift_check(self) -> None:
        # CloudWatch keeps one datapoint per metric and second at the finest: two monitor runs in
        # the same second would read back as one. On AWS they are an hour apart; here at least 1 s.
        wait = self._last_drift_run + 1.05 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        schedules = {schedule.name: schedule for schedule in self.loop.stack.schedules}
        for owned in self.lines:  # each line's schedule runs the monitor on the line's endpoint
            invocation = self.loop.dispatcher.fire_schedule(schedules[owned.drift_schedule])
            result = invocation.result or {}
            self.drift_runs.setdefault(owned.line, []).append(result)
            report = result.get("report") or {}
            bias = report.get("bias") or {}
            figures = (
                f"max PSI {report.get('max_feature_psi') or 0:.2f}, "
                f"prediction KS {report.get('prediction_ks') or 0:.2f}, bias drift {bias.get('drift') or 0:.2f}"
                if report
                else result.get("reason", invocation.error or "")
            )
            self.note(
                "schedule",
                f"drift monitor run of {owned.line}",
                f"{result.get('result', 'error')}: {result.get('records', 0)} records; {figures}",
                line=owned.line,
            )
        self._last_drift_run = time.monotonic()
        self.settle()
        owners = {alarm: owned.line for owned in self.lines for alarm in owned.drift_alarms}
        transitions = self.loop.alarms.evaluate(datetime.now(UTC) + timedelta(seconds=1))
        for transition in transitions:
            line = owners.get(transition.alarm)
            self.note("alarm", transition.alarm, f"{transition.previous} → {transition.current}", line=line)
        self.settle()

    def waiting_for_approver(self) -> list[str]:
        """The versions the gate left to an approver (manual mode), as `<line>/<version>`.

        Raises:
            DemoFailed: none waits in some line (the gate's decision above says why).
        """
        sm = self.loop.client("sagemaker")
        waiting = []
        for owned in self.lines:
            pending = sm.list_model_packages(
                ModelPackageGroupName=owned.model_package_group, ModelApprovalStatus="PendingManualApproval"
            )["ModelPackageSummaryList"]
            versions = sorted(int(p["ModelPackageVersion"]) for p in pending)
            if not versions:
                raise DemoFailed(
                    f"no model version of the line {owned.line} waits for an approver: "
                    "see the approval gate's decision above"
                )
            self.note(
                "approval",
                f"{owned.line} version {versions[0]} waits for an approver (manual mode)",
                "pending",
                line=owned.line,
            )
            waiting += [f"{owned.line}/{version}" for version in versions]
        return waiting

    def story(self, *, manual: bool = False) -> None:
        """Upload → deploy every line → like traffic everywhere → drifted traffic at `DRIFTED_LINE` only → its
        retraining and redeployment → the changed world's labelled data → its training and rollout → traffic
        at the new version, measured → every version scored on a hold-out of the changed world.

        Raises:
            WaitingForApprover: manual mode, once the gate has left the first versions to an approver.
            DemoFailed: a stage was not reached.
        """
        self.upload()
        self.settle()
        if manual:
            raise WaitingForApprover(self.waiting_for_approver())
        steady = [owned.line for owned in self.lines if owned.line != DRIFTED_LINE]
        # each phase ends with the drifted line's traffic: the last prediction is the one traced
        for line in steady:
            self.traffic(line, "baseline-like", seed=111)
        self.traffic(DRIFTED_LINE, "baseline-like", seed=101, drift=synthetic.NO_DRIFT)
        self.drift_check()
        for line in steady:
            self.traffic(line, "baseline-like", seed=222)
        self.traffic(DRIFTED_LINE, "drifted", seed=202, drift=DRIFTED_WORLD)
        # the alarms retrain on the last prepared run: labels of the changed world do not exist yet
        self.drift_check()
        # they arrive later, as any labelled data does: uploaded under raw/, prepared, trained on (routes 1, 2)
        self.upload_new_world_labels()
        self.settle()
        for line in steady:
            self.traffic(line, "baseline-like", seed=333)
        self.traffic(DRIFTED_LINE, "post-retraining", seed=303, drift=DRIFTED_WORLD)
        self.drift_check()
        self.retraining_effect = self.measure_retraining_effect()

    def measure_retraining_effect(self) -> dict[str, Any]:
        """Every version of `DRIFTED_LINE` scored on a labelled hold-out of its changed world, drawn with a
        seed nothing was trained on, through each version's own archive and inference code (AUC, and the
        share it would approve); with the drift monitor's figures of the run after the rollout.

        `old` is the version that served the drifted traffic, `new` the one serving after the rollout.

        Raises:
            DemoFailed: the drifted traffic or the traffic after the rollout was not scored.
        """
        served = self.served_by.get(DRIFTED_LINE, {})
        if "drifted" not in served or "post-retraining" not in served:
            raise DemoFailed(f"the line {DRIFTED_LINE} did not serve both the drifted and the later traffic")
        spec = load_line(DRIFTED_LINE)
        count = self.scenario.holdout_rows
        uploaded = self.scenario.rows_per_file * self.scenario.files
        holdout = list(  # numbered after both uploads
            synthetic.DATASETS[DRIFTED_LINE].generate(count, seed=HOLDOUT_SEED, drift=DRIFTED_WORLD, start=2 * uploaded)
        )
        label = spec.label or ""
        labels = [1 if row[label] == spec.favourable_label else 0 for row in holdout]
        listed = self.loop.client("sagemaker").list_model_packages(
            ModelPackageGroupName=self.owned(DRIFTED_LINE).model_package_group
        )["ModelPackageSummaryList"]
        versions = [
            self.score_version(summary["ModelPackageArn"], holdout, labels)
            for summary in sorted(listed, key=lambda p: int(p["ModelPackageVersion"]))
        ]
        by_version = {v["version"]: v for v in versions}
        old, new = by_version[version_of(served["drifted"])], by_version[version_of(served["post-retraining"])]
        after = self.drift_runs[DRIFTED_LINE][-1]
        report = after.get("report") or {}
        effect = {
            "line": DRIFTED_LINE,
            "metric": "auc",
            "old_version": old["version"],
            "old": old["auc"],
            "new_version": new["version"],
            "new": new["auc"],
            "holdout_rows": count,
            "holdout_favourable_rate": round(sum(labels) / count, 4),
            "versions": versions,
            "drift_after_rollout": {
                "result": after.get("result"),
                "model_version": version_of(after["model_package_arn"]) if after.get("model_package_arn") else None,
                "records": after.get("records", 0),
                "max_feature_psi": report.get("max_feature_psi"),
                "max_psi_feature": report.get("max_psi_feature"),
                "prediction_ks": report.get("prediction_ks"),
                "positive_rate": report.get("positive_rate"),
                "bias_drift": (report.get("bias") or {}).get("drift"),
            },
        }
        self.note(
            "evaluation",
            f"{count} labelled {synthetic.DATASETS[DRIFTED_LINE].file_stem} of the drifted world, held out",
            ", ".join(f"v{v['version']} AUC {v['auc']:.3f}" for v in versions),
            line=DRIFTED_LINE,
        )
        return effect

    def score_version(self, package_arn: str, rows: list[dict[str, str]], labels: list[int]) -> dict[str, Any]:
        """One model version's AUC on labelled `rows` and the share it would grant, scored by its own archive
        and inference code as its endpoint would (`LocalHosting.predict_with_version`: nothing captured);
        with the trigger and prepared run it was trained on."""
        from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

        from closedloop import lineage as keys

        body = self.request_rows(self.baseline(package_arn), rows).encode()
        answer = self.hosting.predict_with_version(package_arn, body, "text/csv", "text/csv")
        scores = [float(value) for value in answer.decode().split()]
        package = self.loop.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
        lineage = package.get("CustomerMetadataProperties", {})
        return {
            "version": version_of(package_arn),
            "trigger": lineage.get(keys.TRIGGER),
            "prep_run_id": lineage.get(keys.PREP_RUN_ID),
            "auc": round(float(roc_auc_score(labels, scores)), 4),
            "favourable_rate": round(sum(score >= 0.5 for score in scores) / len(rows), 4),
        }

    # -- report -------------------------------------------------------------------------------

    def retrainings(self) -> dict[str, int]:
        """Pipeline executions an alarm started, per line (what happened, not what was written down)."""
        from closedloop import lineage as keys

        sm = self.loop.client("sagemaker")
        pipeline = self.loop.output("TrainingPipelineName")
        lines = {owned.model_package_group: owned.line for owned in self.lines}
        counts = dict.fromkeys(lines.values(), 0)
        for summary in sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]:
            listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=summary["PipelineExecutionArn"])
            parameters = {p["Name"]: p["Value"] for p in listed["PipelineParameters"]}
            line = lines.get(parameters.get(keys.PARAM_MODEL_GROUP, ""))
            if line is not None and parameters.get(keys.PARAM_TRIGGER) == "alarm":
                counts[line] += 1
        return counts

    def line_of_execution(self, execution_arn: str) -> str | None:
        """The line a pipeline execution trains: the one whose model group it was given."""
        from closedloop import lineage as keys

        if execution_arn not in self._execution_lines:
            listed = self.loop.client("sagemaker").list_pipeline_parameters_for_execution(
                PipelineExecutionArn=execution_arn
            )["PipelineParameters"]
            group = next((p["Value"] for p in listed if p["Name"] == keys.PARAM_MODEL_GROUP), "")
            self._execution_lines[execution_arn] = next(
                (owned.line for owned in self.lines if owned.model_package_group == group), None
            )
        return self._execution_lines[execution_arn]

    def line_of(self, business_key: str) -> str | None:
        """The line a ledger decision is about, read from its business key: a model version's group, a
        preparation run (`run:<line>/…`), a drift run (`drift:<endpoint>`) or an alarm (`alarm:<name>@…`)."""
        for owned in self.lines:
            if (
                f":model-package/{owned.model_package_group}/" in business_key
                or business_key.startswith(f"run:{owned.line}/")
                or business_key == f"drift:{owned.endpoint_name}"
                or business_key.removeprefix("alarm:").split("@", 1)[0] in owned.drift_alarms
                or business_key.startswith(owned.raw_prefix)
            ):
                return owned.line
        return None

    def dead_letters(self) -> list[dict[str, str]]:
        from closedloop_ops.operations import dead_letter_queues, peek

        stack = self.stack_ref()
        return [
            {
                "queue": letter.queue,
                "kind": letter.kind,
                "event": f"{letter.event_source} / {letter.detail_type}",
                "reason": letter.reason,
            }
            for queue in dead_letter_queues(stack)
            for letter in peek(stack, queue, 50)
        ]

    def side_effects(self) -> dict[str, int]:
        """Count every side effect the loop made (duplicates would show here)."""
        sm = self.loop.client("sagemaker")
        pipeline = self.loop.output("TrainingPipelineName")
        jobs = [
            j
            for j in sm.list_processing_jobs()["ProcessingJobSummaries"]
            if j["ProcessingJobName"].startswith("closedloop-prep-")
        ]
        return {
            "preparation_jobs": len(jobs),
            "pipeline_executions": len(
                sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]
            ),
            "model_versions": sum(
                len(sm.list_model_packages(ModelPackageGroupName=owned.model_package_group)["ModelPackageSummaryList"])
                for owned in self.lines
            ),
            # the rollout's models (a pipeline execution's ClarifyModel step makes its own, `pipelines-…`)
            "models": sum(not m["ModelName"].startswith("pipelines-") for m in sm.list_models()["Models"]),
            "endpoint_configs": len(sm.list_endpoint_configs()["EndpointConfigs"]),
            "endpoints_created": sum(d.outcome == "created" for d in self.watcher.deployments),
            "endpoint_updates": sum(d.outcome in {"updated", "rolled-back"} for d in self.watcher.deployments),
        }

    def clarify_reports(self, stack: StackRef, owned: LineResources) -> dict[str, Any]:
        """Every registered version's Clarify figures (`closedloop_ops.approvals.version_clarify_summary`)."""
        from closedloop_ops.approvals import version_clarify_summary

        listed = self.loop.client("sagemaker").list_model_packages(ModelPackageGroupName=owned.model_package_group)[
            "ModelPackageSummaryList"
        ]
        return {
            str(summary["ModelPackageVersion"]): version_clarify_summary(stack, summary["ModelPackageArn"])
            for summary in sorted(listed, key=lambda p: int(p["ModelPackageVersion"]))
        }

    def report(self) -> dict[str, Any]:
        from closedloop_ops.lineage import trace
        from closedloop_ops.operations import audit, dlq_depths

        stack = self.stack_ref()
        decisions = audit(stack, datetime.now(UTC) - timedelta(days=1))
        timeline = []
        for d in decisions:
            entry = {
                "at": d.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "route": d.route,
                "event": d.business_key if len(d.business_key) <= 80 else "..." + d.business_key[-77:],
                "action": d.action,
                "result": d.result,
            }
            line = self.line_of(d.business_key)
            timeline.append({**entry, "line": line} if line else entry)
        timeline = sorted(timeline + self.local_timeline, key=lambda e: e["at"])
        deployed = [
            (self.line_of(d.business_key), int(d.business_key.rsplit("/", 1)[-1]))
            for d in decisions
            if d.route == "deployment-outcome" and d.result == "live" and d.business_key.startswith("arn:")
        ]
        retrainings = self.retrainings()
        in_dlq = sum(q.messages + q.in_flight for q in dlq_depths(stack))
        # the drifted line's last prediction: scored after its retraining, when the story got that far
        traced = self.inference_ids_by_line.get(DRIFTED_LINE) or self.inference_ids
        lineage = trace(stack, inference_id=traced[-1]) if traced else {}
        from closedloop_ops.feature_store import ingested_record_count
        from closedloop_ops.local.completeness import without_decision

        unexplained = without_decision(self.loop, self.watcher.deployments)
        return {
            "wall_seconds": round(time.perf_counter() - self.started, 1),
            "timeline": timeline,
            # over every line, in the order they went live; per line under model_lines
            "model_versions_deployed": [version for _, version in deployed],
            "retrainings": sum(retrainings.values()),
            "model_lines": {
                owned.line: {
                    "model_versions_deployed": [version for line, version in deployed if line == owned.line],
                    "retrainings": retrainings.get(owned.line, 0),
                    "endpoint": owned.endpoint_name,
                    # records ingested into the line's feature group (None: the line keeps none)
                    "feature_group_records": ingested_record_count(self.loop.stack, owned.line),
                    # each version's Clarify reports: bias per facet (pre- and post-training), top attributions
                    "clarify": self.clarify_reports(stack, owned),
                }
                for owned in self.lines
            },
            "drifted_line": DRIFTED_LINE if DRIFTED_LINE in {owned.line for owned in self.lines} else None,
            # preparation runs by the engine route 1 chose (DataPrepEngine)
            "preparation_runs": dict(
                sorted(
                    Counter(
                        str(d.details.get("engine"))
                        for d in decisions
                        if d.route == "data-arrival" and d.result == "started"
                    ).items()
                )
            ),
            "events_in_dlq": in_dlq,
            "dead_letters": self.dead_letters() if in_dlq else [],
            "lineage": lineage,
            **({"retraining_effect": self.retraining_effect} if self.retraining_effect else {}),
            "pipeline_executions": [
                {
                    "arn": r.execution_arn,
                    "status": r.status,
                    "model_package": r.model_package_arn,
                    "steps": [(s.name, s.status, round(s.seconds, 2)) for s in r.steps],
                }
                for r in self.executor.records
            ],
            "deployments": [d.__dict__ for d in self.watcher.deployments],
            "invocations": len(self.loop.dispatcher.invocations),
            "side_effects_without_decision": len(unexplained),
            "side_effects_unexplained": unexplained,
            "handler_errors": [
                {"function": i.function, "error": i.error} for i in self.loop.dispatcher.invocations if i.error
            ],
        }


def run_demo(
    out_dir: Path,
    say: Callable[[str], None] = print,
    scenario: Scenario | None = None,
    inspect: Callable[[Demo], None] | None = None,
    keep: Callable[[Demo], None] | None = None,
    chaos_seed: int | None = None,
    approval_mode: str = "auto",
    approvers: str | None = None,
    prep_engine: str | None = None,
) -> dict[str, Any]:
    """Run the closed loop once; write the report under `out_dir`; return it.

    `inspect` sees the finished loop before it stops (the tests read its buckets, ledger and logs);
    `keep` is called instead of stopping (the command line's `--keep`: serve the loop until Ctrl-C).
    In `manual` approval mode the story stops where a person takes over: version 1 waits for an
    approver on `approvers` (default: the local ComplianceOfficer role), and the report says so.
    """
    from closedloop_ops.local.loop import approval_parameters

    parameters = {**DEMO_PARAMETERS, **approval_parameters(approval_mode, approvers)}
    if prep_engine is not None:  # where preparation runs (the template's DataPrepEngine)
        parameters["DataPrepEngine"] = prep_engine
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        LocalLoop.start(stack_name="closedloop-demo", parameters=parameters) as loop,
        (out_dir / "handler-logs.jsonl").open("w", encoding="utf-8") as handler_logs,
    ):
        loop.dispatcher.log_stream = handler_logs
        demo = Demo(loop=loop, out_dir=out_dir, say=say, scenario=scenario or Scenario())
        demo.setup()
        chaos = None
        if chaos_seed is not None:
            from closedloop_ops.local.chaos import Chaos

            chaos = Chaos(seed=chaos_seed)
            loop.dispatcher.chaos = chaos
            demo.chaos_context = chaos.installed()
            demo.chaos_context.__enter__()
            demo.note(
                "chaos", f"seed {chaos_seed}", "duplicates 1-3x, shuffled batches, 10% throttling, one crash per route"
            )
        try:
            try:
                demo.note(
                    "local loop",
                    f"moto on {loop.stack.endpoint_url}",
                    f"{len(loop.stack.resources)} resources from template.yaml",
                )
                demo.story(manual=approval_mode == "manual")
            except WaitingForApprover as waiting:
                report = {**demo.report(), "pending_versions": waiting.versions}
            except DemoFailed as failure:
                say(f"the closed loop stopped: {failure}")
                report = {**demo.report(), "failure": str(failure)}
            else:
                report = demo.report()
            if chaos is not None:
                demo.chaos_context.__exit__(None, None, None)
                report["chaos"] = {
                    "seed": chaos.seed,
                    **dict(chaos.stats),
                    "crashed_routes": sorted(chaos.crashed_routes),
                    "side_effects": demo.side_effects(),
                }
            drifted = next((owned for owned in demo.lines if owned.line == DRIFTED_LINE), None)
            paths = write_report(
                report,
                out_dir,
                cloudwatch=loop.client("cloudwatch"),
                drift_endpoint=drifted.endpoint_name if drifted else None,
            )
            say(summary(report) if approval_mode != "manual" else manual_summary(report, parameters, keep is not None))
            say(
                f"report: {paths['json']} and {paths['markdown']} (pictures: "
                f"{', '.join(str(p) for k, p in paths.items() if p.suffix == '.svg')}); "
                f"handler logs: {out_dir / 'handler-logs.jsonl'}"
            )
            if inspect is not None:
                inspect(demo)
            if keep is not None:
                keep(demo)
        finally:
            demo.teardown()
    return report


def summary(report: dict[str, Any]) -> str:
    chain = report.get("lineage", {})
    model = chain.get("model_version", {})
    execution = chain.get("pipeline_execution", {})
    per_line = "; ".join(
        f"{line}: versions deployed {facts['model_versions_deployed']}, retrainings {facts['retrainings']} "
        f"({facts['endpoint']}"
        + (
            f"; feature group {facts['feature_group_records']} records"
            if facts.get("feature_group_records") is not None
            else ""
        )
        + ")"
        for line, facts in (report.get("model_lines") or {}).items()
    )
    return "\n".join(
        [
            "",
            f"closed loop done in {report['wall_seconds']} s: versions deployed {report['model_versions_deployed']}, "
            f"retrainings {report['retrainings']}, events in dead-letter queues {report['events_in_dlq']}, "
            f"side effects without a decision {report.get('side_effects_without_decision', '?')}",
            f"per model line: {per_line}",
            f"one prediction ({chain.get('inference', {}).get('inference_id')}) traced back: model version "
            f"{model.get('group')}/{model.get('version')} ← {chain.get('approval_decision', {}).get('decided_by')} "
            f"← pipeline execution triggered by {execution.get('trigger')} ({execution.get('trigger_reason')}) "
            f"← prepared run {chain.get('prepared_data', {}).get('prep_run_id')} ← "
            f"{len(chain.get('raw_objects', []))} raw object versions",
            *([retraining_effect_line(report["retraining_effect"])] if report.get("retraining_effect") else []),
        ]
    )


def manual_summary(report: dict[str, Any], parameters: dict[str, str], kept: bool) -> str:
    """Manual mode's end: which versions wait (`<line>/<n>`), and how a person approves one here."""
    versions = report.get("pending_versions") or []
    if not versions:
        return summary(report)
    approvers = parameters.get("Approvers", "")
    role = next((a for a in approvers.split(",") if ":role/" in a), approvers.split(",")[0])
    keep = "" if kept else " (rerun with `closedloop demo --approval-mode manual --keep` to keep the loop up)"
    waiting = f"version {versions[0]} is" if len(versions) == 1 else f"versions {', '.join(versions)} are"
    return "\n".join(
        [
            "",
            f"closed loop stopped for an approver in {report['wall_seconds']} s: {waiting} pending "
            f"(manual approval mode; approvers: {approvers}); events in dead-letter queues {report['events_in_dlq']}",
            f"approve one as the local compliance officer while the loop is up{keep}:",
            f'  closedloop approve {versions[0]} --local --assume-role {role} --reason "evidence reviewed"',
            f"  closedloop ui --local --assume-role {role}    # the evidence as a page, with Approve / Reject",
            "then watch it roll out: closedloop status --local",
        ]
    )
