"""The closed loop across accounts (`closedloop demo --accounts dev,staging,prod`), on one moto server.

dev trains and approves and runs the whole story; staging promotes every version live in dev by its
stage policy; prod deploys only what its allow-listed approver released; a rejection in prod rolls
prod back; an account no stack lists cannot promote anything; a prod prediction is traced back to
the dev pipeline execution and data, with every stage's decision.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from closedloop import lineage as keys
from closedloop_ops import approvals
from closedloop_ops.local.accounts_demo import AccountsDemo, run_accounts_demo, stage_ref
from closedloop_ops.local.estate import approver_role
from closedloop_ops.moto_ext import accounts as moto_accounts
from closedloop_ops.stackref import sts_credentials
from closedloop_ops.ui.identity import assume_role

pytestmark = pytest.mark.slow

STRANGER = "444444444444"


def serving_source_version(demo: AccountsDemo, stage: str, line: str = "loans") -> int:
    """The version (as trained) the stage's endpoint of `line` serves."""
    sm = demo.estate.loops[stage].client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=f"closedloop-{line}")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]}
    package = sm.describe_model_package(ModelPackageName=tags[keys.MODEL_PACKAGE])
    source = package.get("CustomerMetadataProperties", {}).get(keys.SOURCE_PACKAGE, tags[keys.MODEL_PACKAGE])
    return int(source.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def inspect(demo: AccountsDemo) -> None:
        seen["prod_before_rejection"] = serving_source_version(demo, "prod")
        seen["staging_serves"] = serving_source_version(demo, "staging")
        # A stage change forged by an account no stack lists: EventBridge refuses the delivery (bus policy)
        stranger = (
            demo.estate.loops["dev"]
            .client("sts")
            .assume_role(RoleArn=f"arn:aws:iam::{STRANGER}:role/Attacker", RoleSessionName="forge")["Credentials"]
        )
        import boto3

        events = boto3.client(
            "events", endpoint_url=demo.estate.endpoint_url, region_name="eu-west-1", **sts_credentials(stranger)
        )
        prod_bus = f"arn:aws:events:eu-west-1:{demo.estate.accounts['prod']}:event-bus/default"
        events.put_rule(Name="forge", EventPattern=json.dumps({"source": ["closedloop"]}))
        events.put_targets(Rule="forge", Targets=[{"Id": "prod", "Arn": prod_bus}])
        forged_source = f"arn:aws:sagemaker:eu-west-1:{demo.estate.accounts['dev']}:model-package/closedloop-loans/1"
        events.put_events(
            Entries=[
                {
                    "Source": "closedloop",
                    "DetailType": "Model Version Stage Change",
                    "Detail": json.dumps(
                        {
                            "line": "loans",
                            "stage": "staging",
                            "change": "live",
                            "model_package_arn": forged_source.replace(demo.estate.accounts["dev"], STRANGER),
                            "source_model_package_arn": forged_source,
                            "source_version": 1,
                        }
                    ),
                }
            ]
        )
        seen["refused_deliveries"] = [d for d in moto_accounts.refused_deliveries if d["sender"] == STRANGER]
        # And the same event handed to prod's route 8 directly (as if it got there): refused and recorded
        prod = demo.estate.loops["prod"]
        function = prod.stack.function_by_dir("promote_model")
        invocation = prod.dispatcher._invoke(
            function,
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Model Version Stage Change",
                "source": "closedloop",
                "account": STRANGER,
                "time": datetime.now(UTC).isoformat(),
                "region": "eu-west-1",
                "resources": [forged_source],
                "detail": {
                    "line": "loans",
                    "stage": "staging",
                    "change": "live",
                    "model_package_arn": forged_source.replace(demo.estate.accounts["dev"], STRANGER),
                    "source_model_package_arn": forged_source,
                    "source_version": 1,
                },
            },
            "a forged stage change",
            1,
        )
        seen["forged"] = invocation.result
        # A rejection in prod: with version 2 approved there too, rejecting the live version 3 rolls prod back to 2
        approver = assume_role(stage_ref(demo.estate, "prod"), approver_role("prod"), "prod-approver")
        approvals.approve(approver, "loans/2", "the previous version, kept ready to fall back to")
        demo.demo.settle()
        approvals.reject(approver, "loans/3", "prod incident INC-1: wrong answers for a segment")
        demo.demo.settle()
        seen["prod_after_rejection"] = serving_source_version(demo, "prod")
        seen["staging_after_prod_rejection"] = serving_source_version(demo, "staging")
        build = stage_ref(demo.estate, "dev")
        from closedloop.ledger import Ledger

        ledger = Ledger(build.output("LedgerTableName"), build.client("dynamodb"))
        seen["dev_ledger_prod"] = [
            (d.result, d.details.get("source_version"))
            for d in ledger.decisions_since(datetime(2020, 1, 1, tzinfo=UTC))
            if d.route == "stage-change" and d.action == "stage:prod"
        ]
        seen["status"] = __import__("closedloop_ops.status", fromlist=["stack_status"]).stack_status(build)

    report = run_accounts_demo(
        tmp_path_factory.mktemp("accounts-demo"), ["dev", "staging", "prod"], say=lambda _: None, inspect=inspect
    )
    return {"report": report, **seen}


def test_prod_deploys_a_version_only_after_its_approver_released_it(run: dict[str, Any]) -> None:
    prod = run["report"]["accounts"]["prod"]
    assert prod["account_id"] == "333333333333" and prod["endpoints_before_approval"] == []
    released = {(a["line"], a["version"]): a["at"] for a in prod["approvals"]}
    assert released and all(
        a["by"].startswith("arn:aws:sts::333333333333:assumed-role/ProdApprover/") for a in prod["approvals"]
    )
    for live in prod["live_after_approval"]:
        assert live["at"] > released[(live["line"], live["version"])]
    assert prod["model_versions_deployed"] == {"loans": [3], "churn": [1]}
    assert run["prod_before_rejection"] == 3


def test_staging_follows_every_version_live_in_dev_by_its_policy(run: dict[str, Any]) -> None:
    accounts = run["report"]["accounts"]
    assert accounts["dev"]["account_id"] == "123456789012" and accounts["staging"]["account_id"] == "222222222222"
    assert accounts["staging"]["model_versions_deployed"] == accounts["dev"]["model_versions_deployed"]
    assert {a["by"] for a in accounts["staging"]["approvals"]} == {"policy stage-promotion/1"}
    assert {a["by"] for a in accounts["dev"]["approvals"]} == {"policy approval-policy/1"}
    assert run["staging_serves"] == 3
    report = run["report"]
    assert report["events_in_dlq"] == 0 and report["handler_errors"] == []


def test_a_rejection_in_prod_rolls_prod_back_and_leaves_staging_alone(run: dict[str, Any]) -> None:
    assert run["prod_after_rejection"] == 2
    assert run["staging_after_prod_rejection"] == 3
    # and the build account's ledger saw prod's whole history of the line
    assert ("live", 3) in run["dev_ledger_prod"] and ("live", 2) in run["dev_ledger_prod"]


def test_an_account_no_stack_lists_cannot_promote(run: dict[str, Any]) -> None:
    assert run["refused_deliveries"], "the forged cross-account delivery was not refused"
    assert run["forged"]["result"] == "refused" and "not the stage this stack promotes from" in run["forged"]["reason"]


def test_a_prod_prediction_is_traced_back_across_the_accounts(run: dict[str, Any]) -> None:
    chain = run["report"]["accounts_lineage"]
    assert chain["model_version"]["arn"].split(":")[4] == "333333333333"
    assert chain["source_version"]["arn"].split(":")[4] == "123456789012"
    assert chain["approval_decision"]["by"].startswith("arn:aws:sts::333333333333:assumed-role/ProdApprover/")
    assert chain["source_approval_decision"]["decided_by"].startswith("policy ")
    stages = {(s["stage"], s["change"]) for s in chain["stages"]}
    assert {("staging", "promoted"), ("staging", "live"), ("prod", "promoted"), ("prod", "live")} <= stages
    assert chain["pipeline_execution"]["arn"].split(":")[4] == "123456789012"
    assert chain["pipeline_execution"]["status"] == "Succeeded"
    assert len(chain["raw_objects"]) == 3


def test_status_of_the_build_stack_shows_each_stage(run: dict[str, Any]) -> None:
    loans = next(g for g in run["status"].groups if g.line == "loans")
    assert loans.stages["staging"]["live"]["version"] == 3
    assert loans.stages["prod"]["live"]["version"] == 2  # after the rollback
