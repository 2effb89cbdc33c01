"""`closedloop local up --lines`: the lines become the template's ModelLines; the banner says how to reach the loop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from closedloop_ops.cli import main
from closedloop_ops.local import loop as local_loop


@dataclass
class FakeStack:
    stack_name: str
    outputs: dict[str, Any]
    region: str = "eu-west-1"
    endpoint_url: str = "http://127.0.0.1:50123"


@dataclass
class FakeLoop:
    """What `cmd_local_up` uses of a running loop; the first delivery pass is the user's Ctrl-C."""

    stack: FakeStack

    def output(self, name: str) -> Any:
        return self.stack.outputs[name]

    def settle(self) -> int:
        raise KeyboardInterrupt


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments each `LocalLoop.start` got; the loop serves the ModelLines it was given."""
    calls: list[dict[str, Any]] = []

    @contextmanager
    def start(**kwargs: Any) -> Iterator[FakeLoop]:
        calls.append(kwargs)
        lines = (kwargs.get("parameters") or {}).get("ModelLines", "loans")
        outputs = {"ResourcePrefix": "closedloop", "RawPrefix": "raw/", "ModelLines": lines}
        yield FakeLoop(FakeStack(kwargs["stack_name"], outputs))

    monkeypatch.setattr(local_loop.LocalLoop, "start", staticmethod(start))
    return calls


def test_the_lines_given_are_the_stacks_model_lines(
    started: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the loop is started for two lines
    code = main(["local", "up", "--lines", "loans, churn", "--state-file", str(tmp_path / "state.json")])
    out = capsys.readouterr().out
    # Then the template gets them as ModelLines
    assert code == 0 and started[0]["parameters"] == {"ModelLines": "loans,churn"}
    # And the banner names the emulator, the region, the account, the credentials and each line's names
    assert out.startswith(
        "local loop up at http://127.0.0.1:50123 (stack closedloop-local, region eu-west-1, account 123456789012)"
    )
    assert (
        "model lines: loans: endpoint closedloop-loans, model group closedloop-loans; "
        "churn: endpoint closedloop-churn, model group closedloop-churn\n"
    ) in out
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:50123 AWS_REGION=eu-west-1 " in out
    assert 'aws_access_key_id="local", aws_secret_access_key="local")' in out
    # And the state file is gone once the loop stopped
    assert not (tmp_path / "state.json").exists()


def test_without_lines_the_template_default_is_used(
    started: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["local", "up", "--state-file", str(tmp_path / "state.json")])
    assert code == 0 and "ModelLines" not in started[0]["parameters"]
    assert "model lines: loans: endpoint closedloop-loans" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("payroll", "closedloop: --lines: no model line 'payroll' ships with closedloop (lines: "),
        (" , ", "closedloop: --lines is empty: name the model lines to serve, e.g. --lines loans,churn"),
        ("loans,loans", "closedloop: --lines names a model line twice"),
        ("Loans", "closedloop: --lines: no model line 'Loans' ships with closedloop"),
    ],
)
def test_a_line_that_does_not_ship_is_refused_before_anything_starts(
    started: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, message: str
) -> None:
    code = main(["local", "up", "--lines", lines, "--state-file", str(tmp_path / "state.json")])
    err = capsys.readouterr().err
    assert (code, started) == (2, []) and err.startswith(message) and len(err.strip().splitlines()) == 1
