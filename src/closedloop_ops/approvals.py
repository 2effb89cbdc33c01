"""The compliance officer's flip: approve or reject a model version in the Model Registry, on evidence.

    ev = evidence(stack, "3")               # metrics, bias, PII report, the gate's recorded decision
    print(format_evidence(ev))
    approve(stack, "3", reason="reviewed the bias report with legal, INC-4471")

The flip is `UpdateModelPackage` with the caller's own credentials: the registry records who made it
(`LastModifiedBy`), and `ApprovalDescription` carries who and why. Nothing else is changed here — the
rollout route reacts to the status change and decides, by its own rules, whether to deploy (in
`manual` mode only for an identity on the approver allow-list; in `auto` mode only for the gate).
`warnings()` says beforehand what the rollout route will make of the flip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from closedloop import ledger_keys
from closedloop import lineage as keys
from closedloop_ops.cli_errors import CliError
from closedloop_ops.stackref import StackRef

if TYPE_CHECKING:
    from closedloop.line import LineResources

PENDING = "PendingManualApproval"
SHOWN_CLARIFY_ATTRIBUTIONS = 5
APPROVED = "Approved"
REJECTED = "Rejected"
MAX_DESCRIPTION = 1024

Action = Literal["approve", "reject"]
TARGET: dict[str, str] = {"approve": APPROVED, "reject": REJECTED}
ALLOWED_FROM: dict[str, tuple[str, ...]] = {"approve": (PENDING,), "reject": (PENDING, APPROVED)}


# -- which version --------------------------------------------------------------------------------


def group_arn_prefix(stack: StackRef, group: str) -> str:
    """`arn:…:model-package/<group>/` of a model group of the stack.

    Raises:
        CliError: the group does not exist.
    """
    sm = stack.client("sagemaker")
    try:
        described = sm.describe_model_package_group(ModelPackageGroupName=group)
    except sm.exceptions.ClientError:
        raise CliError(f"no model group {group!r} in stack {stack.name} (see `closedloop status`)") from None
    return str(described["ModelPackageGroupArn"]).replace(":model-package-group/", ":model-package/") + "/"


def resolve_version(stack: StackRef, version: str | int, group: str | None = None) -> str:
    """The ARN of a model version given as `3`, `<line>/3`, `<group>/3` or its ARN.

    A bare number is a version of `group`, else of the stack's only model line; a stack that serves
    several lines needs the line named.

    Raises:
        CliError: not a version number, no line named where several are served, or no such version
            in the group (with the newest one).
    """
    text = str(version).strip()
    if text.startswith("arn:"):
        if ":model-package/" not in text:
            raise CliError(f"{text} is not a model package version ARN (…:model-package/<group>/<version>)")
        arn = text
    else:
        named, _, number = text.rpartition("/")
        if not number.isdigit() or int(number) < 1:
            raise CliError(f"model version {text!r}: expected a version number such as 3 (see `closedloop status`)")
        group_name = _group_named(stack, named, group, number)
        if stack.settings_environment().get("BUILD_ACCOUNT_ID"):  # a stage: N is the version trained as N
            arn = stage_copy(stack, group_name, int(number))
        else:
            arn = group_arn_prefix(stack, group_name) + str(int(number))
    sm = stack.client("sagemaker")
    try:
        sm.describe_model_package(ModelPackageName=arn)
    except sm.exceptions.ClientError:
        group_name = arn.split(":model-package/", 1)[1].rsplit("/", 1)[0]
        raise CliError(
            f"no model version {text} in {group_name} ({newest_version_text(stack, group_name)}; "
            "see `closedloop status`)"
        ) from None
    return arn


def stage_copy(stack: StackRef, group: str, version: int) -> str:
    """A stage's own copy of the version trained as `version` in the build account (`lineage.SOURCE_PACKAGE`).

    In a stage's stack, `loans/3` means the line's version 3 — the number it was trained and approved
    under — whatever number this stage's registry gave its copy.

    Raises:
        CliError: that version has not been promoted into this stage.
    """
    from closedloop import lineage as keys

    sm = stack.client("sagemaker")
    paginator = sm.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"):
        for summary in page.get("ModelPackageSummaryList", []):
            described = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            source = (described.get("CustomerMetadataProperties") or {}).get(keys.SOURCE_PACKAGE, "")
            if source.endswith(f"/{group}/{version}"):
                return str(summary["ModelPackageArn"])
    stage = stack.settings_environment().get("STAGE", "this stage")
    raise CliError(
        f"version {version} of {group} has not been promoted into {stage} (stack {stack.name}): it must be live in "
        "the stage before first (`closedloop status --stage <that stage>`)"
    )


def _group_named(stack: StackRef, named: str, group: str | None, number: str) -> str:
    """The model group a version's text names: a line of the stack (`loans`), a group, `group`, or the only line's.

    Raises:
        CliError: nothing is named and the stack serves several lines.
    """
    if named:
        owned = next((line for line in stack.lines() if line.line == named), None)
        return owned.model_package_group if owned else named
    if group:
        return group
    lines = stack.lines()
    if len(lines) == 1:
        return lines[0].model_package_group
    names = ", ".join(line.line for line in lines)
    raise CliError(
        f"model version {number}: stack {stack.name} serves the model lines {names}; "
        f"name the line, e.g. {lines[0].line}/{number}"
    )


def version_line(stack: StackRef, arn: str) -> LineResources:
    """The model line of the stack a version's ARN belongs to.

    Raises:
        CliError: its model group is not a line's of this stack.
    """
    group = arn.split(":model-package/", 1)[1].rsplit("/", 1)[0]
    owned = stack.line_of_group(group)
    if owned is None:
        served = ", ".join(line.model_package_group for line in stack.lines())
        raise CliError(f"{group} is not the model group of a line of stack {stack.name} (its groups: {served})")
    return owned


def newest_version_text(stack: StackRef, group: str) -> str:
    sm = stack.client("sagemaker")
    try:
        summaries = sm.list_model_packages(
            ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
        )["ModelPackageSummaryList"]
    except sm.exceptions.ClientError:
        return "the group does not exist"
    return f"the newest is {summaries[0]['ModelPackageVersion']}" if summaries else "it has no versions yet"


# -- the evidence ---------------------------------------------------------------------------------


class GateRecord(BaseModel):
    """What the approval gate recorded about the version (ledger, route `pipeline-finished`)."""

    model_config = ConfigDict(frozen=True)

    result: str
    at: datetime
    mode: str | None = None
    policy_version: str | None = None
    policy_says: str | None = None
    rejections: list[str] = Field(default_factory=list)
    reason: str = ""
    decision_id: str = ""


class VersionEvidence(BaseModel):
    """Everything a compliance officer looks at before the flip (counts and figures, never data values)."""

    model_config = ConfigDict(frozen=True)

    arn: str
    line: str = ""
    group: str
    version: int
    status: str
    created_at: datetime | None = None
    approval_description: str = ""
    last_modified_by: str | None = None
    pipeline_execution: str | None = None
    trigger: str | None = None
    trigger_reason: str | None = None
    dataset: str | None = None
    prep_run_id: str | None = None
    quality: dict[str, Any] | None = None
    quality_problem: str | None = None
    bias: list[dict[str, Any]] = Field(default_factory=list)
    bias_problem: str | None = None
    bias_source: str | None = None  # "clarify" (analysis.json) or "evaluate" (bias.json, older versions)
    attributions: list[dict[str, Any]] = Field(default_factory=list)  # feature, mean_abs_shap; largest first
    attributions_problem: str | None = None
    pii_clean: bool | None = None
    pii_undeclared_files: int | None = None
    pii_problem: str | None = None
    champion: dict[str, Any] | None = None
    policy_now: dict[str, Any] = Field(default_factory=dict)
    gate: GateRecord | None = None
    live_version: int | None = None
    live: bool = False
    rolled_back: dict[str, Any] | None = None
    approval_mode: str = ""
    approvers: list[str] = Field(default_factory=list)


def evidence(stack: StackRef, version: str | int) -> VersionEvidence:
    """The evaluation metrics, bias figures, PII report and the gate's recorded decision of a version.

    Reads the same reports the approval gate read (`closedloop.approval.evidence.EvidenceReader`), and
    applies today's policy to them as well (the champion may have changed since the gate ran).

    Raises:
        CliError: the version does not exist.
    """
    from closedloop.approval.evidence import EvidenceReader
    from closedloop.approval.policy import ApprovalPolicy
    from closedloop.ledger import Ledger

    arn = resolve_version(stack, version)
    owned = version_line(stack, arn)
    settings = stack.line_settings(owned)  # the line's names and approval overrides
    ledger = Ledger(stack.output("LedgerTableName"), stack.client("dynamodb"))
    reader = EvidenceReader(
        s3=stack.client("s3"),
        sagemaker=stack.client("sagemaker"),
        ledger=ledger,
        model_group=settings.model_package_group,
        endpoint_name=settings.endpoint_name,
    )
    candidate = reader.describe(arn)
    found = reader.evidence(candidate)
    decision = ApprovalPolicy.from_settings(settings).evaluate(found)
    described = stack.client("sagemaker").describe_model_package(ModelPackageName=arn)
    live = ledger.get_state(ledger_keys.endpoint_state(settings.endpoint_name)) or {}
    gates = [d for d in ledger.decisions_for(arn) if d.action == "approval_gate"]
    gate = None
    if gates:
        last = gates[-1]
        gate = GateRecord(
            result=last.result,
            at=last.at,
            mode=last.details.get("mode"),
            policy_version=last.details.get("policy_version"),
            policy_says=last.details.get("policy_says"),
            rejections=list(last.details.get("rejections") or []),
            reason=last.reason,
            decision_id=last.decision_id,
        )
    metadata = candidate.metadata
    return VersionEvidence(
        arn=arn,
        line=owned.line,
        group=candidate.group,
        version=candidate.version,
        status=candidate.approval_status,
        created_at=candidate.created_at,
        approval_description=candidate.approval_description,
        last_modified_by=(described.get("LastModifiedBy") or {}).get("IamIdentity", {}).get("Arn"),
        pipeline_execution=metadata.get(keys.PIPELINE_EXECUTION),
        trigger=metadata.get(keys.TRIGGER),
        trigger_reason=metadata.get(keys.TRIGGER_REASON),
        dataset=metadata.get(keys.DATASET),
        prep_run_id=metadata.get(keys.PREP_RUN_ID),
        quality=found.quality.model_dump() if found.quality else None,
        quality_problem=found.quality_problem,
        bias=[facet.model_dump() for facet in found.bias or ()],
        bias_problem=found.bias_problem,
        bias_source=found.bias_source,
        attributions=[attribution.model_dump() for attribution in found.attributions or ()],
        attributions_problem=found.attributions_problem,
        pii_clean=found.pii_clean,
        pii_undeclared_files=found.pii_undeclared_files,
        pii_problem=found.pii_problem,
        champion=found.champion.model_dump() if found.champion else None,
        policy_now={
            "policy_version": decision.policy_version,
            "says": "approve" if decision.approve else "reject",
            "rejections": [f"{r.code}: {r.detail}" for r in decision.rejections],
            "thresholds": {
                k: decision.numbers[k]
                for k in (
                    "min_auc",
                    "min_f1",
                    "min_accuracy",
                    "champion_tolerance",
                    "min_disparate_impact",
                    "max_abs_dppl",
                )
            },
        },
        gate=gate,
        live_version=live.get("live_version"),
        live=live.get("live_model_package_arn") == arn,
        rolled_back=ledger.get_state(ledger_keys.rolled_back(arn)),
        approval_mode=settings.approval_mode.value,
        approvers=list(settings.approvers),
    )


def version_clarify_summary(
    stack: StackRef, version: str | int, top: int = SHOWN_CLARIFY_ATTRIBUTIONS
) -> dict[str, Any]:
    """A version's Clarify reports as figures: bias metrics per facet value, the top attributions.

    Reads the reports the version registers (`ModelMetrics`: `Bias.PreTrainingReport`,
    `Bias.PostTrainingReport`, `Explainability.Report`). A version registered before the pipeline ran
    Clarify has only the Evaluate step's `bias.json` as its post-training report (`bias_source`
    "evaluate") and no pre-training or explainability report. Statistics and names only::

        {"version": 3, "bias_source": "clarify",
         "pre_training": {"group=B": {"CI": 0.41, "DPL": 0.02, …}},
         "post_training": {"group=B": {"DI": 0.93, "DPPL": 0.03, …}},
         "attributions": [{"feature": "income", "mean_abs_shap": 0.081}, …],
         "problems": []}

    Raises:
        CliError: the version does not exist.
    """
    from closedloop.approval.evidence import bias_source, parse_explainability
    from closedloop.approval.registry import GateRegistry
    from closedloop.errors import ClosedloopError
    from closedloop.training.prepared import read_json

    arn = resolve_version(stack, version)
    candidate = GateRegistry(stack.client("sagemaker")).describe(arn)
    if candidate is None:
        raise CliError(f"no model version {version}")
    s3 = stack.client("s3")
    problems: list[str] = []

    def read(uri: str | None, what: str) -> dict[str, Any] | None:
        if not uri:
            return None
        try:
            return read_json(s3, uri, what)
        except ClosedloopError as exc:
            problems.append(f"the {what} could not be read: {exc.message}")
            return None

    def metrics(document: dict[str, Any] | None, section: str) -> dict[str, dict[str, float | None]] | None:
        facets = ((document or {}).get(section) or {}).get("facets")
        if not isinstance(facets, dict):
            return None
        return {
            f"{attribute}={entry.get('value_or_threshold')}": {
                str(m.get("name")): _figure(m.get("value")) for m in entry.get("metrics", []) if isinstance(m, dict)
            }
            for attribute, entries in facets.items()
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
        }

    explained = read(candidate.explainability_uri, "explainability report")
    attributions: list[dict[str, Any]] = []
    if explained is not None:
        try:
            attributions = [a.model_dump() for a in parse_explainability(explained)[:top]]
        except ValueError as exc:
            problems.append(f"the explainability report is malformed: {exc}")
    return {
        "version": candidate.version,
        "bias_source": bias_source(candidate.bias_uri),
        "pre_training": metrics(
            read(candidate.bias_pre_training_uri, "pre-training bias report"), "pre_training_bias_metrics"
        ),
        "post_training": metrics(read(candidate.bias_uri, "post-training bias report"), "post_training_bias_metrics"),
        "attributions": attributions,
        "problems": problems,
    }


def _figure(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 6)


def caller_identity(stack: StackRef) -> str:
    """The ARN the registry will record as the one who made the flip (STS GetCallerIdentity)."""
    return str(stack.client("sts").get_caller_identity()["Arn"])


def check_transition(ev: VersionEvidence, action: Action) -> None:
    """Refuse a flip the version's status does not allow.

    Raises:
        CliError: approve of a version that is not pending; reject of one that is neither approved nor pending.
    """
    if ev.status in ALLOWED_FROM[action]:
        return
    name = f"{ev.group}/{ev.version}"
    if action == "approve":
        raise CliError(
            f"{name} is {ev.status}, not {PENDING}: only a pending version can be approved"
            + (" (it already is)" if ev.status == APPROVED else "")
        )
    raise CliError(f"{name} is {ev.status}: only an Approved or {PENDING} version can be rejected")


def warnings(ev: VersionEvidence, action: Action, identity: str) -> list[str]:
    """What the rollout route will make of this flip, said before it is made."""
    from closedloop.deploy.policy import is_allowed

    notes: list[str] = []
    allowed = is_allowed(identity, ev.approvers)
    if action == "approve":
        if ev.approval_mode == "auto":
            notes.append(
                "the stack is in auto approval mode: the rollout deploys only the approval gate's approvals, "
                "so this approval will be refused and notified (deploy with ApprovalMode=manual for approvers)"
            )
        elif not ev.approvers:
            notes.append("manual approval mode, but no approvers are configured: the rollout will refuse it")
        elif not allowed:
            notes.append(f"you ({identity}) are not on the approver allow-list: the rollout will refuse this approval")
        if ev.policy_now.get("says") == "reject":
            notes.append("the approval policy recommends REJECTION: " + "; ".join(ev.policy_now["rejections"]))
        if ev.rolled_back:
            notes.append("this version was rolled back before: the rollout never redeploys it automatically")
        if ev.live_version is not None and ev.version < ev.live_version:
            notes.append(f"version {ev.version} is older than the live version {ev.live_version}: it will not deploy")
    elif ev.live:
        notes.append(
            f"version {ev.version} is live: rejecting it rolls the endpoint back to the previous approved version"
            + ("" if allowed else " — but only an approver's rejection does, and you are not on the allow-list")
        )
    return notes


@dataclass(frozen=True)
class FlipResult:
    arn: str
    group: str
    version: int
    previous_status: str
    status: str
    by: str
    description: str


def approval_description(action: Action, identity: str, reason: str, at: datetime | None = None) -> str:
    """The `ApprovalDescription` of a person's flip: who, when, with what, and why.

    Raises:
        CliError: the reason is empty, or too long to fit in the registry's 1024 characters.
    """
    why = " ".join(reason.split())
    if not why:
        raise CliError("--reason must say why: it is recorded in the registry next to who decided")
    moment = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    verb = "Approved" if action == "approve" else "Rejected"
    text = f"{verb} by {identity} at {moment} via closedloop: {why}"
    if len(text) > MAX_DESCRIPTION:
        room = MAX_DESCRIPTION - (len(text) - len(why))
        raise CliError(f"--reason is {len(why)} characters; at most {room} fit in the registry's description")
    return text


def flip(stack: StackRef, ev: VersionEvidence, action: Action, reason: str, identity: str) -> FlipResult:
    """Set the version to Approved or Rejected with who and why in `ApprovalDescription`.

    The status is read again right before the update, so a version someone else decided meanwhile is
    refused rather than flipped twice.

    Raises:
        CliError: empty or too long reason; the status no longer allows the flip.
    """
    description = approval_description(action, identity, reason)
    sm = stack.client("sagemaker")
    current = str(sm.describe_model_package(ModelPackageName=ev.arn).get("ModelApprovalStatus") or "")
    check_transition(ev.model_copy(update={"status": current}), action)
    sm.update_model_package(ModelPackageArn=ev.arn, ModelApprovalStatus=TARGET[action], ApprovalDescription=description)
    return FlipResult(ev.arn, ev.group, ev.version, current, TARGET[action], identity, description)


def approve(stack: StackRef, version: str | int, reason: str) -> FlipResult:
    """Approve a pending version as the caller (no questions asked: the notebook's and scripts' path).

    Raises:
        CliError: unknown version, not pending, empty reason.
    """
    ev = evidence(stack, version)
    check_transition(ev, "approve")
    return flip(stack, ev, "approve", reason, caller_identity(stack))


def reject(stack: StackRef, version: str | int, reason: str) -> FlipResult:
    """Reject an approved or pending version as the caller.

    Raises:
        CliError: unknown version, neither approved nor pending, empty reason.
    """
    ev = evidence(stack, version)
    check_transition(ev, "reject")
    return flip(stack, ev, "reject", reason, caller_identity(stack))


# -- text -----------------------------------------------------------------------------------------


def _f(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_evidence(ev: VersionEvidence) -> str:
    """The evidence as a compliance officer reads it."""
    created = ev.created_at.strftime("%Y-%m-%d %H:%M:%S UTC") if ev.created_at else "unknown"
    lines = [f"model version {ev.group}/{ev.version}: {ev.status} (registered {created})"]
    rows: list[tuple[str, str]] = []
    if ev.live:
        rows.append(("serving", "live on the endpoint now"))
    execution = (ev.pipeline_execution or "").rsplit("/", 1)[-1] or "unknown"
    rows.append(("trained by", f"pipeline execution {execution}, trigger {ev.trigger}: {ev.trigger_reason}"))
    rows.append(("data", f"dataset {ev.dataset}, preparation run {ev.prep_run_id}"))
    rows += _quality_rows(ev) + _bias_rows(ev) + _attribution_rows(ev)
    if ev.pii_clean is None:
        rows.append(("PII report", f"MISSING: {ev.pii_problem}"))
    else:
        rows.append(
            (
                "PII report",
                f"{'clean' if ev.pii_clean else 'NOT CLEAN'}, "
                f"{ev.pii_undeclared_files} file(s) with undeclared PII quarantined",
            )
        )
    rows += _gate_rows(ev)
    if ev.approval_description:
        rows.append(("registry", ev.approval_description))
    if ev.last_modified_by:
        rows.append(("changed by", ev.last_modified_by))
    lines += [f"  {label:<12} {text}" for label, text in rows]
    return "\n".join(lines)


def _quality_rows(ev: VersionEvidence) -> list[tuple[str, str]]:
    limits = ev.policy_now.get("thresholds", {})
    quality = ev.quality
    if not quality:
        return [("evaluation", f"MISSING: {ev.quality_problem}")]
    rows = [
        (
            "evaluation",
            f"auc {_f(quality.get('auc'))} (min {limits.get('min_auc')}), "
            f"f1 {_f(quality.get('f1'))} (min {limits.get('min_f1')}), "
            f"accuracy {_f(quality.get('accuracy'))} (min {limits.get('min_accuracy')}; "
            f"majority class {_f(quality.get('majority_class_accuracy'))})",
        ),
        (
            "",
            f"precision {_f(quality.get('precision'))}, recall {_f(quality.get('recall'))}, "
            f"{_f(quality.get('rows_evaluated'))} held-out rows",
        ),
    ]
    champion = ev.champion
    rows.append(
        (
            "champion",
            f"version {champion.get('version')} ({champion.get('source')}), auc {_f(champion.get('auc'))} "
            f"(tolerance {limits.get('champion_tolerance')})"
            if champion
            else "none (no live or approved version)",
        )
    )
    return rows


def _bias_rows(ev: VersionEvidence) -> list[tuple[str, str]]:
    if not ev.bias:
        return [("bias", f"MISSING: {ev.bias_problem}")]
    limits = ev.policy_now.get("thresholds", {})
    minimum = float(limits.get("min_disparate_impact") or 0.8)
    source = {"clarify": "Clarify post-training report", "evaluate": "the Evaluate step's bias.json"}
    rows = [
        (
            "bias" if index == 0 else "",
            f"{facet['attribute']}={facet['value']}: DI {_f(facet.get('di'))} "
            f"(allowed {minimum} to {1 / minimum:.2f}), DPPL {_f(facet.get('dppl'))} "
            f"(max |{limits.get('max_abs_dppl')}|)",
        )
        for index, facet in enumerate(ev.bias)
    ]
    if ev.bias_source in source:
        rows.append(("", f"from the {source[ev.bias_source]}"))
    return rows


def _attribution_rows(ev: VersionEvidence) -> list[tuple[str, str]]:
    """The top features by mean |SHAP| from Clarify's explainability report (evidence, not a rule)."""
    if not ev.attributions:
        return [("attributions", f"none: {ev.attributions_problem or 'no explainability report'}")]
    shown = ev.attributions[:SHOWN_CLARIFY_ATTRIBUTIONS]
    width = max(len(str(a["feature"])) for a in shown)
    rows = [("attributions", f"top {len(shown)} of {len(ev.attributions)} features by mean |SHAP| (Clarify)")]
    rows += [
        ("", f"{index}. {a['feature']!s:<{width}}  {a['mean_abs_shap']:.4f}") for index, a in enumerate(shown, start=1)
    ]
    return rows


def _gate_rows(ev: VersionEvidence) -> list[tuple[str, str]]:
    gate = ev.gate
    rows: list[tuple[str, str]] = []
    if gate:
        says = f", policy said {gate.policy_says}" if gate.policy_says else ""
        rows.append(
            (
                "gate",
                f"{gate.result} by {gate.policy_version or 'the gate'} ({gate.mode or '?'} mode{says}) "
                f"at {gate.at.strftime('%Y-%m-%dT%H:%M:%SZ')} [decision {gate.decision_id}]",
            )
        )
        if gate.rejections:
            rows.append(("", f"reasons: {gate.reason or ', '.join(gate.rejections)}"))
    else:
        rows.append(("gate", "no decision recorded for this version"))
    now = ev.policy_now
    reasons = f": {'; '.join(now.get('rejections', []))}" if now.get("rejections") else ""
    rows.append(("policy now", f"{now.get('policy_version')} says {now.get('says')}{reasons}"))
    return rows
