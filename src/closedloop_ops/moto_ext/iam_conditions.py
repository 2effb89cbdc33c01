"""Policy conditions as AWS evaluates them (moto 5.2.x treats every condition it cannot evaluate,
and every condition whose key the request does not carry, as matched).

AWS: a condition whose context key is absent from the request does not match, unless its operator
ends in `IfExists` (then it matches) or is `Null`; and a statement whose conditions do not match does
not apply at all (moto turns it into an explicit deny). So the stack's TLS-only bucket policy
(`Deny … Bool aws:SecureTransport false`) denies nothing unless the request really says it came
over plain HTTP — moto's evaluation denied every request to the data bucket.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from moto.iam import access_control, policy_conditions

_original_verify = policy_conditions.TrustCondition.verify_condition


def _matches(operator: str, expected: list[str] | str, actual: str) -> bool | None:
    values = [expected] if isinstance(expected, str) else [str(v) for v in expected]
    base = operator.removesuffix("IfExists")
    if base in {"Bool"}:
        return actual.lower() in {v.lower() for v in values}
    if base in {"StringLike", "ArnLike"}:
        return any(fnmatch.fnmatchcase(actual, v) for v in values)
    if base in {"StringNotLike", "ArnNotLike"}:
        return not any(fnmatch.fnmatchcase(actual, v) for v in values)
    if base in {"StringEquals", "ArnEquals"}:
        return actual in values
    if base in {"StringNotEquals", "ArnNotEquals"}:
        return actual not in values
    return None


def _verify_condition(self: policy_conditions.TrustCondition, actual_values: list[str]) -> bool:
    operator = self._condition
    if not actual_values:
        return operator.endswith("IfExists")
    for index, actual in enumerate(actual_values):
        verdict = _matches(operator, self._expected_value[index], actual)
        if verdict is None:
            return bool(_original_verify(self, actual_values))
        if not verdict:
            return False
    return True


def _is_action_permitted(
    self: access_control.IAMPolicyStatement,
    action: str,
    resource: str = "*",
    principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> Any:
    result = access_control.PermissionResult
    statement = self._statement
    if "NotAction" in statement:
        concerned = not self._check_element_matches("NotAction", action)
    else:
        concerned = self._check_element_matches("Action", action)
    if not concerned or self.is_unknown_principal(statement.get("Principal")):
        return result.NEUTRAL
    if principal and not self._check_principal(principal):
        return result.NEUTRAL
    if not self._check_conditions(incoming_condition_values):
        return result.NEUTRAL
    if statement.get("Resource") and not self._check_element_matches("Resource", resource):
        return result.NEUTRAL
    return result.PERMITTED if statement["Effect"] == "Allow" else result.DENIED


def install() -> None:
    policy_conditions.TrustCondition.verify_condition = _verify_condition  # type: ignore[method-assign]
    access_control.IAMPolicyStatement.is_action_permitted = _is_action_permitted  # type: ignore[method-assign]
