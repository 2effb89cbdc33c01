"""`closedloop pipeline upsert` against the local loop: name and role from the stack's outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from closedloop_ops.local.loop import LocalLoop
from closedloop_ops.stackref import StackRef
from support.cli import ROOT, fresh_moto, local_args, reset_server, run

DEFINITION = ROOT / "pipelines" / "definition.json"


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    if not DEFINITION.is_file():
        pytest.fail("pipelines/definition.json is missing: run `make pipeline` and commit it")
    fresh_moto()
    with LocalLoop.start(stack_name="closedloop-pipeline", services=False) as running:
        try:
            yield running
        finally:
            reset_server(running.stack.endpoint_url)


@pytest.fixture
def local(loop: LocalLoop, tmp_path: Path) -> list[str]:
    return local_args(loop, tmp_path / "state.json")


def with_default(path: Path, parameter: str, value: str) -> Path:
    """A copy of the definition with one parameter's default changed (a new commit of the pipeline)."""
    definition = json.loads(DEFINITION.read_text())
    for declared in definition["Parameters"]:
        if declared["Name"] == parameter:
            declared["DefaultValue"] = value
    path.write_text(json.dumps(definition))
    return path


def test_upsert_creates_then_keeps_then_updates(
    loop: LocalLoop, local: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["pipeline", "upsert", "--definition", str(DEFINITION), *local]
    # When the pipeline is upserted for the first time
    code, out, _ = run([*args, "--json"], capsys)
    created = json.loads(out)
    # Then it is created under the stack's name, with the stack's pipeline role
    assert code == 0 and created["action"] == "created" and created["pipeline"] == loop.output("TrainingPipelineName")
    described = loop.client("sagemaker").describe_pipeline(PipelineName=loop.output("TrainingPipelineName"))
    assert described["RoleArn"] == loop.output("TrainingPipelineRoleArn")
    # When the same definition is upserted again (every commit runs it)
    code, out, _ = run(args, capsys)
    # Then nothing changes
    assert code == 0 and out.startswith("unchanged: pipeline closedloop-training (")
    # When the definition changed
    changed = with_default(tmp_path / "pipeline.json", "TrainingInstanceType", "ml.m5.xlarge")
    code, out, _ = run(["pipeline", "upsert", "--definition", str(changed), *local], capsys)
    assert code == 0 and out.startswith("updated: pipeline closedloop-training (")


def test_a_definition_the_routes_cannot_start_is_refused(
    local: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = json.loads(DEFINITION.read_text())
    definition["Parameters"] = [p for p in definition["Parameters"] if p["Name"] != "TriggerReason"]
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(definition))
    code, _, err = run(["pipeline", "upsert", "--definition", str(path), *local], capsys)
    assert code == 2 and err.strip() == (
        f"closedloop: {path}: the definition does not declare the parameters the routes set: ['TriggerReason']"
    )
    path.write_text("{")
    code, _, err = run(["pipeline", "upsert", "--definition", str(path), *local], capsys)
    assert code == 2 and err.startswith(f"closedloop: {path}: the definition is not JSON")


def test_a_deployed_stack_gets_only_a_definition_generated_for_it(
    loop: LocalLoop, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployed stack (the loop's account, reached as AWS would be)
    deployed = StackRef(
        name="closedloop-dev",
        region=loop.stack.region,
        outputs=loop.stack.outputs,
        endpoint_url=loop.stack.endpoint_url,
        credentials={"aws_access_key_id": "deployer", "aws_secret_access_key": "deployer"},
    )
    monkeypatch.setattr("closedloop_ops.stackref.aws_stack", lambda *_: deployed)
    monkeypatch.chdir(ROOT)  # the default --definition is pipelines/definition.json of the working directory
    bucket = loop.output("ArtifactsBucketName")
    # When the offline definition of `make pipeline` is upserted to it
    code, _, err = run(["pipeline", "upsert", "--stack", "closedloop-dev"], capsys)
    # Then it is refused: its step code is in no bucket of this account
    assert code == 2 and err.startswith(
        f"closedloop: pipelines/definition.json references nothing in the stack's artifacts bucket {bucket}: "
    )
    # When the definition was generated for the stack (its code in the stack's artifacts bucket)
    generated = tmp_path / "pipeline.json"
    generated.write_text(DEFINITION.read_text().replace("s3://closedloop-artifacts/", f"s3://{bucket}/"))
    code, out, _ = run(["pipeline", "upsert", "--stack", "closedloop-dev", "--definition", str(generated)], capsys)
    assert code == 0 and out.split(":")[0] in {"created", "updated"}
