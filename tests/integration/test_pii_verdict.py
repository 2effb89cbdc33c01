"""One definition of a clean preparation run: the PII report, the approval gate and what is printed agree.

A run is clean when none of its raw files held undeclared PII (`closedloop.prep.prepare.is_clean`),
whether the file was prepared or quarantined. The report's `clean`, the gate's decision and its
recorded numbers, and the compliance officer's printed evidence all say the same.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from integration.test_prepare_script import read, upload, write_manifest

from closedloop.prep import prepare
from closedloop_ops import approvals, synthetic
from closedloop_ops.moto_ext.pipelines import record_execution_step
from closedloop_ops.stackref import StackRef
from support.handlers import invoke, load_handler
from support.stack import ACCOUNT, REGION, Stack
from support.training import PreparedRun, create_pipeline, pipeline_event, register_version, start_execution


def prepared(stack: Stack, *, leaky: bool) -> tuple[PreparedRun, dict[str, Any]]:
    """A preparation run of two files by the script itself, one of them (if `leaky`) with an e-mail in a note."""
    clean = list(synthetic.rows(300, seed=31))
    second = list(synthetic.rows(20, seed=32, start=300))
    if leaky:
        second[4]["notes"] = "write to " + second[4]["email"]
    objects = [
        upload(stack, "raw/loans/a.csv", synthetic.to_csv(clean).encode()),
        upload(stack, "raw/loans/b.csv", synthetic.to_csv(second).encode()),
    ]
    manifest_uri, run = write_manifest(stack, objects)
    output = prepare.run(manifest_uri, boto3.client("s3"), boto3.client("secretsmanager"))
    prefix = f"prepared/loans/{run.run_id}/"
    report = json.loads(read(stack.data_bucket, prefix + "pii_report.json"))
    return (
        PreparedRun(
            run_id=run.run_id,
            dataset="loans",
            input_manifest_uri=manifest_uri,
            prepared_manifest_uri=f"s3://{stack.data_bucket}/{prefix}manifest.json",
            data_uri=output["output"]["data_uri"],
            rows=output["output"]["rows"],
        ),
        report,
    )


def printed_evidence(stack: Stack, arn: str) -> tuple[approvals.VersionEvidence, str]:
    """What `closedloop approve` reads and prints for a version."""
    ref = StackRef(
        name="closedloop-test",
        region=REGION,
        outputs={
            "LedgerTableName": stack.settings.ledger_table,
            "ResourcePrefix": "closedloop",
            "ModelLines": "loans,churn",
            "RawPrefix": "raw/",
        },
        _environment=dict(stack.env),
    )
    found = approvals.evidence(ref, arn)
    return found, approvals.format_evidence(found)


@pytest.mark.parametrize(
    ("leaky", "clean", "files", "result", "printed"),
    [
        (True, False, 1, "rejected", "NOT CLEAN, 1 file(s) with undeclared PII"),
        (False, True, 0, "approved", "clean, 0 file(s) with undeclared PII"),
    ],
    ids=["undeclared-pii-in-one-file", "clean"],
)
def test_the_report_the_gate_and_the_printed_evidence_agree_on_clean(
    stack: Stack, leaky: bool, clean: bool, files: int, result: str, printed: str
) -> None:
    # Given a preparation run by the script (with or without a file holding undeclared PII)
    run, report = prepared(stack, leaky=leaky)
    # Then its PII report says clean exactly when no file held undeclared PII
    assert (report["clean"], report["undeclared_pii_files"]) == (clean, files)
    # When a version trained on it reaches the approval gate
    create_pipeline()
    execution = start_execution()
    arn = register_version(stack, execution, prepared=run)
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    outcome = invoke(load_handler("approval_gate"), pipeline_event(execution))
    # Then the gate decides by it, and its recorded numbers say the same
    assert outcome["result"] == result
    assert ("pii-not-clean" in outcome["reasons"]) is not clean
    description = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)[
        "ApprovalDescription"
    ]
    assert f"pii_clean={clean} pii_undeclared_files={files}" in description
    # And the compliance officer's printed evidence says the same
    found, text = printed_evidence(stack, arn)
    assert (found.pii_clean, found.pii_undeclared_files) == (clean, files)
    assert printed in text
    assert f"pii_clean={clean}" in text  # the gate's recorded decision, as printed
    assert ("pii-not-clean" in " ".join(found.policy_now["rejections"])) is not clean
