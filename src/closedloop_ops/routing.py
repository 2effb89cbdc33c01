"""Which rules and handlers of `template.yaml` an event reaches — the tool for "my rule does not fire".

Patterns are the template's own, evaluated with its parameter defaults (or overrides), and matched
with moto's EventBridge pattern engine (every operator: prefix, anything-but, numeric, exists…).
A pattern value that refers to a resource created at deploy time (the data bucket's name, say) is
unknown offline: it is matched as "the stack's <LogicalId>", and the answer says so.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.template import Template, load_template

PLACEHOLDER = "{{%s}}"


@dataclass
class RouteMatch:
    rule: str
    targets: list[str]
    handlers: list[str]
    assumptions: list[str] = field(default_factory=list)


@dataclass
class RouteReport:
    event_source: str
    detail_type: str
    matches: list[RouteMatch]
    near_misses: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.event_source,
            "detail-type": self.detail_type,
            "matches": [m.__dict__ for m in self.matches],
            "near_misses": self.near_misses,
        }


def _resolver(template: Template, parameters: dict[str, str]) -> Resolver:
    values = {name: spec.get("Default") for name, spec in template.parameters.items()}
    values.update(parameters)
    return Resolver(
        parameters=values,
        pseudo={
            "AWS::Region": "eu-west-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "closedloop",
        },
        mappings=template.cfn.get("Mappings", {}),
        conditions=template.cfn.get("Conditions", {}),
        ref=lambda logical_id: PLACEHOLDER % logical_id,
        get_att=lambda logical_id, attribute: PLACEHOLDER % f"{logical_id}.{attribute}",
    )


def _bind_placeholders(pattern: Any, event: Any, path: str, assumptions: list[str]) -> Any:
    """Replace placeholder values with the event's value at the same path (recorded as assumed)."""
    if isinstance(pattern, dict):
        return {
            key: _bind_placeholders(
                value, event.get(key) if isinstance(event, dict) else None, f"{path}.{key}".lstrip("."), assumptions
            )
            for key, value in pattern.items()
        }
    if isinstance(pattern, list):
        bound = []
        for item in pattern:
            if isinstance(item, str) and item.startswith("{{") and item.endswith("}}"):
                assumptions.append(f"{path} is the stack's {item[2:-2]}")
                bound.append(event if isinstance(event, str) else item)
            else:
                bound.append(item)
        return bound
    return pattern


def _targets(template: Template, rule: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Target descriptions and the handler directories they lead to."""
    resources = template.resources
    targets, handlers = [], []
    for target in rule.get("Properties", {}).get("Targets", []):
        arn = target.get("Arn")
        logical = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None
        if isinstance(arn, dict) and "Fn::GetAtt" in arn and isinstance(arn["Fn::GetAtt"], str):
            logical = arn["Fn::GetAtt"].split(".", 1)[0]
        if logical is None:
            targets.append(json.dumps(arn))
            continue
        kind = resources.get(logical, {}).get("Type", "?")
        targets.append(f"{logical} ({kind})")
        if kind == "AWS::Lambda::Function":
            handlers.append(_handler(template, logical))
        elif kind == "AWS::SQS::Queue":
            for spec in resources.values():
                source = spec.get("Properties", {}).get("EventSourceArn")
                if (
                    spec["Type"] == "AWS::Lambda::EventSourceMapping"
                    and isinstance(source, dict)
                    and source.get("Fn::GetAtt", [None])[0] == logical
                ):
                    function = spec["Properties"]["FunctionName"]["Ref"]
                    handlers.append(_handler(template, function) + f" (via SQS {logical})")
    return targets, handlers


def _handler(template: Template, function: str) -> str:
    code = template.code_dirs.get(function)
    handler = template.resources[function]["Properties"].get("Handler", "app.lambda_handler")
    where = code.relative_to(template.path.parent) if code else Path("?")
    return f"{function}: {where}/{handler.rsplit('.', 1)[0]}.py::{handler.rsplit('.', 1)[1]}"


def route_event(event: dict[str, Any], template: Template, parameters: dict[str, str] | None = None) -> RouteReport:
    """Match one event against every rule of the template."""
    from moto.events.models import EventPattern

    resolver = _resolver(template, parameters or {})
    matches, near = [], []
    for logical_id, spec in template.resources.items():
        if spec["Type"] != "AWS::Events::Rule" or "EventPattern" not in spec.get("Properties", {}):
            continue
        if "Condition" in spec and not resolver.condition(spec["Condition"]):
            continue
        assumptions: list[str] = []
        pattern = _bind_placeholders(
            resolver.resolve(copy.deepcopy(spec["Properties"]["EventPattern"])), event, "", assumptions
        )
        if EventPattern.load(json.dumps(pattern)).matches_event(event):
            targets, handlers = _targets(template, spec)
            matches.append(RouteMatch(rule=logical_id, targets=targets, handlers=handlers, assumptions=assumptions))
        elif (
            pattern.get("source")
            and event.get("source") in pattern["source"]
            and event.get("detail-type") in pattern.get("detail-type", [event.get("detail-type")])
        ):
            wanted = json.dumps(pattern.get("detail", {}))
            near.append(f"{logical_id}: same source and detail-type, but the detail does not match {wanted}")
    return RouteReport(
        event_source=str(event.get("source")),
        detail_type=str(event.get("detail-type")),
        matches=matches,
        near_misses=near,
    )


def route_file(path: Path, template_path: Path, parameters: dict[str, str] | None = None) -> RouteReport:
    event = json.loads(path.read_text(encoding="utf-8"))
    return route_event(event, load_template(template_path), parameters)
