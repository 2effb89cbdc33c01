"""Job scripts started from a process that has already imported what they import.

A Processing or training container starts a fresh interpreter for its script. Here, a fresh
interpreter importing numpy and scikit-learn costs about a second per job, most of what a local
pipeline step takes. The zygote imports them once; each job is then a child forked from it: a
process of its own, with the job's environment, working directory and arguments, run as
`python script.py …` runs it (`__main__`, the script's directory first on `sys.path`, the job's
`PYTHONPATH` after it), its output to a file, its exit status what the job's status is made of.

The zygote runs with single-threaded BLAS and OpenMP, so no thread exists when it forks. A child's
`random` is reseeded at fork by Python, and numpy's global generator here, as a fresh interpreter
would seed them. Where `os.fork` does not exist the runner starts a fresh interpreter instead.

Protocol (one JSON object a line): the runner sends `{"argv", "env", "cwd", "out"}`; the zygote
answers `{"pid"}` when the child starts and `{"code"}` when it ends.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

# what the step scripts import (pipelines/steps, closedloop/prep/prepare.py)
PRELOAD = (
    "numpy",
    "joblib",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.inspection",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "pyarrow.parquet",
    "boto3",
)
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ZygoteError(Exception):
    """The zygote itself stopped (not a job's failure: those are exit codes)."""


class Zygote:
    """The runner's side: starts the zygote on first use and runs one job at a time through it."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self._preload = preload
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
        """Run `argv` (`[python, script, args…]`) as a job; (exit code, its output)."""
        if not hasattr(os, "fork"):
            return run_fresh(argv, env, cwd, timeout_s)
        with self._lock:
            handle, name = tempfile.mkstemp(prefix="closedloop-job-", suffix=".log")
            os.close(handle)
            out = Path(name)
            try:
                self._send({"argv": argv, "env": env, "cwd": str(cwd), "out": str(out)})
                pid = int(self._receive(30)["pid"])
                try:
                    code = int(self._receive(timeout_s)["code"])
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    self._receive(30)
                    return timed_out(timeout_s)
                return code, out.read_text(errors="replace") if out.exists() else ""
            finally:
                out.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._process.kill()
                self._process.wait()
                self._process = None
                self._buffer = b""

    # -- the pipe ---------------------------------------------------------------------------------

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._buffer = b""
            self._process = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                [sys.executable, "-m", __name__, *self._preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, **SINGLE_THREADED},
            )
        return self._process

    def _send(self, message: dict[str, Any]) -> None:
        process = self._started()
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
        except BrokenPipeError:
            raise ZygoteError("the job zygote stopped") from None

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        process = self._started()
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if selector.select(left):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        raise ZygoteError("the job zygote stopped")
                    self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return dict(json.loads(line))


def run_fresh(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run `argv` in a new interpreter (what the zygote saves); (exit code, its output)."""
    try:
        result = subprocess.run(  # noqa: S603 - the stack's own scripts, run as their containers would
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return timed_out(timeout_s)
    return result.returncode, (result.stdout or "") + (result.stderr or "")


def timed_out(timeout_s: float) -> tuple[int, str]:
    """A job killed at its timeout, forked or fresh: (exit code, why)."""
    return -signal.SIGKILL, f"job ran longer than {timeout_s:.0f} s"


# -- the zygote's side ------------------------------------------------------------------------------


def _answer(channel: IO[bytes], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message).encode() + b"\n")
    channel.flush()


def _child(request: dict[str, Any]) -> int:
    """In the forked child: become `python script.py args…` with the job's environment; its exit code."""
    import runpy

    signal.signal(signal.SIGINT, signal.default_int_handler)
    log = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    script = request["argv"][1]
    sys.argv = list(request["argv"][1:])
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:0] = [os.path.dirname(os.path.abspath(script)), *extra]
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # as a fresh interpreter's would be
    code: int = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        if isinstance(exit_.code, int):
            code = exit_.code
        elif exit_.code is not None:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # what an uncaught exception does to `python script.py`
        import traceback

        traceback.print_exc()
        code = 1
    return code


def main(preload: list[str]) -> None:
    # Ctrl-C in the loop's terminal reaches the whole process group: the loop stops its jobs and this
    # process ends with its pipe; a job keeps Python's default (KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in preload:
        with contextlib.suppress(ImportError):  # a job that needs it fails as it would anywhere
            importlib.import_module(module)
    requests, channel = sys.stdin.buffer, sys.stdout.buffer
    while line := requests.readline():
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                try:
                    import atexit

                    atexit._run_exitfuncs()
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        _answer(channel, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer(channel, {"code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main(sys.argv[1:])
