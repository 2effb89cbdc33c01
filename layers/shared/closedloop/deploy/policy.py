"""The rollout's rules, as pure functions: who may release a version, which way versions may move,
what an endpoint status allows, how long to wait before trying again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from closedloop.deploy.models import ModelPackage
from closedloop.deploy.requests import approval_tag
from closedloop.settings import ApprovalMode, Settings

BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
SERVING_STATUS = "InService"
CSV = "text/csv"

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):(?P<service>[a-z0-9-]+):(?P<region>[^:]*):(?P<account>\d{12}):(?P<resource>.+)$"
)


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    account: str
    resource: str


def parse_arn(value: str) -> Arn | None:
    match = _ARN.match(value or "")
    if match is None:
        return None
    return Arn(match["partition"], match["service"], match["account"], match["resource"])


def identity_matches(identity: str, allowed: str) -> bool:
    """Whether the caller `identity` is the allow-listed principal `allowed`.

    An assumed-role session (`arn:aws:sts::ACCT:assumed-role/NAME/SESSION`) is the role
    `arn:aws:iam::ACCT:role/[path/]NAME` (STS drops the path); every other identity — IAM users,
    federated users, a specific session — must match exactly. Partition and account always count.
    """
    if not identity or not allowed:
        return False
    if identity == allowed:
        return True
    caller, listed = parse_arn(identity), parse_arn(allowed)
    if caller is None or listed is None:
        return False
    if (caller.partition, caller.account) != (listed.partition, listed.account):
        return False
    if caller.service != "sts" or listed.service != "iam" or not listed.resource.startswith("role/"):
        return False
    kind, _, rest = caller.resource.partition("/")
    role_name, _, session = rest.partition("/")
    return kind == "assumed-role" and bool(role_name and session) and listed.resource.rsplit("/", 1)[1] == role_name


def is_allowed(identity: str, allowed: Iterable[str]) -> bool:
    return any(identity_matches(identity, entry) for entry in allowed)


@dataclass(frozen=True)
class Verdict:
    """Whether a status change came from an identity allowed to make it, and why (for the ledger)."""

    allowed: bool
    mode: str
    identity: str
    reason: str

    @property
    def approval(self) -> str:
        return approval_tag(self.mode, self.identity)


def approval_verdict(package: ModelPackage, settings: Settings) -> Verdict:
    """Who may release a version: an allow-listed approver (manual mode) or the gate's role (auto mode)."""
    identity = package.approved_by
    mode = settings.approval_mode.value
    if settings.approval_mode is ApprovalMode.MANUAL:
        if not settings.approvers:
            return Verdict(False, mode, identity, "manual approval mode, but no approvers are configured (APPROVERS)")
        if is_allowed(identity, settings.approvers):
            return Verdict(True, mode, identity, "approved by an allow-listed approver")
        return Verdict(False, mode, identity, "approved by an identity that is not on the approver allow-list")
    if not settings.approval_gate_role_arn:
        return Verdict(False, mode, identity, "auto approval mode, but the gate's role is not configured")
    if identity_matches(identity, settings.approval_gate_role_arn):
        return Verdict(True, mode, identity, "approved by the approval gate")
    return Verdict(False, mode, identity, "auto approval mode: only the approval gate's role may approve")


def rejection_verdict(package: ModelPackage, settings: Settings) -> Verdict:
    """Who may reject the live version (and so roll production back): the gate's role or an approver."""
    identity = package.approved_by
    allowed = [*settings.approvers, *([settings.approval_gate_role_arn] if settings.approval_gate_role_arn else [])]
    if is_allowed(identity, allowed):
        return Verdict(True, settings.approval_mode.value, identity, "rejected by an allowed identity")
    return Verdict(
        False,
        settings.approval_mode.value,
        identity,
        "rejected by an identity that is neither an approver nor the approval gate",
    )


def deployability_problem(package: ModelPackage) -> str | None:
    """Why a package cannot serve the inference contract, if it cannot (None: it can)."""
    if package.package_status and package.package_status != "Completed":
        return f"model package status is {package.package_status}, not Completed"
    if package.content_types and CSV not in package.content_types:
        return "the package does not accept text/csv (the endpoint's inference contract)"
    if package.response_types and CSV not in package.response_types:
        return "the package does not answer text/csv (the endpoint's inference contract)"
    return None


Ordering = Literal["newer", "same", "older", "no_live_version"]


def ordering(target_version: int, live_version: int | None) -> Ordering:
    """Where a version stands against the live one (versions of one group only ever increase)."""
    if live_version is None:
        return "no_live_version"
    if target_version == live_version:
        return "same"
    return "newer" if target_version > live_version else "older"


EndpointPlan = Literal["create", "update", "busy", "unusable"]


def endpoint_plan(status: str | None) -> EndpointPlan:
    """What a deployment can do to an endpoint in this DescribeEndpoint status (None: no endpoint)."""
    if status is None:
        return "create"
    if status == SERVING_STATUS:
        return "update"
    if status in BUSY_STATUSES:
        return "busy"
    return "unusable"  # Failed, OutOfService, UpdateRollbackFailed: a person decides


def rollback_target(
    candidates: Sequence[ModelPackage],
    *,
    below_version: int,
    rolled_back: Callable[[str], bool],
    allowed: Callable[[ModelPackage], bool],
) -> ModelPackage | None:
    """The newest approved version older than `below_version` that was never rolled back and whose
    approval still verifies — the version a rejection of the live one falls back to."""
    eligible = [
        package
        for package in candidates
        if package.version < below_version
        and package.approval_status == "Approved"
        and deployability_problem(package) is None
        and not rolled_back(package.arn)
        and allowed(package)
    ]
    return max(eligible, key=lambda package: package.version, default=None)


@dataclass(frozen=True)
class AlarmSelection:
    """Which configured alarms guard a rollout, and which cannot."""

    guarding: tuple[str, ...]
    missing: tuple[str, ...]  # not created (yet): a drift alarm of a stack without the drift route
    already_in_alarm: tuple[str, ...]  # they judge the version being replaced, not the new one


def select_rollback_alarms(configured: Sequence[str], states: Mapping[str, str]) -> AlarmSelection:
    """The alarms an UpdateEndpoint's AutoRollbackConfiguration names.

    An alarm already in ALARM before the rollout starts would roll back any new version at once —
    the drift alarm that triggered the retraining is the usual case — so it does not guard this one.
    """
    missing = tuple(name for name in configured if name not in states)
    firing = tuple(name for name in configured if states.get(name) == "ALARM")
    guarding = tuple(name for name in configured if name in states and name not in firing)
    return AlarmSelection(guarding=guarding, missing=missing, already_in_alarm=firing)


BACKOFF_BASE_S = 60
BACKOFF_CAP_S = 900


def backoff_seconds(receive_count: int, *, base: int = BACKOFF_BASE_S, cap: int = BACKOFF_CAP_S) -> int:
    """Visibility timeout before the next try: 60 s, 120 s, 240 s, 480 s, then every 15 minutes."""
    exponent = max(0, min(receive_count, 16) - 1)
    return int(min(cap, base * 2**exponent))
