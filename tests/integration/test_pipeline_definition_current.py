"""The checked-in pipeline definition is what the code generates.

`pipelines/definition.json` is checked in so that `make demo` needs no sagemaker SDK (~1 GB). These
tests regenerate it with the SDK in `.venv-pipeline` (`make pytest` builds it) and fail when it is stale.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "pipelines" / "definition.json"
PIPELINE_PYTHON = ROOT / ".venv-pipeline" / "bin" / "python"

pytestmark = pytest.mark.slow


def check(path: Path) -> subprocess.CompletedProcess[str]:
    """`definition.py --offline --check PATH` in the SDK's environment, region settings of the caller ignored."""
    if not PIPELINE_PYTHON.is_file():
        pytest.fail("the sagemaker SDK environment is missing: run `make .venv-pipeline/.ready` (make test does)")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "ap-south-1"}
    return subprocess.run(
        [str(PIPELINE_PYTHON), str(ROOT / "pipelines" / "definition.py"), "--offline", "--check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_the_checked_in_definition_is_what_the_code_generates() -> None:
    # Given the checked-in definition and the pipeline code of this commit
    # When the SDK regenerates the definition (a region in the environment must not change it)
    result = check(DEFINITION)
    # Then they are the same, byte for byte
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
    assert result.returncode == 0, result.stderr.strip().splitlines()[0] if result.stderr else "no output"


def test_a_stale_definition_fails_the_check_saying_what_to_do(tmp_path: Path) -> None:
    # Given a definition that is not what the code generates (a step renamed by hand)
    stale = tmp_path / "definition.json"
    stale.write_text(DEFINITION.read_text(encoding="utf-8").replace('"Name": "Baseline"', '"Name": "Baselines"'))
    # When it is checked
    result = check(stale)
    # Then the check fails, says what to do, and shows where it differs
    assert result.returncode == 1
    assert f"{stale} is stale (it is not what the code generates): run `make pipeline` and commit the result" in (
        result.stderr
    )
    assert '-   "Name": "Baselines",' in result.stderr and '+   "Name": "Baseline",' in result.stderr
