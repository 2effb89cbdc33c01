"""Route 6's decision: start a retraining for an alarm that entered ALARM — or record why not.

Guards, in order (each suppression is a ledger entry and a `RetrainingsSuppressed` metric):
1. the alarm is one the template declares (the stack's drift alarms or ExtraAlarmNames —
   `mapping`; otherwise an error → DLQ), and is not an endpoint health alarm;
2. CloudWatch did not suppress the state's actions (a composite alarm's suppressor);
3. the alarm moved INTO `ALARM` (an ALARM → ALARM update starts nothing);
4. the state is fresh: not older than `MaxAlarmAgeSeconds`, not ahead of the clock by more than
   the allowed skew (a replayed, redriven years later or forged event starts nothing);
5. the model group's cooldown has run out (set whenever an alarm starts a retraining);
6. there is prepared data to train on (`ledger_keys.latest_prepared`, written by route 2);
7. the single-flight `RetrainLock` of the group is free (its lease is the pipeline's maximum run
   time, so a holder that died does not block retraining for good);
8. no execution of the pipeline for this line's model group is running (whoever started it; the
   pipeline is shared by every line, and its `ModelPackageGroupName` parameter says whose it is).

The whole decision runs once per (alarm name, state timestamp): a redelivered event returns the
first decision. The pipeline start carries a `ClientRequestToken` from the same key, and a retry
that finds its own execution already running binds it instead of starting another.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ConfigDict

from closedloop import ledger_keys, routes
from closedloop.errors import ClosedloopError, LockHeldError, UnknownAlarmError
from closedloop.events.cloudwatch import AlarmStateChangeEvent
from closedloop.ledger import Clock, Ledger, utcnow
from closedloop.model import Model
from closedloop.observability import logger, metrics
from closedloop.retrain.alarms import Alarms
from closedloop.retrain.mapping import RetrainTarget, resolve_alarm, trigger_reason
from closedloop.retrain_lock import RetrainLock
from closedloop.route_output import RouteOutput
from closedloop.settings import Settings
from closedloop.training.pipeline import TrainingPipeline
from closedloop.training.requests import build_start_pipeline_request, client_request_token

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sagemaker import SageMakerClient

ROUTE = routes.ALARM.name
ACTION = "start_retraining"
PREPARED_FIELDS = ("prepared_manifest_uri", "data_uri", "prep_run_id", "code_version")
# How far an alarm's state time may lie ahead of this function's clock (clocks of AWS hosts are
# synchronised far tighter; more than this is a forged or mangled event).
CLOCK_SKEW = timedelta(minutes=5)
SUPPRESSED_REASON_CHARS = 200

SuppressionCode = Literal[
    "operational-alarm",
    "actions-suppressed",
    "stale-event",
    "future-event",
    "not-entering-alarm",
    "cooldown",
    "no-prepared-data",
    "retraining-running",
    "pipeline-running",
]


class AlarmTrigger(Model):
    """What the decision needs from the alarm event (the idempotency key is name + state time)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    alarm_name: str
    alarm_arn: str | None
    state_timestamp: str
    state_at: datetime
    state: str
    previous_state: str | None
    entered_alarm: bool
    actions_suppressed_by: str | None = None
    actions_suppressed_reason: str | None = None
    summary: dict[str, Any]

    @classmethod
    def from_event(cls, event: AlarmStateChangeEvent) -> AlarmTrigger:
        detail = event.detail
        return cls(
            event_id=event.id,
            alarm_name=detail.alarm_name,
            alarm_arn=event.alarm_arn,
            state_timestamp=detail.state.timestamp,
            state_at=detail.state.at,
            state=detail.state.value,
            previous_state=detail.previous_state.value if detail.previous_state else None,
            entered_alarm=event.entered_alarm,
            actions_suppressed_by=detail.state.actions_suppressed_by if detail.state.actions_suppressed else None,
            actions_suppressed_reason=(detail.state.actions_suppressed_reason or "")[:SUPPRESSED_REASON_CHARS] or None,
            summary=event.trigger_summary(),
        )

    @property
    def business_key(self) -> str:
        return f"alarm:{self.alarm_name}@{self.state_timestamp}"

    @property
    def holder(self) -> str:
        """Who holds the retraining lock for this alarm event (the same on every retry)."""
        return self.business_key


class RetrainOutcome(Model):
    """The decision for one alarm event."""

    model_config = ConfigDict(frozen=True)

    alarm_name: str
    state_timestamp: str
    result: Literal["started", "suppressed"]
    model_group: str
    pipeline_name: str
    suppressed_because: SuppressionCode | None = None
    reason: str = ""
    execution_arn: str | None = None
    found_existing: bool = False
    cooldown_until: datetime | None = None

    @classmethod
    def of(
        cls, trigger: AlarmTrigger, target: RetrainTarget, result: Literal["started", "suppressed"], **fields: Any
    ) -> RetrainOutcome:
        """The decision for one alarm event about one model group's pipeline."""
        return cls(
            alarm_name=trigger.alarm_name,
            state_timestamp=trigger.state_timestamp,
            result=result,
            model_group=target.model_group,
            pipeline_name=target.pipeline_name,
            **fields,
        )


class AlarmRetraining:
    """Turns alarm state changes into (at most one running) retraining per model group."""

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        sagemaker: SageMakerClient,
        cloudwatch: CloudWatchClient,
        idempotency_store: BasePersistenceLayer,
        clock: Clock = utcnow,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._pipeline = TrainingPipeline(sagemaker)
        self._alarms = Alarms(cloudwatch)
        self._clock = clock
        self._lock = RetrainLock(ledger, lease=timedelta(seconds=settings.pipeline_max_runtime_s))
        self._output = RouteOutput(routes.ALARM, ledger, settings=settings)
        self._decide_once = self._output.once(
            self._decide,
            action=ACTION,
            key="[alarm_name, state_timestamp]",
            data_argument="trigger",
            output=RetrainOutcome,
            store=idempotency_store,
        )

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        self._output.register_lambda_context(context)

    def handle(self, event: AlarmStateChangeEvent) -> RetrainOutcome:
        """Decide on one alarm event, once per (alarm name, state timestamp).

        Raises:
            UnknownAlarmError: the alarm maps to no model group of this stack (recorded first).
            ClosedloopError: an AWS call failed (`retryable` says whether a retry can help); the
                lock taken for this event is released first.
        """
        trigger = AlarmTrigger.from_event(event)
        outcome = self._decide_once(trigger=trigger)
        logger.info(
            "alarm decided",
            alarm=outcome.alarm_name,
            result=outcome.result,
            suppressed_because=outcome.suppressed_because,
            model_group=outcome.model_group,
            execution_arn=outcome.execution_arn,
        )
        return outcome

    # -- the decision (runs once per business key) ----------------------------------------------

    def _decide(self, trigger: AlarmTrigger) -> RetrainOutcome:
        target = self._target(trigger)
        now = self._clock()
        prepared = self._unlocked_guards(trigger, target, now)
        if isinstance(prepared, RetrainOutcome):
            return prepared
        request = build_start_pipeline_request(
            pipeline_name=target.pipeline_name,
            input_data_uri=str(prepared["data_uri"]),
            prepared_manifest_uri=str(prepared["prepared_manifest_uri"]),
            prep_run_id=str(prepared["prep_run_id"]),
            code_version=str(prepared["code_version"]),
            trigger="alarm",
            trigger_reason=trigger_reason(trigger.alarm_name, trigger.summary),
            model_group=target.model_group,
            client_request_token=client_request_token("alarm", trigger.alarm_name, trigger.state_timestamp),
        )
        try:
            self._lock.acquire(target.model_group, trigger.holder, reason=trigger.alarm_name)
        except LockHeldError as exc:
            expires = exc.context.get("expires_at", "?")
            return self._suppress(
                trigger,
                target,
                "retraining-running",
                f"a retraining of {target.model_group} holds the lock until {expires}",
                holder=exc.context.get("holder", ""),
            )
        try:
            running = self._pipeline.running_execution(target.pipeline_name, target.model_group)
            if running is not None and running.display_name != request["PipelineExecutionDisplayName"]:
                self._lock.release(target.model_group, trigger.holder)
                return self._suppress(
                    trigger,
                    target,
                    "pipeline-running",
                    f"execution {running.arn} of {target.pipeline_name} is {running.status}",
                    running_execution=running.arn,
                )
            execution_arn = running.arn if running is not None else self._pipeline.start(request)
        except ClosedloopError as exc:
            self._lock.release(target.model_group, trigger.holder)
            self._record(trigger, target, "failed", exc.message, exc.as_dict())
            raise
        return self._started(trigger, target, execution_arn, running is not None, now, request)

    def _unlocked_guards(
        self, trigger: AlarmTrigger, target: RetrainTarget, now: datetime
    ) -> RetrainOutcome | dict[str, Any]:
        """The guards that need no lock: a suppression, or the prepared data to retrain on."""
        refused = self._event_guards(trigger, target)
        if refused is not None:
            return refused
        cooldown = self._ledger.get_state(ledger_keys.cooldown(target.model_group)) or {}
        if cooldown.get("trigger") == trigger.business_key and cooldown.get("execution_arn"):
            # This very alarm state started the running execution; the attempt that did so died
            # before writing it down. Record the start now instead of calling it a suppression.
            # (Before the age check: a late retry of a start that happened must not be called stale.)
            return self._record_own_start(trigger, target, cooldown)
        stale = self._freshness(trigger, target, now)
        if stale is not None:
            return stale
        until = self._cooldown_until(target.model_group)
        if until is not None and until > now:
            return self._suppress(
                trigger,
                target,
                "cooldown",
                f"model group {target.model_group} is cooling down until {until.isoformat()}",
                cooldown_until=until,
            )
        prepared = self._ledger.get_state(ledger_keys.latest_prepared(target.model_group))
        if not prepared or any(not prepared.get(field) for field in PREPARED_FIELDS):
            return self._suppress(
                trigger,
                target,
                "no-prepared-data",
                f"no prepared data for {target.model_group} yet: nothing to retrain on",
            )
        return prepared

    def _event_guards(self, trigger: AlarmTrigger, target: RetrainTarget) -> RetrainOutcome | None:
        """A suppression the event alone decides (what alarm, suppressed actions, which transition)."""
        if target.operational:
            return self._suppress(
                trigger,
                target,
                "operational-alarm",
                "an endpoint health alarm: it rolls deployments back, retraining would not fix it",
            )
        if trigger.actions_suppressed_by or trigger.actions_suppressed_reason:
            by = trigger.actions_suppressed_by or "unknown"
            return self._suppress(
                trigger,
                target,
                "actions-suppressed",
                f"CloudWatch suppressed the alarm's actions ({by}: "
                f"{trigger.actions_suppressed_reason or 'no reason given'}); a suppressed alarm starts nothing",
                actions_suppressed_by=by,
            )
        if not trigger.entered_alarm:
            return self._suppress(
                trigger,
                target,
                "not-entering-alarm",
                f"state went {trigger.previous_state or 'unknown'} -> {trigger.state}; "
                "only a transition into ALARM starts a retraining",
            )
        return None

    def _freshness(self, trigger: AlarmTrigger, target: RetrainTarget, now: datetime) -> RetrainOutcome | None:
        """A suppression for a state older than the limit or ahead of the clock; None when fresh."""
        age = now - trigger.state_at
        limit = self._settings.max_alarm_age_s
        if age > timedelta(seconds=limit):
            return self._suppress(
                trigger,
                target,
                "stale-event",
                f"the alarm state is {int(age.total_seconds())} s old; states older than {limit} s "
                "(MaxAlarmAgeSeconds) start nothing",
                age_s=int(age.total_seconds()),
                max_age_s=limit,
            )
        if -age > CLOCK_SKEW:
            return self._suppress(
                trigger,
                target,
                "future-event",
                f"the alarm state is {int(-age.total_seconds())} s ahead of this function's clock; "
                f"more than {int(CLOCK_SKEW.total_seconds())} s is not clock skew, so it starts nothing",
                ahead_s=int(-age.total_seconds()),
                max_skew_s=int(CLOCK_SKEW.total_seconds()),
            )
        return None

    def _started(
        self,
        trigger: AlarmTrigger,
        target: RetrainTarget,
        execution_arn: str,
        found_existing: bool,
        now: datetime,
        request: dict[str, Any],
    ) -> RetrainOutcome:
        try:
            self._lock.bind_execution(target.model_group, trigger.holder, execution_arn)
        except LockHeldError:  # the lease ran out between acquire and bind: the run goes on unbound
            logger.warning(
                "retraining lock lost before binding", model_group=target.model_group, execution_arn=execution_arn
            )
        until = now + timedelta(seconds=self._settings.retrain_cooldown_s)
        self._ledger.put_state(
            ledger_keys.cooldown(target.model_group),
            {
                "until": until.isoformat(),
                "reason": trigger.alarm_name,
                "execution_arn": execution_arn,
                "trigger": trigger.business_key,
            },
        )
        reason = next(p["Value"] for p in request["PipelineParameters"] if p["Name"] == "TriggerReason")
        self._record(
            trigger,
            target,
            "started",
            "found its own execution already running" if found_existing else "",
            {
                "execution_arn": execution_arn,
                "pipeline": target.pipeline_name,
                "trigger_reason": reason,
                "cooldown_until": until.isoformat(),
                "matched_by": target.matched_by,
                **{k: v for k, v in trigger.summary.items() if k in {"metric", "value", "threshold"}},
            },
        )
        metrics.add_metric(name="RetrainingsStarted", unit=MetricUnit.Count, value=1)
        return RetrainOutcome.of(
            trigger,
            target,
            "started",
            execution_arn=execution_arn,
            found_existing=found_existing,
            cooldown_until=until,
        )

    def _record_own_start(
        self, trigger: AlarmTrigger, target: RetrainTarget, cooldown: dict[str, Any]
    ) -> RetrainOutcome:
        until = datetime.fromisoformat(cooldown["until"])
        self._record(
            trigger,
            target,
            "started",
            "recorded on retry: an earlier attempt started the execution and stopped before writing it down",
            {
                "execution_arn": cooldown["execution_arn"],
                "pipeline": target.pipeline_name,
                "cooldown_until": cooldown["until"],
                "matched_by": target.matched_by,
            },
        )
        return RetrainOutcome.of(
            trigger,
            target,
            "started",
            execution_arn=cooldown["execution_arn"],
            found_existing=True,
            cooldown_until=until,
        )

    # -- guards ---------------------------------------------------------------------------------

    def _target(self, trigger: AlarmTrigger) -> RetrainTarget:
        try:
            return resolve_alarm(trigger.alarm_name, self._alarm_tags(trigger), self._settings)
        except UnknownAlarmError as exc:
            self._output.record(
                event_id=trigger.event_id,
                business_key=trigger.business_key,
                action=ACTION,
                result="rejected",
                reason=exc.message,
                details=exc.as_dict(),
            )
            metrics.add_metric(name="AlarmsRejected", unit=MetricUnit.Count, value=1)
            raise

    def _alarm_tags(self, trigger: AlarmTrigger) -> dict[str, str]:
        """The alarm's tags; none when it has no ARN in the event or no longer exists."""
        if not trigger.alarm_arn:
            return {}
        tags = self._alarms.tags(trigger.alarm_arn)
        if tags is None:
            logger.info("alarm no longer exists; mapped by name only", alarm=trigger.alarm_name)
            return {}
        return tags

    def _cooldown_until(self, model_group: str) -> datetime | None:
        state = self._ledger.get_state(ledger_keys.cooldown(model_group))
        if not state or not state.get("until"):
            return None
        try:
            return datetime.fromisoformat(str(state["until"]))
        except ValueError:
            logger.warning("unreadable cooldown ignored", model_group=model_group)
            return None

    # -- recording ------------------------------------------------------------------------------

    def _suppress(
        self,
        trigger: AlarmTrigger,
        target: RetrainTarget,
        code: SuppressionCode,
        reason: str,
        *,
        cooldown_until: datetime | None = None,
        **details: Any,
    ) -> RetrainOutcome:
        self._record(trigger, target, "suppressed", reason, {"suppressed_because": code, **details})
        metrics.add_metric(name="RetrainingsSuppressed", unit=MetricUnit.Count, value=1)
        return RetrainOutcome.of(
            trigger,
            target,
            "suppressed",
            suppressed_because=code,
            reason=reason,
            cooldown_until=cooldown_until,
        )

    def _record(
        self, trigger: AlarmTrigger, target: RetrainTarget, result: str, reason: str, details: dict[str, Any]
    ) -> None:
        self._output.record(
            event_id=trigger.event_id,
            business_key=trigger.business_key,
            action=ACTION,
            result=result,
            reason=reason,
            details={
                "alarm": trigger.alarm_name,
                "state": trigger.state,
                "previous_state": trigger.previous_state,
                "model_group": target.model_group,
                **details,
            },
        )
