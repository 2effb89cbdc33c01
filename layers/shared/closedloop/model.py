"""The base of closedloop's pydantic models: validators are built on first use, not at import.

Building a model's validator is most of what importing a module of models costs (~0.5-1 ms a
model on Lambda), and a route uses few of the models the modules it imports define. With
`defer_build`, a model builds its validator the first time it validates, dumps or is
instantiated, so a cold start pays only for the models its event uses, in the invocation that
uses them. `Settings` is the exception: it is validated at import, once per cold start.
`tests/integration/test_import_budget.py` pins what a handler builds at import.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model built on first use (subclasses' `model_config` adds to this one)."""

    model_config = ConfigDict(defer_build=True)
