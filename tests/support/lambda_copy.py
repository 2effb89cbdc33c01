"""The built layer and functions laid out as Lambda mounts them (/opt, /var/task), read-only.

`sam build` builds for arm64; where this machine is another architecture, the layer's compiled
extension modules (pydantic-core) are swapped for this machine's build of the same pinned
wheels from `.venv-runtime`. Every Python module and its bytecode stay exactly as built.
"""

from __future__ import annotations

import platform
import shutil
import stat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_VENV = ROOT / ".venv-runtime"
RUNTIME_PYTHON = (
    RUNTIME_VENV / "bin" / "python"
)  # python3.13 with the Lambda runtime's boto3 (requirements/runtime.txt)
BUILD = ROOT / ".aws-sam" / "build"


def logical_id(function: str) -> str:
    """`start_data_prep` → `StartDataPrepFunction` (the template's naming)."""
    return "".join(part.title() for part in function.split("_")) + "Function"


def lay_out(build: Path, dest: Path, functions: list[str]) -> Path:
    """Copy the layer to `dest/opt` and each function to `dest/task/<name>`, then make all of it read-only."""
    shutil.copytree(build / "SharedLayer", dest / "opt")
    for function in functions:
        shutil.copytree(build / logical_id(function), dest / "task" / function)
    _native_extensions(dest / "opt" / "python")
    for path in dest.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return dest


def _native_extensions(layer: Path) -> None:
    site = next(RUNTIME_VENV.glob("lib/python3.*/site-packages"))
    for built in layer.rglob("*.so"):
        if f"-{platform.machine()}-" in built.name:
            continue
        stem, tag = built.name.split(".")[:2]  # _pydantic_core, cpython-313-aarch64-linux-gnu
        tag = "-".join(tag.split("-")[:2])
        native = sorted((site / built.parent.relative_to(layer)).glob(f"{stem}.{tag}-{platform.machine()}-*.so"))
        if native:
            built.unlink()
            shutil.copy2(native[0], built.parent / native[0].name)
