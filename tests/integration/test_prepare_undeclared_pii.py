"""The undeclared-PII choice end to end on moto: the script quarantines the offending rows, reports
the choice in the PII report and the manifest, and route 2 records it in the ledger; the code the
jobs run ships with the detector module and its libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
from integration.test_prepare_script import read, upload

from closedloop.dataprep.arrival import DataPrepRun
from closedloop.dataprep.policy import load_policy
from closedloop.dataprep.requests import build_prep_manifest, manifest_key
from closedloop.prep import detectors, prepare
from closedloop_ops import synthetic
from support.events import object_created, sqs_batch
from support.handlers import invoke, load_handler
from support.stack import REGION, Stack
from support.training import PreparedRun, create_pipeline, processing_event
from support.worlds import ledger

PHONE = "+49 30 901820"


def write_manifest(stack: Stack, objects: list[Any], **policy_changes: Any) -> tuple[str, DataPrepRun]:
    run = DataPrepRun(dataset="loans", objects=tuple(objects))
    manifest = build_prep_manifest(
        run,
        load_policy("loans").model_copy(update=policy_changes),
        data_bucket=stack.data_bucket,
        prepared_prefix="prepared/",
        quarantine_bucket=stack.settings.quarantine_bucket,
        secret_arn=stack.settings.pseudonymisation_secret_arn,
    )
    key = manifest_key("manifests/", "loans", run.run_id)
    boto3.client("s3").put_object(Bucket=stack.data_bucket, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{stack.data_bucket}/{key}", run


def test_quarantine_rows_is_reported_and_recorded_in_the_ledger(stack: Stack) -> None:
    # Given a clean file and a file of 30 rows, two of whose notes hold a phone number, of a dataset
    # whose policy quarantines only the offending rows
    leaky = list(synthetic.rows(30, seed=51))
    leaky[3]["notes"] = f"call {PHONE} after six"
    leaky[17]["notes"] = f"or {PHONE}"
    objects = [
        upload(stack, "raw/loans/clean.csv", synthetic.to_csv(list(synthetic.rows(20, seed=52))).encode()),
        upload(stack, "raw/loans/leaky.csv", synthetic.to_csv(leaky).encode()),
    ]
    manifest_uri, run = write_manifest(stack, objects, undeclared_pii="quarantine_rows")
    # When the script runs
    output = prepare.run(manifest_uri, boto3.client("s3"), boto3.client("secretsmanager"))
    # Then both files are prepared, less the two rows
    assert (output["prepared_files"], output["quarantined_files"], output["output"]["rows"]) == (2, 0, 48)
    data = read(stack.data_bucket, f"prepared/loans/{run.run_id}/data.csv").decode()
    assert PHONE not in data
    # And the two rows are in quarantine, raw, next to a report of counts
    leaky_entry = next(i for i in output["inputs"] if i["key"] == "raw/loans/leaky.csv")
    rows_key = leaky_entry["rows_quarantine_key"]
    withheld = read(stack.settings.quarantine_bucket, rows_key).decode().splitlines()
    assert len(withheld) == 3 and PHONE in withheld[1]
    report = json.loads(read(stack.settings.quarantine_bucket, rows_key + ".report.json"))
    assert report["details"] == {"rows": 2, "undeclared": {"notes": {"phone": 2}}, "undeclared_pii": "quarantine_rows"}
    # And the PII report and the manifest record the choice, the regions and the detector versions
    pii_report = json.loads(read(stack.data_bucket, f"prepared/loans/{run.run_id}/pii_report.json"))
    assert (pii_report["clean"], pii_report["undeclared_pii_files"]) == (False, 1)
    assert pii_report["undeclared_pii"] == "quarantine_rows"
    assert pii_report["regions"] == list(detectors.DEFAULT_REGIONS) and pii_report["regions_declared"] is False
    assert pii_report["detectors"]["phonenumbers"] == detectors.library_versions()["phonenumbers"]
    manifest = json.loads(read(stack.data_bucket, f"prepared/loans/{run.run_id}/manifest.json"))
    assert manifest["pii"] == {
        "undeclared_pii": "quarantine_rows",
        "regions": list(detectors.DEFAULT_REGIONS),
        "unix_times_in_text": True,
        "undeclared_pii_files": 1,
        "clean": False,
        "quarantined_rows": 2,
        "redacted_values": 0,
    }
    assert PHONE not in json.dumps(pii_report) + json.dumps(manifest)
    # When the job's Completed event reaches route 2
    create_pipeline()
    prepared = PreparedRun(run.run_id, "loans", manifest_uri, "", None, 48)
    outcome = invoke(load_handler("start_training"), processing_event(prepared))
    # Then the ledger's decision carries what was done about the undeclared PII
    assert outcome["result"] == "started"
    [decision] = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert {k: decision.details[k] for k in ("undeclared_pii_action", "undeclared_pii_files", "quarantined_rows")} == {
        "undeclared_pii_action": "quarantine_rows",
        "undeclared_pii_files": 1,
        "quarantined_rows": 2,
    }


def _code_objects(stack: Stack, prefix_uri: str) -> dict[str, bytes]:
    bucket, prefix = prefix_uri[5:].split("/", 1)
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    return {o["Key"][len(prefix) :]: read(bucket, o["Key"]) for o in listed}


def test_the_processing_job_downloads_a_code_bundle_that_runs_on_its_own(stack: Stack, tmp_path: Path) -> None:
    # Given a batch started as a Processing job
    invoke(load_handler("start_data_prep"), sqs_batch([object_created(stack.data_bucket, "raw/loans/a.csv")]))
    sm = boto3.client("sagemaker", region_name=REGION)
    [summary] = sm.list_processing_jobs()["ProcessingJobSummaries"]
    job = sm.describe_processing_job(ProcessingJobName=summary["ProcessingJobName"])
    # When its code input is downloaded as the container gets it
    files = _code_objects(stack, job["ProcessingInputs"][0]["S3Input"]["S3Uri"])
    # Then it holds the script, the detector module and the pinned wheels
    assert sorted(files) == [
        "detectors.py",
        "prepare.py",
        "wheels/phonenumberslite-9.0.42-py2.py3-none-any.whl",
        "wheels/python_stdnum-2.2-py3-none-any.whl",
    ]
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(body)
    # And the detectors run from there with nothing installed (isolated, no site-packages)
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import detectors; print(detectors.detect_pii(sys.argv[2]))"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(tmp_path), f"call {PHONE}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "['phone']"), result.stderr[-1000:]


def test_the_glue_run_puts_the_detector_module_and_wheels_on_its_python_path(glue_stack: Stack) -> None:
    # Given a batch started as a Glue job run
    invoke(load_handler("start_data_prep"), sqs_batch([object_created(glue_stack.data_bucket, "raw/loans/a.csv")]))
    [job_run] = boto3.client("glue", region_name=REGION).get_job_runs(JobName="closedloop-prep")["JobRuns"]
    # Then its --extra-py-files name the detector module and the wheels, uploaded next to the script
    extra = job_run["Arguments"]["--extra-py-files"].split(",")
    assert sorted(uri.rsplit("/", 1)[-1] for uri in extra) == [
        "detectors.py",
        "phonenumberslite-9.0.42-py2.py3-none-any.whl",
        "python_stdnum-2.2-py3-none-any.whl",
    ]
    s3 = boto3.client("s3")
    for uri in extra:
        bucket, key = uri[5:].split("/", 1)
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
