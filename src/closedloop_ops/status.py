"""`closedloop status`: where the loop stands, per model line.

For each line the stack serves (its model group and endpoint, `StackRef.lines`): what is live and
where, whether a rollout is running, when the model was last retrained and why, whether retraining
is locked or cooling down, the state of its drift alarms and which versions wait for an approver;
for the stack, how many events sit in the dead-letter queues. Everything is read from where the
routes keep it: the ledger's state items (`closedloop.ledger_keys`), the Model Registry, the
endpoint, CloudWatch and the pipeline's executions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from closedloop import ledger_keys
from closedloop import lineage as keys
from closedloop_ops.stackref import StackRef

if TYPE_CHECKING:
    from closedloop.line import LineResources

PENDING_LISTED = 20
# The training pipeline is shared by the lines: a line's last retraining is the newest of these
# executions that trained its model group.
EXECUTIONS_SCANNED = 50
STATUS_WORDS = {"Approved": "approved", "PendingManualApproval": "pending", "Rejected": "rejected"}
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


class GroupStatus(BaseModel):
    """One model line: its model group and endpoint, what serves, what is moving, what waits."""

    model_config = ConfigDict(frozen=True)

    line: str
    model_group: str
    endpoint: str
    approval_mode: str | None = Field(default=None, description="the line's, when its file overrides the stack's")
    endpoint_status: str | None = None
    live: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    last_outcome: dict[str, Any] | None = None
    last_retraining: dict[str, Any] | None = None
    lock: dict[str, Any] | None = None
    cooldown: dict[str, Any] | None = None
    pending_approvals: list[dict[str, Any]] = Field(default_factory=list)
    versions: dict[str, int] = Field(default_factory=dict)
    drift_alarms: dict[str, str | None] = Field(default_factory=dict, description="alarm name → state (None: missing)")
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="in the stack that trains: what each later stage serves and what waits there"
    )


class StackStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    stack: str
    region: str
    local: bool
    approval_mode: str
    approvers: list[str]
    at: datetime
    groups: list[GroupStatus]
    dead_letter_queues: list[dict[str, Any]]
    left_behind: list[dict[str, Any]] = Field(
        default_factory=list, description="endpoints, configurations and models of lines the stack no longer serves"
    )


def _iso(value: Any) -> str | None:
    """A time as `2026-11-27T07:21:21Z` (UTC, seconds), from a datetime or an ISO string."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat(timespec="seconds")).replace("+00:00", "Z")


def stack_status(stack: StackRef, now: datetime | None = None, line: str | None = None) -> StackStatus:
    """The whole picture of a stack: every model line it serves (only `line`, when named), and its DLQs.

    Raises:
        CliError: `line` is not a line of the stack.
    """
    from closedloop.ledger import Ledger
    from closedloop_ops.operations import dlq_depths

    settings = stack.settings()
    now = now or datetime.now(UTC)
    ledger = Ledger(stack.output("LedgerTableName"), stack.client("dynamodb"))
    lines = [stack.line(line)] if line is not None else stack.lines()
    # what the stages reported (route 8's records here): read once, in the stack that has stages
    reports = stage_reports(ledger, now) if settings.trains and settings.stage_account_ids else []
    groups = []
    for owned in lines:
        group = group_status(stack, ledger, owned, settings.pipeline_name, now, reports)
        mode = stack.line_settings(owned).approval_mode.value
        groups.append(
            group.model_copy(update={"approval_mode": mode}) if mode != settings.approval_mode.value else group
        )
    return StackStatus(
        stack=stack.name,
        region=stack.region,
        local=stack.local,
        approval_mode=settings.approval_mode.value,
        approvers=list(settings.approvers),
        at=now,
        groups=groups,
        dead_letter_queues=[
            {"queue": d.queue, "messages": d.messages, "in_flight": d.in_flight} for d in dlq_depths(stack)
        ],
        left_behind=_left_behind(stack) if line is None else [],
    )


def group_status(
    stack: StackRef,
    ledger: Any,
    owned: LineResources,
    pipeline: str,
    now: datetime,
    stage_reports: list[Any] | None = None,
) -> GroupStatus:
    """Status of one model line: its model group, the endpoint it deploys to and its drift alarms."""
    from closedloop.retrain_lock import RetrainLock

    group, endpoint = owned.model_package_group, owned.endpoint_name
    state = ledger.get_state(ledger_keys.endpoint_state(endpoint)) or {}
    described = _endpoint(stack, endpoint)
    live = None
    if state.get("live_model_package_arn") or described:
        live = {
            "version": state.get("live_version"),
            "model_package_arn": state.get("live_model_package_arn"),
            "endpoint_config": (described or {}).get("EndpointConfigName") or state.get("endpoint_config"),
            "serving_version": _serving_version(stack, described),
            "since": _iso(state.get("updated_at")) if state.get("status") == "live" else None,
            "previous_model_package_arn": state.get("previous_model_package_arn"),
        }
        live.update(_registry_view(stack, ledger, state.get("live_model_package_arn")))
    rollout = None
    if state.get("pending_model_package_arn") or (described and described.get("EndpointStatus") in BUSY):
        rollout = {
            "kind": state.get("pending_kind") or None,
            "version": state.get("pending_version"),
            "model_package_arn": state.get("pending_model_package_arn") or None,
            "endpoint_config": state.get("pending_endpoint_config") or None,
            "since": _iso(state.get("pending_since")),
            "endpoint_status": (described or {}).get("EndpointStatus"),
            "stage": ((described or {}).get("PendingDeploymentSummary") or {}).get("StageStatus"),
        }
    last_outcome = (
        {"outcome": state.get("last_outcome"), "reason": state.get("last_reason"), "at": _iso(state.get("updated_at"))}
        if state.get("last_outcome")
        else None
    )
    lock = ledger.get_lock(RetrainLock.name(group))
    cooldown = ledger.get_state(ledger_keys.cooldown(group))
    cooling = None
    if cooldown and cooldown.get("until"):
        until = datetime.fromisoformat(str(cooldown["until"]).replace("Z", "+00:00"))
        cooling = {
            "until": _iso(until),
            "active": until > now,
            "reason": cooldown.get("reason"),
            "execution_arn": cooldown.get("execution_arn"),
        }
    return GroupStatus(
        line=owned.line,
        model_group=group,
        endpoint=endpoint,
        endpoint_status=(described or {}).get("EndpointStatus"),
        live=live,
        rollout=rollout,
        last_outcome=last_outcome,
        last_retraining=_last_retraining(stack, pipeline, group),
        lock=(
            {
                "holder": lock.holder,
                "reason": lock.reason,
                "since": _iso(lock.acquired_at),
                "expires": _iso(lock.expires_at),
                "execution_arn": lock.execution_arn or None,
                "expired": lock.expires_at <= now,
            }
            if lock
            else None
        ),
        cooldown=cooling,
        pending_approvals=_pending(stack, ledger, group),
        versions=_counts(stack, group),
        drift_alarms=_alarm_states(stack, owned.drift_alarms),
        stages=_stages(stage_reports or [], group),
    )


STAGE_HISTORY = timedelta(days=366)


def stage_reports(ledger: Any, now: datetime) -> list[Any]:
    """Route 8's records of the later stages' changes in this ledger, oldest first (a year back)."""
    from closedloop.promotion.service import is_stage_record

    return [decision for decision in ledger.decisions_since(now - STAGE_HISTORY) if is_stage_record(decision)]


def _stages(reports: list[Any], group: str) -> dict[str, dict[str, Any]]:
    """What the later stages reported of the group's versions (route 8's records in this ledger): per stage,
    the version live there (as trained: its number here), and the versions promoted there not yet live."""
    stages: dict[str, dict[str, Any]] = {}
    for decision in reports:
        if f":model-package/{group}/" not in decision.business_key:
            continue
        stage = decision.action.removeprefix("stage:")
        version = int(decision.details.get("source_version") or 0)
        view = stages.setdefault(stage, {"account": decision.details.get("account"), "live": None, "waiting": []})
        if decision.result == "live":
            view["live"] = {
                "version": version,
                "since": _iso(decision.at),
                "released_by": decision.details.get("approval"),
            }
            view["waiting"] = [v for v in view["waiting"] if v > version]
        elif decision.result in {"rolled_back", "failed"}:
            view["last_problem"] = {"version": version, "change": decision.result, "at": _iso(decision.at)}
        elif decision.result == "promoted" and decision.details.get("status") == "PendingManualApproval":
            view["waiting"] = sorted({*view["waiting"], version})
    return stages


def _alarm_states(stack: StackRef, names: tuple[str, ...]) -> dict[str, str | None]:
    """The state of each alarm (OK, ALARM, INSUFFICIENT_DATA; None: it does not exist)."""
    cloudwatch = stack.client("cloudwatch")
    try:
        found = cloudwatch.describe_alarms(AlarmNames=list(names)).get("MetricAlarms", [])
    except cloudwatch.exceptions.ClientError:
        return {}
    states = {alarm["AlarmName"]: alarm.get("StateValue") for alarm in found}
    return {name: states.get(name) for name in names}


def _left_behind(stack: StackRef) -> list[dict[str, Any]]:
    from closedloop_ops.retire import orphans

    sm = stack.client("sagemaker")
    try:
        return [found.model_dump(mode="json") for found in orphans(stack)]
    except sm.exceptions.ClientError:  # a role that may not list endpoints: the lines' own rows still show
        return []


def _endpoint(stack: StackRef, name: str) -> dict[str, Any] | None:
    sm = stack.client("sagemaker")
    try:
        described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    except sm.exceptions.ClientError:
        return None
    return described


def _serving_version(stack: StackRef, described: dict[str, Any] | None) -> int | None:
    """The version the endpoint's current config was deployed from (its lineage tag), if any."""
    if not described:
        return None
    sm = stack.client("sagemaker")
    try:
        config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]}
    except sm.exceptions.ClientError:
        return None
    value = tags.get(keys.MODEL_VERSION, "")
    return int(value) if value.isdigit() else None


def _last_retraining(stack: StackRef, pipeline: str, group: str) -> dict[str, Any] | None:
    """The newest execution of the training pipeline that trained `group`, with its trigger (upload
    or alarm) and why; among the newest `EXECUTIONS_SCANNED` executions of the shared pipeline."""
    sm = stack.client("sagemaker")
    try:
        summaries = sm.list_pipeline_executions(
            PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=EXECUTIONS_SCANNED
        ).get("PipelineExecutionSummaries", [])
    except sm.exceptions.ClientError:
        return None
    for latest in summaries:
        arn = latest["PipelineExecutionArn"]
        try:
            listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn).get("PipelineParameters", [])
        except sm.exceptions.ClientError:
            continue
        parameters = {p["Name"]: p["Value"] for p in listed}
        if parameters.get(keys.PARAM_MODEL_GROUP) == group:
            return _execution_view(latest, parameters, group)
    return None


def _execution_view(latest: dict[str, Any], parameters: dict[str, str], group: str) -> dict[str, Any]:
    arn = latest["PipelineExecutionArn"]
    return {
        "execution_arn": arn,
        "status": latest.get("PipelineExecutionStatus"),
        "started": _iso(latest.get("StartTime")),
        "trigger": parameters.get(keys.PARAM_TRIGGER),
        "reason": parameters.get(keys.PARAM_TRIGGER_REASON) or latest.get("PipelineExecutionDescription"),
        "prep_run_id": parameters.get(keys.PARAM_PREP_RUN_ID),
        "model_group": parameters.get(keys.PARAM_MODEL_GROUP, group),
    }


def _pending(stack: StackRef, ledger: Any, group: str) -> list[dict[str, Any]]:
    """Versions waiting for an approver, newest first, with what the gate recommended."""
    sm = stack.client("sagemaker")
    try:
        summaries = sm.list_model_packages(
            ModelPackageGroupName=group,
            ModelApprovalStatus="PendingManualApproval",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=PENDING_LISTED,
        ).get("ModelPackageSummaryList", [])
    except sm.exceptions.ClientError:
        return []
    pending = []
    for summary in summaries:
        arn = summary["ModelPackageArn"]
        gates = [d for d in ledger.decisions_for(arn) if d.action == "approval_gate"]
        pending.append(
            {
                "version": summary.get("ModelPackageVersion"),
                "model_package_arn": arn,
                "registered": _iso(summary.get("CreationTime")),
                "policy_says": gates[-1].details.get("policy_says") if gates else None,
                "rejections": gates[-1].details.get("rejections") if gates else None,
            }
        )
    return pending


def _counts(stack: StackRef, group: str) -> dict[str, int]:
    """How many versions the group holds, by approval status."""
    sm = stack.client("sagemaker")
    counts: dict[str, int] = {}
    try:
        for page in sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
            for summary in page.get("ModelPackageSummaryList", []):
                status = str(summary.get("ModelApprovalStatus", "unknown"))
                counts[status] = counts.get(status, 0) + 1
    except sm.exceptions.ClientError:
        return {}
    return counts


# -- text -----------------------------------------------------------------------------------------


def _short(arn: str | None) -> str:
    return (arn or "").rsplit("/", 1)[-1] or "?"


def format_status(status: StackStatus) -> str:
    """The status as an operator reads it."""
    approvers = ", ".join(status.approvers) if status.approvers else "none"
    lines = [
        f"stack {status.stack} ({'local loop' if status.local else status.region}), "
        f"approval mode {status.approval_mode}, approvers: {approvers}"
    ]
    for group in status.groups:
        counts = ", ".join(f"{n} {STATUS_WORDS.get(s, s)}" for s, n in sorted(group.versions.items())) or "no versions"
        lines += ["", f"model line {group.line}: model group {group.model_group} ({counts})"]
        if group.approval_mode is not None:
            lines.append(f"  {'approval mode':<15} {group.approval_mode} (the line's own)")
        lines += [f"  {label:<15} {text}" for label, text in _group_rows(group)]
    for found in status.left_behind:
        lines += [
            "",
            f"removed model line {found['line']} left behind: endpoint {found['endpoint']}, "
            f"{len(found['endpoint_configs'])} endpoint configuration(s), {len(found['models'])} model(s) "
            f"(`closedloop line retire {found['line']}` removes them)",
        ]
    lines.append("")
    total = sum(q["messages"] + q["in_flight"] for q in status.dead_letter_queues)
    lines.append(
        "dead-letter queues: "
        + ("all empty" if total == 0 else f"{total} message(s): `closedloop dlq show QUEUE` says why")
    )
    lines.extend(
        f"  {q['queue']:<22} {q['messages']} message(s)" + (f", {q['in_flight']} in flight" if q["in_flight"] else "")
        for q in status.dead_letter_queues
    )
    return "\n".join(lines)


def _group_rows(group: GroupStatus) -> list[tuple[str, str]]:
    rows = [("live", _live_text(group)), ("rollout", _rollout_text(group))]
    retraining = group.last_retraining
    rows.append(
        (
            "last training",
            f"{retraining.get('started')} {retraining.get('status')}, trigger {retraining.get('trigger')}: "
            f"{retraining.get('reason')} (execution {_short(retraining.get('execution_arn'))})"
            if retraining
            else "none yet",
        )
    )
    lock = group.lock
    if lock:
        execution = f" (execution {_short(lock['execution_arn'])})" if lock.get("execution_arn") else ""
        rows.append(
            (
                "retrain lock",
                f"{'expired lease' if lock.get('expired') else 'held'} by {lock.get('holder')} "
                f"since {lock.get('since')} until {lock.get('expires')}{execution}",
            )
        )
    else:
        rows.append(("retrain lock", "free"))
    cooldown = group.cooldown
    rows.append(
        (
            "cooldown",
            f"until {cooldown.get('until')} (after {cooldown.get('reason')})"
            if cooldown and cooldown.get("active")
            else "none: an alarm may start a retraining",
        )
    )
    rows.append(("drift alarms", _alarms_text(group)))
    for stage, view in group.stages.items():
        live = view.get("live")
        text = f"version {live['version']} live since {live['since']}" if live else "nothing live yet"
        if view.get("waiting"):
            text += f"; version(s) {', '.join(map(str, view['waiting']))} wait for its approver"
        if view.get("last_problem"):
            problem = view["last_problem"]
            text += f"; version {problem['version']} {problem['change']} at {problem['at']}"
        rows.append((f"stage {stage}", f"{text} (account {view.get('account')})"))
    if not group.pending_approvals:
        rows.append(("pending", "no version waits for an approver"))
        return rows
    rows.append(("pending", f"{len(group.pending_approvals)} version(s) wait for an approver:"))
    for pending in group.pending_approvals:
        says = f", the policy recommends {pending['policy_says']}" if pending.get("policy_says") else ""
        rows.append(("", f"  version {pending['version']} registered {pending['registered']}{says}"))
    return rows


def _alarms_text(group: GroupStatus) -> str:
    """`features OK, predictions ALARM, bias OK (closedloop-loans-drift-*)`: each alarm's kind and state."""
    if not group.drift_alarms:
        return "unknown (CloudWatch did not answer)"
    prefix = f"{group.endpoint}-drift-"
    states = ", ".join(
        f"{name.removeprefix(prefix)} {state or 'MISSING'}" for name, state in group.drift_alarms.items()
    )
    return f"{states} ({prefix}*)"


def _registry_view(stack: StackRef, ledger: Any, arn: str | None) -> dict[str, Any]:
    """The registry's status of the live version and, when it is no longer Approved, what the rollout made of it."""
    if not arn:
        return {}
    sm = stack.client("sagemaker")
    try:
        status = str(sm.describe_model_package(ModelPackageName=arn).get("ModelApprovalStatus") or "")
    except sm.exceptions.ClientError:
        return {"registry_status": "missing"}
    view: dict[str, Any] = {"registry_status": status}
    if status != "Approved":
        verdicts = [d for d in ledger.decisions_for(arn) if d.route == "model-approval"]
        if verdicts:
            last = verdicts[-1]
            view["rollout_verdict"] = {
                "action": last.action,
                "result": last.result,
                "reason": last.reason,
                "at": _iso(last.at),
            }
    return view


def _live_text(group: GroupStatus) -> str:
    live = group.live or {}
    if live.get("version") is not None:
        serving = live.get("serving_version")
        mismatch = (
            f" — but the endpoint serves version {serving}: see `closedloop lineage --endpoint`"
            if serving is not None and serving != live.get("version")
            else ""
        )
        since = f" since {live['since']}" if live.get("since") else ""
        registry = ""
        if live.get("registry_status") not in {None, "Approved"}:
            verdict = live.get("rollout_verdict")
            registry = f" — but the registry says {live['registry_status']}" + (
                f"; the rollout {verdict['result']} it at {verdict['at']}: {verdict['reason']}"
                if verdict
                else "; the rollout has not acted on it yet"
            )
        return (
            f"version {live['version']} on {group.endpoint} "
            f"({group.endpoint_status or 'no endpoint'}, config {live.get('endpoint_config')}){since}{mismatch}"
            f"{registry}"
        )
    if group.endpoint_status:
        return f"{group.endpoint} is {group.endpoint_status} ({live.get('endpoint_config')}), no version recorded live"
    return f"nothing: {group.endpoint} does not exist yet (no version deployed)"


def _rollout_text(group: GroupStatus) -> str:
    rollout = group.rollout
    if not rollout:
        last = group.last_outcome
        return "none in progress" + (f" (last outcome: {last['outcome']} — {last['reason']})" if last else "")
    stage = f", stage {rollout['stage']}" if rollout.get("stage") else ""
    return (
        f"{rollout.get('kind') or 'deployment'} of version {rollout.get('version')} "
        f"since {rollout.get('since') or '?'} (endpoint {rollout.get('endpoint_status') or '?'}{stage})"
    )
