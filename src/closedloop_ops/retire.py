"""What a removed model line leaves behind, and `closedloop line retire`, which removes it.

A line's alarms, drift schedule and model package group are the template's: taking the line out of
`ModelLines` and deploying removes the first two and keeps the group (retained, for lineage). Its
endpoint, endpoint configurations and models are the rollout's (made on the fly, one per approved
version), so no stack update removes them. They are found by their names — the endpoint is
`<prefix>-<line>`, a configuration or model `<endpoint>-v<version>-<digest>`
(`closedloop.deploy.requests.resource_name`) — and removed endpoint first, so nothing is deleted
while it serves. A line the stack still serves is refused: its routes would make them again.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from closedloop.deploy.requests import resource_name
from closedloop.line import LINE_NAME, LineResources
from closedloop_ops.cli_errors import CliError
from closedloop_ops.stackref import StackRef

VERSIONED = re.compile(r"^(?P<stem>.+)-v(?P<version>\d+)-(?P<digest>[0-9a-f]+)$")


class LeftBehind(BaseModel):
    """The rollout's resources of one line (names only)."""

    line: str
    endpoint: str | None = Field(default=None, description="the line's endpoint, when it exists")
    endpoint_configs: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.endpoint is None and not self.endpoint_configs and not self.models


class Retirement(LeftBehind):
    """What `closedloop line retire` removed (or, with `dry_run`, would remove)."""

    dry_run: bool
    kept: list[str] = Field(default_factory=list, description="what stays, and why")


def _prefix(stack: StackRef) -> str:
    prefix = stack.output("ResourcePrefix")
    if not prefix:
        raise CliError(f"stack {stack.name} has no ResourcePrefix output (deployed from an older template)")
    return str(prefix)


def _names(sagemaker: Any, method: str, key: str, item: str, contains: str) -> list[str]:
    names: list[str] = []
    for page in sagemaker.get_paginator(method).paginate(NameContains=contains):
        names.extend(entry[item] for entry in page[key])
    return names


def _owned_by(name: str, endpoint: str) -> bool:
    """Is `name` a configuration or model the rollout named after `endpoint`? (not another line's
    whose name starts the same, such as `<prefix>-loans-eu` for `<prefix>-loans`)"""
    match = VERSIONED.match(name)
    return match is not None and resource_name(endpoint, int(match["version"]), match["digest"]) == name


def left_behind(stack: StackRef, line: str) -> LeftBehind:
    """The endpoint, endpoint configurations and models of `line` in the stack's account and region."""
    if not LINE_NAME.match(line):
        raise CliError(f"{line!r} is not a model line name (lower-case letters, digits and single hyphens)")
    owned = LineResources.of(_prefix(stack), "", line)
    endpoint = owned.endpoint_name
    sagemaker = stack.client("sagemaker")
    endpoints = _names(sagemaker, "list_endpoints", "Endpoints", "EndpointName", endpoint)
    configs = _names(sagemaker, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", endpoint)
    models = _names(sagemaker, "list_models", "Models", "ModelName", endpoint)
    return LeftBehind(
        line=line,
        endpoint=endpoint if endpoint in endpoints else None,
        endpoint_configs=sorted(name for name in configs if _owned_by(name, endpoint)),
        models=sorted(name for name in models if _owned_by(name, endpoint)),
    )


def orphans(stack: StackRef) -> list[LeftBehind]:
    """Lines the stack no longer serves whose endpoint is still there (what `closedloop status` lists)."""
    prefix = _prefix(stack)
    served = {owned.endpoint_name for owned in stack.lines()}
    sagemaker = stack.client("sagemaker")
    found = []
    for name in _names(sagemaker, "list_endpoints", "Endpoints", "EndpointName", f"{prefix}-"):
        line = name.removeprefix(f"{prefix}-")
        if name.startswith(f"{prefix}-") and name not in served and LINE_NAME.match(line):
            found.append(left_behind(stack, line))
    return found


def retire(stack: StackRef, line: str, *, dry_run: bool = False) -> Retirement:
    """Remove what the rollout made for a line the stack no longer serves.

    Raises:
        CliError: the stack still serves the line, or the name is not a line name.
    """
    if line in {owned.line for owned in stack.lines()}:
        raise CliError(
            f"stack {stack.name} still serves model line {line!r}: take it out of ModelLines and deploy first "
            "(docs/onboarding.md, 'Remove a line'), or its routes would make these again"
        )
    found = left_behind(stack, line)
    if not dry_run:
        sagemaker = stack.client("sagemaker")
        if found.endpoint is not None:
            sagemaker.delete_endpoint(EndpointName=found.endpoint)
        for name in found.endpoint_configs:
            sagemaker.delete_endpoint_config(EndpointConfigName=name)
        for name in found.models:
            sagemaker.delete_model(ModelName=name)
    group = LineResources.of(_prefix(stack), "", line).model_package_group
    return Retirement(
        **found.model_dump(),
        dry_run=dry_run,
        kept=[
            f"model package group {group} and its versions (lineage; delete them yourself if your retention allows)",
            "the ledger's decisions and the data under raw/, prepared/ and the capture bucket",
        ],
    )


def format_retirement(done: Retirement) -> str:
    verb = "would remove" if done.dry_run else "removed"
    if done.empty:
        lines = [f"model line {done.line}: nothing of the rollout's is left (no endpoint, configuration or model)"]
    else:
        lines = [f"model line {done.line}: {verb}"]
        if done.endpoint is not None:
            lines.append(f"  endpoint                {done.endpoint}")
        lines += [f"  endpoint configuration  {name}" for name in done.endpoint_configs]
        lines += [f"  model                   {name}" for name in done.models]
    lines += [f"kept: {what}" for what in done.kept]
    return "\n".join(lines)
