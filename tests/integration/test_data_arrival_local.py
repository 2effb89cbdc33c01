"""Route 1 through the local loop, as the demo runs it: a real upload to the (versioned) data bucket,
moto's S3 → EventBridge event (closedloop_ops.moto_ext.s3_events), the template's rule, the queue,
the handler, the preparation job — and `closedloop audit` at the end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from closedloop_ops import synthetic
from closedloop_ops.cli import main
from closedloop_ops.local.loop import LocalLoop
from closedloop_ops.stackref import write_local_state

NAMES = ["applications final.csv", "c++ a+b.csv", "100% 50%25.csv", "Zürich ärende 😀.csv"]


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    with LocalLoop.start(stack_name="closedloop-arrival", services=False) as running:
        yield running


def read_json(loop: LocalLoop, bucket: str, key: str) -> Any:
    return json.loads(loop.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_the_local_data_bucket_is_versioned(loop: LocalLoop) -> None:
    # The route refuses unversioned objects; the demo's bucket is provisioned as the template says
    status = loop.client("s3").get_bucket_versioning(Bucket=loop.output("DataBucketName"))
    assert status.get("Status") == "Enabled"


def test_uploads_with_keys_s3_encodes_are_prepared_from_their_real_keys(loop: LocalLoop) -> None:
    # Given files uploaded under keys S3 URL-encodes in its events
    s3 = loop.client("s3")
    bucket = loop.output("DataBucketName")
    body = synthetic.to_csv(list(synthetic.rows(20, seed=3))).encode()
    versions = {}
    for name in NAMES:
        key = f"raw/loans/keys/{name}"
        versions[key] = s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
    # When the loop delivers the events and runs the preparation job
    loop.settle()
    # Then one run's input manifest names each real key and version
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="manifests/loans/")["Contents"]
    inputs = [read_json(loop, bucket, o["Key"]) for o in listed]
    [manifest] = [m for m in inputs if any(o["key"].startswith("raw/loans/keys/") for o in m["objects"])]
    assert {o["key"]: o["version_id"] for o in manifest["objects"]} == versions
    # And the job read every object: all prepared, none quarantined
    output = read_json(loop, bucket, f"prepared/loans/{manifest['run_id']}/manifest.json")
    assert sorted(i["key"] for i in output["inputs"]) == sorted(versions)
    assert (output["prepared_files"], output["quarantined_files"], output["output"]["rows"]) == (4, 0, 80)


def test_an_empty_upload_is_quarantined_and_shown_by_the_audit(
    loop: LocalLoop, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a 0-byte upload
    s3 = loop.client("s3")
    s3.put_object(Bucket=loop.output("DataBucketName"), Key="raw/loans/empty/nothing here.csv", Body=b"")
    # When the loop delivers its event
    loop.settle()
    # Then it is in the quarantine bucket next to its report
    quarantine = loop.output("QuarantineBucketName")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=quarantine, Prefix="loans/arrival/")["Contents"])
    assert [k.rsplit("/", 1)[-1] for k in keys] == ["nothing here.csv", "nothing here.csv.report.json"]
    assert read_json(loop, quarantine, keys[1])["reason"] == "empty file"
    # And `closedloop audit` shows the decision
    state = tmp_path / "state.json"
    write_local_state(
        state,
        name=loop.stack.stack_name,
        region=loop.stack.region,
        endpoint_url=loop.stack.endpoint_url,
        outputs=loop.stack.outputs,
    )
    capsys.readouterr()
    code = main(["audit", "--since", "2000-01-01", "--local", "--state-file", str(state), "--json"])
    audited = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(d["action"], d["result"], d["reason"]) for d in audited if d["action"] == "quarantine_raw_object"] == [
        ("quarantine_raw_object", "quarantined", "empty file")
    ]
