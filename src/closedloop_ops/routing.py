"""Which rules and handlers of `template.yaml` an event reaches — the tool for "my rule does not fire".

Patterns are the template's own, evaluated with its parameter defaults (or overrides), and matched
with moto's EventBridge pattern engine (every operator: prefix, anything-but, numeric, exists…).
A pattern value that refers to a resource created at deploy time (the data bucket's name, say) is
unknown offline: it is matched as "the stack's <LogicalId>", and the answer says so. A resource the
template names itself (an alarm's `AlarmName`) is its name, as CloudFormation's Ref returns it. The
stack is taken to live in the event's account and region (the answer says so) unless they are given.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop import routes
from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.template import Template, load_template

PLACEHOLDER = "{{%s}}"
NAME_PROPERTIES = {"AWS::CloudWatch::Alarm": "AlarmName"}  # Ref returns this name when the template sets it
DEFAULT_ACCOUNT, DEFAULT_REGION = "123456789012", "eu-west-1"


@dataclass
class RouteMatch:
    rule: str
    targets: list[str]
    handlers: list[str]
    assumptions: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)  # from the route table


@dataclass
class RouteReport:
    event_source: str
    detail_type: str
    matches: list[RouteMatch]
    near_misses: list[str]
    envelope: str = ""  # what carried the event, when it was not a bare EventBridge event

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.event_source,
            "detail-type": self.detail_type,
            "envelope": self.envelope or None,
            "matches": [m.__dict__ for m in self.matches],
            "near_misses": self.near_misses,
        }


def _resolver(
    template: Template, parameters: dict[str, str], account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION
) -> Resolver:
    values = {name: spec.get("Default") for name, spec in template.parameters.items()}
    values.update(parameters)
    resolver: Resolver

    def ref(logical_id: str) -> Any:
        spec = template.resources.get(logical_id, {})
        name = spec.get("Properties", {}).get(NAME_PROPERTIES.get(spec.get("Type", ""), ""))
        return resolver.resolve(name) if name is not None else PLACEHOLDER % logical_id

    resolver = Resolver(
        parameters=values,
        pseudo={
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "closedloop",
        },
        mappings=template.cfn.get("Mappings", {}),
        conditions=template.cfn.get("Conditions", {}),
        ref=ref,
        get_att=lambda logical_id, attribute: PLACEHOLDER % f"{logical_id}.{attribute}",
    )
    return resolver


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


def _logical_target(template: Template, value: Any, resolver: Resolver) -> str | None:
    """The logical id an ARN or function-name property points at: `!GetAtt X.Arn`, `!Ref X`, or the
    branch of an `!If` its condition takes (the SnapStart option picks the alias or the function)."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        value = when_true if resolver.condition(condition) else when_false
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        arg = value["Fn::GetAtt"]
        return str(arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
    if isinstance(value, dict) and isinstance(value.get("Ref"), str):
        return str(value["Ref"])
    return None


def _function_behind(template: Template, logical: str) -> str:
    """The function an alias (`<Function>Alias<name>`) invokes; a function is itself."""
    spec = template.resources.get(logical, {})
    if spec.get("Type") == "AWS::Lambda::Alias":
        return str(spec["Properties"]["FunctionName"]["Ref"])
    return logical


def _targets(template: Template, rule: dict[str, Any], resolver: Resolver) -> tuple[list[str], list[str]]:
    """Target descriptions and the handler directories they lead to."""
    resources = template.resources
    targets, handlers = [], []
    for target in rule.get("Properties", {}).get("Targets", []):
        arn = target.get("Arn")
        logical = _logical_target(template, arn, resolver)
        if logical is None:
            targets.append(json.dumps(arn))
            continue
        kind = resources.get(logical, {}).get("Type", "?")
        targets.append(f"{logical} ({kind})")
        if kind in {"AWS::Lambda::Function", "AWS::Lambda::Alias"}:
            handlers.append(_handler(template, _function_behind(template, logical)))
        elif kind == "AWS::SQS::Queue":
            for spec in resources.values():
                props = spec.get("Properties", {})
                if (
                    spec["Type"] == "AWS::Lambda::EventSourceMapping"
                    and _logical_target(template, props.get("EventSourceArn"), resolver) == logical
                ):
                    function = _function_behind(
                        template, str(_logical_target(template, props["FunctionName"], resolver))
                    )
                    handlers.append(_handler(template, function) + f" (via SQS {logical})")
    return targets, handlers


def _handler(template: Template, function: str) -> str:
    code = template.code_dirs.get(function)
    handler = template.resources[function]["Properties"].get("Handler", "app.lambda_handler")
    where = code.relative_to(template.path.parent) if code else Path("?")
    return f"{function}: {where}/{handler.rsplit('.', 1)[0]}.py::{handler.rsplit('.', 1)[1]}"


def _routes(handlers: list[str]) -> list[str]:
    """The routes (closedloop.routes) the handlers serve, as `route N name → service`."""
    named = []
    for handler in handlers:
        try:
            route = routes.by_function(handler.split(":", 1)[0])
        except KeyError:
            continue
        named.append(f"route {route.number} {route.name} → {route.service}")
    return named


def route_event(
    event: dict[str, Any],
    template: Template,
    parameters: dict[str, str] | None = None,
    *,
    account: str | None = None,
    region: str | None = None,
) -> RouteReport:
    """Match one event against every rule of the template.

    `account` and `region` are the stack's; by default the event's own (stated as an assumption).
    """
    from moto.events.models import EventPattern

    stack_account = account or str(event.get("account") or DEFAULT_ACCOUNT)
    stack_region = region or str(event.get("region") or DEFAULT_REGION)
    assumed = [] if account and region else [f"the stack is in account {stack_account}, region {stack_region}"]
    resolver = _resolver(template, parameters or {}, stack_account, stack_region)
    matches, near = [], []
    for logical_id, spec in template.resources.items():
        if spec["Type"] != "AWS::Events::Rule" or "EventPattern" not in spec.get("Properties", {}):
            continue
        if "Condition" in spec and not resolver.condition(spec["Condition"]):
            continue
        resolved = resolver.resolve(copy.deepcopy(spec["Properties"]["EventPattern"]))
        text = json.dumps(resolved)
        assumptions: list[str] = list(assumed) if stack_account in text or stack_region in text else []
        pattern = _bind_placeholders(resolved, event, "", assumptions)
        if EventPattern.load(json.dumps(pattern)).matches_event(event):
            targets, handlers = _targets(template, spec, resolver)
            matches.append(
                RouteMatch(
                    rule=logical_id,
                    targets=targets,
                    handlers=handlers,
                    assumptions=assumptions,
                    routes=_routes(handlers),
                )
            )
        elif (
            pattern.get("source")
            and event.get("source") in pattern["source"]
            and event.get("detail-type") in pattern.get("detail-type", [event.get("detail-type")])
        ):
            failed = _failing_fields(pattern, event, EventPattern)
            near.append(
                f"{logical_id}: same source and detail-type, but "
                + "; ".join(f"{path} is not {json.dumps(wanted)}" for path, wanted in failed)
            )
    return RouteReport(
        event_source=str(event.get("source")),
        detail_type=str(event.get("detail-type")),
        matches=matches,
        near_misses=near,
    )


def _leaves(pattern: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Each matcher of a pattern with the path of fields that leads to it."""
    found: list[tuple[tuple[str, ...], Any]] = []
    for key, value in pattern.items():
        if isinstance(value, dict):
            found += _leaves(value, (*path, key))
        else:
            found.append(((*path, key), value))
    return found


def _failing_fields(pattern: dict[str, Any], event: dict[str, Any], engine: Any) -> list[tuple[str, Any]]:
    """The fields (dotted paths) whose matcher the event fails, each tried on its own."""
    failed = []
    for path, matcher in _leaves(pattern):
        single: dict[str, Any] = matcher
        for key in reversed(path):
            single = {key: single}
        if not engine.load(json.dumps(single)).matches_event(event):
            failed.append((".".join(path), matcher))
    return failed or [("the pattern as a whole", pattern)]


def unwrap(payload: Any) -> tuple[dict[str, Any] | None, str]:
    """The EventBridge event in a payload, and what carried it; (None, why not) when there is none.

    An SQS batch (route 1 and route 4 receive their events so) is routed by its first record's body;
    a Scheduler target input and a classic S3 notification are named for what they are.
    """
    if not isinstance(payload, dict):
        return None, "not an EventBridge event: the file holds no JSON object"
    records = payload.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return _unwrap_records(records)
    if "detail-type" in payload and "source" in payload:
        return payload, ""
    if {"schedule_arn", "scheduled_time"} & set(payload) or payload.get("action") == "measure-drift":
        return None, (
            "an EventBridge Scheduler target input: no rule routes it, the schedule invokes its function "
            "directly (the template's AWS::Scheduler::Schedule resources; route 7, the drift monitor)"
        )
    return None, "not an EventBridge event: no `source` and `detail-type`"


def _unwrap_records(records: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    first = records[0]
    if first.get("eventSource") == "aws:s3" or "s3" in first:
        return None, (
            "not an EventBridge event: a classic S3 notification (Records[] with eventSource aws:s3). "
            "Route 1 takes S3 events through EventBridge: turn on EventBridge notifications on the data bucket"
        )
    if first.get("eventSource") != "aws:sqs" and "messageId" not in first:
        return None, "not an EventBridge event: Records[] of neither SQS nor S3"
    try:
        body = json.loads(first.get("body") or "")
    except ValueError:
        return None, "an SQS batch whose first record's body is not JSON"
    inner, why = unwrap(body)
    if inner is None:
        return None, f"an SQS batch of {len(records)} record(s) whose first body is {why}"
    return inner, f"an SQS batch of {len(records)} record(s): routing the EventBridge event in the first body"


def route_payload(payload: Any, template: Template, parameters: dict[str, str] | None = None) -> RouteReport:
    """Route whatever a file holds: a bare EventBridge event, or one inside its envelope."""
    event, envelope = unwrap(payload)
    if event is None:
        return RouteReport(event_source="", detail_type="", matches=[], near_misses=[], envelope=envelope)
    report = route_event(event, template, parameters)
    report.envelope = envelope
    return report


def route_file(path: Path, template_path: Path, parameters: dict[str, str] | None = None) -> RouteReport:
    payload = json.loads(path.read_text(encoding="utf-8"))
    return route_payload(payload, cached_template(template_path), parameters)


def cached_template(path: Path) -> Template:
    """`load_template`, remembered by the template's content: transforming it takes most of a second."""
    import hashlib
    import os
    from importlib.metadata import version

    text = path.read_bytes()
    key = hashlib.sha256(text + version("aws-sam-translator").encode()).hexdigest()[:24]
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = home / "closedloop" / f"template-{key}.json"
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
        return Template(
            path=path,
            sam=stored["sam"],
            cfn=stored["cfn"],
            code_dirs={k: path.parent / v for k, v in stored["code_dirs"].items()},
        )
    except (OSError, ValueError, KeyError):
        pass
    template = load_template(path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        relative = {k: os.path.relpath(v, path.parent) for k, v in template.code_dirs.items()}
        cache.write_text(json.dumps({"sam": template.sam, "cfn": template.cfn, "code_dirs": relative}))
    except OSError:
        pass  # a read-only home: no cache, same answer
    return template
