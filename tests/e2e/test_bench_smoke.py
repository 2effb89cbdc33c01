"""`make bench` cannot rot: every figure of bench/run.py runs here at tiny sizes (no targets asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_every_benchmark_figure_runs() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = {f["name"].split("[")[0] for f in json.loads((ROOT / "build/bench/results.json").read_text())["figures"]}
    assert figures == {
        "cold_init_ms",
        "first_invocation_ms",
        "burst_coalescing",
        "retrain_storm",
        "lines_isolation",
        "drift_records_per_s",
        "pii_recall",
        "pii_false_positive_rate",
        "prep_rows_per_s",
        "spark_scaling",
        "warm_overhead_ms",
        "demo_wall_s",
    }
