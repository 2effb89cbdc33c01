"""Every side effect has its decision: the emulated AWS against the ledger.

The compliance question "why did this happen?" must have an answer for every job, pipeline
execution, model-version status change and endpoint change the loop made — also when a function
died between the side effect and its ledger write. This module lists what the local loop's AWS
holds and looks for the decision behind each item:

- a preparation job (Processing job or Glue run): route 1's `started`, naming the job or run id;
- a pipeline execution: a `started` decision naming the execution (route 2 or route 6);
- a version of any model line's group set to Approved or Rejected: the gate's `approved` /
  `rejected`; in manual mode, the gate's `pending` and route 4's decision about the person's flip;
- an endpoint created or updated: route 4's `deploying`, naming the endpoint config.

Only names, ARNs and counts are compared and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from closedloop.ledger import Ledger, RecordedDecision
from closedloop_ops.stackref import model_lines

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Loop(Protocol):
    def client(self, service: str) -> Any: ...
    def output(self, name: str) -> str: ...


class EndpointChange(Protocol):
    endpoint: str
    config: str
    outcome: str


@dataclass(frozen=True)
class SideEffect:
    kind: str
    name: str


def side_effects(loop: Loop, endpoint_changes: Iterable[EndpointChange], prep_job_prefix: str) -> list[SideEffect]:
    """Every side effect the loop made in the emulated AWS, by kind and name."""
    sm = loop.client("sagemaker")
    found = [
        SideEffect("preparation job", job["ProcessingJobName"])
        for job in _pages(sm, "list_processing_jobs", "ProcessingJobSummaries")
        if job["ProcessingJobName"].startswith(prep_job_prefix)
    ]
    glue = loop.client("glue")
    for job in _pages(glue, "get_jobs", "Jobs"):
        if job["Name"].startswith(prep_job_prefix.rstrip("-")):
            found += [
                SideEffect("preparation job", run["Id"])
                for run in _pages(glue, "get_job_runs", "JobRuns", JobName=job["Name"])
            ]
    pipeline = loop.output("TrainingPipelineName")
    found += [
        SideEffect("pipeline execution", summary["PipelineExecutionArn"])
        for summary in _pages(sm, "list_pipeline_executions", "PipelineExecutionSummaries", PipelineName=pipeline)
    ]
    for line in model_lines(loop.output):  # every line's model group
        found += [
            SideEffect(f"version {package['ModelApprovalStatus'].lower()}", package["ModelPackageArn"])
            for package in _pages(
                sm, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=line.model_package_group
            )
            if package["ModelApprovalStatus"] in {"Approved", "Rejected"}
        ]
    found += [
        SideEffect(f"endpoint {change.outcome}", change.config)
        for change in endpoint_changes
        if change.outcome in {"created", "updated"}
    ]
    return found


def explained(effect: SideEffect, decisions: Sequence[RecordedDecision]) -> bool:
    """Whether a recorded decision explains the side effect."""
    if effect.kind == "preparation job":
        return any(
            d.route == "data-arrival"
            and d.result == "started"
            and effect.name in {d.details.get("job"), d.details.get("job_run_id")}
            for d in decisions
        )
    if effect.kind == "pipeline execution":
        return any(d.result == "started" and d.details.get("execution_arn") == effect.name for d in decisions)
    if effect.kind.startswith("version "):
        status = effect.kind.removeprefix("version ")
        about = [d for d in decisions if d.business_key == effect.name]
        gate = {d.result for d in about if d.route == "pipeline-finished"}
        # auto mode: the gate flipped it; manual mode: a person did, after the gate's "pending",
        # and route 4 recorded what it made of the flip
        return status in gate or ("pending" in gate and any(d.route == "model-approval" for d in about))
    return any(
        d.route == "model-approval" and d.result == "deploying" and d.details.get("endpoint_config") == effect.name
        for d in decisions
    )


def without_decision(
    loop: Loop, endpoint_changes: Iterable[EndpointChange], prep_job_prefix: str = "closedloop-prep-"
) -> list[dict[str, str]]:
    """The side effects no ledger decision explains (kind and name; empty when the audit is complete)."""
    ledger = Ledger(loop.output("LedgerTableName"), loop.client("dynamodb"))
    decisions = ledger.decisions_since(EPOCH)
    return [
        {"kind": effect.kind, "name": effect.name}
        for effect in side_effects(loop, endpoint_changes, prep_job_prefix)
        if not explained(effect, decisions)
    ]


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page.get(key, [])]
