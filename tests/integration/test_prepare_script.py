"""The preparation script end to end on moto: the run's manifest in, prepared data and reports out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from closedloop.dataprep.arrival import DataPrepRun, RawObject
from closedloop.dataprep.policy import load_policy
from closedloop.dataprep.requests import build_prep_manifest, manifest_key
from closedloop.prep import prepare
from closedloop_ops import synthetic
from support.stack import Stack

SCRIPT = Path(prepare.__file__)


def upload(stack: Stack, key: str, body: bytes) -> RawObject:
    s3 = boto3.client("s3")
    response = s3.put_object(Bucket=stack.data_bucket, Key=key, Body=body)
    return RawObject(
        bucket=stack.data_bucket,
        key=key,
        dataset="loans",
        format="jsonl" if key.endswith(".jsonl") else "csv",
        size=len(body),
        etag=response["ETag"].strip('"'),
        version_id=response["VersionId"],
    )


def write_manifest(stack: Stack, objects: list[RawObject]) -> tuple[str, DataPrepRun]:
    run = DataPrepRun(dataset="loans", objects=tuple(objects))
    manifest = build_prep_manifest(
        run,
        load_policy("loans"),
        data_bucket=stack.data_bucket,
        prepared_prefix="prepared/",
        quarantine_bucket=stack.settings.quarantine_bucket,
        secret_arn=stack.settings.pseudonymisation_secret_arn,
    )
    key = manifest_key("manifests/", "loans", run.run_id)
    boto3.client("s3").put_object(Bucket=stack.data_bucket, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{stack.data_bucket}/{key}", run


def read(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def test_prepares_clean_files_and_quarantines_the_rest(stack: Stack) -> None:
    # Given two clean files (CSV and JSON Lines), one with an undeclared e-mail, one not UTF-8
    records = list(synthetic.rows(600, seed=21))
    leaky = list(synthetic.rows(10, seed=22, start=600))
    leaky[3]["notes"] = "reach me at someone.else@example.org"
    objects = [
        upload(stack, "raw/loans/a.csv", synthetic.to_csv(records[:400]).encode()),
        upload(stack, "raw/loans/b.jsonl", synthetic.to_jsonl(records[400:]).encode()),
        upload(stack, "raw/loans/leaky.csv", synthetic.to_csv(leaky).encode()),
        upload(stack, "raw/loans/latin1.csv", synthetic.to_csv(records[:5]).encode() + "é".encode("latin-1")),
    ]
    manifest_uri, run = write_manifest(stack, objects)
    # When the script runs
    output = prepare.run(manifest_uri, boto3.client("s3"), boto3.client("secretsmanager"))
    # Then the clean rows are prepared, the other files quarantined with a report
    assert output["output"]["rows"] == 600
    assert (output["prepared_files"], output["quarantined_files"]) == (2, 2)
    data = read(stack.data_bucket, f"prepared/loans/{run.run_id}/data.csv").decode()
    assert data.splitlines()[0].split(",") == load_policy("loans").output_columns()
    assert len(data.splitlines()) == 601
    for value in synthetic.pii_values(records + leaky):
        assert value not in data
    reasons = {i["key"]: i.get("reason") for i in output["inputs"]}
    assert reasons == {
        "raw/loans/a.csv": None,
        "raw/loans/b.jsonl": None,
        "raw/loans/leaky.csv": "undeclared PII found",
        "raw/loans/latin1.csv": "file is not valid UTF-8",
    }
    quarantined = boto3.client("s3").list_objects_v2(Bucket=stack.settings.quarantine_bucket)["Contents"]
    keys = sorted(o["Key"] for o in quarantined)
    assert len(keys) == 4 and all(k.startswith(f"loans/{run.run_id}/") for k in keys)
    report_key = next(k for k in keys if "leaky" in k and k.endswith(".report.json"))
    report = json.loads(read(stack.settings.quarantine_bucket, report_key))
    assert report["reason"] == "undeclared PII found"
    assert report["details"]["report"]["undeclared"] == {"notes": {"email": 1}}
    assert "someone.else" not in json.dumps(report)
    # And the manifest records exact input versions, policy and code versions
    manifest = json.loads(read(stack.data_bucket, f"prepared/loans/{run.run_id}/manifest.json"))
    assert {i["version_id"] for i in manifest["inputs"]} == {o.version_id for o in objects}
    assert manifest["policy"]["sha256"] == load_policy("loans").sha256()
    assert len(manifest["code"]["sha256"]) == 64
    pii_report = json.loads(read(stack.data_bucket, f"prepared/loans/{run.run_id}/pii_report.json"))
    # (not clean: one of the run's files held undeclared PII, though it was kept out of the data)
    assert (pii_report["clean"], pii_report["undeclared_pii_files"]) == (False, 1)
    for value in synthetic.pii_values(records + leaky):
        assert value not in json.dumps(pii_report)


def test_a_run_with_only_bad_files_writes_no_data(stack: Stack) -> None:
    objects = [upload(stack, "raw/loans/empty.csv", b"application_id\n")]
    manifest_uri, run = write_manifest(stack, objects)
    output = prepare.run(manifest_uri, boto3.client("s3"), boto3.client("secretsmanager"))
    assert output["output"] == {**output["output"], "rows": 0, "data_uri": None}
    listing = boto3.client("s3").list_objects_v2(Bucket=stack.data_bucket, Prefix=f"prepared/loans/{run.run_id}/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listing["Contents"]) == ["manifest.json", "pii_report.json"]


@pytest.mark.slow
def test_the_script_runs_unchanged_as_a_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Processing and Glue run it: `python3 prepare.py --manifest s3://…` (here on a moto server)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        stack_like = _provision_minimal(endpoint)
        records = list(synthetic.rows(50, seed=4))
        s3 = boto3.client("s3", endpoint_url=endpoint)
        put = s3.put_object(Bucket="data", Key="raw/loans/x.csv", Body=synthetic.to_csv(records).encode())
        obj = RawObject(
            bucket="data",
            key="raw/loans/x.csv",
            dataset="loans",
            format="csv",
            size=1,
            etag=put["ETag"].strip('"'),
            version_id=put["VersionId"],
        )
        run = DataPrepRun(dataset="loans", objects=(obj,))
        manifest = build_prep_manifest(
            run,
            load_policy("loans"),
            data_bucket="data",
            prepared_prefix="prepared/",
            quarantine_bucket="quarantine",
            secret_arn=stack_like["secret"],
        )
        s3.put_object(Bucket="data", Key="manifests/run.json", Body=json.dumps(manifest).encode())
        # When the script is run as a program, the way the job containers run it
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": ""}
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--manifest",
                "s3://data/manifests/run.json",
                "--engine",
                "glue",
                "--JOB_ID",
                "j_123",
                "--job-bookmark-option",
                "job-bookmark-disable",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Then it succeeds and writes the prepared data
        assert result.returncode == 0, result.stderr
        out: dict[str, Any] = json.loads(
            s3.get_object(Bucket="data", Key=f"prepared/loans/{run.run_id}/manifest.json")["Body"].read()
        )
        assert out["engine"] == "glue" and out["output"]["rows"] == 50
        for value in synthetic.pii_values(records):
            assert value not in result.stderr + result.stdout
    finally:
        server.stop()


def _provision_minimal(endpoint: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for bucket in ("data", "quarantine"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    secret = boto3.client("secretsmanager", endpoint_url=endpoint).create_secret(Name="k", SecretString="s" * 40)
    return {"secret": secret["ARN"]}
