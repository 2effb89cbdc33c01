"""`closedloop line validate|add|list|schema`: model lines from the command line, on a copy of the project."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from closedloop.line import LineResources
from closedloop_ops.cli import main
from closedloop_ops.lines import LINES_DIR, SCHEMA_FILE, with_model_lines
from support.cli import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what `line` commands read and write: samconfig.toml, template.yaml and the shipped loans line."""
    root = tmp_path / "project"
    (root / LINES_DIR).mkdir(parents=True)
    shutil.copyfile(ROOT / "samconfig.toml", root / "samconfig.toml")
    shutil.copyfile(ROOT / "template.yaml", root / "template.yaml")
    shutil.copyfile(ROOT / LINES_DIR / "loans.json", root / LINES_DIR / "loans.json")
    return root


def new_line(directory: Path, name: str = "fraud", **changes: Any) -> Path:
    """A new line file, `<name>.json`, made from the shipped churn line."""
    document = json.loads((ROOT / LINES_DIR / "churn.json").read_text(encoding="utf-8"))
    document["dataset"] = name
    document.update(changes)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def overrides(samconfig: Path, env: str) -> list[str]:
    document = tomllib.loads(samconfig.read_text(encoding="utf-8"))
    return list(document[env]["deploy"]["parameters"]["parameter_overrides"])


def changed_lines(before: str, after: str) -> list[str]:
    """The lines removed (-) and added (+) between two texts."""
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# -- validate ------------------------------------------------------------------------------------


def test_shipped_lines_are_ok_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    # When both shipped lines are validated
    paths = [ROOT / LINES_DIR / "loans.json", ROOT / LINES_DIR / "churn.json"]
    code, out, err = run(["line", "validate", *map(str, paths)], capsys)
    # Then each gets one OK line with its counts, label, protected attribute and approval mode
    assert (code, err) == (0, "")
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for path, line in zip(paths, lines, strict=True):
        document = json.loads(path.read_text(encoding="utf-8"))
        actions = Counter(column.get("action", "keep") for column in document["columns"].values())
        assert line == (
            f"OK {path}: line {document['dataset']}: {len(document['columns'])} columns "
            f"({actions['keep']} kept, {actions['drop']} dropped, {actions['pseudonymise']} pseudonymised, "
            f"{actions['mask']} masked); label {document['label']}; "
            f"protected attribute {document['protected_attribute']}; approval stack default"
        )


def test_an_invalid_file_lists_every_problem_by_field_and_no_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a line with three independent problems, one of them a value nobody should see echoed
    broken = new_line(tmp_path, "broken", version="s3cr3t-4111111111111111", undeclared_pii="ignore")
    document = json.loads(broken.read_text())
    document["columns"]["email"]["action"] = "delete"
    broken.write_text(json.dumps(document))
    good = new_line(tmp_path, "fraud", approval={"mode": "manual"})
    # When it is validated next to a good one
    code, out, _ = run(["line", "validate", str(broken), str(good)], capsys)
    # Then the exit status says something is invalid, and there is one line per file
    assert code == 1
    first, second = out.strip().splitlines()
    assert first.startswith(f"INVALID {broken}: ")
    for path in ("version: ", "undeclared_pii: ", "columns.email.action: "):
        assert path in first, path
    assert "s3cr3t" not in out and "4111" not in out
    assert second.startswith(f"OK {good}: line fraud: ") and second.endswith("approval manual")


def test_a_file_must_be_named_after_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = new_line(tmp_path, "fraud")
    misnamed = path.rename(tmp_path / "fraud-v2.json")
    code, out, _ = run(["line", "validate", str(misnamed)], capsys)
    assert code == 1
    assert out.strip() == (
        f"INVALID {misnamed}: the file is named fraud-v2.json but declares the line 'fraud': name it fraud.json"
    )


def test_a_column_declared_twice_is_not_silently_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a file where a column key appears twice (json would keep the last one only)
    path = new_line(tmp_path, "fraud")
    text = path.read_text().replace('"phone": {', '"email": {"action": "keep"},\n    "phone": {', 1)
    path.write_text(text)
    code, out, _ = run(["line", "validate", str(path)], capsys)
    assert code == 1
    assert "duplicate key 'email': JSON keeps only the last one" in out


@pytest.mark.parametrize(("content", "problem"), [(b"{not json", "Expecting property name"), (b"\xff\xfe", "UTF-8")])
def test_a_file_that_is_not_a_json_document(
    content: bytes, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fraud.json"
    path.write_bytes(content)
    code, out, err = run(["line", "validate", str(path), str(tmp_path / "none.json")], capsys)
    assert code == 1 and "Traceback" not in err
    first, second = out.strip().splitlines()
    assert first.startswith(f"INVALID {path}: ") and problem in first
    assert second == f"INVALID {tmp_path / 'none.json'}: no such file"


def test_alarms_the_stack_does_not_list_are_a_warning(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a line retrained by an alarm outside the stack, and a samconfig listing it for dev only
    path = new_line(tmp_path, "fraud", retraining={"alarms": ["fraud-monitor-violations"]})
    samconfig = project / "samconfig.toml"
    samconfig.write_text(
        samconfig.read_text().replace(
            '"LogRetentionDays=30",', '"LogRetentionDays=30",\n  "ExtraAlarmNames=x,fraud-monitor-violations",'
        )
    )
    # When it is validated
    code, out, err = run(["line", "validate", str(path), "--project", str(project)], capsys)
    # Then it is valid, and the warning names the env whose ExtraAlarmNames lacks the alarm
    assert code == 0 and out.startswith(f"OK {path}: ")
    assert err.strip() == (
        f"warning: {path}: retraining.alarms: 'fraud-monitor-violations' retrains this line only where the "
        "stack's ExtraAlarmNames lists it (samconfig.toml does not list it for: prod, staging)"
    )
    # And once every env lists it, there is nothing to warn about
    samconfig.write_text(
        samconfig.read_text()
        .replace('"LogRetentionDays=365",', '"LogRetentionDays=365",\n  "ExtraAlarmNames=fraud-monitor-violations",')
        .replace('"LogRetentionDays=90",', '"LogRetentionDays=90",\n  "ExtraAlarmNames=fraud-monitor-violations",')
    )
    code, _, err = run(["line", "validate", str(path), "--project", str(project)], capsys)
    assert (code, err) == (0, "")


# -- add -----------------------------------------------------------------------------------------


def test_add_copies_the_file_and_adds_the_line_to_one_env_only(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a new line and a samconfig.toml with no ModelLines override yet
    path = new_line(tmp_path, "fraud")
    samconfig = project / "samconfig.toml"
    before = samconfig.read_text()
    # When it is added for dev
    code, out, err = run(["line", "add", str(path), "--config-env", "dev", "--project", str(project)], capsys)
    # Then the file is in the lines directory, byte for byte
    assert (code, err) == (0, "")
    assert (project / LINES_DIR / "fraud.json").read_bytes() == path.read_bytes()
    # And the template makes the line's resources when ModelLines lists it
    template = (project / "template.yaml").read_text()
    assert "ServesFraud:" in template and "ModelPackageGroupFraud:" in template
    # And dev's overrides gained exactly one entry, the template's default line first; nothing else changed
    assert changed_lines(before, samconfig.read_text()) == ['+  "ModelLines=loans,fraud",']
    assert overrides(samconfig, "dev")[-1] == "ModelLines=loans,fraud"
    assert not any(o.startswith("ModelLines=") for o in overrides(samconfig, "prod"))
    # And it says what it changed and what to run next
    assert out.splitlines() == [
        f"line fraud: added {LINES_DIR}/fraud.json",
        "samconfig.toml [dev.deploy.parameters] ModelLines: set loans,fraud (was loans (the template's default))",
        "next: sam build && sam deploy --config-env dev",
        "then: upload files under raw/fraud/ of the stack's data bucket; watch `closedloop status`",
    ]

    # When the same file is added again, nothing changes
    after_first = samconfig.read_text()
    code, out, _ = run(["line", "add", str(path), "--config-env", "dev", "--project", str(project)], capsys)
    assert code == 0 and samconfig.read_text() == after_first
    assert out.splitlines()[:2] == [
        f"line fraud: kept {LINES_DIR}/fraud.json (the same file is there)",
        "samconfig.toml [dev.deploy.parameters] ModelLines: loans,fraud, with fraud already",
    ]

    # When another line is added, the existing entry is extended in place
    other = new_line(tmp_path, "upsell")
    code, _, _ = run(["line", "add", str(other), "--config-env", "dev", "--project", str(project)], capsys)
    assert code == 0
    assert changed_lines(after_first, samconfig.read_text()) == [
        '-  "ModelLines=loans,fraud",',
        '+  "ModelLines=loans,fraud,upsell",',
    ]


def test_add_refuses_to_overwrite_a_different_line_file_unless_told(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the loans line, changed but with the same version
    document = json.loads((project / LINES_DIR / "loans.json").read_text())
    document["undeclared_pii"] = "redact"
    path = tmp_path / "loans.json"
    path.write_text(json.dumps(document))
    shipped = (project / LINES_DIR / "loans.json").read_bytes()
    args = ["line", "add", str(path), "--config-env", "prod", "--project", str(project)]
    # Then it is refused in one line, and nothing changes
    samconfig = (project / "samconfig.toml").read_text()
    code, out, err = run(args, capsys)
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"closedloop: {LINES_DIR}/loans.json exists and differs: "
        "pass --replace to overwrite it (and raise its `version`)"
    )
    assert (project / LINES_DIR / "loans.json").read_bytes() == shipped
    assert (project / "samconfig.toml").read_text() == samconfig
    assert "ServesUpsell" not in (project / "template.yaml").read_text()
    # And with --replace it is overwritten, with a warning about the version
    code, out, _ = run([*args, "--replace"], capsys)
    assert code == 0
    assert (project / LINES_DIR / "loans.json").read_bytes() == path.read_bytes()
    assert "warning: version 1 replaces version 1: raise `version` when the line changes" in out
    # (loans is the template's default: prod deploys it already, so samconfig.toml stays as it was)
    assert (project / "samconfig.toml").read_text() == samconfig


def test_add_changes_nothing_when_anything_is_wrong(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samconfig = (project / "samconfig.toml").read_text()
    # An invalid line
    broken = new_line(tmp_path, "fraud", label="email")
    code, out, err = run(["line", "add", str(broken), "--config-env", "dev", "--project", str(project)], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"closedloop: {broken}: (document): Value error, label 'email' must be a kept column")
    assert err.strip().endswith("(nothing was changed)") and len(err.strip().splitlines()) == 1
    # A config env that does not deploy (the default env of this samconfig.toml has no deploy section)
    good = new_line(tmp_path, "upsell")
    code, out, err = run(["line", "add", str(good), "--config-env", "default", "--project", str(project)], capsys)
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"closedloop: {project / 'samconfig.toml'} has no [default.deploy.parameters]: "
        "`sam deploy --config-env default` would not deploy with it; pass --config-env with one that does "
        "(dev, prod, staging)"
    )
    assert not (project / LINES_DIR / "fraud.json").exists() and not (project / LINES_DIR / "upsell.json").exists()
    assert (project / "samconfig.toml").read_text() == samconfig


def test_add_with_deploy_dry_run_prints_the_commands_and_changes_nothing(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = new_line(tmp_path, "fraud")
    samconfig = (project / "samconfig.toml").read_text()
    args = ["line", "add", str(path), "--config-env", "prod", "--deploy", "--dry-run", "--project", str(project)]
    code, out, _ = run(args, capsys)
    assert code == 0
    assert out.splitlines() == [
        f"line fraud: would add {LINES_DIR}/fraud.json",
        "samconfig.toml [prod.deploy.parameters] ModelLines: would set loans,fraud "
        "(was loans (the template's default))",
        "would run: sam build",
        "would run: sam deploy --config-env prod",
        "then: upload files under raw/fraud/ of the stack's data bucket; watch `closedloop status`",
    ]
    assert not (project / LINES_DIR / "fraud.json").exists()
    assert (project / "samconfig.toml").read_text() == samconfig
    # And --json says the same for scripts
    code, out, _ = run([*args, "--json"], capsys)
    plan = json.loads(out)
    assert plan["commands"] == [["sam", "build"], ["sam", "deploy", "--config-env", "prod"]]
    assert plan["model_lines_after"] == ["loans", "fraud"] and plan["dry_run"] and plan["samconfig_changed"]


def fake_sam(directory: Path, fail_on: str | None = None) -> Path:
    """A `sam` that records its arguments and working directory (and fails on one subcommand)."""
    directory.mkdir()
    log = directory / "calls.log"
    script = directory / "sam"
    failing = f'[ "$1" = "{fail_on}" ] && exit 3\n' if fail_on else ""
    script.write_text(f'#!/bin/sh\necho "$PWD $*" >> {log}\necho "sam says $1"\n{failing}exit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_add_with_deploy_runs_sam_build_then_sam_deploy_in_the_project(
    project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a SAM CLI on PATH that records what it is asked to do
    log = fake_sam(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    path = new_line(tmp_path, "fraud")
    # When the line is added with --deploy
    code = main(["line", "add", str(path), "--config-env", "dev", "--deploy", "--project", str(project)])
    # Then both commands ran, in order, in the project, their output on our stdout
    assert code == 0
    assert log.read_text().splitlines() == [f"{project} build", f"{project} deploy --config-env dev"]
    out = capfd.readouterr().out
    assert out.index("run: sam build") < out.index("sam says build") < out.index("sam says deploy")
    assert (project / LINES_DIR / "fraud.json").is_file()


def test_a_failed_build_stops_before_deploy(
    project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_sam(tmp_path / "bin", fail_on="build")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    path = new_line(tmp_path, "fraud")
    code = main(["line", "add", str(path), "--config-env", "dev", "--deploy", "--project", str(project)])
    assert code == 3
    assert log.read_text().splitlines() == [f"{project} build"]
    assert capfd.readouterr().err.strip() == (
        "closedloop: `sam build` failed (exit status 3): the line is added; "
        "rerun sam build && sam deploy --config-env dev"
    )


# -- samconfig.toml layouts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        # a one-line list
        ('parameter_overrides = ["A=1", "B=2"]\n', 'parameter_overrides = ["A=1", "B=2", "ModelLines=loans,x"]\n'),
        # a string of overrides
        ('parameter_overrides = "A=1 B=2"\n', 'parameter_overrides = "A=1 B=2 ModelLines=loans,x"\n'),
        # a string that names lines already
        ('parameter_overrides = "ModelLines=loans A=1"\n', 'parameter_overrides = "ModelLines=loans,x A=1"\n'),
        # a list without a trailing comma, a comment after its last entry
        (
            'parameter_overrides = [\n    "A=1",\n    "B=2" # two\n]\n',
            'parameter_overrides = [\n    "A=1",\n    "B=2", # two\n    "ModelLines=loans,x"\n]\n',
        ),
        # no overrides at all
        ('stack_name = "s"\n', 'stack_name = "s"\nparameter_overrides = ["ModelLines=loans,x"]\n'),
    ],
)
def test_model_lines_is_written_into_any_samconfig_layout(section: str, expected: str) -> None:
    head = "version = 0.1\n# keep me\n[dev.deploy.parameters]\n"
    tail = '\n[prod.deploy.parameters]\nparameter_overrides = ["A=9"]\n'
    edited = with_model_lines(head + section + tail, "dev", ["loans", "x"])
    assert edited == head + expected + tail


def test_a_layout_that_cannot_be_edited_safely_says_what_to_add_by_hand() -> None:
    text = '[dev.deploy.parameters]\nparameter_overrides = """A=1\nB=2"""\n'
    with pytest.raises(
        Exception, match=r"add ModelLines=loans,x to parameter_overrides of \[dev.deploy.parameters\] by hand"
    ):
        with_model_lines(text, "dev", ["loans", "x"])


# -- list and schema -----------------------------------------------------------------------------


def test_list_shows_each_env_s_lines_with_their_resource_names(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given fraud added for dev, and prod naming a line that has no file
    run(["line", "add", str(new_line(tmp_path, "fraud")), "--config-env", "dev", "--project", str(project)], capsys)
    samconfig = project / "samconfig.toml"
    samconfig.write_text(
        samconfig.read_text().replace('"LogRetentionDays=365",', '"LogRetentionDays=365",\n  "ModelLines=loans,ghost",')
    )
    # When the lines are listed
    code, out, _ = run(["line", "list", "--project", str(project), "--json"], capsys)
    listing = json.loads(out)
    # Then the shipped files are checked, and each env's lines carry the names LineResources derives
    assert code == 0
    assert [(s["file"], s["ok"]) for s in listing["shipped"]] == [
        (f"{LINES_DIR}/fraud.json", True),
        (f"{LINES_DIR}/loans.json", True),
    ]
    envs = {env["config_env"]: env for env in listing["config_envs"]}
    assert set(envs) == {"dev", "staging", "prod"}
    assert envs["dev"]["model_lines"] == ["loans", "fraud"] and not envs["dev"]["from_template_default"]
    for listed, owned in (
        (envs["dev"]["resources"][1], LineResources.of("closedloop", "raw/", "fraud")),
        (envs["prod"]["resources"][0], LineResources.of("closedloop", "raw/", "loans")),
    ):
        assert listed == {
            "line": owned.line,
            "model_package_group": owned.model_package_group,
            "endpoint_name": owned.endpoint_name,
            "drift_alarms": list(owned.drift_alarms),
            "endpoint_alarms": list(owned.endpoint_alarms),
            "drift_schedule": owned.drift_schedule,
            "raw_prefix": owned.raw_prefix,
        }
    assert envs["prod"]["without_valid_file"] == ["ghost"]
    # And the text says the same
    code, out, _ = run(["line", "list", "--project", str(project)], capsys)
    assert "config env dev (stack closedloop-dev): ModelLines loans,fraud" in out
    assert "  ghost — NO VALID FILE: the stack cannot serve it" in out
    assert "    drift schedule       closedloop-fraud-drift" in out


def test_schema_prints_the_checked_in_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["line", "schema"], capsys)
    assert code == 0
    assert out == (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")


def test_every_line_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["line"], *(["line", action] for action in ("validate", "add", "list", "schema"))):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert exit_info.value.code == 0
        assert text.startswith(f"usage: closedloop {' '.join(command)} ")
        assert "examples:\n  closedloop " in text, command
        assert max(len(line) for line in text.splitlines() if not line.startswith("  closedloop")) <= 100, command
