"""The envelope every closedloop event arrives in (EventBridge), and helpers every parser shares.

`EventBridgeModel` mirrors Powertools' model field for field (same names, aliases and types), so
route models subclass it exactly as they would subclass Powertools'. (The SQS record envelope of
the two routes behind a queue is in `closedloop.events.sqs`.) It lives here because importing
`aws_lambda_powertools.utilities.parser.models` builds every one of its ~100 event models:
measured at 110-150 ms of a handler's cold start on this machine, for models no closedloop route
uses (see docs/architecture.md, "Cold start").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

from closedloop.model import Model


class EventBridgeModel(Model):
    """An EventBridge event envelope (as Powertools models it)."""

    model_config = ConfigDict(populate_by_name=True)

    version: str
    id: str
    source: str
    account: str
    time: datetime
    region: str
    resources: list[str]
    detail_type: str = Field(alias="detail-type")
    detail: Any
    replay_name: str | None = Field(default=None, alias="replay-name")


def single_source(value: Any) -> Any:
    """A duplicated `source` key (last one kept) arrives as a one-element list: the source it names."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


SageMakerSource = Annotated[Literal["aws.sagemaker"], BeforeValidator(single_source)]
"""`source` of SageMaker's events (routes 2-5), a duplicated key taken as the one it names."""


def validation_problems(exc: ValidationError) -> list[dict[str, str]]:
    """Where and why a model rejected an event — without the values it held."""
    return [
        {
            "at": ".".join(map(str, err["loc"])) or "(root)",
            "problem": "not a detail-type this route takes" if err["type"] == "union_tag_invalid" else err["msg"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ][:10]


def arn_scope(arn: str) -> tuple[str, str]:
    """(account, region) of an ARN (`arn:<partition>:<service>:<region>:<account>:…`); empty if not an ARN."""
    parts = arn.split(":", 5)
    return (parts[4], parts[3]) if len(parts) == 6 and parts[0] == "arn" else ("", "")


def foreign_scope(event: EventBridgeModel, account: str, region: str, *arns: str) -> str | None:
    """Why the event is not this stack's (another account or region in the envelope or an ARN), or None."""
    for where, scope in (("the event", (event.account, event.region)), *((arn, arn_scope(arn)) for arn in arns)):
        if scope != (account, region):
            return f"not ours: {where} is in account {scope[0]}, region {scope[1]}; this stack is {account}, {region}"
    return None
