"""`closedloop_ops.pipeline`: create or update the training pipeline from its definition, on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from closedloop_ops.pipeline import PipelineDefinitionError, main, upsert_pipeline
from support.stack import ACCOUNT, REGION
from support.training import minimal_definition

ROLE = f"arn:aws:iam::{ACCOUNT}:role/closedloop-dev-TrainingPipelineRole"
GENERATED = Path(__file__).resolve().parents[2] / "pipelines" / "definition.json"


@pytest.fixture
def sagemaker() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION)


def test_create_then_unchanged_then_updated(sagemaker: Any) -> None:
    definition = minimal_definition()
    # When upserted the first time
    created = upsert_pipeline(definition, "closedloop-training", ROLE, sagemaker)
    assert (created.action, created.steps) == ("created", 1)
    described = sagemaker.describe_pipeline(PipelineName="closedloop-training")
    assert json.loads(described["PipelineDefinition"]) == json.loads(definition)
    assert described["RoleArn"] == ROLE
    # Then the same definition (even formatted differently) is a no-op
    reformatted = json.dumps(json.loads(definition), indent=4)
    assert upsert_pipeline(reformatted, "closedloop-training", ROLE, sagemaker).action == "unchanged"
    # And a changed definition, or a changed role, updates it
    changed = json.loads(definition)
    changed["Steps"].append({"Name": "Extra", "Type": "Fail", "Arguments": {}})
    assert upsert_pipeline(json.dumps(changed), "closedloop-training", ROLE, sagemaker).action == "updated"
    assert upsert_pipeline(json.dumps(changed), "closedloop-training", ROLE + "2", sagemaker).action == "updated"
    described = sagemaker.describe_pipeline(PipelineName="closedloop-training")
    assert len(json.loads(described["PipelineDefinition"])["Steps"]) == 2
    assert described["RoleArn"] == ROLE + "2"


def test_the_generated_definition_upserts(sagemaker: Any) -> None:
    assert GENERATED.is_file(), f"{GENERATED} is missing: run `make pipeline`"
    result = upsert_pipeline(GENERATED.read_text(encoding="utf-8"), "closedloop-training", ROLE, sagemaker)
    # dataset, train, evaluate, baseline, 5 of Clarify, register
    assert (result.action, result.steps) == ("created", 10)


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"Version": "2020-12-01", "Steps": []}), "no steps"),
        (json.dumps({"Steps": [{"Name": "A"}], "Parameters": [{"Name": "InputDataUri"}]}), "does not declare"),
    ],
)
def test_a_definition_the_routes_could_not_start_is_refused(sagemaker: Any, definition: str, problem: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=problem):
        upsert_pipeline(definition, "closedloop-training", ROLE, sagemaker)
    assert sagemaker.list_pipelines()["PipelineSummaries"] == []


def test_the_command_line_upserts_and_prints_what_it_did(
    sagemaker: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pipeline.json"
    path.write_text(minimal_definition(), encoding="utf-8")
    args = ["upsert", "--definition", str(path), "--name", "closedloop-training", "--role-arn", ROLE]
    assert main([*args, "--region", REGION]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "created"
    assert main(["upsert", "--definition", str(tmp_path / "missing.json"), "--name", "x", "--role-arn", ROLE]) == 2
    path.write_text("{}", encoding="utf-8")
    assert main([*args, "--region", REGION]) == 1
    assert "no steps" in capsys.readouterr().err
