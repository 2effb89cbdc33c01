"""Route 8: a model version goes from stage to stage across accounts (docs/multi-account.md).

A `closedloop` / `Model Version Stage Change` event arrives from another account. Who sent it is
the envelope's `account` (EventBridge sets it; a sender cannot), and only listed accounts count:

* **In a stack that serves a stage** (`BuildAccountId` set): a `live` change from the stage before
  (`PromoteFromAccountId`) promotes that version here. The version is re-read from the build
  account's registry (shared with this account by the model group's resource policy), must still be
  `Approved` there and newer than anything promoted here before; this stage's own copy of it is
  registered in the line's group here (`PendingManualApproval`, naming its source) and then
  released as the stage's `ApprovalMode` says: `auto` — approved by this function's role (the
  stage's policy: live and baked in the stage before), which route 4 accepts as the gate's;
  `manual` — left for an approver on this stage's `Approvers`, who are notified. Route 4 rolls it
  out blue/green, and a rejection here rolls this stage back, as for a version trained here.
* **In the stack that trains** (`BuildAccountId` empty): any change from a stage account
  (`StageAccountIds`) is recorded in the ledger under the source version, so the build account's
  ledger, status and lineage see every stage.

Anything else — an unlisted account, a version of another account or line — is refused: recorded
and notified, never acted on, never retried.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from closedloop import lineage, routes
from closedloop.approval.registry import GateRegistry, group_and_version
from closedloop.aws import aws_errors, is_not_found
from closedloop.events.base import arn_scope
from closedloop.events.stage import StageChangeDetail, StageChangeEvent
from closedloop.ledger import Clock, Ledger, utcnow
from closedloop.model import Model
from closedloop.notify import Notifier
from closedloop.observability import logger
from closedloop.route_output import RouteOutput
from closedloop.settings import ApprovalMode, Settings
from closedloop.stages import StageEvents

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.STAGE_CHANGE.name
PROMOTION_POLICY = "stage-promotion/1"
COPY_SEARCH_LIMIT = 25  # the newest versions of the group looked at for an existing copy
# what a stage's copy takes over from the source version's description
COPIED_FIELDS = ("InferenceSpecification", "ModelMetrics", "DriftCheckBaselines", "Domain", "Task")


def stage_action(stage: str) -> str:
    """The ledger action of the stack that trains recording a stage's change (`stage:prod`)."""
    return f"stage:{stage}"


def is_stage_record(decision: Any) -> bool:
    """Is a ledger decision route 8's record of a later stage's change (not a refusal, not a promotion)?"""
    return bool(decision.route == ROUTE and decision.action.startswith(stage_action("")))


Result = Literal["promoted", "pending_approval", "recorded", "skipped", "ignored", "refused"]


class StageChangeOutcome(Model):
    """What route 8 made of one stage change."""

    result: Result
    reason: str = ""
    line: str = ""
    stage: str = ""
    change: str = ""
    source_model_package_arn: str = ""
    model_package_arn: str = ""


class StageChanges:
    """Route 8 for one model line: promote into this stage, or record another stage's change."""

    def __init__(
        self,
        *,
        settings: Settings,
        sagemaker: SageMakerClient,
        ledger: Ledger,
        notifier: Notifier,
        stage_events: StageEvents,
        clock: Clock = utcnow,
    ) -> None:
        self._settings = settings
        self._sagemaker = sagemaker
        self._registry = GateRegistry(sagemaker)
        self._ledger = ledger
        self._events = stage_events
        self._clock = clock
        self._output = RouteOutput(routes.STAGE_CHANGE, ledger, notifier, settings=settings)

    def handle(self, event: StageChangeEvent) -> StageChangeOutcome:
        """Promote or record the change; refuse it when it is not from a listed account.

        Raises:
            AwsServiceError / ThrottledError: an AWS call failed (`retryable` says whether to retry).
        """
        detail = event.detail
        base = {
            "line": detail.line,
            "stage": detail.stage,
            "change": detail.change,
            "source_model_package_arn": detail.source_model_package_arn,
        }
        problem = self._not_ours(event)
        if problem:
            return self._refuse(event, base, problem)
        if self._settings.trains:
            return self._record_stage(event, base)
        if detail.change != "live":
            reason = f"a {detail.change} change in {detail.stage} promotes nothing"
            self._record(event, base, "promote", "ignored", reason)
            return StageChangeOutcome(result="ignored", reason=reason, **base)
        return self._promote(event, base)

    # -- who may send what ---------------------------------------------------------------------------

    def _not_ours(self, event: StageChangeEvent) -> str:
        """Why the event is not one this stack may act on, or ''."""
        settings, detail = self._settings, event.detail
        sender = event.account
        if settings.trains:
            listed, build_account = sender in settings.stage_account_ids, settings.account_id
            unlisted = f"account {sender} is not one of this stack's stage accounts (StageAccountIds)"
        else:
            listed, build_account = sender == settings.promote_from_account_id, settings.build_account_id
            unlisted = f"account {sender} is not the stage this stack promotes from (PromoteFromAccountId)"
        group = (group_and_version(detail.source_model_package_arn) or ("", 0))[0]
        checks = (
            (listed, unlisted),
            (event.region == settings.region, f"the event is from region {event.region}, not {settings.region}"),
            (
                arn_scope(detail.source_model_package_arn) == (build_account, settings.region),
                f"the version was not built in account {build_account} ({settings.region})",
            ),
            (
                bool(settings.model_package_group) and group == settings.model_package_group,
                f"the version belongs to group {group!r}, not to this stack's line {settings.line or '-'!r}",
            ),
            (
                arn_scope(detail.model_package_arn)[0] == sender,
                "the stage's version is not in the account that sent the change",
            ),
        )
        return next((problem for passed, problem in checks if not passed), "")

    def _refuse(self, event: StageChangeEvent, base: dict[str, Any], reason: str) -> StageChangeOutcome:
        details = {**base, "sender_account": event.account, "sender_region": event.region}
        self._output.record(
            event_id=event.id,
            business_key=f"stage-change:{event.account}:{event.detail.source_model_package_arn}",
            action="verify_sender",
            result="refused",
            reason=reason,
            details=details,
        )
        self._output.notify("Stage change refused", severity="ERROR", reason=reason, **details)
        logger.warning("stage change refused", reason=reason, sender_account=event.account)
        return StageChangeOutcome(result="refused", reason=reason, **base)

    # -- the stack that trains: record ---------------------------------------------------------------

    def _record_stage(self, event: StageChangeEvent, base: dict[str, Any]) -> StageChangeOutcome:
        detail = event.detail
        reason = detail.reason or f"{detail.change} in {detail.stage}"
        self._output.record(
            event_id=event.id,
            business_key=detail.source_model_package_arn,
            action=stage_action(detail.stage),
            result=detail.change,
            reason=reason,
            details={
                **base,
                "account": event.account,
                "source_version": detail.source_version,
                "model_package_arn": detail.model_package_arn,
                "approval": detail.approval,
                "status": detail.status,
                "at": event.time.astimezone(UTC).isoformat(),
            },
        )
        return StageChangeOutcome(result="recorded", reason=reason, model_package_arn=detail.model_package_arn, **base)

    # -- a stage: promote ----------------------------------------------------------------------------

    def _promote(self, event: StageChangeEvent, base: dict[str, Any]) -> StageChangeOutcome:
        detail = event.detail
        source = self._describe(detail.source_model_package_arn)
        if source is None:
            return self._refuse(event, base, "the version does not exist in the build account (or is not shared)")
        if source.get("ModelApprovalStatus") != "Approved":
            reason = f"the version is {source.get('ModelApprovalStatus')} in the build account, not Approved"
            self._record(event, base, "promote", "skipped", reason)
            return StageChangeOutcome(result="skipped", reason=reason, **base)
        state_name = f"promotion#{self._settings.line}"
        state = self._ledger.get_state(state_name) or {}
        newest = int(state.get("source_version", 0))
        copy_arn = self._find_copy(detail.source_model_package_arn)
        if copy_arn is None and detail.source_version <= newest:
            reason = f"version {detail.source_version} is not newer than version {newest}, promoted before"
            self._record(event, base, "promote", "skipped", reason)
            return StageChangeOutcome(result="skipped", reason=reason, **base)
        if copy_arn is None:
            copy_arn = self._create_copy(source, detail)
        self._ledger.put_state(
            state_name,
            {"source_version": max(newest, detail.source_version), "source": detail.source_model_package_arn},
        )
        copy = self._registry.describe(copy_arn)
        since = event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        why = f"live in {detail.stage} (account {event.account}) since {since}"
        if copy is not None and copy.approval_status == "Approved":
            result: Result = "promoted"
            reason = f"already approved in {self._settings.stage}: {why}"
        elif self._settings.approval_mode is ApprovalMode.AUTO:
            result, reason = "promoted", f"{PROMOTION_POLICY}: {why}"
            description = f"Approved by {PROMOTION_POLICY} in {self._settings.stage}: {why}"
            self._registry.set_approval(copy_arn, description, "Approved")
        else:
            result, reason = "pending_approval", f"waits for an approver of {self._settings.stage}: {why}"
            self._registry.set_approval(copy_arn, f"Recommended by {PROMOTION_POLICY}: {why}")
        self._record(event, base, "promote", result, reason, model_package_arn=copy_arn)
        if result == "pending_approval":
            self._output.notify(
                f"Model version {detail.source_version} waits for approval in {self._settings.stage}",
                severity="INFO",
                model_package_arn=copy_arn,
                approvers=list(self._settings.approvers),
                **base,
            )
        self._events.publish(
            StageChangeDetail(
                line=self._settings.line,
                stage=self._settings.stage,
                change="promoted",
                model_package_arn=copy_arn,
                source_model_package_arn=detail.source_model_package_arn,
                source_version=detail.source_version,
                status="Approved" if result == "promoted" else "PendingManualApproval",
                reason=reason[:500],
            )
        )
        return StageChangeOutcome(result=result, reason=reason, model_package_arn=copy_arn, **base)

    def _describe(self, arn: str) -> dict[str, Any] | None:
        try:
            with aws_errors("sagemaker:DescribeModelPackage(build account)", passthrough=_not_shared):
                return dict(self._sagemaker.describe_model_package(ModelPackageName=arn))
        except ClientError:
            return None

    def _find_copy(self, source_arn: str) -> str | None:
        """This stage's copy of a source version, if an earlier attempt registered it."""
        for arn in self._registry.newest(self._settings.model_package_group, limit=COPY_SEARCH_LIMIT):
            candidate = self._registry.describe(arn)
            if candidate is not None and candidate.metadata.get(lineage.SOURCE_PACKAGE) == source_arn:
                return arn
        return None

    def _create_copy(self, source: dict[str, Any], detail: StageChangeDetail) -> str:
        metadata = dict(source.get("CustomerMetadataProperties") or {})
        metadata.update(
            {
                lineage.SOURCE_PACKAGE: detail.source_model_package_arn,
                lineage.SOURCE_ACCOUNT: arn_scope(detail.source_model_package_arn)[0],
                lineage.PROMOTED_FROM: f"{detail.stage}:{detail.model_package_arn}",
            }
        )
        request: dict[str, Any] = {key: source[key] for key in COPIED_FIELDS if source.get(key)}
        request.update(
            ModelPackageGroupName=self._settings.model_package_group,
            ModelPackageDescription=f"version {detail.source_version} of {detail.source_model_package_arn}",
            ModelApprovalStatus="PendingManualApproval",
            CustomerMetadataProperties=metadata,
        )
        with aws_errors("sagemaker:CreateModelPackage(stage copy)"):
            created = self._sagemaker.create_model_package(**request)
        logger.info(
            "stage copy registered",
            copy_arn=created["ModelPackageArn"],
            source_model_package_arn=detail.source_model_package_arn,
            from_stage=detail.stage,
        )
        return str(created["ModelPackageArn"])

    def _record(
        self,
        event: StageChangeEvent,
        base: dict[str, Any],
        action: str,
        result: str,
        reason: str,
        model_package_arn: str = "",
    ) -> None:
        self._output.record(
            event_id=event.id,
            business_key=event.detail.source_model_package_arn,
            action=action,
            result=result,
            reason=reason,
            details={
                **base,
                "from_account": event.account,
                "source_version": event.detail.source_version,
                "model_package_arn": model_package_arn,
                "approval_mode": self._settings.approval_mode.value,
            },
        )


def _not_shared(exc: ClientError) -> bool:
    """Not found, or not shared with this account (the group's resource policy does not name it)."""
    return is_not_found(exc) or exc.response.get("Error", {}).get("Code") == "AccessDeniedException"
