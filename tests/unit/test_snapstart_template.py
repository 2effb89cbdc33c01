"""The SnapStart option of the template (parameter `SnapStart`, default "off"), on the CloudFormation it becomes.

SnapStart runs only published versions, so every function publishes one behind its alias `live`
(SAM's AutoPublishAlias, which cannot be made conditional). Off, every event source invokes the
function itself, as before the option existed — so a parameter-only update, which publishes no
version, still reaches the functions. On, every event source invokes the alias. Either way a new
layer publishes a new version: without that, the alias would keep running the old shared code.
"""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from typing import Any

import pytest

from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.loop import ROOT
from closedloop_ops.local.template import Template, load_template

FUNCTIONS = {
    "StartDataPrepFunction",
    "StartTrainingFunction",
    "ApprovalGateFunction",
    "DeployModelFunction",
    "RecordDeploymentFunction",
    "StartRetrainingFunction",
    "DriftMonitorFunction",
    "PromoteModelFunction",
}


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def resolver(snapstart: str) -> Resolver:
    """Resolves the template with `SnapStart` set; a Ref or GetAtt is shown as `<LogicalId>` / `<LogicalId.Attr>`."""
    values = {name: spec.get("Default") for name, spec in template().parameters.items()}
    values["SnapStart"] = snapstart
    return Resolver(
        parameters=values,
        pseudo={"AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333", "AWS::Partition": "aws"},
        mappings=template().cfn.get("Mappings", {}),
        conditions=template().cfn.get("Conditions", {}),
        ref=lambda logical_id: f"<{logical_id}>",
        get_att=lambda *args: f"<{'.'.join(args)}>",
    )


def invokers() -> dict[str, Any]:
    """Every property through which something invokes a function: rule and schedule targets, event
    source mappings, invoke permissions, and the schedule role's grant."""
    found: dict[str, Any] = {}
    for logical_id, spec in template().resources.items():
        props = spec["Properties"]
        if spec["Type"] == "AWS::Events::Rule":
            for target in props["Targets"]:
                if "Fn::If" in json.dumps(target["Arn"]) or "Function" in json.dumps(target["Arn"]):
                    found[f"{logical_id}/{target['Id']}"] = target["Arn"]
        elif spec["Type"] == "AWS::Scheduler::Schedule":
            found[f"{logical_id}/Target"] = props["Target"]["Arn"]
        elif spec["Type"] in {"AWS::Lambda::EventSourceMapping", "AWS::Lambda::Permission"}:
            found[logical_id] = props["FunctionName"]
    grants = template().resources["DriftScheduleRole"]["Properties"]["Policies"]
    for statement in (s for policy in grants for s in policy["PolicyDocument"]["Statement"]):
        if statement["Action"] == "lambda:InvokeFunction":
            found["DriftScheduleRole/invoke"] = statement["Resource"]
    return found


def test_snapstart_is_an_option_that_is_off_by_default() -> None:
    assert template().parameters["SnapStart"]["Default"] == "off"
    assert template().parameters["SnapStart"]["AllowedValues"] == ["off", "on"]


@pytest.mark.parametrize(("snapstart", "apply_on"), [("off", "None"), ("on", "PublishedVersions")])
def test_every_function_publishes_a_version_behind_live_and_snapshots_it_only_when_on(
    snapstart: str, apply_on: str
) -> None:
    # Given the template with the option off or on
    functions = {k: v for k, v in template().resources.items() if v["Type"] == "AWS::Lambda::Function"}
    aliases = {k: v for k, v in template().resources.items() if v["Type"] == "AWS::Lambda::Alias"}
    # Then every function has its alias `live` on a published version, and SnapStart as chosen
    assert set(functions) == FUNCTIONS
    assert {a["Properties"]["FunctionName"]["Ref"] for a in aliases.values() if a["Properties"]["Name"] == "live"} == (
        FUNCTIONS
    )
    for logical_id, function in functions.items():
        assert resolver(snapstart).resolve(function["Properties"]["SnapStart"]) == {"ApplyOn": apply_on}, logical_id
    # And a version replaced by a newer one is deleted with its snapshot, not kept (and billed)
    versions = [v for v in template().resources.values() if v["Type"] == "AWS::Lambda::Version"]
    assert len(versions) == len(FUNCTIONS) and all(v["DeletionPolicy"] == "Delete" for v in versions)


@pytest.mark.parametrize("snapstart", ["off", "on"])
def test_every_event_source_invokes_the_function_when_off_and_its_alias_when_on(snapstart: str) -> None:
    # Given every way the stack invokes a function
    found = invokers()
    assert len([k for k in found if k.endswith("Permission")]) == 7  # one per rule that targets a function
    assert len([k for k in found if "EventSourceMapping" in template().resources.get(k, {}).get("Type", "")]) == 2
    # When the template is resolved with the option off or on
    for where, value in found.items():
        resolved = resolver(snapstart).resolve(copy.deepcopy(value))
        # Then the target is the function itself (off) or its alias `live` (on), never anything else
        name = resolved.strip("<>").split(".")[0]
        if snapstart == "off":
            assert name in FUNCTIONS, where
        else:
            assert name.endswith("Aliaslive") and name.removesuffix("Aliaslive") in FUNCTIONS, where


@pytest.mark.parametrize(("snapstart", "qualifier"), [("off", "$LATEST"), ("on", "live")])
def test_asynchronous_retries_and_on_failure_destinations_apply_to_what_is_invoked(
    snapstart: str, qualifier: str
) -> None:
    configs = {k: v for k, v in template().resources.items() if v["Type"] == "AWS::Lambda::EventInvokeConfig"}
    assert len(configs) == 6
    for logical_id, config in configs.items():
        assert resolver(snapstart).resolve(config["Properties"]["Qualifier"]) == qualifier, logical_id
        assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["FunctionFailuresDlq", "Arn"]
        }


def _version_ids(layer_uri: str) -> dict[str, str]:
    """Function → the logical id of the version SAM publishes, with the layer's code at `layer_uri`."""
    from samtranslator.translator.transform import transform

    from closedloop_ops.local.template import _NoManagedPolicies

    sam = copy.deepcopy(template().sam)
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = layer_uri
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    cfn = transform(sam, {}, _NoManagedPolicies())
    return {
        spec["Properties"]["FunctionName"]["Ref"]: logical_id
        for logical_id, spec in cfn["Resources"].items()
        if spec["Type"] == "AWS::Lambda::Version"
    }


def test_a_new_layer_publishes_a_new_version_of_every_function() -> None:
    # Given the stack packaged with one build of the shared layer
    before = _version_ids("s3://artifacts/layer-1.zip")
    # When only the layer changes (the closedloop package: all of the domain code)
    after = _version_ids("s3://artifacts/layer-2.zip")
    # Then every function publishes a new version, so the alias never keeps running the old layer
    assert set(before) == set(after) == FUNCTIONS
    assert all(before[function] != after[function] for function in FUNCTIONS)
