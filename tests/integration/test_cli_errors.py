"""Bad input to every command of `closedloop`: one line that says what to do, a non-zero exit, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from closedloop_ops import status
from closedloop_ops.cli import build_parser, main
from support.cli import CREDENTIAL_VARIABLES, run

STACK_COMMANDS = {
    "status": ["status"],
    "approve": ["approve", "3", "--reason", "reviewed", "--yes"],
    "reject": ["reject", "3", "--reason", "reviewed", "--yes"],
    "lineage": ["lineage", "--model-version", "3"],
    "dlq": ["dlq", "list"],
    "audit": ["audit", "--since", "2026-11-01"],
    "pipeline": ["pipeline", "upsert"],
}


@pytest.fixture
def definition(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"Version": "2020-12-01", "Steps": [{"Name": "Train"}]}))
    return path


def command(name: str, definition: Path) -> list[str]:
    args = list(STACK_COMMANDS[name])
    return [*args, "--definition", str(definition)] if name == "pipeline" else args


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("name", sorted(STACK_COMMANDS))
def test_a_local_loop_that_is_not_running(
    name: str, definition: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no local loop ever started here
    missing = ["--local", "--state-file", str(tmp_path / "none.json")]
    code, out, err = run([*command(name, definition), *missing], capsys)
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "closedloop: the local loop is not running: start it with `closedloop local up` (or `make demo`)"
    )
    # Given a loop that stopped without cleaning up (its state file points at a closed port)
    stale = tmp_path / "stale.json"
    stale.write_text(
        json.dumps(
            {"name": "closedloop-local", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9", "outputs": {}}
        )
    )
    code, out, err = run([*command(name, definition), "--local", "--state-file", str(stale)], capsys)
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "closedloop: the local loop at http://127.0.0.1:9 does not answer: "
        "start it with `closedloop local up` (or `make demo`)"
    )


@pytest.mark.parametrize("name", sorted(STACK_COMMANDS))
def test_missing_aws_credentials(
    name: str, definition: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a machine with no AWS credentials at all
    for variable in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # When a command reads the deployed stack
    code, out, err = run([*command(name, definition), "--stack", "closedloop-dev", "--region", "eu-west-1"], capsys)
    # Then it says how to get credentials
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "closedloop: no AWS credentials: set AWS_PROFILE or run `aws configure` / `aws sso login` "
        "(or use --local for the local loop)"
    )


def test_an_unknown_profile_or_no_region(
    definition: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    code, _, err = run(["status", "--profile", "compliance"], capsys)
    assert code == 2 and one_line(err).startswith("closedloop: AWS profile problem: ")
    assert "aws configure list-profiles" in err
    code, _, err = run(["status"], capsys)
    assert code == 2 and one_line(err) == (
        "closedloop: no AWS region: pass --region, set AWS_REGION, or configure one with `aws configure`"
    )


def test_other_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A pipeline definition that is not there
    code, _, err = run(["pipeline", "upsert", "--definition", str(tmp_path / "none.json"), "--local"], capsys)
    assert code == 2 and one_line(err).startswith(f"closedloop: no pipeline definition at {tmp_path / 'none.json'}")
    # A state file that is not the local loop's
    broken = tmp_path / "state.json"
    broken.write_text("{not json")
    code, _, err = run(["status", "--local", "--state-file", str(broken)], capsys)
    assert code == 2 and one_line(err).startswith(f"closedloop: {broken} is not a local loop state file")
    # A date that is not one
    code, _, err = run(["audit", "--since", "last tuesday", "--local", "--state-file", str(broken)], capsys)
    assert code == 2 and "expected a date or time such as 2026-11-27" in one_line(err)


def test_contradictory_or_empty_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # (checked before any AWS call: no loop, no credentials needed)
    local = ["--local", "--state-file", str(tmp_path / "none.json")]
    # --stack names a deployed stack; --local the local loop: not both
    code, _, err = run(["status", "--stack", "closedloop-prod", *local], capsys)
    assert code == 2 and one_line(err) == (
        "closedloop: --stack names a deployed stack and --local the local loop: pass one of them"
    )
    # --until before --since could hold nothing
    code, _, err = run(["audit", "--since", "2026-11-20", "--until", "2026-11-01", *local], capsys)
    assert code == 2 and one_line(err) == (
        "closedloop: --until 2026-11-01 is not after --since 2026-11-20: nothing could be in between"
    )
    # An empty inference id or version is an error, not "the endpoint"
    for flag in ("--inference-id", "--model-version"):
        code, _, err = run(["lineage", flag, "", *local], capsys)
        assert code == 2 and one_line(err).startswith(f"closedloop: {flag} is empty")
    # A flip without --reason is one line, not a usage block
    for action in ("approve", "reject"):
        code, _, err = run([action, "3", "--yes", *local], capsys)
        assert code == 2 and one_line(err) == (
            f'closedloop: {action} needs --reason "…": why, recorded in the registry next to who decided'
        )


def test_the_local_loop_check_waits_for_a_busy_loop_and_not_for_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error
    import urllib.request

    from closedloop_ops import stackref

    # Given a loop that is busy for two attempts (a timeout), then answers
    calls: list[str] = []

    class Answer:
        def close(self) -> None:
            pass

    def busy_then_up(url: str, timeout: float) -> Answer:
        calls.append(url)
        if len(calls) < 3:
            raise urllib.error.URLError(TimeoutError("timed out"))
        return Answer()

    monkeypatch.setattr(urllib.request, "urlopen", busy_then_up)
    # Then it is found running on the third attempt
    assert stackref._answers("http://127.0.0.1:5000/moto-api/") is True
    assert len(calls) == 3

    # Given nothing listening: no waiting at all
    def refused(url: str, timeout: float) -> Answer:
        calls.append(url)
        raise urllib.error.URLError(ConnectionRefusedError(111, "refused"))

    calls.clear()
    monkeypatch.setattr(urllib.request, "urlopen", refused)
    assert stackref._answers("http://127.0.0.1:9/moto-api/") is False
    assert len(calls) == 1


def test_an_unexpected_aws_error_is_one_line_and_debug_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an AWS call the caller's role may not make
    def denied(*_: object, **__: object) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform sagemaker:ListX"}},
            "ListModelPackages",
        )

    monkeypatch.setattr(status, "stack_status", denied)
    monkeypatch.setattr("closedloop_ops.cli._stack", lambda args: None)
    # Then the command says which call was refused and why, in one line
    code, _, err = run(["status"], capsys)
    assert code == 1
    assert one_line(err) == (
        "closedloop: AWS refused ListModelPackages: AccessDeniedException: not authorized to perform "
        "sagemaker:ListX (your identity lacks a permission: see docs/governance.md for who needs what)"
    )
    # And --debug shows the traceback
    with pytest.raises(ClientError):
        main(["--debug", "status"])


def test_every_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    names = sorted(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert names == [
        "approve",
        "audit",
        "demo",
        "dlq",
        "line",
        "lineage",
        "local",
        "pipeline",
        "reject",
        "route",
        "status",
        "ui",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    overview = capsys.readouterr().out
    assert all(f"    {name}" in overview for name in names)
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        text = capsys.readouterr().out
        assert exit_info.value.code == 0
        assert text.startswith(f"usage: closedloop {name} ")
        assert "examples:\n  closedloop " in text, name
        assert max(len(line) for line in text.splitlines() if not line.startswith("  closedloop")) <= 100, name
