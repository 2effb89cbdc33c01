"""The command line and the operator notebook against a local loop that has run the demo scenario.

One demo run serves the module (`closedloop demo --keep`): two model lines, loans and churn, each
uploaded, trained, approved and rolled out to its own endpoint; the loans traffic drifts → retraining by
the drift alarm → redeployment (loans version 2) → the drifted world's labelled data arrives → training
on it → redeployment (loans version 3, live at the end; churn version 1), the loop left up. A version is
named `loans/3`: with two lines a bare number is ambiguous.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from closedloop.ledger import Ledger
from closedloop_ops.local.demo import Demo
from support.cli import ROOT, code_cells, kept_demo, local_args, register_copy, run
from support.events import ROUTES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    lines: list[str] = []
    with kept_demo(tmp_path_factory.mktemp("demo"), lines) as kept:
        yield kept


@pytest.fixture
def local(demo: Demo, tmp_path: Path) -> list[str]:
    return local_args(demo.loop, tmp_path / "state.json")


def ledger(demo: Demo) -> Ledger:
    return Ledger(demo.loop.output("LedgerTableName"), demo.loop.client("dynamodb"))


def package_arn(demo: Demo, version: int, line: str = "loans") -> str:
    group = demo.owned(line).model_package_group
    return f"arn:aws:sagemaker:{demo.loop.stack.region}:123456789012:model-package/{group}/{version}"


def status_of(demo: Demo, version: int, line: str = "loans") -> dict[str, Any]:
    described: dict[str, Any] = demo.loop.client("sagemaker").describe_model_package(
        ModelPackageName=package_arn(demo, version, line)
    )
    return described


# -- status ----------------------------------------------------------------------------------------


def test_status_shows_what_the_loop_did(demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # When the operator asks where the loop stands after the demo
    code, out, _ = run(["status", *local, "--json"], capsys)
    report = json.loads(out)
    # Then each line is listed, in the stack's order, with its own model group and endpoint
    assert code == 0 and report["approval_mode"] == "auto" and report["local"] is True
    assert [(g["line"], g["model_group"], g["endpoint"]) for g in report["groups"]] == [
        ("loans", "closedloop-loans", "closedloop-loans"),
        ("churn", "closedloop-churn", "closedloop-churn"),
    ]
    group, churn = report["groups"]
    # And loans version 3 is live, trained on the drifted world's labelled upload after the alarm's
    # retraining, and nothing is stuck
    assert group["endpoint_status"] == "InService"
    assert group["live"]["version"] == 3 and group["live"]["serving_version"] == 3
    assert group["live"]["endpoint_config"].startswith("closedloop-loans-v3-")
    assert group["rollout"] is None and group["last_outcome"]["outcome"] == "live"
    retraining = group["last_retraining"]
    assert retraining["status"] == "Succeeded" and retraining["trigger"] == "upload"
    assert group["lock"] is None  # released when the execution finished
    assert group["cooldown"]["active"] is True and group["cooldown"]["reason"].startswith("closedloop-loans-drift-")
    assert group["versions"]["Approved"] >= 3
    assert group["drift_alarms"] == {
        "closedloop-loans-drift-features": "ALARM",
        "closedloop-loans-drift-predictions": "ALARM",
        "closedloop-loans-drift-bias": "OK",
        "closedloop-loans-drift-attributions": "OK",
    }
    # And churn still serves its first version, trained on its upload, never retrained nor cooling down
    assert churn["live"]["version"] == 1 and churn["endpoint_status"] == "InService"
    assert churn["last_retraining"]["trigger"] == "upload" and churn["cooldown"] is None
    assert churn["versions"] == {"Approved": 1} and set(churn["drift_alarms"].values()) == {"OK"}
    assert {q["queue"]: q["messages"] for q in report["dead_letter_queues"]} == {
        "DataArrivalDlq": 0,
        "DeployModelDlq": 0,
        "DriftScheduleDlq": 0,
        "EventsDlq": 0,
        "FunctionFailuresDlq": 0,
    }
    # And the text says the same for a person
    code, text, _ = run(["status", *local], capsys)
    assert code == 0
    loans, rest = text.split("model line loans: model group closedloop-loans (", 1)[1].split("model line churn", 1)
    assert "live            version 3 on closedloop-loans (InService" in loans
    assert "last training" in loans and "trigger upload: " in loans
    assert "retrain lock    free" in loans and "cooldown        until" in loans
    assert (
        "drift alarms    features ALARM, predictions ALARM, bias OK, attributions OK (closedloop-loans-drift-*)"
        in loans
    )
    assert "live            version 1 on closedloop-churn (InService" in rest
    assert "cooldown        none: an alarm may start a retraining" in rest
    assert "dead-letter queues: all empty" in rest


def test_status_of_one_line(demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # When the status of the churn line alone is asked
    code, out, _ = run(["status", *local, "--line", "churn", "--json"], capsys)
    # Then only that line is listed (the stack's DLQs still are)
    assert code == 0 and [g["line"] for g in json.loads(out)["groups"]] == ["churn"]
    assert len(json.loads(out)["dead_letter_queues"]) == 5
    code, text, _ = run(["status", *local, "--line", "churn"], capsys)
    assert "model line churn: model group closedloop-churn (1 approved)" in text and "model line loans" not in text
    # And a line the stack does not serve is a one-line error naming those it does
    code, out, err = run(["status", *local, "--line", "payroll"], capsys)
    assert (code, out) == (2, "")
    assert err == "closedloop: no model line 'payroll' in stack closedloop-demo (it serves loans, churn)\n"


def test_status_lists_a_version_waiting_for_an_approver(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a registered version nobody decided yet
    version = register_copy(demo.loop, 3)
    # When the status is asked
    code, out, _ = run(["status", *local, "--json"], capsys)
    # Then it is listed as pending
    pending = json.loads(out)["groups"][0]["pending_approvals"]
    assert code == 0 and version in [p["version"] for p in pending]
    code, text, _ = run(["status", *local], capsys)
    assert f"version {version} registered" in text


# -- lineage ---------------------------------------------------------------------------------------


def test_lineage_of_a_prediction_in_every_format(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    inference_id = demo.inference_ids[-1]  # scored by version 3, trained on the drifted world's labels
    # When the prediction is traced as JSON
    code, out, _ = run(["lineage", "--inference-id", inference_id, *local, "--format", "json"], capsys)
    chain = json.loads(out)
    # Then the chain reaches from the inference to the raw data and the code
    assert code == 0
    assert chain["inference"]["inference_id"] == inference_id
    assert chain["endpoint_config"]["name"].startswith("closedloop-loans-v3-")
    assert chain["model_version"]["version"] == 3
    assert chain["approval_decision"]["decided_by"] == "policy approval-policy/1 (auto mode)"
    assert chain["approval_decision"]["rollout_verdict"]["result"] == "deploying"
    assert chain["pipeline_execution"]["trigger"] == "upload"
    assert chain["prepared_data"]["rows"] == 3000
    assert len(chain["raw_objects"]) == 3 and all(o["version_id"] for o in chain["raw_objects"])
    assert len(chain["code_version"]["preparation_script_sha256"]) == 64
    # And as text, one link per line, from the prediction back
    code, text, _ = run(["lineage", "--inference-id", inference_id, *local], capsys)
    links = [line for line in text.splitlines() if line.startswith("←")]
    assert code == 0 and text.startswith(f"inference {inference_id} at ")
    assert [link.split()[1] for link in links] == [
        "endpoint",
        "model",
        "approval:",
        "pipeline",
        "prepared",
        "raw",
        "code",
    ]
    # And as a Graphviz graph
    code, dot, _ = run(["lineage", "--inference-id", inference_id, *local, "--format", "dot"], capsys)
    assert code == 0 and dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    for edge in ("inference -> config;", "config -> model;", "model -> approval;", "execution -> prepared;"):
        assert edge in dot
    assert dot.count("prepared -> raw") == 3


def test_lineage_of_the_endpoint_and_of_a_version(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # When the endpoint is traced
    code, out, _ = run(["lineage", "--endpoint", "closedloop-loans", *local, "--format", "json"], capsys)
    # Then it leads to the version it serves
    assert code == 0 and json.loads(out)["model_version"]["version"] == 3
    # When the first version of loans is traced
    code, out, _ = run(["lineage", "--model-version", "loans/1", *local, "--format", "json"], capsys)
    chain = json.loads(out)
    # Then it was trained on the upload, approved by the policy and went live
    assert code == 0
    assert chain["pipeline_execution"]["trigger"] == "upload"
    assert chain["approval_decision"]["policy_version"] == "approval-policy/1"
    assert chain["deployment"]["outcome"] == "live"
    # And the churn endpoint leads to churn's only version, trained on its own upload
    code, out, _ = run(["lineage", "--endpoint", "closedloop-churn", *local, "--format", "json"], capsys)
    chain = json.loads(out)
    assert code == 0 and chain["model_version"]["group"] == "closedloop-churn"
    assert chain["model_version"]["version"] == 1 and chain["pipeline_execution"]["trigger"] == "upload"
    assert chain["prepared_data"]["dataset"] == "churn"
    assert {o["key"].split("/")[1] for o in chain["raw_objects"]} == {"churn"}


def test_unknown_starting_points_are_one_line_errors(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        ("lineage", "--model-version", "loans/99"): "no model version loans/99 in closedloop-loans (the newest is",
        ("lineage", "--model-version", "latest"): "model version 'latest': expected a version number",
        ("lineage", "--model-version", "2"): (
            "model version 2: stack closedloop-demo serves the model lines loans, churn; name the line, e.g. loans/2"
        ),
        ("lineage", "--endpoint", "nope-endpoint"): "no endpoint 'nope-endpoint' in stack closedloop-demo",
        ("lineage",): "stack closedloop-demo has an endpoint per model line (closedloop-loans, closedloop-churn)",
        ("lineage", "--inference-id", "no-such-id"): "no captured inference with id 'no-such-id'",
        ("approve", "churn/99", "--reason", "r", "--yes"): "no model version churn/99 in closedloop-churn",
        ("approve", "1", "--reason", "r", "--yes"): "model version 1: stack closedloop-demo serves the model lines",
        ("reject", "loans/99", "--reason", "r", "--yes"): "no model version loans/99 in closedloop-loans",
        ("dlq", "show", "NoSuchDlq"): "no dead-letter queue 'NoSuchDlq': choose one of",
    }
    for args, message in cases.items():
        code, out, err = run([*args, *local], capsys)
        assert (code, out) == (2, ""), args
        assert err.startswith(f"closedloop: {message}"), (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- approve / reject ------------------------------------------------------------------------------


def test_approve_and_reject_refuse_versions_in_the_wrong_state(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # An approved version cannot be approved again
    code, _, err = run(["approve", "loans/2", "--reason", "again", "--yes", *local], capsys)
    assert code == 2
    assert err.strip() == (
        "closedloop: closedloop-loans/2 is Approved, not PendingManualApproval: "
        "only a pending version can be approved (it already is)"
    )
    # A rejected version can be neither approved nor rejected again
    version = register_copy(demo.loop, 3)
    code, _, _ = run(["reject", f"loans/{version}", "--reason", "duplicate registration", "--yes", *local], capsys)
    assert code == 0
    for action in ("approve", "reject"):
        code, _, err = run([action, f"closedloop-loans/{version}", "--reason", "r", "--yes", *local], capsys)
        assert code == 2 and f"closedloop-loans/{version} is Rejected" in err
        assert len(err.strip().splitlines()) == 1
    # And the reason is mandatory, and must say something
    code, _, err = run(["reject", "loans/2", "--reason", "   ", "--yes", *local], capsys)
    assert code == 2 and "--reason must say why" in err
    code, _, err = run(["approve", "loans/2", *local], capsys)
    assert code == 2 and err.strip() == (
        'closedloop: approve needs --reason "…": why, recorded in the registry next to who decided'
    )


def test_the_evidence_is_shown_and_nothing_changes_unless_confirmed(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the officer considers rejecting version 1 (approved by the gate, since replaced)
    # When they answer "n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, err = run(["reject", "loans/1", "--reason", "superseded by version 2", *local], capsys)
    # Then they saw the evidence, the gate's decision, and were asked
    assert code == 1
    assert out.startswith("model version closedloop-loans/1: Approved (registered ")
    for line in (
        "  evaluation   auc ",
        "  bias         group=B: DI ",
        "               from the Clarify post-training report",
        "  attributions top 5 of 10 features by mean |SHAP| (Clarify)",
        "  PII report   clean, 0 file(s) with undeclared PII quarantined",
        "  gate         approved by approval-policy/1 (auto mode, policy said approve) at ",
        "  policy now   approval-policy/1 says ",
        "  changed by   arn:aws:sts::123456789012:assumed-role/closedloop-demo-ApprovalGateFunctionRole-",
    ):
        assert line in out, line
    assert "Reject closedloop-loans/1 as arn:aws:sts::123456789012:user/moto? [y/N]" in err
    assert "not confirmed: nothing was changed" in err
    assert status_of(demo, 1)["ModelApprovalStatus"] == "Approved"
    # When they answer "y"
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, _ = run(["reject", "loans/1", "--reason", "superseded by version 2", *local], capsys)
    # Then the registry says who rejected it and why
    described = status_of(demo, 1)
    assert code == 0 and described["ModelApprovalStatus"] == "Rejected"
    assert described["ApprovalDescription"].startswith("Rejected by arn:aws:sts::123456789012:user/moto at ")
    assert described["ApprovalDescription"].endswith(" via closedloop: superseded by version 2")
    assert described["LastModifiedBy"]["IamIdentity"]["Arn"] == "arn:aws:sts::123456789012:user/moto"
    assert "rejected closedloop-loans/1 (was Approved)" in out
    # And the rollout route saw it: a version that is not live is only recorded, version 3 keeps serving
    demo.settle()
    verdicts = [d for d in ledger(demo).decisions_for(package_arn(demo, 1)) if d.route == "model-approval"]
    assert verdicts and verdicts[-1].action in {"rollback", "verify_approver"}
    assert json.loads(run(["status", *local, "--json"], capsys)[1])["groups"][0]["live"]["version"] == 3


def test_a_person_s_approval_in_auto_mode_is_refused_by_the_rollout(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a pending version in a stack whose gate approves by policy
    version = register_copy(demo.loop, 3)
    # When a person approves it
    code, out, _ = run(
        ["approve", f"loans/{version}", "--reason", "looks fine to me", "--yes", *local, "--json"], capsys
    )
    payload = json.loads(out)
    # Then the flip is made, with the warning that it will not deploy
    assert code == 0 and payload["result"]["status"] == "Approved"
    assert payload["warnings"][0].startswith("the stack is in auto approval mode")
    assert payload["evidence"]["quality"]["auc"] > 0.5 and payload["evidence"]["pii_clean"] is True
    # And the rollout route refuses it: nothing new is deployed
    demo.settle()
    verdicts = [d for d in ledger(demo).decisions_for(package_arn(demo, version)) if d.route == "model-approval"]
    assert [(d.action, d.result) for d in verdicts] == [("verify_approver", "refused")]
    assert json.loads(run(["status", *local, "--json"], capsys)[1])["groups"][0]["live"]["version"] == 3


# -- audit and dead letters ------------------------------------------------------------------------


def test_the_audit_covers_every_route(demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    today = datetime.now(UTC).date().isoformat()
    code, out, _ = run(["audit", "--since", today, *local, "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {row["route"] for row in rows} >= ROUTES
    assert all(json.loads(row["details"]) is not None for row in rows)
    started = [r for r in rows if r["route"] == "alarm" and r["result"] == "started"]
    assert len(started) == 1 and started[0]["business_key"].startswith("alarm:closedloop-loans-drift-")
    # both lines' drift monitors ran, three times each (like traffic, drifted traffic, after the last rollout)
    drift = [r for r in rows if r["route"] == "drift-monitor"]
    measured = [r["business_key"] for r in drift if r["action"] == "measure_drift" and r["result"] == "published"]
    assert sorted(measured) == ["drift:closedloop-churn"] * 3 + ["drift:closedloop-loans"] * 3
    # and each run explained its window with a Clarify job, read by the next run: churn's two published,
    # loans' drifted window measured after its version was replaced (recorded, not published)
    jobs = [r["business_key"] for r in drift if r["action"] == "start_attribution_job" and r["result"] == "started"]
    assert sorted(jobs) == sorted(measured)
    read = sorted((r["business_key"], r["result"]) for r in drift if r["action"] == "measure_attribution_drift")
    assert read == [
        ("drift:closedloop-churn", "published"),
        ("drift:closedloop-churn", "published"),
        ("drift:closedloop-loans", "not-published"),
        ("drift:closedloop-loans", "published"),
    ]
    code, out, _ = run(["audit", "--since", "2999-01-01", *local], capsys)
    assert code == 0 and out.strip() == "no automated decisions since 2999-01-01"


def test_a_redriven_lambda_failure_that_was_handled_meanwhile_is_a_no_op(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    loop = demo.loop
    # Given the first pipeline's Succeeded event, already handled by the approval gate...
    finished = next(
        event
        for event in loop.emitter.published
        if event["detail-type"] == "SageMaker Model Building Pipeline Execution Status Change"
        and event["detail"]["currentPipelineExecutionStatus"] == "Succeeded"
    )
    gate = loop.stack.functions["ApprovalGateFunction"]
    # ...that also ended in the on-failure destination during an outage (Lambda's record format)
    record = {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{gate.arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": finished,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "ThrottledError", "errorMessage": "Rate exceeded"},
    }
    dlq = loop.output("FunctionFailuresDlqUrl")
    loop.client("sqs").send_message(QueueUrl=dlq, MessageBody=json.dumps(record))
    decisions_before = len(ledger(demo).decisions_since(datetime(2000, 1, 1, tzinfo=UTC)))
    invocations_before = len(loop.dispatcher.invocations)
    # When the operator looks at it
    code, out, _ = run(["dlq", "show", "FunctionFailuresDlq", *local, "--json"], capsys)
    (letter,) = json.loads(out)
    assert code == 0 and letter["kind"] == "lambda-destination"
    assert letter["reason"] == "ThrottledError: Rate exceeded (RetriesExhausted, 3 attempts)"
    assert letter["detail_type"] == "SageMaker Model Building Pipeline Execution Status Change"
    # And redrives it
    code, out, _ = run(["dlq", "redrive", "FunctionFailuresDlq", *local, "--yes"], capsys)
    assert code == 0 and out.strip() == "redriven 1 message(s) from FunctionFailuresDlq"
    demo.settle()
    # Then the gate ran again and decided nothing new: the version is as it was, the queue is empty
    redriven = loop.dispatcher.invocations[invocations_before:]
    assert [(i.function, i.error) for i in redriven] == [("ApprovalGateFunction", None)]
    assert len(ledger(demo).decisions_since(datetime(2000, 1, 1, tzinfo=UTC))) == decisions_before
    code, out, _ = run(["dlq", "list", *local, "--json"], capsys)
    assert {d["queue"]: d["messages"] + d["in_flight"] for d in json.loads(out)}["FunctionFailuresDlq"] == 0


def test_a_redriven_approval_that_was_deployed_meanwhile_is_a_no_op(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    loop = demo.loop
    # Given the approval of version 2 (deployed long since) in DeployModelDlq, as route 4 leaves one
    approved = next(
        event
        for event in loop.emitter.published
        if event["detail-type"] == "SageMaker Model Package State Change"
        and event["detail"]["ModelPackageVersion"] == 2
        and event["detail"]["ModelApprovalStatus"] == "Approved"
    )
    loop.client("sqs").send_message(
        QueueUrl=loop.output("DeployModelDlqUrl"),
        MessageBody=json.dumps(approved),
        MessageAttributes={
            "closedloop-error": {"DataType": "String", "StringValue": "EndpointBusy"},
            "closedloop-reason": {"DataType": "String", "StringValue": "the endpoint stayed Updating for 60 receives"},
        },
    )
    before = ledger(demo).decisions_for(package_arn(demo, 2))
    configs_before = loop.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]
    invocations_before = len(loop.dispatcher.invocations)
    # When the operator reads why and redrives it
    code, out, _ = run(["dlq", "show", "DeployModelDlq", *local], capsys)
    assert code == 0 and "EndpointBusy: the endpoint stayed Updating for 60 receives" in out
    code, out, _ = run(["dlq", "redrive", "DeployModelDlq", *local, "--yes"], capsys)
    assert code == 0 and out.strip() == "redriven 1 message(s) from DeployModelDlq"
    demo.settle()
    # Then route 4 handled it again and deployed nothing: the same status change was decided before
    redriven = loop.dispatcher.invocations[invocations_before:]
    assert [(i.function, i.error) for i in redriven] == [("DeployModelFunction", None)]
    after = ledger(demo).decisions_for(package_arn(demo, 2))
    new = [(d.action, d.result) for d in after if d not in before]
    assert all(result in {"duplicate", "already_live", "skipped"} for _, result in new), new
    assert loop.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == configs_before
    assert json.loads(run(["status", *local, "--json"], capsys)[1])["groups"][0]["live"]["version"] == 3


# -- the notebook ----------------------------------------------------------------------------------


def test_the_operator_notebook_runs_as_written_in_a_jupyter_kernel(
    demo: Demo, local: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    # Given the kept loop, and the notebook as a reader gets it (the kernel is .venv's Python)
    monkeypatch.setenv("CLOSEDLOOP_STATE_FILE", local[local.index("--state-file") + 1])
    notebook = nbformat.read(ROOT / "docs" / "operator.ipynb", as_version=4)
    # When "Run all" executes it in a Jupyter kernel
    NotebookClient(notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(ROOT)}}).execute()
    # Then every cell ran, and the only cell that could change anything did nothing unasked
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "model group closedloop-loans" in printed and "digraph lineage {" in printed
    assert "nothing approved: set VERSION to a waiting version and REASON to what you reviewed" in printed


def test_the_operator_notebook_runs_against_the_demo_loop(
    demo: Demo, local: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a version waiting for an approver, and the notebook pointed at the kept loop
    version = register_copy(demo.loop, 3)
    monkeypatch.setenv("CLOSEDLOOP_STATE_FILE", local[local.index("--state-file") + 1])
    namespace: dict[str, Any] = {"__name__": "__main__"}
    cells = code_cells(ROOT / "docs" / "operator.ipynb")
    assert len(cells) >= 10

    def run_cells(sources: list[tuple[str, str]]) -> None:
        for cell_id, source in sources:
            exec(compile(source, f"operator.ipynb:{cell_id}", "exec"), namespace)
            demo.settle()

    # When every code cell runs in order, as written ("Run all"; the kept loop delivers events in between)
    run_cells(cells)
    printed = capsys.readouterr().out
    # Then it saw the loop as the command line does
    assert namespace["group"].live["version"] == 3
    assert namespace["chain"]["model_version"]["version"] == 3
    assert namespace["chain"]["inference"]["inference_id"] == namespace["inference_id"]
    assert {d.route for d in namespace["decisions"]} >= ROUTES
    assert "digraph lineage {" in namespace["dot"]
    assert "policy now   approval-policy/1 says approve" in printed
    # And it approved nothing: the version still waits, the approve cell said what to fill in
    summaries = demo.loop.client("sagemaker").list_model_packages(ModelPackageGroupName="closedloop-loans")
    status = {int(p["ModelPackageVersion"]): p["ModelApprovalStatus"] for p in summaries["ModelPackageSummaryList"]}
    assert status[version] == "PendingManualApproval"
    assert namespace["flipped"] is None and namespace["verdicts"] == []
    assert "nothing approved: set VERSION to a waiting version and REASON to what you reviewed" in printed
    # When the reader fills in the version and the reason, and runs that cell and the next
    index = next(i for i, (_, source) in enumerate(cells) if "VERSION = None" in source)
    cell_id, source = cells[index]
    edited = source.replace("VERSION = None", f"VERSION = 'loans/{version}'").replace(
        'REASON = ""', 'REASON = "evaluation, bias and PII reports reviewed in the operator notebook"'
    )
    run_cells([(cell_id, edited), cells[index + 1]])
    # Then the flip went through, with the rollout's answer
    assert namespace["flipped"].status == "Approved"
    assert [(d.action, d.result) for d in namespace["verdicts"]] == [("verify_approver", "refused")]


def test_the_evidence_of_a_version_is_judged_by_its_line_s_policy(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given churn's line file, which lowers the stack's AUC and F1 floors (0.75, 0.6) for its versions
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    # When the officer looks at churn's version 1, and does not confirm
    code, out, _ = run(["reject", "churn/1", "--reason", "looking only", *local], capsys)
    # Then the evidence is churn's, against churn's floors, and nothing changed
    assert code == 1 and out.startswith("model version closedloop-churn/1: Approved (registered ")
    assert "(min 0.7), f1 " in out and "(min 0.55), accuracy " in out
    assert "  bias         senior=yes: DI " in out and "  serving      live on the endpoint now" in out
    assert status_of(demo, 1, "churn")["ModelApprovalStatus"] == "Approved"


# -- a person's rejection of the live version (kept last: it leaves the registry saying Rejected) ------


def test_a_person_s_rejection_of_the_live_version_is_told_as_it_happened(
    demo: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given version 3 serves, approved by the gate's policy
    gate_at = json.loads(run(["lineage", "--model-version", "loans/3", *local, "--format", "json"], capsys)[1])[
        "approval_decision"
    ]["gate"]["at"]
    # When a person rejects it (auto mode, no approvers: the rollout will not act on a person's flip)
    code, _, _ = run(["reject", "loans/3", "--reason", "complaint CR-7 under review", "--yes", *local], capsys)
    assert code == 0
    demo.settle()
    # Then the lineage names the person, the time of their flip and their reason — not the policy
    code, out, _ = run(["lineage", "--model-version", "loans/3", *local, "--format", "json"], capsys)
    approval = json.loads(out)["approval_decision"]
    described = status_of(demo, 3)
    assert approval["status"] == "Rejected"
    assert approval["by"] == "arn:aws:sts::123456789012:user/moto"
    assert approval["decided_by"].startswith("arn:aws:sts::123456789012:user/moto (the rollout refused to act on it: ")
    assert "policy" not in approval["decided_by"].split(" (")[0]
    assert approval["when"] != gate_at
    assert approval["when"].startswith(described["LastModifiedTime"].astimezone(UTC).isoformat()[:19])
    assert approval["why"].endswith("complaint CR-7 under review")
    code, text, _ = run(["lineage", "--model-version", "loans/3", *local], capsys)
    assert "approval: Rejected by arn:aws:sts::123456789012:user/moto (the rollout refused" in text
    assert "by policy" not in text
    # And the status shows version 3 still live, that the registry says Rejected, and why it still serves
    code, out, _ = run(["status", *local, "--json"], capsys)
    live = json.loads(out)["groups"][0]["live"]
    assert (live["version"], live["registry_status"]) == (3, "Rejected")
    assert live["rollout_verdict"]["result"] == "refused" and live["rollout_verdict"]["reason"]
    code, text, _ = run(["status", *local], capsys)
    assert "version 3 on closedloop-loans" in text
    assert f"but the registry says Rejected; the rollout refused it at {live['rollout_verdict']['at']}: " in text


def test_a_versions_clarify_reports_summarised_for_the_demo_report(demo: Demo) -> None:
    from closedloop_ops.approvals import version_clarify_summary

    # When the demo report asks for the Clarify figures of a version the pipeline registered
    summary = version_clarify_summary(demo.stack_ref(), "loans/3")
    # Then: every bias metric per facet value, pre- and post-training, and the top attributions
    assert (summary["version"], summary["bias_source"], summary["problems"]) == (3, "clarify", [])
    assert set(summary["pre_training"]) == set(summary["post_training"]) == {"group=B"}
    assert {"CI", "DPL", "KL", "JS", "LP", "TVD", "KS"} <= set(summary["pre_training"]["group=B"])
    post = summary["post_training"]["group=B"]
    assert {"DI", "DPPL", "DCA", "DCR", "RD", "DAR", "DRR", "AD", "TE"} <= set(post)
    assert 0.8 <= post["DI"] <= 1.25  # version 3 passed the gate's bias rule
    shap = [a["mean_abs_shap"] for a in summary["attributions"]]
    assert len(shap) == 5 and shap == sorted(shap, reverse=True) and shap[-1] > 0
    assert "group" not in {a["feature"] for a in summary["attributions"]}  # the facet is never a model input
