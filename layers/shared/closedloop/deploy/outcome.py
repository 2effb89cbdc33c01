"""Route 5: what a deployment came to — live, rolled back or failed — recorded, tagged and notified.

Endpoint events say that *something* changed; DescribeEndpoint says what is true now. Each event
(state change or blue/green progress, in any order, any number of times) is a prompt to compare
the endpoint with the ledger's endpoint state:
* still Creating / Updating / RollingBack… → progress, nothing decided yet;
* InService on the pending config → the new version is **live** (the one it replaced is
  superseded — or, for a rollback, marked rolled back);
* InService on any other config while a deployment was pending → the deployment was **rolled
  back** (an alarm tripped, the new fleet failed): the old config still serves;
* Failed / UpdateRollbackFailed → **failed**, a person has to act;
* InService on a config nobody was deploying → the endpoint was changed by hand: the state follows
  it (reconciled).
A version that was rolled back or failed is marked in the ledger and never redeployed automatically.
Deciding clears the pending deployment, so a second event about the same outcome changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

from closedloop import lineage, routes
from closedloop.deploy.hosting import Hosting
from closedloop.deploy.models import DeploymentObservation, Endpoint, EndpointState, LiveVersion
from closedloop.deploy.packages import Registry
from closedloop.deploy.policy import BUSY_STATUSES, SERVING_STATUS
from closedloop.deploy.state import EndpointStateStore
from closedloop.errors import ClosedloopError, ForeignEventError
from closedloop.events.base import foreign_scope
from closedloop.events.endpoint import EndpointDeploymentStateChangeEvent, EndpointStateChangeEvent
from closedloop.events.stage import StageChangeDetail
from closedloop.ledger import Clock, Ledger, utcnow
from closedloop.notify import Notifier, Severity
from closedloop.observability import logger, metrics
from closedloop.route_output import RouteOutput
from closedloop.settings import Settings
from closedloop.stages import StageEvents, source_of

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.DEPLOYMENT_OUTCOME.name

OUTCOME_TAG = {"live": "live", "rolled_back": "rolled-back", "failed": "failed", "superseded": "superseded"}

EndpointEventModel = EndpointStateChangeEvent | EndpointDeploymentStateChangeEvent


class DeploymentRecorder:
    """Records the outcome of the stack's endpoint deployments. Clients come in; nothing is global."""

    def __init__(
        self,
        *,
        settings: Settings,
        sagemaker: SageMakerClient,
        ledger: Ledger,
        notifier: Notifier,
        stage_events: StageEvents | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._settings = settings
        self._stage_events = stage_events
        self._hosting = Hosting(sagemaker, settings.endpoint_name)
        self._registry = Registry(sagemaker)
        self._output = RouteOutput(routes.DEPLOYMENT_OUTCOME, ledger, notifier, settings=settings)
        self._state = EndpointStateStore(ledger, settings.endpoint_name, clock)

    def handle(self, event: EndpointEventModel) -> DeploymentObservation:
        """Compare the endpoint with the pending deployment and record what it came to.

        Raises:
            ForeignEventError: the endpoint or the event belongs to another account or region.
            EndpointBusyError: another rollout decision holds the endpoint's lock (retryable).
            ClosedloopError: an AWS call failed (`retryable` says whether to try again).
        """
        detail = event.detail
        endpoint_arns = [arn for arn in event.resources if ":endpoint/" in arn]
        foreign = foreign_scope(event, self._settings.account_id, self._settings.region, *endpoint_arns)
        if foreign is not None:
            raise ForeignEventError(foreign, endpoint=detail.endpoint_name)
        base: dict[str, Any] = {
            "event_id": event.id,
            "endpoint_name": detail.endpoint_name,
            "event_status": detail.status,
        }
        if detail.endpoint_name.lower() != self._settings.endpoint_name.lower():
            reason = f"endpoint {detail.endpoint_name!r} is not this stack's"
            self._record(event.id, f"endpoint:{detail.endpoint_name}", "observe", "ignored", reason, {})
            return DeploymentObservation(**base, result="ignored", reason=reason)
        with self._state.locked(event.id):
            state = self._state.get()
            endpoint = self._hosting.describe_endpoint()
            if endpoint is None:
                return self._deleted(event, base, state)
            base["endpoint_status"] = endpoint.status
            verdict = classify(state, endpoint)
            if verdict in {"rolled_back", "failed"}:
                return self._not_deployed(event, base, state, endpoint, verdict)
            handler = {
                "in_progress": self._progress,
                "live": self._live,
                "reconciled": self._reconciled,
                "endpoint_failed": self._endpoint_failed,
                "unchanged": self._unchanged,
            }[verdict]
            return handler(event, base, state, endpoint)

    # -- outcomes ------------------------------------------------------------------------------------

    def _live(
        self, event: EndpointEventModel, base: dict[str, Any], state: EndpointState, endpoint: Endpoint
    ) -> DeploymentObservation:
        arn, version = state.pending_model_package_arn, state.pending_version
        replaced = state.live_model_package_arn
        self._tag(arn, "live")
        replaced_outcome = ""
        if replaced and replaced != arn:
            if state.pending_kind == "rollback":
                replaced_outcome = "rolled_back"
                self._state.mark_rolled_back(
                    replaced,
                    reason=state.last_reason or "rejected while live",
                    by="rollback",
                    replaced_by=arn,
                    endpoint_config=state.endpoint_config,
                )
            else:
                replaced_outcome = "superseded"
            self._tag(replaced, replaced_outcome)
        self._copy_lineage_to_endpoint(endpoint)
        kind = state.pending_kind or "deploy"
        details = {
            "kind": kind,
            "endpoint_config": endpoint.config_name,
            "replaced_model_package_arn": replaced,
            "replaced_version": state.live_version,
            "replaced_outcome": replaced_outcome,
            "deployment_id": state.pending_deployment_id,
            "event_status": event.detail.status,
        }
        reason = "rolled back to this version" if kind == "rollback" else "the deployment completed"
        self._record(event.id, arn, "record_outcome", "live", reason, details)
        self._announce("live", arn, reason, endpoint)
        if kind == "rollback":
            self._notify(
                "WARNING",
                f"Rolled back: model version {version} serves again (version {state.live_version} removed)",
                model_package_arn=arn,
                version=version,
                **details,
            )
        self._state.put(
            state.model_copy(
                update={
                    "live_model_package_arn": arn,
                    "live_version": version,
                    "endpoint_config": endpoint.config_name,
                    "previous_model_package_arn": replaced,
                    "status": "live",
                    "last_outcome": "live",
                    "last_reason": reason,
                    **_NO_PENDING,
                }
            )
        )
        metrics.add_metric(name="DeploymentsLive", unit=MetricUnit.Count, value=1)
        logger.info("deployment live", model_package_arn=arn, version=version, kind=kind)
        return DeploymentObservation(
            **base, result="live", model_package_arn=arn, version=version, endpoint_config=endpoint.config_name
        )

    def _not_deployed(
        self,
        event: EndpointEventModel,
        base: dict[str, Any],
        state: EndpointState,
        endpoint: Endpoint,
        outcome: str,
    ) -> DeploymentObservation:
        """The pending version did not become live: rolled back (old config serves) or failed."""
        arn, version = state.pending_model_package_arn, state.pending_version
        failure = endpoint.failure_reason or event.detail.failure_reason or ""
        if outcome == "rolled_back":
            reason = failure or (
                f"the endpoint is in service on {endpoint.config_name}, not on {state.pending_endpoint_config}: "
                "the deployment was rolled back"
            )
        else:
            reason = failure or f"the endpoint is {endpoint.status}"
        serving = self._serving(endpoint, state) if endpoint.status == SERVING_STATUS else None
        self._state.mark_rolled_back(
            arn,
            reason=reason,
            by="auto-rollback" if outcome == "rolled_back" else "failed-deployment",
            endpoint_config=state.pending_endpoint_config,
            deployment_id=state.pending_deployment_id,
        )
        self._tag(arn, outcome)
        details = {
            "kind": state.pending_kind or "deploy",
            "endpoint_status": endpoint.status,
            "attempted_endpoint_config": state.pending_endpoint_config,
            "serving_endpoint_config": endpoint.config_name,
            "serving_model_package_arn": serving.model_package_arn if serving else "",
            "serving_version": serving.version if serving else None,
            "failure_reason": failure,
            "deployment_id": state.pending_deployment_id,
        }
        self._record(event.id, arn, "record_outcome", outcome, reason, details)
        self._announce("rolled_back" if outcome == "rolled_back" else "failed", arn, reason)
        if outcome == "rolled_back" and state.pending_kind == "rollback":
            self._notify(
                "ERROR",
                f"Rollback to model version {version} did not complete; "
                f"the rejected version {serving.version if serving else '?'} still serves",
                model_package_arn=arn,
                version=version,
                reason=reason,
                **details,
            )
        elif outcome == "rolled_back":
            subject = f"Deployment of model version {version} was rolled back"
            if serving is not None:
                subject += f"; version {serving.version} still serves"
            self._notify("WARNING", subject, model_package_arn=arn, version=version, reason=reason, **details)
        else:
            self._notify(
                "ERROR",
                f"Deployment of model version {version} failed: endpoint is {endpoint.status}",
                model_package_arn=arn,
                version=version,
                reason=reason,
                **details,
            )
        update: dict[str, Any] = {
            "status": outcome,
            "last_outcome": outcome,
            "last_reason": reason,
            **_NO_PENDING,
        }
        if serving is not None:
            update.update(
                live_model_package_arn=serving.model_package_arn,
                live_version=serving.version,
                endpoint_config=serving.endpoint_config,
            )
        self._state.put(state.model_copy(update=update))
        metrics.add_metric(
            name="DeploymentsRolledBack" if outcome == "rolled_back" else "DeploymentsFailed",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.warning("deployment not live", model_package_arn=arn, version=version, outcome=outcome, reason=reason)
        return DeploymentObservation(
            **base,
            result=outcome,  # type: ignore[arg-type]
            model_package_arn=arn,
            version=version,
            endpoint_config=endpoint.config_name,
            reason=reason,
        )

    def _reconciled(
        self, event: EndpointEventModel, base: dict[str, Any], state: EndpointState, endpoint: Endpoint
    ) -> DeploymentObservation:
        """The endpoint serves a config no rollout was deploying: it was changed by hand."""
        serving = self._hosting.serving(endpoint)
        replaced = state.live_model_package_arn
        arn = serving.model_package_arn if serving else ""
        version = serving.version if serving else None
        if arn:
            self._tag(arn, "live")
            self._copy_lineage_to_endpoint(endpoint)
        if replaced and replaced != arn:
            self._tag(replaced, "superseded")
        reason = "the endpoint was changed outside the rollout; the ledger follows it"
        details = {
            "endpoint_config": endpoint.config_name,
            "previous_endpoint_config": state.endpoint_config,
            "replaced_model_package_arn": replaced,
            "lineage_found": serving is not None,
        }
        self._record(event.id, arn or f"endpoint:{endpoint.name}", "record_outcome", "reconciled", reason, details)
        self._notify(
            "WARNING",
            f"Endpoint changed by hand: it now serves model version {version if version is not None else 'unknown'}",
            model_package_arn=arn,
            version=version,
            **details,
        )
        self._state.put(
            state.model_copy(
                update={
                    "live_model_package_arn": arn,
                    "live_version": version,
                    "endpoint_config": endpoint.config_name,
                    "previous_model_package_arn": replaced if replaced != arn else state.previous_model_package_arn,
                    "status": "live",
                    "last_outcome": "reconciled",
                    "last_reason": reason,
                }
            )
        )
        return DeploymentObservation(
            **base, result="reconciled", model_package_arn=arn, version=version, endpoint_config=endpoint.config_name
        )

    def _endpoint_failed(
        self, event: EndpointEventModel, base: dict[str, Any], state: EndpointState, endpoint: Endpoint
    ) -> DeploymentObservation:
        """The endpoint is unusable with no deployment pending (e.g. lost capacity)."""
        reason = endpoint.failure_reason or f"the endpoint is {endpoint.status}"
        details = {"endpoint_status": endpoint.status, "endpoint_config": endpoint.config_name}
        key = state.live_model_package_arn or f"endpoint:{endpoint.name}"
        self._record(event.id, key, "record_outcome", "failed", reason, details)
        self._notify("ERROR", f"Endpoint is {endpoint.status}", reason=reason, **details)
        self._state.put(state.model_copy(update={"status": "failed", "last_outcome": "failed", "last_reason": reason}))
        metrics.add_metric(name="EndpointFailures", unit=MetricUnit.Count, value=1)
        return DeploymentObservation(**base, result="failed", endpoint_config=endpoint.config_name, reason=reason)

    def _deleted(self, event: EndpointEventModel, base: dict[str, Any], state: EndpointState) -> DeploymentObservation:
        reason = "the endpoint does not exist (deleted)"
        key = state.live_model_package_arn or f"endpoint:{self._settings.endpoint_name}"
        self._record(event.id, key, "observe", "deleted", reason, {"event_status": event.detail.status})
        if state.status not in {"deleted", "none"}:
            if state.has_pending:
                self._state.mark_rolled_back(state.pending_model_package_arn, reason=reason, by="endpoint-deleted")
            self._notify("WARNING", "Endpoint deleted", reason=reason, last_live=state.live_model_package_arn)
            self._state.put(
                EndpointState(
                    previous_model_package_arn=state.live_model_package_arn,
                    status="deleted",
                    last_outcome="deleted",
                    last_reason=reason,
                )
            )
        return DeploymentObservation(**base, result="deleted", reason=reason)

    def _progress(
        self, event: EndpointEventModel, base: dict[str, Any], state: EndpointState, endpoint: Endpoint
    ) -> DeploymentObservation:
        stages = _variant_stages(event)
        details: dict[str, Any] = {
            "endpoint_status": endpoint.status,
            "event_status": event.detail.status,
            "pending_endpoint_config": endpoint.pending_config_name or state.pending_endpoint_config,
        }
        if stages:
            details["variant_status"] = stages
        key = state.pending_model_package_arn or f"endpoint:{endpoint.name}"
        self._record(event.id, key, "observe", "in_progress", f"the endpoint is {endpoint.status}", details)
        logger.info("deployment in progress", endpoint_status=endpoint.status, variant_status=stages)
        return DeploymentObservation(
            **base,
            result="in_progress",
            model_package_arn=state.pending_model_package_arn,
            version=state.pending_version,
            endpoint_config=endpoint.config_name,
        )

    def _unchanged(
        self, event: EndpointEventModel, base: dict[str, Any], state: EndpointState, endpoint: Endpoint
    ) -> DeploymentObservation:
        key = state.live_model_package_arn or f"endpoint:{endpoint.name}"
        reason = f"nothing new: already recorded as {state.status}"
        self._record(event.id, key, "observe", "unchanged", reason, {"endpoint_status": endpoint.status})
        return DeploymentObservation(
            **base,
            result="unchanged",
            model_package_arn=state.live_model_package_arn,
            version=state.live_version,
            endpoint_config=endpoint.config_name,
            reason=reason,
        )

    # -- shared steps -----------------------------------------------------------------------------------

    def _serving(self, endpoint: Endpoint, state: EndpointState) -> LiveVersion | None:
        serving = self._hosting.serving(endpoint)
        if serving is None and state.live_model_package_arn and state.endpoint_config == endpoint.config_name:
            return LiveVersion(
                model_package_arn=state.live_model_package_arn,
                version=state.live_version,
                endpoint_config=state.endpoint_config,
            )
        return serving

    def _tag(self, arn: str, outcome: str) -> None:
        """Tag a version with its outcome; a version that cannot be tagged (deleted) does not stop the record."""
        try:
            self._registry.tag_outcome(arn, OUTCOME_TAG.get(outcome, outcome))
        except ClosedloopError as exc:
            if exc.retryable:
                raise
            logger.warning("outcome tag not written", model_package_arn=arn, outcome=outcome, error=exc.as_dict())

    def _announce(
        self, change: Literal["live", "rolled_back", "failed"], arn: str, reason: str, serving: Endpoint | None = None
    ) -> None:
        """Put the outcome on the bus as a stage change (before the pending deployment is cleared, so
        a failed put is retried with the event): the next stage promotes a live version from it, the
        account that trained the version records it."""
        if self._stage_events is None or not arn:
            return
        package = self._registry.describe(arn)
        if package is None:
            logger.warning("stage change not announced: the version no longer exists", model_package_arn=arn)
            return
        source_arn, source_version = source_of(arn, package.version, package.metadata)
        # who released it here: the serving config's lineage tag (live), else the registry's last writer
        approval = self._hosting.config_tags(serving).get(lineage.APPROVAL, "") if serving is not None else ""
        self._stage_events.publish(
            StageChangeDetail(
                line=self._settings.line,
                stage=self._settings.stage,
                change=change,
                model_package_arn=arn,
                source_model_package_arn=source_arn,
                source_version=source_version,
                approval=approval or (f"by:{package.approved_by}" if package.approved_by else ""),
                status=package.approval_status,
                reason=reason[:500],
            )
        )

    def _copy_lineage_to_endpoint(self, endpoint: Endpoint) -> None:
        tags = self._hosting.config_tags(endpoint)
        if tags.get(lineage.MODEL_PACKAGE):
            try:
                self._hosting.tag_endpoint(endpoint, tags)
            except ClosedloopError as exc:
                if exc.retryable:
                    raise
                logger.warning("endpoint lineage tags not written", error=exc.as_dict())

    def _record(self, event_id: str, key: str, action: str, result: str, reason: str, details: dict[str, Any]) -> None:
        self._output.record(
            event_id=event_id, business_key=key, action=action, result=result, reason=reason, details=details
        )

    def _notify(self, severity: Severity, subject: str, **facts: Any) -> None:
        self._output.notify(subject, severity=severity, endpoint=self._settings.endpoint_name, **facts)


Verdict = Literal["in_progress", "live", "rolled_back", "failed", "reconciled", "endpoint_failed", "unchanged"]


def classify(state: EndpointState, endpoint: Endpoint) -> Verdict:
    """What the endpoint as it is now means for the deployment the ledger says is pending."""
    if endpoint.status in BUSY_STATUSES:
        return "in_progress"
    serving = endpoint.status == SERVING_STATUS
    if state.has_pending:
        if serving and endpoint.config_name == state.pending_endpoint_config:
            return "live"
        return "rolled_back" if serving else "failed"
    if serving and endpoint.config_name != state.endpoint_config:
        return "reconciled"
    if not serving and state.status != "failed":
        return "endpoint_failed"
    return "unchanged"


_NO_PENDING: dict[str, Any] = {
    "pending_model_package_arn": "",
    "pending_version": None,
    "pending_endpoint_config": "",
    "pending_kind": "",
    "pending_deployment_id": "",
    "pending_since": "",
}


def _variant_stages(event: EndpointEventModel) -> list[dict[str, str]]:
    """The blue/green stage of each variant (Creating, ActivatingTraffic, Baking…), from the event."""
    variants = list(event.detail.variants)
    if isinstance(event, EndpointDeploymentStateChangeEvent) and event.detail.pending is not None:
        variants += event.detail.pending.variants
    return [
        {"variant": variant.name or "", "status": status.status, "message": status.message[:300]}
        for variant in variants
        for status in variant.statuses
    ]
