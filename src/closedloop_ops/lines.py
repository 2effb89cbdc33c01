"""Model lines from the command line: check a line file, add it to the project, list the lines.

A line is one JSON file, `layers/shared/closedloop/lines/<line>.json` (`closedloop.line.LineSpec`),
deployed by naming it in the stack's `ModelLines` parameter. `check_line_file` validates a file
as the routes will read it; `plan_add`/`apply_add` copy it into the project and add it to
`ModelLines` in `samconfig.toml` for one config env, changing nothing else in that file;
`project_lines` says which lines ship and which each config env deploys, with the AWS names each
owns. `line_schema` is the published JSON Schema (`schemas/model-line.schema.json`).

Messages name files, fields, columns, lines and alarms, never a data value (a policy holds none).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop.dataprep.policy import COLUMN_NAME, REGION
from closedloop.errors import DatasetPolicyError
from closedloop.line import LINE_NAME, LineResources, LineSpec, parse_line
from closedloop_ops.cli_errors import CliError

PROJECT = Path(__file__).resolve().parents[2]
LINES_DIR = Path("layers/shared/closedloop/lines")
SAMCONFIG = Path("samconfig.toml")
SCHEMA_FILE = Path("schemas/model-line.schema.json")
SCHEMA_ID = "urn:closedloop:schema:model-line"
# template.yaml's defaults of the parameters a line's names depend on
# (tests/unit/test_line_schema.py checks them against the template).
TEMPLATE_DEFAULTS = {"ResourcePrefix": "closedloop", "RawPrefix": "raw/", "ModelLines": "loans", "ExtraAlarmNames": ""}
# The column types the training pipeline learns from (pipelines/steps/common.py FEATURE_TYPES).
FEATURE_TYPES = ("numeric", "categorical")
ACTIONS = ("keep", "drop", "pseudonymise", "mask")
COUNT_NAMES = {"keep": "kept", "drop": "dropped", "pseudonymise": "pseudonymised", "mask": "masked"}


# -- the published JSON Schema --------------------------------------------------------------------


def line_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a line file, generated from `LineSpec`.

    Three rules LineSpec checks in its validators are per-field and so expressible here too: the
    line's name, the columns' names and the region codes. The rules across fields are not.
    """
    generated = LineSpec.model_json_schema(by_alias=True, mode="validation")
    properties = generated["properties"]
    # LINE_NAME is narrower than the dataset field's own pattern: a line's name must match both
    properties["dataset"]["pattern"] = LINE_NAME.pattern
    properties["dataset"]["description"] = (
        "the line's name: 1-30 lower-case letters, digits and single hyphens, starting with a letter; "
        "it names the line's AWS resources, its raw prefix and this file (<name>.json)"
    )
    properties["columns"]["propertyNames"] = {"pattern": COLUMN_NAME.pattern}
    (regions,) = [option for option in properties["regions"]["anyOf"] if option.get("type") == "array"]
    regions["items"]["pattern"] = REGION
    generated.pop("title", None)
    generated.pop("description", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "closedloop model line",
        "description": (
            "One model line of closedloop: the dataset policy of the files under raw/<line>/ (their columns, "
            "what preparation does with each, the label and protected attribute) and the line's approval and "
            "retraining overrides. One file per line, layers/shared/closedloop/lines/<line>.json, named after "
            "its `dataset` field. This schema checks fields, types, allowed values and ranges; the rules across "
            "fields are not expressible in it (label and protected_attribute must be kept columns; a "
            "pseudonymised column needs `rename` and only it may have one; minimum, maximum and decimals apply "
            "to numeric columns and minimum <= maximum; classes apply to label and categorical columns; no two "
            "output columns share a name; not every column dropped). `closedloop line validate FILE` applies "
            "the full rules, as the stack does. Docs: docs/onboarding.md."
        ),
        **generated,
    }


def schema_text() -> str:
    """`schemas/model-line.schema.json` as it must read, byte for byte."""
    return json.dumps(line_schema(), indent=2, ensure_ascii=False) + "\n"


# -- samconfig.toml ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigEnv:
    """What one config env of samconfig.toml deploys (an env with `[<env>.deploy.parameters]`)."""

    name: str
    stack_name: str | None
    overrides: dict[str, str]
    model_lines: tuple[str, ...]
    lines_from_template: bool  # no ModelLines override: the template's default

    @property
    def resource_prefix(self) -> str:
        return self.overrides.get("ResourcePrefix", TEMPLATE_DEFAULTS["ResourcePrefix"])

    @property
    def raw_prefix(self) -> str:
        return self.overrides.get("RawPrefix", TEMPLATE_DEFAULTS["RawPrefix"])

    @property
    def extra_alarm_names(self) -> tuple[str, ...]:
        return _csv(self.overrides.get("ExtraAlarmNames", TEMPLATE_DEFAULTS["ExtraAlarmNames"]))


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_overrides(value: Any) -> dict[str, str]:
    """`parameter_overrides` (a list of `Key=Value` strings, or one string of them) as a dict."""
    items = value if isinstance(value, list) else [value]
    parsed: dict[str, str] = {}
    for item in items:
        try:
            tokens = shlex.split(str(item))
        except ValueError:
            continue  # unbalanced quotes: SAM would refuse it too; nothing of ours is in it
        for token in tokens:
            key, sep, setting = token.partition("=")
            if sep:
                parsed[key] = setting
    return parsed


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"no {path.name} at {path.parent}: pass --project, the closedloop checkout to change") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path} is not valid TOML ({exc}): fix it first") from None


def _table(document: dict[str, Any], *keys: str) -> Any:
    """`document[k1][k2]…`, or None where a key is missing or a value is not a table."""
    value: Any = document
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def config_envs(samconfig: Path) -> dict[str, ConfigEnv]:
    """Every config env of `samconfig` that deploys, with the lines it deploys.

    Raises:
        CliError: the file is missing or not TOML.
    """
    document = _load_toml(samconfig)
    envs = {}
    for name in document:
        deploy = _table(document, name, "deploy", "parameters")
        if not isinstance(deploy, dict):
            continue
        overrides = parse_overrides(deploy.get("parameter_overrides", []))
        stack = deploy.get("stack_name") or _table(document, name, "global", "parameters", "stack_name")
        lines = overrides.get("ModelLines")
        envs[name] = ConfigEnv(
            name=name,
            stack_name=stack,
            overrides=overrides,
            model_lines=_csv(lines if lines is not None else TEMPLATE_DEFAULTS["ModelLines"]),
            lines_from_template=lines is None,
        )
    return envs


def with_model_lines(text: str, env: str, lines: Sequence[str], *, where: str = "samconfig.toml") -> str:
    """`text` (a samconfig.toml) with `ModelLines=<lines>` in `[<env>.deploy.parameters]`'s overrides.

    Only the `ModelLines` entry is written (replaced, or added after the last override in the
    list's own layout); every other byte stays. The result is parsed back and must differ from
    `text` in that one override alone.

    Raises:
        CliError: the env has no deploy section, or the file is laid out so that the edit could not
            be made safely (then it says what to add by hand).
    """
    value = "ModelLines=" + ",".join(lines)
    before = tomllib.loads(text)
    by_hand = CliError(
        f"could not edit {where} safely: add {value} to parameter_overrides of [{env}.deploy.parameters] by hand"
    )
    if not isinstance(_table(before, env, "deploy", "parameters"), dict):
        deploying = ", ".join(sorted(n for n in before if _table(before, n, "deploy", "parameters"))) or "none"
        raise CliError(
            f"{where} has no [{env}.deploy.parameters]: `sam deploy --config-env {env}` would not deploy with it; "
            f"pass --config-env with one that does ({deploying})"
        )
    header = re.search(
        rf"(?m)^[ \t]*\[[ \t]*{re.escape(env)}[ \t]*\.[ \t]*deploy[ \t]*\.[ \t]*parameters[ \t]*\][ \t]*(?:#.*)?$", text
    )
    if header is None:
        raise by_hand
    following = re.compile(r"(?m)^[ \t]*\[[ \t]*[A-Za-z0-9_\"']").search(text, header.end())
    end = following.start() if following else len(text)
    key = re.compile(r"(?m)^[ \t]*parameter_overrides[ \t]*=[ \t]*").search(text, header.end(), end)
    if key is None:
        body_end = header.end() + len(text[header.end() : end].rstrip())
        edited = f'{text[:body_end]}\nparameter_overrides = ["{value}"]{text[body_end:]}'
    elif text.startswith("[", key.end()):
        edited = _edit_array(text, key.end(), value, by_hand)
    elif text.startswith('"', key.end()) and not text.startswith('"""', key.end()):
        edited = _edit_string(text, key.end(), value, by_hand)
    else:
        raise by_hand
    _check_only_model_lines_changed(before, edited, env, ",".join(lines), by_hand)
    return edited


_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'')


def _edit_array(text: str, start: int, value: str, by_hand: CliError) -> str:
    """Replace or append the ModelLines element of the TOML array of strings opening at `start`."""
    elements: list[tuple[int, int, str]] = []  # (start, end, decoded) of each string
    position = start + 1
    while position < len(text):
        char = text[position]
        if char in " \t\r\n,":
            position += 1
        elif char == "#":
            newline = text.find("\n", position)
            position = len(text) if newline < 0 else newline
        elif char == "]":
            break
        else:
            literal = _STRING.match(text, position)
            if literal is None:
                raise by_hand
            decoded = tomllib.loads(f"v = {literal.group()}")["v"]
            elements.append((literal.start(), literal.end(), decoded))
            position = literal.end()
    else:
        raise by_hand
    closing = position
    ours = [e for e in elements if str(e[2]).startswith("ModelLines=")]
    if len(ours) > 1:
        raise by_hand
    if ours:
        first, last, _ = ours[0]
        return f'{text[:first]}"{value}"{text[last:]}'
    if not elements:
        return f'{text[: start + 1]}"{value}"{text[closing:]}'
    first_start, last_end = elements[0][0], elements[-1][1]
    after = re.compile(r"[ \t]*(,?)").match(text, last_end)
    assert after is not None  # the pattern matches the empty string
    has_comma = bool(after.group(1))
    if "\n" not in text[start:first_start]:  # one line: ["A=1", "B=2"]
        return f'{text[:last_end]}, "{value}"{text[last_end:]}'
    line_start = text.rfind("\n", 0, elements[-1][0]) + 1
    indent = text[line_start : elements[-1][0]]
    indent = indent if not indent.strip() else "  "
    line_end = text.find("\n", last_end)
    line_end = closing if line_end < 0 or line_end > closing else line_end
    if has_comma:
        return f'{text[:line_end]}\n{indent}"{value}",{text[line_end:]}'
    return f'{text[:last_end]},{text[last_end:line_end]}\n{indent}"{value}"{text[line_end:]}'


def _edit_string(text: str, start: int, value: str, by_hand: CliError) -> str:
    """Replace or append `ModelLines=…` in the one-line basic string opening at `start`."""
    literal = _STRING.match(text, start)
    if literal is None or "\\" in literal.group():
        raise by_hand
    inner = literal.group()[1:-1]
    token = re.compile(r"(?<!\S)ModelLines=\S*")
    found = token.findall(inner)
    if len(found) > 1:
        raise by_hand
    inner = token.sub(value, inner) if found else (f"{inner} {value}" if inner.strip() else value)
    return f'{text[: literal.start()]}"{inner}"{text[literal.end() :]}'


def _check_only_model_lines_changed(
    before: dict[str, Any], edited: str, env: str, lines: str, by_hand: CliError
) -> None:
    try:
        after = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        raise by_hand from None
    old = before[env]["deploy"]["parameters"].get("parameter_overrides", [])
    new = after.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides")
    if new is None or parse_overrides(new) != {**parse_overrides(old), "ModelLines": lines}:
        raise by_hand

    def without_overrides(document: dict[str, Any]) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(document, default=str))
        copy[env]["deploy"]["parameters"].pop("parameter_overrides", None)
        return copy

    if without_overrides(after) != without_overrides(before):
        raise by_hand


# -- checking a line file ------------------------------------------------------------------------


@dataclass
class LineCheck:
    """The verdict on one line file: its problems (invalid) or its summary, and warnings either way."""

    file: str
    line: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)
    label: str | None = None
    protected_attribute: str | None = None
    approval: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        counts = ", ".join(f"{self.columns.get(action, 0)} {COUNT_NAMES[action]}" for action in ACTIONS)
        return (
            f"line {self.line}: {sum(self.columns.values())} columns ({counts}); "
            f"label {self.label or '(none)'}; protected attribute {self.protected_attribute or '(none)'}; "
            f"approval {self.approval}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "line": self.line,
            "problems": self.problems,
            "warnings": self.warnings,
            "columns": self.columns,
            "label": self.label,
            "protected_attribute": self.protected_attribute,
            "approval": self.approval,
        }


def _duplicate_keys(text: str) -> list[str]:
    """Keys that appear twice in one JSON object (json keeps the last silently: a column would vanish)."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(text, object_pairs_hook=pairs)
    except ValueError:
        return []  # parse_line reports why it is not JSON
    return duplicates


def check_line_file(path: Path, envs: dict[str, ConfigEnv] | None = None) -> tuple[LineCheck, LineSpec | None]:
    """Validate a line file as the stack reads it, and check it is named `<line>.json`.

    `envs` (samconfig.toml's deploying config envs, if known) makes the warning about
    `retraining.alarms` name the envs whose `ExtraAlarmNames` lack an alarm.
    """
    check = LineCheck(file=str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        check.problems.append("no such file")
        return check, None
    except IsADirectoryError:
        check.problems.append("is a directory, not a line file")
        return check, None
    except UnicodeDecodeError as exc:
        check.problems.append(f"not UTF-8 text (byte {exc.start})")
        return check, None
    check.problems.extend(f"duplicate key {key!r}: JSON keeps only the last one" for key in _duplicate_keys(text))
    try:
        spec = parse_line(text, source=path.name)
    except DatasetPolicyError as exc:
        # validate_document joins the problems with "; " after this prefix
        detail = exc.message.removeprefix(f"invalid model line {path.name}: ")
        check.problems.extend(problem for problem in detail.split("; ") if problem)
        return check, None
    check.line = spec.name
    check.columns = {action: 0 for action in ACTIONS}
    for column in spec.columns.values():
        check.columns[column.action] += 1
    check.label, check.protected_attribute = spec.label, spec.protected_attribute
    check.approval = spec.approval.mode.value if spec.approval.mode is not None else "stack default"
    if path.name != f"{spec.name}.json":
        check.problems.append(
            f"the file is named {path.name} but declares the line {spec.name!r}: name it {spec.name}.json"
        )
    check.warnings.extend(_warnings(spec, envs))
    return check, spec


def _warnings(spec: LineSpec, envs: dict[str, ConfigEnv] | None) -> list[str]:
    notes = []
    if spec.label is None:
        notes.append("no label: the training pipeline stops at once ('the prepared manifest declares no label')")
    features = [
        name
        for name, column in spec.columns.items()
        if column.action != "drop"
        and column.type in FEATURE_TYPES
        and name not in (spec.label, spec.protected_attribute)
    ]
    if not features:
        notes.append("no numeric or categorical column to learn from besides the label and protected attribute")
    for alarm in spec.retraining.alarms:
        lacking = sorted(n for n, env in (envs or {}).items() if alarm not in env.extra_alarm_names)
        where = f" (samconfig.toml does not list it for: {', '.join(lacking)})" if lacking else ""
        if lacking or not envs:
            notes.append(
                f"retraining.alarms: {alarm!r} retrains this line only where the stack's ExtraAlarmNames "
                f"lists it{where}"
            )
    return notes


# -- adding a line to the project -------------------------------------------------------------------


@dataclass
class AddPlan:
    """What `closedloop line add` changes (or, with --dry-run, would change)."""

    line: str
    source: str
    destination: str
    file_action: str  # "add" | "replace" | "unchanged"
    samconfig: str
    config_env: str
    model_lines_before: list[str]
    model_lines_after: list[str]
    lines_from_template: bool
    commands: list[list[str]]
    warnings: list[str] = field(default_factory=list)
    samconfig_text: str | None = None  # the edited file; None: unchanged

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "samconfig_text"} | {
            "samconfig_changed": self.samconfig_text is not None
        }


def deploy_commands(config_env: str) -> list[list[str]]:
    """The commands that deploy a config env: `sam build`, then `sam deploy --config-env ENV`."""
    return [["sam", "build"], ["sam", "deploy", "--config-env", config_env]]


def plan_add(source: Path, project: Path, config_env: str, *, replace: bool) -> AddPlan:
    """Check `source` and work out what adding it to `project` for `config_env` changes.

    Raises:
        CliError: the file is not a valid line, a different file of that line exists (without
            `replace`), or samconfig.toml cannot take the line for that env.
    """
    check, spec = check_line_file(source)
    if spec is None or not check.ok:
        raise CliError(f"{source}: {'; '.join(check.problems)} (nothing was changed)", code=1)
    samconfig = project / SAMCONFIG
    envs = config_envs(samconfig)
    destination = project / LINES_DIR / f"{spec.name}.json"
    if not destination.parent.is_dir():
        raise CliError(f"no {LINES_DIR} in {project}: pass --project, the closedloop checkout to change")
    warnings = list(_warnings(spec, envs))
    file_action = "add"
    if destination.exists():
        if destination.read_bytes() == source.read_bytes():
            file_action = "unchanged"
        elif not replace:
            raise CliError(
                f"{_shown(destination, project)} exists and differs: pass --replace to overwrite it "
                "(and raise its `version`)"
            )
        else:
            file_action = "replace"
            shipped = _shipped_version(destination)
            if shipped is not None and shipped >= spec.version:
                warnings.append(
                    f"version {spec.version} replaces version {shipped}: raise `version` when the line changes "
                    "(prepared data records it)"
                )
    env = envs.get(config_env)
    before = list(env.model_lines) if env else []
    after = before if spec.name in before else [*before, spec.name]
    edited = None
    if env is None or after != before:  # without a deploy section, this refuses and says which envs deploy
        edited = with_model_lines(samconfig.read_text(encoding="utf-8"), config_env, after, where=str(samconfig))
    return AddPlan(
        line=spec.name,
        source=str(source),
        destination=_shown(destination, project),
        file_action=file_action,
        samconfig=_shown(samconfig, project),
        config_env=config_env,
        model_lines_before=before,
        model_lines_after=after,
        lines_from_template=env.lines_from_template if env else True,
        commands=deploy_commands(config_env),
        warnings=warnings,
        samconfig_text=edited,
    )


def _shipped_version(path: Path) -> int | None:
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("version")
    except (ValueError, AttributeError, OSError):
        return None
    return version if isinstance(version, int) else None


def _shown(path: Path, project: Path) -> str:
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)


def apply_add(plan: AddPlan, source: Path, project: Path) -> None:
    """Write what `plan` says: the line file, the template's per-line blocks, then samconfig.toml."""
    if plan.file_action != "unchanged":
        shutil.copyfile(source, project / LINES_DIR / f"{plan.line}.json")
    write_template(project)
    if plan.samconfig_text is not None:
        (project / SAMCONFIG).write_text(plan.samconfig_text, encoding="utf-8")


def write_template(project: Path) -> bool:
    """template.yaml's per-line blocks for the line files of `project` (closedloop_ops.line_template)."""
    from closedloop_ops import line_template

    lines = sorted(path.stem for path in (project / LINES_DIR).glob("*.json"))
    return line_template.write(project / "template.yaml", lines, project / LINES_DIR)


def run_deploy(commands: list[list[str]], project: Path) -> tuple[int, list[str] | None]:
    """Run the deploy commands in the project, one after the other, their output on this terminal.

    Returns (0, None), or the exit status of the first command that failed and that command.

    Raises:
        CliError: the SAM CLI is not installed.
    """
    sam = shutil.which("sam") or next(
        (str(p) for p in [project / ".venv-sam" / "bin" / "sam"] if p.is_file()),
        None,
    )
    if sam is None:
        raise CliError("`sam` is not on PATH (`make venv` puts it in .venv-sam/bin): the line is added, not deployed")
    for command in commands:
        done = subprocess.run([sam, *command[1:]], cwd=project, check=False)  # noqa: S603 - the SAM CLI, our arguments
        if done.returncode != 0:
            return done.returncode, command
    return 0, None


# -- listing -----------------------------------------------------------------------------------------


@dataclass
class ProjectLines:
    """The lines whose files ship in the project, and the lines each config env deploys."""

    shipped: list[LineCheck]
    envs: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"shipped": [check.as_dict() for check in self.shipped], "config_envs": self.envs}


def resource_names(owned: LineResources) -> dict[str, Any]:
    """The AWS names a line owns, as JSON."""
    return {
        "line": owned.line,
        "model_package_group": owned.model_package_group,
        "endpoint_name": owned.endpoint_name,
        "drift_alarms": list(owned.drift_alarms),
        "endpoint_alarms": list(owned.endpoint_alarms),
        "drift_schedule": owned.drift_schedule,
        "raw_prefix": owned.raw_prefix,
    }


def project_lines(project: Path) -> ProjectLines:
    """What `closedloop line list` shows: shipped line files (checked) and, per config env, its lines.

    Raises:
        CliError: the project has no lines directory or no readable samconfig.toml.
    """
    directory = project / LINES_DIR
    if not directory.is_dir():
        raise CliError(f"no {LINES_DIR} in {project}: pass --project, the closedloop checkout to read")
    envs = config_envs(project / SAMCONFIG)
    shipped = [check_line_file(path, envs)[0] for path in sorted(directory.glob("*.json"))]
    for check in shipped:
        check.file = _shown(Path(check.file), project)
    names = {Path(check.file).stem for check in shipped if check.ok}
    rows = []
    for env in envs.values():
        rows.append(
            {
                "config_env": env.name,
                "stack_name": env.stack_name,
                "model_lines": list(env.model_lines),
                "from_template_default": env.lines_from_template,
                "without_valid_file": [line for line in env.model_lines if line not in names],
                "resources": [
                    resource_names(LineResources.of(env.resource_prefix, env.raw_prefix, line))
                    for line in env.model_lines
                ],
            }
        )
    return ProjectLines(shipped=shipped, envs=rows)
