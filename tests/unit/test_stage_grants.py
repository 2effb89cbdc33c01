"""Every cross-account grant of the template names only the accounts its parameters list.

The stack that trains grants its stages (`StageAccountIds`) read access to each line's model
versions (the model group's resource policy) and model archives (the artifacts bucket policy),
and lets them put stage changes on its bus; a stage's stack lets only the stage before it
(`PromoteFromAccountId`) put events on its bus, and sends its own changes only to the next stage and
to the build account. With the defaults (one account) there is no cross-account grant at all.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.loop import ROOT
from closedloop_ops.local.template import Template, load_template

SELF, STAGING, PROD, DEV = "111122223333", "222222222222", "333333333333", "444455556666"
CROSS_ACCOUNT = (
    "StageEventsBusPolicy",
    "StageEventsRole",
    "PromoteToNextStageRule",
    "ReportToBuildAccountRule",
    "PromoteModelFunctionStageChanges",
)


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def resolved(**parameters: str) -> dict[str, Any]:
    """The template's resources (those whose condition holds) with `parameters`, resolved."""
    values = {name: spec.get("Default") for name, spec in template().parameters.items()}
    values.update(parameters)
    for name, spec in template().parameters.items():
        if str(spec.get("Type", "")).startswith("CommaDelimitedList") and isinstance(values[name], str):
            values[name] = [item.strip() for item in values[name].split(",") if item.strip()] or [""]
    resolver = Resolver(
        parameters=values,
        pseudo={"AWS::Region": "eu-west-1", "AWS::AccountId": SELF, "AWS::Partition": "aws", "AWS::StackName": "s"},
        mappings=template().cfn.get("Mappings", {}),
        conditions=template().cfn.get("Conditions", {}),
        ref=lambda logical_id: f"<{logical_id}>",
        get_att=lambda *args: f"<{'.'.join(args)}>",
    )
    return {
        logical_id: resolver.resolve(spec)
        for logical_id, spec in template().resources.items()
        if "Condition" not in spec or resolver.condition(spec["Condition"])
    }


def accounts_named(document: Any) -> set[str]:
    """Every 12-digit account id a resolved policy or ARN mentions (principals, resources)."""
    import re

    return set(re.findall(r"(?<!\d)\d{12}(?!\d)", json.dumps(document)))


def test_one_account_has_no_cross_account_grant() -> None:
    resources = resolved()
    assert [name for name in CROSS_ACCOUNT if name in resources] == []
    groups = [r for r in resources.values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup"]
    assert groups and all("ModelPackageGroupPolicy" not in g["Properties"] for g in groups)
    for policy in ("ArtifactsBucketPolicy", "DataBucketPolicy"):
        assert accounts_named(resources[policy]["Properties"]["PolicyDocument"]) == set()


def test_the_stack_that_trains_grants_its_stages_only() -> None:
    # Given the build stack of a dev → staging → prod estate
    resources = resolved(StageAccountIds=f"{STAGING},{PROD}", PromoteToAccountId=STAGING)
    # Then each line's model group is readable by the stage accounts only, and read only
    for group in (r for r in resources.values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup"):
        (statement,) = group["Properties"]["ModelPackageGroupPolicy"]["Statement"]
        assert statement["Principal"] == {"AWS": [STAGING, PROD]}
        assert statement["Action"] == ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"]
        assert accounts_named(statement["Resource"]) == {SELF}
    # And the model archives (only under pipelines/) likewise
    statements = resources["ArtifactsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (grant,) = [s for s in statements if s.get("Sid") == "StageAccountsReadModelArchives"]
    assert grant["Principal"] == {"AWS": [STAGING, PROD]} and grant["Action"] == "s3:GetObject"
    assert grant["Resource"].endswith("/pipelines/*")
    # And of the data bucket, the run's manifest and PII report only (the approver's evidence), never data
    statements = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (evidence,) = [s for s in statements if s.get("Sid") == "StageAccountsReadRunEvidence"]
    assert evidence["Principal"] == {"AWS": [STAGING, PROD]} and evidence["Action"] == "s3:GetObject"
    assert [r.rsplit("/", 1)[1] for r in evidence["Resource"]] == ["manifest.json", "pii_report.json"]
    # And only they may put events on its bus, and route 8's rule takes them from them only
    bus = resources["StageEventsBusPolicy"]["Properties"]["Statement"]
    assert bus["Principal"] == {"AWS": [STAGING, PROD]} and bus["Action"] == "events:PutEvents"
    pattern = resources["PromoteModelFunctionStageChanges"]["Properties"]["EventPattern"]
    assert pattern["account"] == [STAGING, PROD]
    # And it sends its live versions to the next stage's bus only
    (target,) = resources["PromoteToNextStageRule"]["Properties"]["Targets"]
    assert accounts_named(target["Arn"]) == {STAGING}
    role = resources["StageEventsRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert accounts_named(role["Resource"]) == {STAGING}
    assert "ReportToBuildAccountRule" not in resources


@pytest.mark.parametrize("next_stage", [PROD, ""])
def test_a_stage_takes_events_from_the_stage_before_only_and_reports_to_the_build_account(next_stage: str) -> None:
    # Given staging (promoting onwards to prod) or prod (the last stage)
    resources = resolved(
        BuildAccountId=DEV,
        BuildArtifactsBucket="closedloop-dev-artifacts",
        PromoteFromAccountId=DEV if next_stage else STAGING,
        PromoteToAccountId=next_stage,
        Stage="staging" if next_stage else "prod",
    )
    before = DEV if next_stage else STAGING
    # Then its bus admits the stage before only, and route 8 takes changes from it only
    assert resources["StageEventsBusPolicy"]["Properties"]["Statement"]["Principal"] == {"AWS": [before]}
    assert resources["PromoteModelFunctionStageChanges"]["Properties"]["EventPattern"]["account"] == [before]
    # And it grants nobody its own model versions or archives
    groups = [r for r in resources.values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup"]
    assert all("ModelPackageGroupPolicy" not in g["Properties"] for g in groups)
    assert accounts_named(resources["ArtifactsBucketPolicy"]["Properties"]["PolicyDocument"]) == set()
    # And its changes go to the build account and (when there is one) the next stage, nowhere else
    (report,) = resources["ReportToBuildAccountRule"]["Properties"]["Targets"]
    assert accounts_named(report["Arn"]) == {DEV}
    role = resources["StageEventsRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert accounts_named(role["Resource"]) == {DEV, *([next_stage] if next_stage else [])}
    assert ("PromoteToNextStageRule" in resources) is bool(next_stage)
    # And its endpoints may read the build account's model archives, under pipelines/ only
    model_role = resources["ModelExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert "arn:aws:s3:::closedloop-dev-artifacts/pipelines/*" in model_role["Resource"]
    # And route 4 accepts auto approvals from route 8's role (the stage policy), not the gate's
    deploy = resources["DeployModelFunction"]["Properties"]["Environment"]["Variables"]
    assert deploy["APPROVAL_GATE_ROLE_ARN"] == "<PromoteModelFunctionRole.Arn>"
