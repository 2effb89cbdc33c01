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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ConfigDict

from closedloop import routes
from closedloop.deploy.hosting import Hosting, alarm_states
from closedloop.deploy.models import DeploymentKind, Endpoint, LiveVersion, ModelPackage, RolloutOutcome
from closedloop.deploy.packages import Registry
from closedloop.deploy.policy import (
    AlarmSelection,
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
from closedloop.ledger import Clock, Ledger, utcnow
from closedloop.model import Model
from closedloop.notify import Notifier, Severity
from closedloop.observability import logger, metrics
from closedloop.route_output import RouteOutput
from closedloop.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.MODEL_APPROVAL.name


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


@dataclass(frozen=True)
class Deployment:
    """A deployment decided on: which version replaces which on the endpoint, under which config, and why."""

    change: StatusChange
    target: ModelPackage  # the version to serve
    trigger: ModelPackage  # whose status change decided it (the decision's key): the target, or a rejected live one
    endpoint: Endpoint | None  # None: the endpoint does not exist yet
    live: LiveVersion | None
    kind: DeploymentKind
    reason: str
    config_name: str
    deployment_id: str

    @property
    def already_serving(self) -> bool:
        """The endpoint serves the target's endpoint config already: there is nothing to start."""
        return self.endpoint is not None and self.endpoint.config_name == self.config_name


@dataclass(frozen=True)
class EndpointStart:
    """The call that starts a deployment: CreateEndpoint, or a blue/green UpdateEndpoint."""

    action: Literal["create_endpoint", "update_endpoint"]
    status: str  # the endpoint state's status while the deployment runs
    request: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)  # what the ledger adds about it: the rollback alarms


def deployment_id(change: StatusChange, config_name: str) -> str:
    """The id of one deployment: the status change that decided it and the endpoint config it rolls out."""
    return hashlib.sha256(f"{change.key}\x1f{config_name}".encode()).hexdigest()[:16]


def deployment_details(deployment: Deployment, resources: dict[str, Any], *, approval: str) -> dict[str, Any]:
    """What the ledger records of a deployment: the versions, the resources behind it, the approval."""
    target, live = deployment.target, deployment.live
    details: dict[str, Any] = {
        "kind": deployment.kind,
        "deployed_model_package_arn": target.arn,
        "deployed_version": target.version,
        "live_model_package_arn": live.model_package_arn if live else "",
        "live_version": live.version if live else None,
        **resources,
        "approval": approval,
        "deployment_id": deployment.deployment_id,
    }
    if target.missing_lineage():
        details["missing_lineage"] = target.missing_lineage()
    return details


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
        self._output = RouteOutput(routes.MODEL_APPROVAL, ledger, notifier, settings=settings)
        self._state = EndpointStateStore(ledger, settings.endpoint_name, clock)
        self._clock = clock
        self._once = self._output.once(
            self._decide,
            action="deploy_model",
            key="key",
            data_argument="change",
            output=RolloutOutcome,
            store=idempotency_store,
        )

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._output.register_lambda_context(context)

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
            self._output.record(
                event_id=change.event_id,
                business_key=package.arn,
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
        """Roll `target` out: its model and endpoint config, then CreateEndpoint or a blue/green UpdateEndpoint.

        The decision is recorded against `trigger` (the rejected live version of a rollback), else `target`.

        Raises:
            ClosedloopError: none of the rollback alarms exists (not retryable), or an AWS call failed.
            EndpointBusyError: another deployment started since the endpoint was read (retryable).
        """
        tags = lineage_tags(target, verdict.approval)
        model_request = build_create_model_request(self._settings, target, tags=tags)
        config_request = build_endpoint_config_request(self._settings, target, tags=tags)
        resources = self._create_model_and_config(model_request, config_request)
        config_name: str = config_request["EndpointConfigName"]
        deployment = Deployment(
            change=change,
            target=target,
            trigger=trigger or target,
            endpoint=endpoint,
            live=live,
            kind=kind,
            reason=reason,
            config_name=config_name,
            deployment_id=deployment_id(change, config_name),
        )
        details = deployment_details(deployment, resources, approval=verdict.approval)
        if deployment.already_serving:
            serving = "the endpoint already serves this endpoint config"
            return self._outcome(change, deployment.trigger, "already_live", serving, action_name=kind, details=details)
        start = self._create_request(deployment, tags) if endpoint is None else self._update_request(deployment)
        self._start(deployment, start, details)
        self._record_pending(deployment, start.status)
        return self._started(deployment, start, details)

    def _create_model_and_config(self, model_request: dict[str, Any], config_request: dict[str, Any]) -> dict[str, Any]:
        """Create the model and the endpoint config unless they exist; what the ledger says of them.

        Raises:
            AwsServiceError / ThrottledError / ResourceLimitError: one could not be created.
        """
        model_created = self._hosting.ensure_model(model_request)
        config_created = self._hosting.ensure_endpoint_config(config_request)
        return {
            "model": model_request["ModelName"],
            "model_created": model_created,
            "endpoint_config": config_request["EndpointConfigName"],
            "endpoint_config_created": config_created,
        }

    def _create_request(self, deployment: Deployment, tags: list[dict[str, str]]) -> EndpointStart:
        """The first deployment: CreateEndpoint (there is no old fleet to shift traffic from)."""
        request = build_create_endpoint_request(self._settings, deployment.config_name, tags=tags)
        return EndpointStart(action="create_endpoint", status="creating", request=request)

    def _update_request(self, deployment: Deployment) -> EndpointStart:
        """A blue/green UpdateEndpoint under the traffic policy, rolled back by the alarms that can judge it.

        Raises:
            ClosedloopError: none of the rollback alarms exists (not retryable).
        """
        alarms = self._rollback_alarms(deployment)
        deployment_config = build_deployment_config(self._settings, alarms.guarding)
        return EndpointStart(
            action="update_endpoint",
            status="updating",
            request=build_update_endpoint_request(self._settings, deployment.config_name, deployment_config),
            details={
                "rollback_alarms": list(alarms.guarding),
                "missing_rollback_alarms": list(alarms.missing),
                "rollback_alarms_already_in_alarm": list(alarms.already_in_alarm),
                "traffic_routing": deployment_config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"],
            },
        )

    def _rollback_alarms(self, deployment: Deployment) -> AlarmSelection:
        """The rollback alarms that guard the rollout; those already in ALARM cannot, and a warning says so.

        Raises:
            ClosedloopError: none of them exists: no rollout without automatic rollback (not retryable).
            AwsServiceError / ThrottledError: CloudWatch could not be read.
        """
        names = self._settings.rollback_alarm_names
        alarms = select_rollback_alarms(names, alarm_states(self._cloudwatch, names))
        if len(alarms.missing) == len(names):
            raise ClosedloopError(
                "none of the rollback alarms (ROLLBACK_ALARM_NAMES) exists: "
                "refusing a rollout without automatic rollback",
                retryable=False,
                alarms=list(names),
            )
        if alarms.already_in_alarm:
            self._notify(
                "WARNING",
                f"Rolling out model version {deployment.target.version} without the alarms already in ALARM",
                deployment.change,
                deployment.trigger,
                reason="an alarm in ALARM before the rollout judges the version being replaced",
                already_in_alarm=list(alarms.already_in_alarm),
                guarding=list(alarms.guarding),
            )
        return alarms

    def _start(self, deployment: Deployment, start: EndpointStart, details: dict[str, Any]) -> None:
        """Make the CreateEndpoint / UpdateEndpoint call under an intent in the ledger, withdrawn if it fails.

        Raises:
            EndpointBusyError: another deployment got there first (retryable; nothing was changed).
            AwsServiceError / ThrottledError / ResourceLimitError: it could not be started.
        """
        intent = self._output.decision(
            event_id=deployment.change.event_id,
            business_key=deployment.trigger.arn,
            action=deployment.kind,
            result="deploying",
            reason=deployment.reason,
            details={**details, "action": start.action, **start.details},
        )
        call = self._hosting.create_endpoint if start.action == "create_endpoint" else self._hosting.update_endpoint
        with self._ledger.intent(intent):
            call(start.request)

    def _record_pending(self, deployment: Deployment, status: str) -> None:
        """The endpoint state while the deployment runs: what serves, and what is pending since when."""
        live, endpoint, target = deployment.live, deployment.endpoint, deployment.target
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
                    "pending_endpoint_config": deployment.config_name,
                    "pending_kind": deployment.kind,
                    "pending_deployment_id": deployment.deployment_id,
                    "pending_since": self._clock().isoformat(),
                    "last_reason": deployment.reason,
                }
            )
        )

    def _started(self, deployment: Deployment, start: EndpointStart, details: dict[str, Any]) -> RolloutOutcome:
        """Record, count and log the deployment just started (and notify a rollback); its outcome."""
        change, target, trigger, kind = deployment.change, deployment.target, deployment.trigger, deployment.kind
        recorded = {**details, **start.details, "action": start.action}
        self._output.record(
            event_id=change.event_id,
            business_key=trigger.arn,
            action=kind,
            result="deploying",
            reason=deployment.reason,
            details=recorded,
        )
        metrics.add_metric(
            name="RollbacksStarted" if kind == "rollback" else "DeploymentsStarted", unit=MetricUnit.Count, value=1
        )
        logger.info(
            "deployment started",
            kind=kind,
            action=start.action,
            model_package_arn=target.arn,
            version=target.version,
            endpoint_config=deployment.config_name,
            live_version=deployment.live.version if deployment.live else None,
        )
        if kind == "rollback":
            self._notify_rollback(deployment)
        return RolloutOutcome(
            event_id=change.event_id,
            model_package_arn=trigger.arn,
            version=trigger.version,
            status=change.status,
            result="deploying",
            action=start.action,
            kind=kind,
            reason=deployment.reason,
            deployed_model_package_arn=target.arn,
            deployed_version=target.version,
            endpoint_config=deployment.config_name,
            deployment_id=deployment.deployment_id,
        )

    def _notify_rollback(self, deployment: Deployment) -> None:
        """Tell people a rejected live version is being replaced, and by which version."""
        target, trigger = deployment.target, deployment.trigger
        self._notify(
            "WARNING",
            f"Rolling back to model version {target.version}: live version {trigger.version} was rejected",
            deployment.change,
            trigger,
            reason=deployment.reason,
            rollback_to=target.arn,
            endpoint_config=deployment.config_name,
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
        self._output.record(
            event_id=base["event_id"],
            business_key=base["model_package_arn"],
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
        self._output.record(
            event_id=change.event_id,
            business_key=package.arn,
            action=action_name,
            result=result,
            reason=reason,
            details=details,
        )
        logger.info("status change decided", model_package_arn=package.arn, result=result, reason=reason)
        return RolloutOutcome(
            event_id=change.event_id,
            model_package_arn=package.arn,
            version=package.version,
            status=change.status,
            result=result,  # type: ignore[arg-type]
            reason=reason,
        )

    def _notify(
        self, severity: Severity, subject: str, change: StatusChange, package: ModelPackage, **facts: Any
    ) -> None:
        self._output.notify(
            subject,
            severity=severity,
            endpoint=self._settings.endpoint_name,
            model_package_arn=package.arn,
            version=package.version,
            status=change.status,
            event_id=change.event_id,
            **facts,
        )
