"""Route 3: a pipeline execution ended → the retraining lock is released, and a registered version meets the gate.

On every terminal status the retraining lock is released if this execution holds it. Then:

* Failed / Stopped: a notification with the reason and a ledger entry.
* Succeeded: find the version the execution registered (another group's, or none at all, is a
  recorded error — never an approval), read its evidence and apply `ApprovalPolicy`:
  - `auto`: `UpdateModelPackage` to Approved or Rejected, the decision (policy version, every
    reason, every number) in `ApprovalDescription` and in the ledger;
  - `manual`: the version stays PendingManualApproval, the policy's recommendation goes into its
    `ApprovalDescription`, and the approvers are notified with the evidence summary.

A version older than the live (or latest approved) one is never approved — a late Succeeded of an
older execution is rejected as superseded. A version someone already decided is left alone. The
whole handling is idempotent on (execution ARN, status); the ledger entry is written before the
registry is updated, so a retry after a crash re-applies the same recorded decision.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ConfigDict

from closedloop import routes
from closedloop.approval.evidence import EvidenceReader
from closedloop.approval.policy import POLICY_VERSION, ApprovalPolicy, PolicyDecision, describe
from closedloop.approval.registry import Candidate, GateRegistry, group_and_version
from closedloop.errors import ForeignEventError, InvalidEventError, MissingEvidenceError
from closedloop.events.base import foreign_scope
from closedloop.events.pipeline import PipelineExecutionStatusChangeEvent
from closedloop.ledger import Decision, Ledger
from closedloop.line import PerLine
from closedloop.model import Model
from closedloop.notify import Notifier
from closedloop.observability import logger, metrics
from closedloop.retrain_lock import RetrainLock
from closedloop.route_output import RouteOutput
from closedloop.settings import ApprovalMode, Settings
from closedloop.training.pipeline import TrainingPipeline

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.PIPELINE_FINISHED.name
ACTION = "approval_gate"
PENDING = "PendingManualApproval"

GateResult = Literal["approved", "rejected", "pending", "skipped", "execution-failed", "no-model", "error"]


class ExecutionFinished(Model):
    """A terminal status of one of our pipeline's executions."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    execution_arn: str
    pipeline_name: str
    status: Literal["Succeeded", "Failed", "Stopped"]
    failure_reason: str = ""
    display_name: str = ""


class GateOutcome(Model):
    """What route 3 did about one execution's end."""

    model_config = ConfigDict(frozen=True)

    execution_arn: str
    status: str
    result: GateResult
    mode: str
    lock_released: bool = False
    model_package_arn: str | None = None
    version: int | None = None
    found_by: str | None = None
    policy_version: str | None = None
    reasons: tuple[str, ...] = ()
    reason: str = ""


class ApprovalGate:
    """Releases the retraining lock and gates registered versions. Clients come in."""

    def __init__(
        self,
        *,
        settings: Settings,
        s3: S3Client,
        sagemaker: SageMakerClient,
        ledger: Ledger,
        notifier: Notifier,
        idempotency_store: BasePersistenceLayer | Callable[[], BasePersistenceLayer],
    ) -> None:
        self._settings = settings
        self._registry = GateRegistry(sagemaker)
        self._pipeline = TrainingPipeline(sagemaker)
        self._ledger = ledger
        self._output = RouteOutput(routes.PIPELINE_FINISHED, ledger, notifier, settings=settings)
        self._policy = ApprovalPolicy.from_settings(settings)
        self._lock = RetrainLock(ledger, lease=timedelta(seconds=settings.pipeline_max_runtime_s))
        self._reader = EvidenceReader(
            s3=s3,
            sagemaker=sagemaker,
            ledger=ledger,
            model_group=settings.model_package_group,
            endpoint_name=settings.endpoint_name,
        )
        self._decide_once = self._output.once(
            self._decide,
            action=ACTION,
            key="[execution_arn, status]",
            data_argument="finished",
            output=GateOutcome,
            store=idempotency_store,
        )

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._output.register_lambda_context(context)

    def handle(self, event: PipelineExecutionStatusChangeEvent) -> GateOutcome:
        """Handle one terminal status of an execution of this stack's pipeline, once.

        Raises:
            ForeignEventError: the execution is not ours — its pipeline (or the event) belongs to
                another account or region; nothing is decided or recorded about it.
            InvalidEventError: the execution is of another pipeline.
            AwsServiceError / ThrottledError: an AWS call failed (retryable ones come back through
                Lambda's retries; the rest end in the on-failure destination).
        """
        detail = event.detail
        foreign = foreign_scope(event, self._settings.account_id, self._settings.region, detail.pipeline_arn)
        if foreign is not None:
            metrics.add_metric(name="ForeignEventsRefused", unit=MetricUnit.Count, value=1)
            raise ForeignEventError(foreign, pipeline_arn=detail.pipeline_arn, execution_arn=detail.execution_arn)
        if detail.pipeline_name.lower() != self._settings.pipeline_name.lower():
            raise InvalidEventError("the execution is of another pipeline than this stack's")
        finished = ExecutionFinished(
            event_id=event.id,
            execution_arn=detail.execution_arn,
            pipeline_name=detail.pipeline_name,
            status=detail.status,
            failure_reason=(detail.failure_reason or "")[:1000],
            display_name=detail.display_name or "",
        )
        logger.append_keys(execution_arn=finished.execution_arn, execution_status=finished.status)
        return self._decide_once(finished=finished)

    # -- the decision --------------------------------------------------------------------------------

    def _decide(self, finished: ExecutionFinished) -> GateOutcome:
        released = self._lock.release_for_execution(self._settings.model_package_group, finished.execution_arn)
        if finished.status != "Succeeded":
            return self._execution_ended(finished, released)
        return self._gate(finished, released)

    def _gate(self, finished: ExecutionFinished, released: bool) -> GateOutcome:
        package_arn, found_by = self._reader.registered_by(finished.execution_arn)
        if package_arn is None:
            return self._error(
                finished,
                released,
                "no-model",
                "the execution succeeded but registered no model version",
                found_by=found_by,
            )
        parsed = group_and_version(package_arn)
        if parsed is None or parsed[0] != self._settings.model_package_group:
            return self._error(
                finished,
                released,
                "error",
                f"the execution registered a version outside the model group {self._settings.model_package_group}",
                model_package_arn=package_arn,
                found_by=found_by,
            )
        try:
            candidate = self._reader.describe(package_arn)
        except MissingEvidenceError as exc:
            return self._error(finished, released, "error", exc.message, model_package_arn=package_arn)
        if candidate.execution_arn != finished.execution_arn:
            return self._error(
                finished,
                released,
                "error",
                "the registered version's lineage does not name this execution",
                model_package_arn=package_arn,
                version=candidate.version,
            )
        decision = self._policy.evaluate(self._reader.evidence(candidate))
        if self._settings.approval_mode is ApprovalMode.MANUAL:
            return self._recommend(finished, released, candidate, decision, found_by)
        return self._apply(finished, released, candidate, decision, found_by)

    def _apply(
        self,
        finished: ExecutionFinished,
        released: bool,
        candidate: Candidate,
        decision: PolicyDecision,
        found_by: str,
    ) -> GateOutcome:
        result: GateResult = "approved" if decision.approve else "rejected"
        target: Literal["Approved", "Rejected"] = "Approved" if decision.approve else "Rejected"
        record = self._decision(finished, candidate, result, decision, found_by)
        description = describe(decision, mode="auto", decision_id=record.decision_id)
        if candidate.approval_status != PENDING and not (
            candidate.approval_status == target and candidate.approval_description == description
        ):
            return self._skip(finished, released, candidate, found_by)
        self._ledger.record(record)
        if candidate.approval_status != target:
            self._registry.set_approval(candidate.arn, description, target)
        metrics.add_metric(
            name="ModelsApproved" if decision.approve else "ModelsRejected", unit=MetricUnit.Count, value=1
        )
        self._output.notify(
            f"model version {candidate.version} {result} by {decision.policy_version}",
            severity="INFO" if decision.approve else "WARNING",
            **self._summary(finished, candidate, decision),
        )
        logger.info("approval gate decided", extra={"result": result, "version": candidate.version})
        return self._outcome(finished, released, result, candidate, decision, found_by)

    def _recommend(
        self,
        finished: ExecutionFinished,
        released: bool,
        candidate: Candidate,
        decision: PolicyDecision,
        found_by: str,
    ) -> GateOutcome:
        if candidate.approval_status != PENDING:
            return self._skip(finished, released, candidate, found_by)
        record = self._decision(finished, candidate, "pending", decision, found_by)
        self._ledger.record(record)
        description = describe(decision, mode="manual", decision_id=record.decision_id)
        self._registry.set_approval(candidate.arn, description)
        metrics.add_metric(name="ApprovalsPending", unit=MetricUnit.Count, value=1)
        self._output.notify(
            f"model version {candidate.version} awaits approval (policy recommends "
            f"{'approval' if decision.approve else 'rejection'})",
            severity="INFO",
            approvers=list(self._settings.approvers),
            action_needed="an approver sets the version to Approved or Rejected in the Model Registry",
            **self._summary(finished, candidate, decision),
        )
        return self._outcome(finished, released, "pending", candidate, decision, found_by)

    # -- the other endings ---------------------------------------------------------------------------

    def _execution_ended(self, finished: ExecutionFinished, released: bool) -> GateOutcome:
        reason = finished.failure_reason or self._failure_reason(finished.execution_arn)
        self._output.record(
            event_id=finished.event_id,
            business_key=f"execution:{finished.execution_arn}",
            action="pipeline_finished",
            result=finished.status.lower(),
            reason=reason,
            details={"lock_released": released, "pipeline": finished.pipeline_name},
        )
        self._output.notify(
            f"training pipeline {finished.status.lower()}: {finished.display_name or finished.execution_arn}",
            severity="ERROR" if finished.status == "Failed" else "WARNING",
            execution_arn=finished.execution_arn,
            status=finished.status,
            reason=reason,
            lock_released=released,
        )
        metrics.add_metric(name=f"PipelineExecutions{finished.status}", unit=MetricUnit.Count, value=1)
        return GateOutcome(
            execution_arn=finished.execution_arn,
            status=finished.status,
            result="execution-failed",
            mode=self._settings.approval_mode.value,
            lock_released=released,
            reason=reason,
        )

    def _failure_reason(self, execution_arn: str) -> str:
        reason = self._pipeline.failure_reason(execution_arn)
        if reason is None:
            return "the execution no longer exists"
        return (reason or "no failure reason given")[:1000]

    def _error(
        self,
        finished: ExecutionFinished,
        released: bool,
        result: GateResult,
        reason: str,
        **details: Any,
    ) -> GateOutcome:
        arn = details.get("model_package_arn")
        self._output.record(
            event_id=finished.event_id,
            business_key=arn or f"execution:{finished.execution_arn}",
            action=ACTION,
            result=result,
            reason=reason,
            details={**details, "execution_arn": finished.execution_arn, "lock_released": released},
        )
        self._output.notify(
            f"approval gate: no decision possible for {finished.display_name or finished.execution_arn}",
            severity="ERROR",
            execution_arn=finished.execution_arn,
            reason=reason,
            what_next="nothing was approved; inspect the execution and the model registry",
            **details,
        )
        metrics.add_metric(name="ApprovalGateErrors", unit=MetricUnit.Count, value=1)
        logger.warning("approval gate could not decide", extra={"result": result, "gate_reason": reason})
        return GateOutcome(
            execution_arn=finished.execution_arn,
            status=finished.status,
            result=result,
            mode=self._settings.approval_mode.value,
            lock_released=released,
            model_package_arn=arn,
            version=details.get("version"),
            found_by=details.get("found_by"),
            reason=reason,
        )

    def _skip(self, finished: ExecutionFinished, released: bool, candidate: Candidate, found_by: str) -> GateOutcome:
        reason = f"the version is already {candidate.approval_status}: a decision was made before the gate ran"
        self._output.record(
            event_id=finished.event_id,
            business_key=candidate.arn,
            action=ACTION,
            result="skipped",
            reason=reason,
            details={"execution_arn": finished.execution_arn, "version": candidate.version},
        )
        return GateOutcome(
            execution_arn=finished.execution_arn,
            status=finished.status,
            result="skipped",
            mode=self._settings.approval_mode.value,
            lock_released=released,
            model_package_arn=candidate.arn,
            version=candidate.version,
            found_by=found_by,
            reason=reason,
        )

    # -- records ---------------------------------------------------------------------------------------

    def _decision(
        self, finished: ExecutionFinished, candidate: Candidate, result: str, decision: PolicyDecision, found_by: str
    ) -> Decision:
        return self._output.decision(
            event_id=finished.event_id,
            business_key=candidate.arn,
            action=ACTION,
            result=result,
            reason="; ".join(f"{r.code}: {r.detail}" for r in decision.rejections)[:1000],
            details={
                "mode": self._settings.approval_mode.value,
                "policy_version": decision.policy_version,
                "policy_says": "approve" if decision.approve else "reject",
                "rejections": decision.codes,
                "numbers": decision.numbers,
                "execution_arn": finished.execution_arn,
                "version": candidate.version,
                "found_by": found_by,
            },
        )

    def _summary(
        self, finished: ExecutionFinished, candidate: Candidate, decision: PolicyDecision
    ) -> Mapping[str, Any]:
        return {
            "model_package_arn": candidate.arn,
            "version": candidate.version,
            "execution_arn": finished.execution_arn,
            "policy_version": decision.policy_version,
            "policy_says": "approve" if decision.approve else "reject",
            "rejections": [f"{r.code}: {r.detail}" for r in decision.rejections],
            "numbers": decision.numbers,
        }

    def _outcome(
        self,
        finished: ExecutionFinished,
        released: bool,
        result: GateResult,
        candidate: Candidate,
        decision: PolicyDecision,
        found_by: str,
    ) -> GateOutcome:
        return GateOutcome(
            execution_arn=finished.execution_arn,
            status=finished.status,
            result=result,
            mode=self._settings.approval_mode.value,
            lock_released=released,
            model_package_arn=candidate.arn,
            version=candidate.version,
            found_by=found_by,
            policy_version=decision.policy_version or POLICY_VERSION,
            reasons=tuple(decision.codes),
        )


class LineGates:
    """Route 3 for every model line: the execution's line, then that line's gate.

    The pipeline is shared; what an execution trains is its `ModelPackageGroupName` parameter,
    set by whoever started it (routes 2 and 6) to the line's group. An execution of another
    account, region or pipeline — or one whose group no deployed line owns — goes to the gate
    of no line, which refuses it or records it as outside the stack's groups.
    """

    def __init__(self, *, settings: Settings, sagemaker: SageMakerClient, build: Callable[[Settings], ApprovalGate]):
        self._settings = settings
        self._pipeline = TrainingPipeline(sagemaker)
        self._gates = PerLine(settings, build)
        self._context: LambdaContext | None = None

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._context = context

    def handle(self, event: PipelineExecutionStatusChangeEvent) -> GateOutcome:
        """Hand the event to the gate of the execution's line (see `ApprovalGate.handle`)."""
        detail = event.detail
        ours = foreign_scope(event, self._settings.account_id, self._settings.region, detail.pipeline_arn) is None
        same_pipeline = detail.pipeline_name.lower() == self._settings.pipeline_name.lower()
        line = self._line_of(detail.execution_arn) if ours and same_pipeline else None
        if line is not None:
            logger.append_keys(model_line=line)
        gate = self._gates[line]
        gate.register_lambda_context(self._context)
        return gate.handle(event)

    def _line_of(self, execution_arn: str) -> str | None:
        return self._gates.catalog.by_model_group(self._pipeline.model_group_of(execution_arn))
