"""Across accounts: what AWS does and moto 5.2.x does not (docs/multi-account.md).

moto keeps accounts apart by credentials; these patches add the AWS behaviour that lets one account
use another's resources only where a resource policy says so:

* **Model package group policies.** `PutModelPackageGroupPolicy`, `GetModelPackageGroupPolicy` and
  `DeleteModelPackageGroupPolicy` work (moto raises NotImplementedError). `DescribeModelPackage` and
  `DescribeModelPackageGroup` of another account's group (by ARN) answer
  from that account when the group's policy allows the caller's account the action, and with
  `AccessDeniedException` otherwise (moto looks in the caller's own account and says not found).
* **Cross-account event buses.** A rule whose target is another account's event bus delivers there
  only when that bus's resource policy allows `events:PutEvents` to the rule's account, and the
  event keeps its envelope — `id`, `account` (the sender's), `time`, `resources` — as EventBridge
  does (moto re-puts it as a new event of the receiving account, and ignores the policy). A
  refused delivery is counted in `refused_deliveries` (EventBridge's `FailedInvocations`).
* **The whole event.** A target without an input transformer receives the event with its
  `account` (moto's default template leaves it out).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from moto.core.responses import ActionResult
from moto.events import models as events_models
from moto.events.utils import EventTemplateParser
from moto.sagemaker.exceptions import SagemakerClientError, ValidationError
from moto.sagemaker.responses import SageMakerResponse

# (account, region, group name) → the group's resource policy (JSON text)
_group_policies: dict[tuple[str, str, str], str] = {}
refused_deliveries: list[dict[str, str]] = []


class AccessDenied(SagemakerClientError):
    code = "AccessDeniedException"


# -- policies ------------------------------------------------------------------------------------


def _principal_accounts(principal: Any) -> set[str]:
    """The accounts a policy principal names (`"123456789012"`, `arn:aws:iam::123456789012:root`, lists)."""
    if principal == "*":
        return {"*"}
    values = principal.get("AWS", []) if isinstance(principal, dict) else principal
    values = [values] if isinstance(values, str) else list(values or [])
    accounts = set()
    for value in values:
        if value == "*":
            accounts.add("*")
        elif value.isdigit():
            accounts.add(value)
        elif value.startswith("arn:"):
            accounts.add(value.split(":")[4])
    return accounts


def _action_matches(actions: Any, wanted: str) -> bool:
    actions = [actions] if isinstance(actions, str) else list(actions or [])
    service = wanted.split(":", maxsplit=1)[0]
    return any(a in (wanted, "*", f"{service}:*") for a in actions)


def policy_allows(policy: str | None, account: str, action: str) -> bool:
    """Does a resource policy allow `account` the `action`? (Allow statements only; a Deny naming the
    account or `*` wins; conditions other than none are not evaluated and do not allow.)"""
    if not policy:
        return False
    statements = json.loads(policy).get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    allowed = False
    for statement in statements:
        named = _principal_accounts(statement.get("Principal", {}))
        if not (account in named or "*" in named) or not _action_matches(statement.get("Action"), action):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and not statement.get("Condition"):
            allowed = True
    return allowed


# -- SageMaker: model package group policies and cross-account reads -----------------------------------


def _put_model_package_group_policy(self: SageMakerResponse) -> Any:
    group = self._get_param("ModelPackageGroupName").split("/")[-1]
    self.sagemaker_backend.describe_model_package_group(group)  # the group must exist
    _group_policies[(self.current_account, self.region, group)] = self._get_param("ResourcePolicy")
    arn = f"arn:aws:sagemaker:{self.region}:{self.current_account}:model-package-group/{group}"
    return ActionResult({"ModelPackageGroupArn": arn})


def _get_model_package_group_policy(self: SageMakerResponse) -> Any:
    group = self._get_param("ModelPackageGroupName").split("/")[-1]
    policy = _group_policies.get((self.current_account, self.region, group))
    if policy is None:
        raise ValidationError(f"Model package group {group} has no resource policy")
    return ActionResult({"ResourcePolicy": policy})


def _delete_model_package_group_policy(self: SageMakerResponse) -> Any:
    group = self._get_param("ModelPackageGroupName").split("/")[-1]
    _group_policies.pop((self.current_account, self.region, group), None)
    return ActionResult({})


def group_policy(account: str, region: str, group: str) -> str | None:
    """A group's resource policy as `PutModelPackageGroupPolicy` stored it (tests, the local loop)."""
    return _group_policies.get((account, region, group))


def _owner(arn: str | None) -> tuple[str, str, str] | None:
    """(account, region, group) of a model-package or model-package-group ARN."""
    if not arn or not arn.startswith("arn:") or ":model-package" not in arn:
        return None
    parts = arn.split(":", 5)
    resource = parts[5].split("/")
    return parts[4], parts[3], resource[1] if len(resource) > 1 else ""


def _across(parameter: str, action: str, original: Any) -> Any:
    def patched(self: SageMakerResponse) -> Any:
        owner = _owner(self._get_param(parameter))
        if owner is None or owner[0] == self.current_account:
            return original(self)
        account, region, group = owner
        if not policy_allows(_group_policies.get((account, region, group)), self.current_account, action):
            raise AccessDenied(
                f"User: account {self.current_account} is not authorized to perform: {action} on a resource "
                f"of account {account}: no resource-based policy allows the {action} action",
            )
        caller = self.current_account
        self.current_account = account
        try:
            return original(self)
        finally:
            self.current_account = caller

    return patched


# -- EventBridge: cross-account bus targets ------------------------------------------------------------------

_original_send = events_models.Rule.send_to_targets


def _send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
    if not self.event_pattern.matches_event(original_event):
        return
    foreign = [t for t in self.targets if _foreign_bus(t["Arn"], self.account_id)]
    if not foreign:
        _original_send(self, original_event, transform_input)
        return
    own = [t for t in self.targets if t not in foreign]
    if own:
        targets, self.targets = self.targets, own
        try:
            _original_send(self, original_event, transform_input)
        finally:
            self.targets = targets
    for target in foreign:
        parts = target["Arn"].split(":", 5)
        account, region, bus_name = parts[4], parts[3], parts[5].split("/", 1)[1]
        backend = events_models.events_backends[account][region]
        bus = backend.event_buses.get(bus_name)
        if bus is None or not policy_allows(bus.policy, self.account_id, "events:PutEvents"):
            refused_deliveries.append({"rule": self.arn, "target": target["Arn"], "sender": self.account_id})
            continue
        for rule in list(bus.rules.values()):
            rule.send_to_targets(copy.deepcopy(original_event), transform_input=transform_input)


def _foreign_bus(arn: str, account: str) -> bool:
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "events" and parts[5].startswith("event-bus/") and parts[4] != account


def install() -> None:
    SageMakerResponse.put_model_package_group_policy = _put_model_package_group_policy  # type: ignore[method-assign]
    SageMakerResponse.get_model_package_group_policy = _get_model_package_group_policy  # type: ignore[method-assign]
    SageMakerResponse.delete_model_package_group_policy = _delete_model_package_group_policy  # type: ignore[method-assign]
    for method, parameter, action in (
        ("describe_model_package", "ModelPackageName", "sagemaker:DescribeModelPackage"),
        ("describe_model_package_group", "ModelPackageGroupName", "sagemaker:DescribeModelPackageGroup"),
    ):
        setattr(SageMakerResponse, method, _across(parameter, action, getattr(SageMakerResponse, method)))
    events_models.Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign]
    EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE.replace(
        '"version": "0",', '"version": "0", "account": "<account>",', 1
    )


def reset() -> None:
    """Forget stored group policies and refused deliveries (a moto reset forgets the groups too)."""
    _group_policies.clear()
    refused_deliveries.clear()
