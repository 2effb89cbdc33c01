"""Job scripts forked from a zygote that has imported numpy and scikit-learn (closedloop_ops.local.zygote):
each runs as `python script.py …` would, in a process of its own."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from closedloop_ops.local.zygote import Zygote

SCRIPT = """
import json, os, sys
preloaded = "numpy" in sys.modules
import numpy
print(json.dumps({"name": __name__, "argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0],
                  "on_path": os.environ["EXTRA_DIR"] in sys.path, "token": os.environ.get("JOB_TOKEN"),
                  "leaked": os.environ.get("ZYGOTE_ONLY"), "preloaded": preloaded,
                  "draw": numpy.random.random()}))
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    os.environ["ZYGOTE_ONLY"] = "the zygote's own environment"
    try:
        runner = Zygote(preload=("numpy", "a_module_this_machine_does_not_have"))
        yield runner
    finally:
        runner.close()
        del os.environ["ZYGOTE_ONLY"]


def report(output: str) -> dict[str, object]:
    return dict(json.loads(output.strip().splitlines()[-1]))


def test_a_job_runs_as_python_script_would_with_its_own_environment_and_directory(
    zygote: Zygote, tmp_path: Path
) -> None:
    script = tmp_path / "code" / "job.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "JOB_TOKEN": "t-1", "EXTRA_DIR": str(tmp_path), "PYTHONPATH": str(tmp_path)}

    code, output = zygote.run([sys.executable, str(script), "--input", "a b"], env, work, 60)
    again, second = zygote.run([sys.executable, str(script)], {**env, "EXIT_WITH": "3"}, work, 60)

    first = report(output)
    assert code == 0 and again == 3
    assert first["name"] == "__main__" and first["argv"] == [str(script), "--input", "a b"]
    assert first["cwd"] == str(work) and first["path0"] == str(script.parent) and first["on_path"] is True
    assert first["token"] == "t-1" and first["leaked"] is None  # the job's environment, not the zygote's
    assert first["preloaded"] is True  # imported once, by the zygote
    assert first["draw"] != report(second)["draw"]  # each job's numpy is seeded afresh


def test_an_uncaught_exception_or_an_exit_message_fails_the_job_with_its_output(zygote: Zygote, tmp_path: Path) -> None:
    raising = tmp_path / "raising.py"
    raising.write_text("print('reading the manifest')\nraise ValueError('manifest lists no files')\n")
    exiting = tmp_path / "exiting.py"
    exiting.write_text("import sys\nsys.exit('no rows to train on')\n")
    env = {"PATH": os.environ["PATH"]}

    code, output = zygote.run([sys.executable, str(raising)], env, tmp_path, 60)
    exit_code, exit_output = zygote.run([sys.executable, str(exiting)], env, tmp_path, 60)

    assert code == 1 and "reading the manifest" in output
    assert output.strip().splitlines()[-1] == "ValueError: manifest lists no files"
    assert exit_code == 1 and exit_output.strip() == "no rows to train on"


def test_a_job_that_outlives_its_timeout_is_killed_and_the_zygote_runs_the_next(zygote: Zygote, tmp_path: Path) -> None:
    stuck = tmp_path / "stuck.py"
    stuck.write_text("import threading\nthreading.Event().wait()\n")
    quick = tmp_path / "quick.py"
    quick.write_text("print('done')\n")
    env = {"PATH": os.environ["PATH"]}

    code, output = zygote.run([sys.executable, str(stuck)], env, tmp_path, 0.5)
    next_code, next_output = zygote.run([sys.executable, str(quick)], env, tmp_path, 60)

    assert code == -9 and "longer than" in output
    assert (next_code, next_output.strip()) == (0, "done")
