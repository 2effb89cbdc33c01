"""docs/operator.ipynb as a reader opens it: outputs from a real run, a kernel named, nothing irreversible unasked."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "operator.ipynb"


def test_every_code_cell_has_the_outputs_of_a_real_run_and_none_failed() -> None:
    # Given the notebook as committed
    document = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in document["cells"] if cell["cell_type"] == "code"]
    # When its saved outputs are read
    outputs = [output for cell in code for output in cell["outputs"]]
    # Then every code cell shows what it printed against the demo loop, and no cell failed
    assert all(cell["outputs"] for cell in code)
    assert [o for o in outputs if o["output_type"] == "error"] == []
    assert document["metadata"]["kernelspec"]["name"] == "closedloop"  # `make notebook` registers it


def test_the_only_cell_that_approves_waits_for_the_reader_to_fill_it_in() -> None:
    # Given the notebook's code cells
    document = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    sources = ["".join(cell["source"]) for cell in document["cells"] if cell["cell_type"] == "code"]
    # When the cells that call approve or reject are found
    acting = [
        s for s in sources if "approvals.approve(" in s or "approvals.reject(" in s.replace("# `approvals.reject", "")
    ]
    # Then there is one, it starts with nothing chosen, and it acts only once both are filled in
    assert len(acting) == 1
    assert "VERSION = None" in acting[0] and 'REASON = ""' in acting[0]
    assert "if VERSION is None or not REASON.strip():" in acting[0]
