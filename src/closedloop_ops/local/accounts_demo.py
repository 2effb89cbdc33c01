"""`closedloop demo --accounts dev,staging,prod`: the closed loop across accounts, on one moto server.

The first stage trains and approves and runs the whole story of `closedloop demo` (its drift and its
retraining included); every version that goes live there is promoted, by route 8, into each later
stage in turn — released by policy in the middle stages, by an allow-listed approver in the last.
The demo then plays that approver: it approves, with the approver role's own session, the newest
version waiting there, and prod deploys it. A prediction on prod is traced back across the account
boundary to the data and code it came from. `report.json` gains `accounts`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from closedloop_ops.local.demo import DEMO_PARAMETERS, DRIFTED_LINE, Demo, DemoFailed, Scenario, summary
from closedloop_ops.local.estate import LocalEstate, approver_role
from closedloop_ops.local.report import write_report
from closedloop_ops.stackref import StackRef

APPROVAL_REASON = "stage evidence reviewed: live and baked in staging"


def stage_ref(estate: LocalEstate, stage: str, credentials: dict[str, str] | None = None) -> StackRef:
    loop = estate.loops[stage]
    return StackRef(
        name=loop.stack.stack_name,
        region=loop.stack.region,
        outputs=loop.stack.outputs,
        endpoint_url=loop.stack.endpoint_url,
        credentials=credentials if credentials is not None else (loop.stack.credentials or _local()),
        local=True,
    )


def _local() -> dict[str, str]:
    return {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def build_decisions(build: StackRef, since: datetime) -> list[Any]:
    """The build account's ledger since `since`: its own decisions and route 8's records of the other stages."""
    from closedloop.ledger import Ledger

    return Ledger(build.output("LedgerTableName"), build.client("dynamodb")).decisions_since(since)


def _line_of(arn: str) -> str:
    group = arn.split(":model-package/", 1)[-1].rsplit("/", 1)[0]
    return group.rsplit("-", 1)[-1]


class AccountsDemo:
    """The story of `Demo` in the first stage, then the last stage's approver, and the trace across accounts."""

    def __init__(self, estate: LocalEstate, demo: Demo, say: Callable[[str], None]) -> None:
        self.estate, self.demo, self.say = estate, demo, say
        self.stages = list(estate.loops)
        self.last = self.stages[-1]
        self.approvals: list[dict[str, Any]] = []
        self.served_before_approval: dict[str, list[str]] = {}
        self.trace: dict[str, Any] = {}

    def waiting(self) -> dict[str, int]:
        """The newest version of each line waiting for the last stage's approver (as trained: its number)."""
        from closedloop import lineage as keys

        sm = self.estate.loops[self.last].client("sagemaker")
        newest: dict[str, int] = {}
        for owned in self.demo.lines:
            summaries = sm.list_model_packages(
                ModelPackageGroupName=owned.model_package_group, ModelApprovalStatus="PendingManualApproval"
            )["ModelPackageSummaryList"]
            for listed in summaries:
                described = sm.describe_model_package(ModelPackageName=listed["ModelPackageArn"])
                source = (described.get("CustomerMetadataProperties") or {}).get(keys.SOURCE_PACKAGE, "")
                if source:
                    newest[owned.line] = max(newest.get(owned.line, 0), int(source.rsplit("/", 1)[1]))
        return newest

    def endpoints_in(self, stage: str) -> list[str]:
        sm = self.estate.loops[stage].client("sagemaker")
        return sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"])

    def approve_last_stage(self) -> None:
        """Approve the newest waiting version of each line as the last stage's allow-listed approver.

        Raises:
            DemoFailed: nothing waits there (the promotions above say why).
        """
        from closedloop_ops import approvals
        from closedloop_ops.ui.identity import assume_role

        waiting = self.waiting()
        if not waiting:
            raise DemoFailed(f"no version waits for an approver in {self.last}: see the stage changes above")
        self.served_before_approval = {self.last: self.endpoints_in(self.last)}
        approver = assume_role(stage_ref(self.estate, self.last), approver_role(self.last), "prod-approver")
        for line, version in sorted(waiting.items()):
            result = approvals.approve(approver, f"{line}/{version}", APPROVAL_REASON)
            at = datetime.now(UTC)
            self.approvals.append(
                {"line": line, "version": version, "by": result.by, "at": at.isoformat(), "stage": self.last}
            )
            self.demo.note("approval", f"{self.last}: {line} version {version} approved by {result.by}", "approved")
        self.demo.settle()

    def prod_traffic(self) -> str:
        """A few predictions on the last stage's endpoint of the drifted line; the last one's inference id."""
        from closedloop_ops import synthetic

        loop = self.estate.loops[self.last]
        owned = self.demo.owned(DRIFTED_LINE)
        sm = loop.client("sagemaker")
        endpoint = sm.describe_endpoint(EndpointName=owned.endpoint_name)
        config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]}
        # the stage's copy keeps the source version's baseline (in the build account's bucket)
        baseline = self.demo.baseline(tags["closedloop:model-package"], loop)
        rows = list(synthetic.DATASETS[DRIFTED_LINE].generate(30, seed=606))
        client = loop.client("sagemaker-runtime")
        inference_id = ""
        for start in range(0, len(rows), 10):
            inference_id = f"demo-{self.last}-{DRIFTED_LINE}-{uuid.uuid4().hex[:12]}"
            client.invoke_endpoint(
                EndpointName=owned.endpoint_name,
                ContentType="text/csv",
                Accept="text/csv",
                Body=self.demo.request_rows(baseline, rows[start : start + 10]).encode(),
                InferenceId=inference_id,
            )
        written = self.demo.hosting.flush()
        self.demo.note(
            "traffic", f"{len(rows)} requests scored by {self.last}'s {owned.endpoint_name}", f"{written} captured"
        )
        return inference_id

    def trace_across(self, inference_id: str) -> dict[str, Any]:
        from closedloop_ops.lineage import trace

        chain = trace(
            stage_ref(self.estate, self.last),
            inference_id=inference_id,
            build_stack=stage_ref(self.estate, self.stages[0]),
        )
        source = chain.get("source_version") or {}
        self.demo.note(
            "lineage",
            f"{self.last} prediction {inference_id} traced",
            f"{self.last} copy {chain['model_version']['version']} ← trained as version {source.get('version')} by "
            f"execution {str((chain.get('pipeline_execution') or {}).get('arn', '')).rsplit('/', 1)[-1]} ← "
            f"{len(chain.get('raw_objects', []))} raw object versions",
        )
        return chain

    def accounts_report(self, since: datetime, dev_deployed: dict[str, list[int]]) -> dict[str, Any]:
        """`accounts`: per stage its account, the versions that went live there (as trained), and who released them."""
        from closedloop.promotion.service import is_stage_record, stage_action

        build = stage_ref(self.estate, self.stages[0])
        decisions = build_decisions(build, since)
        records = [d for d in decisions if is_stage_record(d)]
        report: dict[str, Any] = {}
        gate = [
            d
            for d in decisions
            if d.route == "pipeline-finished" and d.action == "approval_gate" and d.result == "approved"
        ]
        report[self.stages[0]] = {
            "account_id": self.estate.accounts[self.stages[0]],
            "model_versions_deployed": dev_deployed,
            "approvals": [
                {
                    "line": _line_of(d.business_key),
                    "version": int(d.business_key.rsplit("/", 1)[1]),
                    "by": f"policy {d.details.get('policy_version')}",
                    "at": d.at.isoformat(),
                }
                for d in gate
                if d.business_key.startswith("arn:")
            ],
        }
        for stage in self.stages[1:]:
            mine = [r for r in records if r.action == stage_action(stage)]
            deployed: dict[str, list[int]] = {}
            for record in mine:
                if record.result == "live":
                    deployed.setdefault(_line_of(record.business_key), []).append(int(record.details["source_version"]))
            released = [
                {
                    "line": _line_of(r.business_key),
                    "version": int(r.details["source_version"]),
                    "by": "policy stage-promotion/1",
                    "at": r.at.isoformat(),
                }
                for r in mine
                if r.result == "promoted" and r.details.get("status") == "Approved"
            ]
            if stage == self.last:
                released = [{k: a[k] for k in ("line", "version", "by", "at")} for a in self.approvals]
            report[stage] = {
                "account_id": self.estate.accounts[stage],
                "model_versions_deployed": deployed,
                "approvals": released,
                "live_after_approval": [
                    {
                        "line": _line_of(r.business_key),
                        "version": int(r.details["source_version"]),
                        "at": r.at.isoformat(),
                    }
                    for r in mine
                    if r.result == "live"
                ],
            }
        report[self.last]["endpoints_before_approval"] = self.served_before_approval.get(self.last, [])
        return report


def run_accounts_demo(
    out_dir: Path,
    stages: list[str],
    say: Callable[[str], None] = print,
    scenario: Scenario | None = None,
    inspect: Callable[[AccountsDemo], None] | None = None,
    keep: Callable[[AccountsDemo], None] | None = None,
) -> dict[str, Any]:
    """Run the closed loop across `stages`' accounts once; write the report under `out_dir`; return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    since = datetime.now(UTC) - timedelta(minutes=1)
    with (
        LocalEstate.start(stages, parameters=dict(DEMO_PARAMETERS)) as estate,
        (out_dir / "handler-logs.jsonl").open("w", encoding="utf-8") as handler_logs,
    ):
        for loop in estate.loops.values():
            loop.dispatcher.log_stream = handler_logs
        demo = Demo(loop=estate.build, out_dir=out_dir, say=say, scenario=scenario or Scenario())
        demo.settle_all = estate.settle
        demo.setup()
        for loop in list(estate.loops.values())[1:]:
            loop.dispatcher.on_invocation = demo.echo_decisions
        accounts = AccountsDemo(estate, demo, say)
        demo.note(
            "local loop",
            f"moto on {estate.endpoint_url}",
            ", ".join(f"{stage} in account {account}" for stage, account in estate.accounts.items()),
        )
        try:
            demo.story()
            accounts.approve_last_stage()
            accounts.trace = accounts.trace_across(accounts.prod_traffic())
        except DemoFailed as failure:
            say(f"the closed loop stopped: {failure}")
            report = {**demo.report(), "failure": str(failure)}
        else:
            report = demo.report()
        deployed = {line: facts["model_versions_deployed"] for line, facts in report.get("model_lines", {}).items()}
        report["accounts"] = accounts.accounts_report(since, deployed)
        report["accounts_lineage"] = accounts.trace
        report["handler_errors"] = [
            {"stage": stage, "function": i.function, "error": i.error}
            for stage, loop in estate.loops.items()
            for i in loop.dispatcher.invocations
            if i.error
        ]
        drifted = next((owned for owned in demo.lines if owned.line == DRIFTED_LINE), None)
        paths = write_report(
            report,
            out_dir,
            cloudwatch=estate.build.client("cloudwatch"),
            drift_endpoint=drifted.endpoint_name if drifted else None,
        )
        say(summary(report))
        say(accounts_summary(report))
        say(f"report: {paths['json']} and {paths['markdown']}; handler logs: {out_dir / 'handler-logs.jsonl'}")
        if inspect is not None:
            inspect(accounts)
        if keep is not None:
            keep(accounts)
        demo.teardown()
    return report


def accounts_summary(report: dict[str, Any]) -> str:
    rows = [""]
    for stage, facts in (report.get("accounts") or {}).items():
        released = "; ".join(f"{a['line']}/{a['version']} by {a['by']}" for a in facts.get("approvals", [])[-3:])
        rows.append(
            f"{stage} (account {facts['account_id']}): versions live {facts['model_versions_deployed']}; "
            f"released: {released or 'none'}"
        )
    return "\n".join(rows)
