"""The pipeline's step scripts, loaded as modules in tests (the steps are scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

STEPS = Path(__file__).resolve().parents[2] / "pipelines" / "steps"


def load_step(name: str, prefix: str = "closedloop_steps") -> ModuleType:
    """`pipelines/steps/<name>.py` as the module `<prefix>_<name>`, registered while it loads (dataclasses
    look their module up)."""
    spec = importlib.util.spec_from_file_location(f"{prefix}_{name}", STEPS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
