"""`closedloop line retire`: what a removed line's rollout left behind is found by name and removed,
endpoint first; a served line, and another line whose name starts the same, are never touched."""

from __future__ import annotations

import io

import boto3
import pytest

from closedloop.deploy.requests import resource_name
from closedloop_ops import cli
from closedloop_ops.cli_errors import CliError
from closedloop_ops.retire import left_behind, orphans, retire
from closedloop_ops.stackref import StackRef
from support.stack import ACCOUNT, REGION, Stack

ROLE = f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-ModelExecutionRole"


def rolled_out(endpoint: str, versions: list[int]) -> dict[str, list[str]]:
    """What the rollout makes for an endpoint: a model and a configuration per version, the endpoint on the last."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    made: dict[str, list[str]] = {"models": [], "configs": []}
    for version in versions:
        model = resource_name(endpoint, version, f"{version:02x}aa11")
        config = resource_name(endpoint, version, f"{version:02x}bb22")
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "123.dkr.ecr.eu-west-1.amazonaws.com/xgb:1", "ModelDataUrl": "s3://b/m.tar.gz"},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        made["models"].append(model)
        made["configs"].append(config)
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=made["configs"][-1])
    return made


@pytest.fixture
def ref(stack: Stack) -> StackRef:
    """A stack serving loans and churn; claims was served before and taken out of ModelLines."""
    return StackRef(
        name="closedloop-test",
        region=REGION,
        outputs={"ResourcePrefix": "closedloop", "ModelLines": "loans,churn", "RawPrefix": "raw/"},
        _environment=dict(stack.env),
    )


def endpoints() -> set[str]:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return {e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]}


def test_a_removed_line_is_found_and_retired_and_nothing_of_a_served_or_look_alike_line_is_touched(
    ref: StackRef,
) -> None:
    # Given the rollout's resources of the removed line claims (two versions), of the served line loans,
    # and of claims-eu, a line whose names start with claims'
    claims = rolled_out("closedloop-claims", [1, 2])
    loans = rolled_out("closedloop-loans", [3])
    claims_eu = rolled_out("closedloop-claims-eu", [1])
    # When what claims left behind is looked up
    found = left_behind(ref, "claims")
    # Then it is exactly claims' endpoint, configurations and models
    assert found.endpoint == "closedloop-claims"
    assert found.endpoint_configs == sorted(claims["configs"])
    assert found.models == sorted(claims["models"])
    # and status finds the two lines the stack does not serve, not loans
    assert sorted(o.line for o in orphans(ref)) == ["claims", "claims-eu"]

    # When it is retired as a dry run, nothing goes
    planned = retire(ref, "claims", dry_run=True)
    assert planned.model_dump(exclude={"dry_run", "kept"}) == found.model_dump()
    assert "closedloop-claims" in endpoints()

    # When it is retired
    done = retire(ref, "claims")
    # Then claims' resources are gone; loans' and claims-eu's are all still there; the group is kept
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert endpoints() == {"closedloop-loans", "closedloop-claims-eu"}
    configs = {c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]}
    models = {m["ModelName"] for m in sagemaker.list_models()["Models"]}
    assert configs == set(loans["configs"] + claims_eu["configs"])
    assert models == set(loans["models"] + claims_eu["models"])
    assert any("closedloop-claims" in kept for kept in done.kept)
    # and a second retirement finds nothing
    assert left_behind(ref, "claims").empty


def test_a_served_line_is_refused(ref: StackRef) -> None:
    rolled_out("closedloop-loans", [1])
    with pytest.raises(CliError, match=r"still serves model line 'loans'.*ModelLines"):
        retire(ref, "loans")
    assert "closedloop-loans" in endpoints()


def test_a_name_that_is_no_line_name_is_refused(ref: StackRef) -> None:
    with pytest.raises(CliError, match="not a model line name"):
        left_behind(ref, "Claims_EU")


def test_the_command_asks_before_it_removes_and_says_what_it_removed(
    ref: StackRef, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a removed line's endpoint, and the command run against the stack
    rolled_out("closedloop-claims", [1])
    monkeypatch.setattr(cli, "_stack", lambda args: ref)
    # When the operator answers no, nothing is removed
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert cli.main(["line", "retire", "claims"]) == 1
    assert "closedloop-claims" in endpoints()
    # When they confirm with --yes, it is removed and the output names it
    assert cli.main(["line", "retire", "claims", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "model line claims: removed" in out and "endpoint                closedloop-claims" in out
    assert "closedloop-claims" not in endpoints()
