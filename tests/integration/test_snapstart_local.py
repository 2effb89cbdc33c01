"""The local loop with the template's SnapStart option on: event sources invoke each function's alias.

The loop resolves `<Function>Aliaslive` and the alias's ARN to the function it invokes, so the same
handlers run on the same events whichever the option says.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from closedloop_ops import synthetic
from closedloop_ops.local.loop import LocalLoop


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    with LocalLoop.start(stack_name="closedloop-snap", services=False, parameters={"SnapStart": "on"}) as running:
        yield running


def test_every_function_has_its_alias_live_on_a_published_version(loop: LocalLoop) -> None:
    # Given the stack provisioned with SnapStart on
    lambda_ = loop.client("lambda")
    for logical_id, function in loop.stack.functions.items():
        # Then Lambda answers for the alias the event sources invoke, on a published version
        alias = lambda_.get_alias(FunctionName=function.name, Name="live")
        assert alias["FunctionVersion"] != "$LATEST", logical_id
        assert loop.stack.physical(f"{logical_id}Aliaslive") == f"{function.arn}:live"


def test_the_schedule_and_queues_reach_their_functions_through_the_alias(loop: LocalLoop) -> None:
    # Given the template's event source mappings and schedule, which name the aliases
    # Then each leads to its function
    assert sorted(m.function for m in loop.stack.mappings) == ["DeployModelFunction", "StartDataPrepFunction"]
    assert [s.function for s in loop.stack.schedules] == ["DriftMonitorFunction"]


def test_uploads_reach_the_handler_through_the_aliased_event_source(loop: LocalLoop) -> None:
    # Given three raw files uploaded to the data bucket
    s3 = loop.client("s3")
    bucket = loop.output("DataBucketName")
    records = list(synthetic.rows(90, seed=5))
    for index in range(3):
        s3.put_object(
            Bucket=bucket,
            Key=f"raw/loans/snap/part-{index}.csv",
            Body=synthetic.to_csv(records[index * 30 : (index + 1) * 30]).encode(),
        )
    # When the loop settles
    loop.settle()
    # Then the rule, the queue and the event source mapping on the alias brought them to the handler at once
    invocations = [i for i in loop.dispatcher.invocations if i.function == "StartDataPrepFunction"]
    assert [(i.records, i.error) for i in invocations] == [(3, None)]
