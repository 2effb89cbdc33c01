"""closedloop's envelopes mirror Powertools' parser models field for field (see events/base.py, events/sqs.py)."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.parser import models as powertools
from pydantic import BaseModel

from closedloop.events import base, sqs


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (base.EventBridgeModel, powertools.EventBridgeModel),
        (sqs.SqsRecordModel, powertools.SqsRecordModel),
        (sqs.SqsAttributesModel, powertools.SqsAttributesModel),
        (sqs.SqsMsgAttributeModel, powertools.SqsMsgAttributeModel),
    ],
)
def test_same_fields_aliases_and_requiredness(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    def shape(model: type[BaseModel]) -> dict[str, tuple[str | None, bool]]:
        return {name: (field.alias, field.is_required()) for name, field in model.model_fields.items()}

    assert shape(ours) == shape(theirs)


def test_the_same_event_parses_the_same_way() -> None:
    from support.events import load_event

    event = load_event("s3_object_created")
    assert (
        base.EventBridgeModel.model_validate(event).model_dump()
        == powertools.EventBridgeModel.model_validate(event).model_dump()
    )
