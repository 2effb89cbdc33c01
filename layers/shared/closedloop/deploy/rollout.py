"""Route 4's decisions: an approved version is rolled out, a rejected live version is rolled back.

For every `SageMaker Model Package State Change` of our group:
1. the version is read again from the registry — the event may be stale (status changed since),
   and the event does not say who changed the status;
2. the change is applied once per business key (package ARN + status + the time it was set), so
   a redelivered event does nothing the second time, while a later re-approval is a new decision;
3. under the endpoint's rollout lock, an approval is verified (allow-listed approver in manual
   mode, the gate's role in auto mode), checked against the live version (never older, never a
   rolled-back version) and deployed blue/green: Model → EndpointConfig with data capture →
   CreateEndpoint, or UpdateEndpoint with the canary/linear policy and the rollback alarms;
4. a rejection of the live version rolls back to the newest older approved version that was never
   rolled back, through the same deployment path.

An endpoint that is being created or updated raises `EndpointBusyError`: the event comes back later
(SQS visibility backoff) and is decided then, against the outcome of the deployment in progress.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ConfigDict

from closedloop.deploy.hosting import Hosting, alarm_states
from closedloop.deploy.models import DeploymentKind, Endpoint, LiveVersion, ModelPackage, RolloutOutcome
from closedloop.deploy.packages import Registry
from closedloop.deploy.policy import (
    Verdict,
    approval_verdict,
    deployability_problem,
    endpoint_plan,
    ordering,
    rejection_verdict,
    rollback_target,
    select_rollback_alarms,
)
from closedloop.deploy.requests import (
    build_create_endpoint_request,
    build_create_model_request,
    build_deployment_config,
    build_endpoint_config_request,
    build_update_endpoint_request,
    lineage_tags,
    validate_rollout_settings,
)
from closedloop.deploy.state import EndpointStateStore
from closedloop.errors import ClosedloopError, EndpointBusyError, EndpointUnusableError, ForeignEventError
from closedloop.events.base import foreign_scope
from closedloop.events.registry import ModelPackageStateChangeEvent
from closedloop.idempotency import Once
from closedloop.ledger import Clock, Decision, Ledger, utcnow
from closedloop.model import Model
from closedloop.notify import Notifier, Severity
from closedloop.observability import logger, metrics
from closedloop.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = "model-approval"


class StatusChange(Model):
    """One approval decision of the registry: the idempotency key and where it came from."""

    model_config = ConfigDict(frozen=True)

    key: str
    event_id: str
    model_package_arn: str
    status: str


def group_of(model_package_arn: str) -> str:
    """`…:model-package/<group>/<version>` → `<group>` (lower case, as SageMaker writes ARNs)."""
    resource = model_package_arn.rsplit(":model-package/", 1)[-1]
    return resource.rsplit("/", 1)[0].lower() if "/" in resource else ""


class Rollout:
    """Decides and starts deployments of the stack's endpoint. Clients come in; nothing is global."""

    def __init__(
        self,
        *,
        settings: Settings,
        sagemaker: SageMakerClient,
        cloudwatch: CloudWatchClient,
        ledger: Ledger,
        notifier: Notifier,
        idempotency_store: Any,
        clock: Clock = utcnow,
    ) -> None:
        validate_rollout_settings(settings)
        self._settings = settings
        self._registry = Registry(sagemaker)
        self._hosting = Hosting(sagemaker, settings.endpoint_name)
        self._cloudwatch = cloudwatch
        self._ledger = ledger
        self._notifier = notifier
        self._state = EndpointStateStore(ledger, settings.endpoint_name, clock)
        self._clock = clock
        self._once = Once(
            self._decide,
            key="key",
            data_argument="change",
            output=RolloutOutcome,
            store=idempotency_store,
            ttl_seconds=settings.idempotency_ttl_s,
            key_prefix=f"{ROUTE}.deploy_model",
        )

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._once.register_lambda_context(context)

    # -- entry point ---------------------------------------------------------------------------------

    def handle(self, event: ModelPackageStateChangeEvent) -> RolloutOutcome:
        """Decide what one approval or rejection means for the endpoint, and start it.

        Returns the outcome (also recorded in the ledger).

        Raises:
            ForeignEventError: the version or the event belongs to another account or region.
            EndpointBusyError: the endpoint (or its rollout lock) is busy — retry later.
            EndpointUnusableError: the endpoint is Failed / OutOfService / UpdateRollbackFailed.
            ClosedloopError: an AWS call failed (`retryable` says whether to try again).
        """
        detail = event.detail
        foreign = foreign_scope(event, self._settings.account_id, self._settings.region, detail.arn)
        if foreign is not None:
            raise ForeignEventError(foreign, model_package_arn=detail.arn)
        group = self._settings.model_package_group
        base = {
            "event_id": event.id,
            "model_package_arn": detail.arn,
            "version": detail.version,
            "status": detail.approval_status,
        }
        if detail.group != group:
            return self._skip(base, f"model package group {detail.group!r} is not this stack's ({group!r})")
        if not detail.status_changed:
            return self._skip(
                base,
                "the update changed other fields, not the approval status",
                updated_fields=detail.updated_fields,
            )
        package = self._registry.describe(detail.arn)
        if package is None:
            return self._skip(base, "the model package version no longer exists")
        if package.group != group or group_of(package.arn) != group.lower():
            return self._skip(base, f"the model package belongs to group {package.group!r}, not {group!r}")
        if package.approval_status != detail.approval_status:
            return self._skip(
                base,
                f"the version is {package.approval_status} now; this {detail.approval_status} event is stale",
                current_status=package.approval_status,
            )
        stamp = package.last_modified_at.isoformat() if package.last_modified_at else ""
        change = StatusChange(
            key=f"{package.arn}#{package.approval_status}#{stamp}",
            event_id=event.id,
            model_package_arn=package.arn,
            status=package.approval_status,
        )
        outcome = self._once(change=change, package=package)
        if outcome.event_id != event.id:
            self._record(
                change.event_id,
                package.arn,
                action="deduplicate",
                result="duplicate",
                reason="this status change was already decided",
                details={"first_event_id": outcome.event_id, "decided": outcome.result},
            )
            metrics.add_metric(name="DuplicateApprovalEvents", unit=MetricUnit.Count, value=1)
            logger.info("duplicate status change", model_package_arn=package.arn, first_event_id=outcome.event_id)
        return outcome

    def _decide(self, change: StatusChange, package: ModelPackage) -> RolloutOutcome:
        """Runs once per status change (Powertools idempotency on `change.key`)."""
        if package.approval_status == "Approved":
            return self._approved(change, package)
        return self._rejected(change, package)

    # -- approval --------------------------------------------------------------------------------------

    def _approved(self, change: StatusChange, package: ModelPackage) -> RolloutOutcome:
        verdict = approval_verdict(package, self._settings)
        if not verdict.allowed:
            return self._refuse(change, package, verdict, verdict.reason)
        problem = deployability_problem(package)
        if problem:
            return self._refuse(change, package, verdict, problem)
        mark = self._state.rolled_back(package.arn)
        if mark is not None:
            reason = "this version was rolled back before; automation never redeploys it (deploy it by hand)"
            self._notify(
                "WARNING",
                f"Approved model version {package.version} was not deployed: it was rolled back before",
                change,
                package,
                reason=reason,
                rolled_back=mark,
            )
            return self._outcome(change, package, "skipped", reason, action_name="deploy", details={"mark": mark})
        with self._state.locked(change.event_id):
            endpoint = self._usable_endpoint()
            live = self._live(endpoint)
            if live is not None and live.model_package_arn == package.arn:
                return self._outcome(
                    change, package, "already_live", "this version already serves", action_name="deploy"
                )
            order = ordering(package.version, self._comparable_version(live, package))
            if order in {"same", "older"}:
                assert live is not None
                return self._outcome(
                    change,
                    package,
                    "skipped",
                    f"version {package.version} is not newer than the live version {live.version}; "
                    "only an explicit rollback moves the endpoint back",
                    action_name="deploy",
                    details={"live_model_package_arn": live.model_package_arn, "live_version": live.version},
                )
            return self._deploy(change, package, endpoint, live, kind="deploy", verdict=verdict, reason="approved")

    # -- rejection -------------------------------------------------------------------------------------

    def _rejected(self, change: StatusChange, package: ModelPackage) -> RolloutOutcome:
        verdict = rejection_verdict(package, self._settings)
        with self._state.locked(change.event_id):
            endpoint = self._usable_endpoint()
            live = self._live(endpoint)
            if live is None or live.model_package_arn != package.arn:
                return self._outcome(
                    change,
                    package,
                    "recorded",
                    "the rejected version is not live: nothing to roll back",
                    action_name="rollback",
                    details={"live_model_package_arn": live.model_package_arn if live else ""},
                )
            if not verdict.allowed:
                return self._refuse(change, package, verdict, verdict.reason)
            candidates = self._registry.approved_versions(self._settings.model_package_group)
            target = rollback_target(
                candidates,
                below_version=package.version,
                rolled_back=self._state.is_rolled_back,
                allowed=lambda candidate: approval_verdict(candidate, self._settings).allowed,
            )
            if target is None:
                reason = "the live version was rejected, but no older approved version can replace it"
                self._notify(
                    "ERROR",
                    f"Live model version {package.version} was rejected and nothing can replace it",
                    change,
                    package,
                    reason=reason,
                    candidates=[c.version for c in candidates],
                )
                return self._outcome(change, package, "no_rollback_target", reason, action_name="rollback")
            assert endpoint is not None  # a live version implies an endpoint
            return self._deploy(
                change,
                target,
                endpoint,
                live,
                kind="rollback",
                verdict=approval_verdict(target, self._settings),
                reason=f"version {package.version} was rejected while live",
                trigger=package,
            )

    # -- the deployment path ------------------------------------------------------------------------------

    def _deploy(
        self,
        change: StatusChange,
        target: ModelPackage,
        endpoint: Endpoint | None,
        live: LiveVersion | None,
        *,
        kind: DeploymentKind,
        verdict: Verdict,
        reason: str,
        trigger: ModelPackage | None = None,
    ) -> RolloutOutcome:
        settings = self._settings
        tags = lineage_tags(target, verdict.approval)
        model_request = build_create_model_request(settings, target, tags=tags)
        config_request = build_endpoint_config_request(settings, target, tags=tags)
        model_created = self._hosting.ensure_model(model_request)
        config_created = self._hosting.ensure_endpoint_config(config_request)
        config_name: str = config_request["EndpointConfigName"]
        deployment_id = hashlib.sha256(f"{change.key}\x1f{config_name}".encode()).hexdigest()[:16]
        details: dict[str, Any] = {
            "kind": kind,
            "deployed_model_package_arn": target.arn,
            "deployed_version": target.version,
            "live_model_package_arn": live.model_package_arn if live else "",
            "live_version": live.version if live else None,
            "model": model_request["ModelName"],
            "model_created": model_created,
            "endpoint_config": config_name,
            "endpoint_config_created": config_created,
            "approval": verdict.approval,
            "deployment_id": deployment_id,
        }
        if target.missing_lineage():
            details["missing_lineage"] = target.missing_lineage()
        trigger_package = trigger or target
        if endpoint is not None and endpoint.config_name == config_name:
            return self._outcome(
                change,
                trigger_package,
                "already_live",
                "the endpoint already serves this endpoint config",
                action_name=kind,
                details=details,
            )
        intent = Decision(
            route=ROUTE,
            event_id=change.event_id,
            business_key=trigger_package.arn,
            action=kind,
            result="deploying",
            reason=reason,
            details={**details, "action": "create_endpoint" if endpoint is None else "update_endpoint"},
        )
        if endpoint is None:
            with self._ledger.intent(intent):
                self._hosting.create_endpoint(build_create_endpoint_request(settings, config_name, tags=tags))
            action, status = "create_endpoint", "creating"
        else:
            alarms = select_rollback_alarms(
                settings.rollback_alarm_names, alarm_states(self._cloudwatch, settings.rollback_alarm_names)
            )
            details["rollback_alarms"] = list(alarms.guarding)
            details["missing_rollback_alarms"] = list(alarms.missing)
            details["rollback_alarms_already_in_alarm"] = list(alarms.already_in_alarm)
            if len(alarms.missing) == len(settings.rollback_alarm_names):
                raise ClosedloopError(
                    "none of the rollback alarms (ROLLBACK_ALARM_NAMES) exists: "
                    "refusing a rollout without automatic rollback",
                    retryable=False,
                    alarms=list(settings.rollback_alarm_names),
                )
            if alarms.already_in_alarm:
                self._notify(
                    "WARNING",
                    f"Rolling out model version {target.version} without the alarms already in ALARM",
                    change,
                    trigger or target,
                    reason="an alarm in ALARM before the rollout judges the version being replaced",
                    already_in_alarm=list(alarms.already_in_alarm),
                    guarding=list(alarms.guarding),
                )
            deployment_config = build_deployment_config(settings, alarms.guarding)
            details["traffic_routing"] = deployment_config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
            with self._ledger.intent(intent.model_copy(update={"details": {**intent.details, **details}})):
                self._hosting.update_endpoint(build_update_endpoint_request(settings, config_name, deployment_config))
            action, status = "update_endpoint", "updating"
        state = self._state.get()
        self._state.put(
            state.model_copy(
                update={
                    "live_model_package_arn": live.model_package_arn if live else "",
                    "live_version": live.version if live else None,
                    "endpoint_config": endpoint.config_name if endpoint else "",
                    "status": status,
                    "pending_model_package_arn": target.arn,
                    "pending_version": target.version,
                    "pending_endpoint_config": config_name,
                    "pending_kind": kind,
                    "pending_deployment_id": deployment_id,
                    "pending_since": self._clock().isoformat(),
                    "last_reason": reason,
                }
            )
        )
        details["action"] = action
        self._record(
            change.event_id, trigger_package.arn, action=kind, result="deploying", reason=reason, details=details
        )
        metrics.add_metric(
            name="RollbacksStarted" if kind == "rollback" else "DeploymentsStarted", unit=MetricUnit.Count, value=1
        )
        logger.info(
            "deployment started",
            kind=kind,
            action=action,
            model_package_arn=target.arn,
            version=target.version,
            endpoint_config=config_name,
            live_version=live.version if live else None,
        )
        if kind == "rollback":
            self._notify(
                "WARNING",
                f"Rolling back to model version {target.version}: live version {trigger_package.version} was rejected",
                change,
                trigger_package,
                reason=reason,
                rollback_to=target.arn,
                endpoint_config=config_name,
            )
        return RolloutOutcome(
            event_id=change.event_id,
            model_package_arn=trigger_package.arn,
            version=trigger_package.version,
            status=change.status,
            result="deploying",
            action=action,  # type: ignore[arg-type]
            kind=kind,
            reason=reason,
            deployed_model_package_arn=target.arn,
            deployed_version=target.version,
            endpoint_config=config_name,
            deployment_id=deployment_id,
        )

    # -- shared steps ---------------------------------------------------------------------------------------

    def _usable_endpoint(self) -> Endpoint | None:
        """The endpoint if a deployment can start on it now (None: it does not exist yet)."""
        endpoint = self._hosting.describe_endpoint()
        plan = endpoint_plan(endpoint.status if endpoint else None)
        if endpoint is not None and plan == "busy":
            raise EndpointBusyError(
                f"the endpoint is {endpoint.status}", endpoint=endpoint.name, endpoint_status=endpoint.status
            )
        if endpoint is not None and plan == "unusable":
            raise EndpointUnusableError(
                f"the endpoint is {endpoint.status}: only a person can repair or delete it",
                endpoint=endpoint.name,
                endpoint_status=endpoint.status,
                failure_reason=endpoint.failure_reason,
            )
        return endpoint

    def _live(self, endpoint: Endpoint | None) -> LiveVersion | None:
        """What the endpoint serves: its config's lineage tags, else the ledger's state for that config."""
        if endpoint is None:
            return None
        serving = self._hosting.serving(endpoint)
        if serving is not None:
            return serving
        state = self._state.get()
        if state.live_model_package_arn and state.endpoint_config == endpoint.config_name:
            return LiveVersion(
                model_package_arn=state.live_model_package_arn,
                version=state.live_version,
                endpoint_config=state.endpoint_config,
            )
        return None

    @staticmethod
    def _comparable_version(live: LiveVersion | None, package: ModelPackage) -> int | None:
        """The live version number, if it counts in the same group as `package`."""
        if live is None or group_of(live.model_package_arn) != group_of(package.arn):
            return None
        return live.version

    def _skip(self, base: dict[str, Any], reason: str, **details: Any) -> RolloutOutcome:
        self._record(
            base["event_id"],
            base["model_package_arn"],
            action="verify_event",
            result="skipped",
            reason=reason,
            details=details,
        )
        metrics.add_metric(name="ApprovalEventsSkipped", unit=MetricUnit.Count, value=1)
        logger.info("status change skipped", model_package_arn=base["model_package_arn"], reason=reason)
        return RolloutOutcome(**base, result="skipped", reason=reason)

    def _refuse(self, change: StatusChange, package: ModelPackage, verdict: Verdict, reason: str) -> RolloutOutcome:
        details = {"identity": verdict.identity, "approval_mode": verdict.mode}
        self._notify(
            "ERROR",
            f"Approval of model version {package.version} refused: nothing deployed"
            if package.approval_status == "Approved"
            else f"Rejection of live model version {package.version} refused: nothing rolled back",
            change,
            package,
            reason=reason,
            **details,
        )
        metrics.add_metric(name="ApprovalsRefused", unit=MetricUnit.Count, value=1)
        return self._outcome(change, package, "refused", reason, action_name="verify_approver", details=details)

    def _outcome(
        self,
        change: StatusChange,
        package: ModelPackage,
        result: str,
        reason: str,
        *,
        action_name: str,
        details: dict[str, Any] | None = None,
    ) -> RolloutOutcome:
        self._record(change.event_id, package.arn, action=action_name, result=result, reason=reason, details=details)
        logger.info("status change decided", model_package_arn=package.arn, result=result, reason=reason)
        return RolloutOutcome(
            event_id=change.event_id,
            model_package_arn=package.arn,
            version=package.version,
            status=change.status,
            result=result,  # type: ignore[arg-type]
            reason=reason,
        )

    def _record(
        self,
        event_id: str,
        model_package_arn: str,
        *,
        action: str,
        result: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._ledger.record(
            Decision(
                route=ROUTE,
                event_id=event_id,
                business_key=model_package_arn,
                action=action,
                result=result,
                reason=reason,
                details=details or {},
            )
        )

    def _notify(
        self, severity: Severity, subject: str, change: StatusChange, package: ModelPackage, **facts: Any
    ) -> None:
        self._notifier.send(
            route=ROUTE,
            subject=subject,
            severity=severity,
            endpoint=self._settings.endpoint_name,
            model_package_arn=package.arn,
            version=package.version,
            status=change.status,
            event_id=change.event_id,
            **facts,
        )
