"""What `sam build` leaves for `sam deploy` carries bytecode Lambda's python3.13 uses as it is.

/opt (the layer) and /var/task (the function) are read-only on Lambda: a module shipped without
valid bytecode is compiled from source at every cold start.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.lambda_copy import RUNTIME_PYTHON, lay_out, logical_id
from support.stack import stack_env

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))
# PEP 552 flags of a hash-based .pyc that the interpreter never checks against its source.
UNCHECKED_HASH = 0b01

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of the whole template, from nothing (no build cache), into a fresh directory."""
    out = tmp_path_factory.mktemp("sam") / "build"
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.11.7:3.13.0"), "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [
            *(str(ROOT / ".venv-sam" / "bin" / "sam"), "build", "--template", "template.yaml"),
            *("--build-dir", str(out), "--no-cached", "--cache-dir", str(out.parent / "cache")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def lambda_copy(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built layer and functions laid out as Lambda mounts them, read-only."""
    return lay_out(built, tmp_path_factory.mktemp("lambda"), FUNCTIONS)


def _shipped_modules(built: Path) -> list[Path]:
    modules = sorted((built / "SharedLayer" / "python").rglob("*.py"))
    for function in FUNCTIONS:
        modules += sorted((built / logical_id(function)).rglob("*.py"))
    return modules


HASH_SOURCES = """
import importlib.util, sys
for line in sys.stdin.read().splitlines():
    with open(line, "rb") as source:
        print(importlib.util.source_hash(source.read()).hex())
"""


def _source_hashes_313(modules: list[Path]) -> dict[Path, bytes]:
    """The source hashes python3.13 keys its .pyc with (the key includes the interpreter's magic number)."""
    result = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", HASH_SOURCES],
        input="\n".join(str(m) for m in modules),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(zip(modules, (bytes.fromhex(h) for h in result.stdout.split()), strict=True))


def test_every_shipped_module_has_unchecked_hash_bytecode_for_python_3_13(built: Path) -> None:
    # Given what `sam build` leaves for `sam deploy`: the layer and every function
    modules = _shipped_modules(built)
    assert any(p.parts[-2:] == ("closedloop", "settings.py") for p in modules)
    assert any(p.parts[-2:] == ("pydantic", "main.py") for p in modules)
    # When each module's bytecode for 3.13 is read
    hashes = _source_hashes_313(modules)
    missing, checked, stale = [], [], []
    for module in modules:
        pyc = module.parent / "__pycache__" / f"{module.stem}.cpython-313.pyc"
        if not pyc.is_file():
            missing.append(str(module.relative_to(built)))
            continue
        header = pyc.read_bytes()[:16]
        if int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            checked.append(str(module.relative_to(built)))
        elif header[8:16] != hashes[module]:
            stale.append(str(module.relative_to(built)))
    # Then every module has it, hash-based and never checked against the unpacked file times, and of this source
    assert missing == [], f"{len(missing)} modules without bytecode, e.g. {missing[:5]}"
    assert checked == [], f"{len(checked)} modules with timestamp or checked bytecode, e.g. {checked[:5]}"
    assert stale == [], f"{len(stale)} modules whose bytecode is of another source, e.g. {stale[:5]}"
    # And no bytecode of another interpreter is shipped
    others = [p for p in built.rglob("*.pyc") if ".cpython-313." not in p.name]
    assert others == []


COUNT_COMPILES = """
import importlib, importlib._bootstrap_external as external, json, sys
compiled = []
source_to_code = external.SourceLoader.source_to_code
def counting(self, data, path, *args, **kwargs):
    compiled.append(path)
    return source_to_code(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = counting
importlib.import_module("app")  # what the runtime's bootstrap does with Handler: app.lambda_handler
print(json.dumps({"compiled": compiled, "modules": len(sys.modules)}))
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_python_3_13_imports_a_handler_from_the_read_only_package_without_compiling(
    lambda_copy: Path, function: str
) -> None:
    # Given the read-only layer and function, no cache to write, the runtime's python3.13 and environment
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_"))},
        **stack_env(),
        "PYTHONPATH": os.pathsep.join([str(lambda_copy / "task" / function), str(lambda_copy / "opt" / "python")]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(lambda_copy / "task" / function),
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    # When it imports the handler module as the runtime does
    result = subprocess.run(
        [str(RUNTIME_PYTHON), "-X", "importtime", "-c", COUNT_COMPILES],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Then it loaded the shipped bytecode of the layer's and function's modules: nothing compiled from source
    assert report["modules"] > 300  # closedloop, pydantic, Powertools and boto3 were imported
    shipped = [p for p in report["compiled"] if p.startswith(str(lambda_copy))]
    assert shipped == [], f"{len(shipped)} modules compiled at import, e.g. {shipped[:5]}"
    assert "import time:" in result.stderr and "closedloop.settings" in result.stderr
