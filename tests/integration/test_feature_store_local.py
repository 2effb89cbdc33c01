"""The feature group through the local loop: the template's FeatureGroup provisioned into the moto
server, route 1's manifest naming it, the preparation job (a subprocess) ingesting into it, the
report's count and the dataset step (a subprocess) reading the offline store back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from closedloop.line import load_line
from closedloop_ops import feature_store, synthetic
from closedloop_ops.local.loop import LocalLoop

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_local_loop_ingests_a_run_and_the_dataset_step_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the template, whose loans block declares the line's feature group (the shipped line ingests)
    assert load_line("loans").feature_store.enabled
    with LocalLoop.start(root=ROOT, stack_name="closedloop-features", services=False) as loop:
        s3 = loop.client("s3")
        bucket = loop.output("DataBucketName")
        # When three files arrive and the loop runs route 1 and the preparation job
        for index in range(3):
            rows = list(synthetic.rows(200, seed=index, start=index * 200))
            s3.put_object(Bucket=bucket, Key=f"raw/loans/fs/f{index}.csv", Body=synthetic.to_csv(rows).encode())
        loop.settle()
        # Then the run's manifest records the ingestion, and the report counts the group's records
        [key] = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket=bucket, Prefix="prepared/loans/")["Contents"]
            if o["Key"].endswith("/manifest.json")
        ]
        manifest: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        group = f"{loop.stack.parameters.get('ResourcePrefix', 'closedloop')}-loans"
        assert (manifest["feature_store"]["feature_group"], manifest["feature_store"]["ingested_records"]) == (
            group,
            600,
        )
        assert feature_store.ingested_record_count(loop.stack, "loans") == 600
        assert feature_store.ingested_record_count(loop.stack, "churn") is None
        # And the dataset step, run as the pipeline runs it, builds the training set from the offline store
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": loop.stack.endpoint_url,
            "AWS_DEFAULT_REGION": loop.stack.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        out = tmp_path / "dataset"
        step = ROOT / "pipelines" / "steps" / "dataset.py"
        argv = [sys.executable, str(step), "--manifest", f"s3://{bucket}/{key}", "--output", str(out)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        lineage = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
        assert (lineage["feature_group"], lineage["rows"], lineage["label_rows"]) == (group, 600, 600)
        assert len((out / "data.csv").read_text(encoding="utf-8").splitlines()) == 601
