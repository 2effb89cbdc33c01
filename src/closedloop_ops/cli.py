"""`closedloop` — the operator's and compliance officer's command line.

Every command prints a human-readable answer by default and JSON with `--json`. Errors are one line
that says what to do, with a non-zero exit code and no traceback (`closedloop --debug …` shows it).
Commands that read a stack work against a deployed stack (standard AWS profile and region
resolution, `--stack`) and against the local loop (`--local`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from shlex import join as shlex_join
from typing import Any

from closedloop_ops.cli_errors import CliError
from closedloop_ops.text import shorten

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STACK = "closedloop-dev"

__all__ = ["CliError", "main"]


def _params(values: Sequence[str]) -> dict[str, str]:
    parsed = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep:
            raise CliError(f"--param {value!r}: expected NAME=VALUE")
        parsed[name] = setting
    return parsed


def _print(args: argparse.Namespace, payload: Any, text: Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text())


# -- route ------------------------------------------------------------------------------------


def cmd_route(args: argparse.Namespace) -> int:
    from closedloop_ops.local.template import TemplateError
    from closedloop_ops.routing import route_file

    path = Path(args.event)
    if not path.is_file():
        raise CliError(f"no such event file: {path} (pass a JSON file such as events/s3_object_created.json)")
    try:
        report = route_file(path, Path(args.template), _params(args.param))
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None
    except TemplateError as exc:
        raise CliError(f"{args.template}: {exc}") from None

    def text() -> str:
        if not report.event_source and report.envelope:
            return report.envelope
        lines = [f"event: {report.event_source} / {report.detail_type}"]
        if report.envelope:
            lines.insert(0, f"envelope: {report.envelope}")
        if not report.matches:
            lines.append("matches no rule of the template: no handler would run")
        for match in report.matches:
            lines.append(f"rule {match.rule} → {', '.join(match.targets)}")
            lines.extend(f"  handler {handler}" for handler in match.handlers)
            lines.extend(f"  {route}" for route in match.routes)
            lines.extend(f"  assuming {assumption}" for assumption in match.assumptions)
        lines.extend(f"near miss: {miss}" for miss in report.near_misses)
        return "\n".join(lines)

    _print(args, report.as_dict(), text)
    return 0 if report.matches else 1


# -- stack selection -------------------------------------------------------------------------------


def _stack(args: argparse.Namespace) -> Any:
    from closedloop_ops.stackref import aws_stack, local_stack, stage_config

    stage = getattr(args, "stage", None)
    if args.local or args.endpoint_url:
        if args.stack is not None:
            raise CliError("--stack names a deployed stack and --local the local loop: pass one of them")
        state = Path(args.state_file) if args.state_file else None
        stack = local_stack(state, args.endpoint_url, args.profile, stage)
    elif stage:
        if args.stack is not None:
            raise CliError("--stage names a samconfig.toml environment's stack: pass --stack or --stage, not both")
        config = stage_config(stage)
        stack = aws_stack(
            config["stack_name"], args.region or config.get("region"), args.profile or config.get("profile")
        )
    else:
        stack = aws_stack(args.stack or DEFAULT_STACK, args.region, args.profile)
    return _as_role(stack, args)


def _build_stack(args: argparse.Namespace, stack: Any) -> Any:
    """The stack that trained a stage's versions (`--build-stage`, else the local loop's first stage), or None
    for a stack that trains its own."""
    if not stack.settings_environment().get("BUILD_ACCOUNT_ID"):
        return None
    from closedloop_ops.stackref import aws_stack, local_stack, stage_config

    if stack.local:
        return local_stack(Path(args.state_file) if args.state_file else None, args.endpoint_url, args.profile)
    config = stage_config(args.build_stage)
    return aws_stack(config["stack_name"], args.region or config.get("region"), config.get("profile"))


def _stack_options(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    where = parser.add_argument_group("which stack (default: the deployed stack closedloop-dev)")
    where.add_argument(
        "--local", action="store_true", help="the local loop (`closedloop local up`, `closedloop demo --keep`)"
    )
    where.add_argument("--endpoint-url", metavar="URL", help="the local loop's emulator URL (implies --local)")
    where.add_argument("--state-file", help=argparse.SUPPRESS)
    where.add_argument("--stack", help=f"deployed stack name (default: {DEFAULT_STACK})")
    where.add_argument(
        "--stage",
        metavar="NAME",
        help="the stack of a stage (samconfig.toml's [NAME] environment; with --local, the multi-account loop's stage)",
    )
    where.add_argument("--region", help="AWS region (default: AWS_REGION or your profile's)")
    where.add_argument("--profile", help="AWS profile (default: AWS_PROFILE, else the default chain)")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text (for scripts)")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)


# -- audit -----------------------------------------------------------------------------------------


def _parse_time(value: str) -> Any:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since {value!r}: expected a date or time such as 2026-11-27 or 2026-11-27T09:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    import csv
    import io

    from closedloop_ops.operations import audit

    since, until = _parse_time(args.since), (_parse_time(args.until) if args.until else None)
    if until is not None and until <= since:
        raise CliError(f"--until {args.until} is not after --since {args.since}: nothing could be in between")
    decisions = audit(_stack(args), since, until)
    rows = [
        [d.at.isoformat(timespec="seconds"), d.route, d.action, d.result, d.business_key, d.reason, d.event_id]
        for d in decisions
    ]
    header = ["at", "route", "action", "result", "business_key", "reason", "event_id"]
    if args.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*header, "details"])
        for decision, row in zip(decisions, rows, strict=True):
            writer.writerow([*row, json.dumps(decision.details, sort_keys=True, default=str)])
        print(buffer.getvalue(), end="")
        return 0
    _print(
        args,
        [d.model_dump(mode="json") for d in decisions],
        lambda: _table(rows, header) if rows else f"no automated decisions since {args.since}",
    )
    return 0


# -- dead letters ----------------------------------------------------------------------------------


def cmd_dlq(args: argparse.Namespace) -> int:
    from closedloop_ops.operations import dlq_depths, peek, redrive

    stack = _stack(args)
    if args.action == "list":
        depths = dlq_depths(stack)
        _print(
            args,
            [d.__dict__ for d in depths],
            lambda: _table(
                [[d.queue, str(d.messages), str(d.in_flight)] for d in depths], ["queue", "messages", "in flight"]
            ),
        )
        return 0
    if not args.queue:
        raise CliError(f"dlq {args.action} needs a queue name: see `closedloop dlq list`")
    if args.action == "show":
        letters = peek(stack, args.queue, args.max)
        _print(
            args,
            [{**letter.__dict__, "subject": letter.subject} for letter in letters],
            lambda: (
                _table(
                    [
                        [x.message_id, x.kind, f"{x.event_source} / {x.detail_type}", x.subject or "-", x.reason]
                        for x in letters
                    ],
                    ["message", "kind", "event", "about", "why"],
                )
                if letters
                else f"{args.queue} is empty"
            ),
        )
        return 0
    if not args.yes:
        letters = peek(stack, args.queue, args.max)
        print(f"{len(letters)} message(s) would be redriven from {args.queue}; rerun with --yes to do it")
        return 1
    result = redrive(stack, args.queue, args.max)
    _print(
        args,
        result.__dict__,
        lambda: (
            f"redriven {result.redriven} message(s) from {result.queue}"
            + "".join(f"\n  not redriven: {f}" for f in result.failed)
        ),
    )
    return 0 if not result.failed else 1


# -- status ----------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from closedloop_ops.status import format_status, stack_status

    report = stack_status(_stack(args), line=args.line)
    _print(args, report.model_dump(mode="json"), lambda: format_status(report))
    return 0


# -- approve / reject ------------------------------------------------------------------------------


def _confirm(question: str) -> None:
    """Ask on stderr, read the answer from stdin; anything but yes changes nothing."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if sys.stdin is None or not sys.stdin.isatty():
        print(file=sys.stderr)  # the answer came from a pipe: end the question's line
    if answer.strip().lower() not in {"y", "yes"}:
        raise CliError("not confirmed: nothing was changed (answer y, or pass --yes)", code=1)


def cmd_flip(args: argparse.Namespace) -> int:
    from closedloop_ops import approvals

    action = args.command
    if args.reason is None:
        raise CliError(f'{args.command} needs --reason "…": why, recorded in the registry next to who decided')
    if not args.reason.strip():
        raise CliError("--reason must say why: it is recorded in the registry next to who decided")
    stack = _stack(args)
    evidence = approvals.evidence(stack, args.version)
    approvals.check_transition(evidence, action)
    identity = approvals.caller_identity(stack)
    approvals.approval_description(action, identity, args.reason)  # an over-long reason fails before the question
    notes = approvals.warnings(evidence, action, identity)
    if not args.json:
        print(approvals.format_evidence(evidence))
        for note in notes:
            print(f"warning: {note}")
    name = f"{evidence.group}/{evidence.version}"
    if not args.yes:
        verb = "Approve" if action == "approve" else "Reject"
        _confirm(f"{verb} {name} as {identity}?")
    result = approvals.flip(stack, evidence, action, args.reason, identity)
    payload = {"evidence": evidence.model_dump(mode="json"), "warnings": notes, "result": result.__dict__}
    _print(
        args,
        payload,
        lambda: (
            f"{result.status.lower()} {name} (was {result.previous_status}) as {identity}\n"
            f"registry description: {result.description}\n"
            "the rollout route decides next: follow it with `closedloop status` and "
            f"`closedloop lineage --model-version {evidence.version}`"
        ),
    )
    return 0


# -- lineage ---------------------------------------------------------------------------------------


def cmd_lineage(args: argparse.Namespace) -> int:
    from closedloop_ops.lineage import format_text, to_dot, trace

    for flag, value in (("--inference-id", args.inference_id), ("--model-version", args.model_version)):
        if value is not None and not value.strip():
            raise CliError(f"{flag} is empty: name the {flag.removeprefix('--').replace('-', ' ')} to trace")
    stack = _stack(args)
    chain = trace(
        stack,
        inference_id=args.inference_id,
        endpoint=args.endpoint,
        model_version=args.model_version,
        build_stack=_build_stack(args, stack),
    )
    if args.format == "json":
        print(json.dumps(chain, indent=2, default=str))
    elif args.format == "dot":
        print(to_dot(chain))
    else:
        print(format_text(chain))
    return 0


# -- pipeline --------------------------------------------------------------------------------------


def cmd_pipeline_upsert(args: argparse.Namespace) -> int:
    from closedloop.errors import ClosedloopError
    from closedloop_ops.pipeline import upsert_pipeline

    path = Path(args.definition)
    if not path.is_file():
        raise CliError(
            f"no pipeline definition at {path}: generate it with `pipelines/definition.py` against the stack "
            "(docs/training.md), or `make pipeline` for the local loop"
        )
    stack = _stack(args)
    definition = path.read_text(encoding="utf-8")
    name = args.name or stack.output("TrainingPipelineName")
    role_arn = args.role_arn or stack.output("TrainingPipelineRoleArn")
    bucket = stack.outputs.get("ArtifactsBucketName")
    if not stack.local and bucket and f"s3://{bucket}/" not in definition:
        raise CliError(
            f"{path} references nothing in the stack's artifacts bucket {bucket}: it was generated offline or for "
            f"another stack; generate it with `pipelines/definition.py --bucket {bucket} …` (docs/training.md)"
        )
    try:
        result = upsert_pipeline(definition, name, role_arn, stack.client("sagemaker"), description=args.description)
    except ClosedloopError as exc:
        raise CliError(f"{path}: {exc.message}") from None
    _print(
        args,
        {"action": result.action, "pipeline": name, "pipeline_arn": result.pipeline_arn, "steps": result.steps},
        lambda: f"{result.action}: pipeline {name} ({result.steps} steps) {result.pipeline_arn}",
    )
    return 0


# -- model lines -----------------------------------------------------------------------------------


def _project(args: argparse.Namespace) -> Path:
    return Path(args.project) if args.project else ROOT


def cmd_line_validate(args: argparse.Namespace) -> int:
    from closedloop_ops.lines import SAMCONFIG, check_line_file, config_envs

    samconfig = _project(args) / SAMCONFIG
    envs = config_envs(samconfig) if samconfig.is_file() else None
    checks = [check_line_file(Path(name), envs)[0] for name in args.files]
    if args.json:
        print(json.dumps([check.as_dict() for check in checks], indent=2))
    else:
        for check in checks:
            print(
                f"OK {check.file}: {check.summary()}"
                if check.ok
                else f"INVALID {check.file}: " + "; ".join(check.problems)
            )
        for check in checks:
            for note in check.warnings:
                print(f"warning: {check.file}: {note}", file=sys.stderr)
    return 0 if all(check.ok for check in checks) else 1


def _format_add(plan: Any, commands: list[str], args: argparse.Namespace) -> str:
    would = "would " if args.dry_run else ""
    verbs = {"add": ("add", "added"), "replace": ("replace", "replaced"), "unchanged": ("keep", "kept")}
    verb = would + verbs[plan.file_action][0] if args.dry_run else verbs[plan.file_action][1]
    same = " (the same file is there)" if plan.file_action == "unchanged" else ""
    out = [f"line {plan.line}: {verb} {plan.destination}{same}"]
    before = ",".join(plan.model_lines_before) + (" (the template's default)" if plan.lines_from_template else "")
    where = f"{plan.samconfig} [{plan.config_env}.deploy.parameters] ModelLines"
    if plan.samconfig_text is None:
        out.append(f"{where}: {before}, with {plan.line} already")
    else:
        out.append(f"{where}: {would}set {','.join(plan.model_lines_after)} (was {before})")
    out.extend(f"warning: {note}" for note in plan.warnings)
    if args.deploy:
        out.extend(f"{would}run: {command}" for command in commands)
    else:
        out.append("next: " + " && ".join(commands))
    return "\n".join(out)


def cmd_line_add(args: argparse.Namespace) -> int:
    from closedloop_ops.lines import apply_add, plan_add, run_deploy

    if args.json and args.deploy and not args.dry_run:
        raise CliError("--json with --deploy would mix sam's output into the JSON: add with --json, then deploy")
    project, source = _project(args), Path(args.file)
    plan = plan_add(source, project, args.config_env, replace=args.replace)
    if not args.dry_run:
        apply_add(plan, source, project)
    commands = [shlex_join(command) for command in plan.commands]
    if args.json:
        print(json.dumps({**plan.as_dict(), "dry_run": args.dry_run, "deploy": args.deploy}, indent=2))
        return 0
    print(_format_add(plan, commands, args), flush=True)
    if args.deploy and not args.dry_run:
        code, failed = run_deploy(plan.commands, project)
        if failed is not None:
            raise CliError(
                f"`{shlex_join(failed)}` failed (exit status {code}): the line is added; rerun "
                + " && ".join(commands),
                code=code,
            )
    print(f"then: upload files under raw/{plan.line}/ of the stack's data bucket; watch `closedloop status`")
    return 0


def cmd_line_retire(args: argparse.Namespace) -> int:
    from closedloop_ops.retire import format_retirement, retire

    stack = _stack(args)
    if not args.dry_run:
        planned = retire(stack, args.name, dry_run=True)
        if planned.empty:
            _print(args, planned.model_dump(mode="json"), lambda: format_retirement(planned))
            return 0
        if not args.yes:
            print(format_retirement(planned), file=sys.stderr)
            _confirm(f"remove these from {stack.name}?")
    done = retire(stack, args.name, dry_run=args.dry_run)
    _print(args, done.model_dump(mode="json"), lambda: format_retirement(done))
    return 0


def cmd_line_list(args: argparse.Namespace) -> int:
    from closedloop_ops.lines import LINES_DIR, project_lines

    listing = project_lines(_project(args))

    def text() -> str:
        out = [f"lines shipped in {LINES_DIR}:"]
        for check in listing.shipped:
            name = Path(check.file).stem
            out.append(
                f"  {name}: {check.summary()}" if check.ok else f"  {name}: INVALID: " + "; ".join(check.problems)
            )
        if not listing.shipped:
            out.append("  none")
        for env in listing.envs:
            default = " (the template's default)" if env["from_template_default"] else ""
            stack = f" (stack {env['stack_name']})" if env["stack_name"] else ""
            out.append(f"config env {env['config_env']}{stack}: ModelLines {','.join(env['model_lines'])}{default}")
            for owned in env["resources"]:
                missing = (
                    " — NO VALID FILE: the stack cannot serve it" if owned["line"] in env["without_valid_file"] else ""
                )
                out.append(f"  {owned['line']}{missing}")
                rows = [
                    ("model package group", owned["model_package_group"]),
                    ("endpoint", owned["endpoint_name"]),
                    ("drift alarms", ", ".join(owned["drift_alarms"])),
                    ("endpoint alarms", ", ".join(owned["endpoint_alarms"])),
                    ("drift schedule", owned["drift_schedule"]),
                    ("raw files under", f"{owned['raw_prefix']} (of the stack's data bucket)"),
                ]
                out.extend(f"    {label:<20} {value}" for label, value in rows)
        return "\n".join(out)

    _print(args, listing.as_dict(), text)
    return 0


def cmd_line_template(args: argparse.Namespace) -> int:
    from closedloop_ops import line_template
    from closedloop_ops.lines import LINES_DIR, write_template

    project = _project(args)
    if args.check:
        lines = sorted(path.stem for path in (project / LINES_DIR).glob("*.json"))
        text = (project / "template.yaml").read_text(encoding="utf-8")
        if line_template.render(text, lines, project / LINES_DIR) != text:
            raise CliError("template.yaml's per-line blocks differ from the line files: run `closedloop line template`")
        print("template.yaml's per-line blocks match the line files")
        return 0
    changed = write_template(project)
    print("template.yaml: per-line blocks rewritten" if changed else "template.yaml: per-line blocks already current")
    return 0


def cmd_line_schema(args: argparse.Namespace) -> int:
    from closedloop_ops.lines import schema_text

    print(schema_text(), end="")
    return 0


# -- the local loop --------------------------------------------------------------------------------


def local_loop_banner(
    endpoint_url: str, region: str, stack_name: str, account: str = "", lines: Sequence[Any] = ()
) -> str:
    """How to reach the local loop from your own code: the emulator's URL, region and account, the
    credentials the loop itself uses (any credentials reach the same emulated account), and the
    endpoint and model group of each model line (`closedloop.line.LineResources`)."""
    from closedloop_ops.stackref import LOCAL_CREDENTIALS

    key, secret = LOCAL_CREDENTIALS["aws_access_key_id"], LOCAL_CREDENTIALS["aws_secret_access_key"]
    served = "; ".join(
        f"{line.line}: endpoint {line.endpoint_name}, model group {line.model_package_group}" for line in lines
    )
    return "\n".join(
        [
            f"local loop up at {endpoint_url} (stack {stack_name}, region {region}"
            + (f", account {account}" if account else "")
            + "); Ctrl-C stops it",
            *([f"model lines: {served}"] if served else []),
            "from your own code or the AWS CLI:",
            f"  export AWS_ENDPOINT_URL={endpoint_url} AWS_REGION={region} "
            f"AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}",
            f'  boto3.client("s3", endpoint_url="{endpoint_url}", region_name="{region}", '
            f'aws_access_key_id="{key}", aws_secret_access_key="{secret}")',
            "the commands: closedloop status --local (and every other command with --local)",
        ]
    )


def cmd_local_up(args: argparse.Namespace) -> int:
    import time

    from closedloop_ops.local.loop import LocalLoop
    from closedloop_ops.stackref import default_state_file, write_local_state

    state = Path(args.state_file) if args.state_file else default_state_file()
    from closedloop_ops.local.loop import approval_parameters

    mode = _approval_mode(args)
    parameters = approval_parameters(mode["approval_mode"], mode["approvers"])
    if args.lines is not None:
        parameters["ModelLines"] = _model_lines(args.lines)
    if args.prep_engine is not None:
        parameters["DataPrepEngine"] = args.prep_engine
    with LocalLoop.start(stack_name=args.stack_name, parameters=parameters) as loop:
        write_local_state(
            state,
            name=loop.stack.stack_name,
            region=loop.stack.region,
            endpoint_url=loop.stack.endpoint_url,
            outputs=loop.stack.outputs,
        )
        from closedloop_ops.local.loop import LOCAL_ACCOUNT
        from closedloop_ops.stackref import model_lines

        banner = local_loop_banner(
            loop.stack.endpoint_url,
            loop.stack.region,
            loop.stack.stack_name,
            account=LOCAL_ACCOUNT,
            lines=model_lines(loop.output),
        )
        print(banner, flush=True)
        try:
            while True:
                loop.settle()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            state.unlink(missing_ok=True)
    return 0


def _model_lines(value: str) -> str:
    """`--lines loans,churn` as the `ModelLines` parameter, each name checked against the shipped line files.

    Raises:
        CliError: an empty list, a name that is not a line's, or no file for it.
    """
    from closedloop.line import LINE_NAME, known_lines

    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise CliError("--lines is empty: name the model lines to serve, e.g. --lines loans,churn")
    shipped = known_lines()
    for name in names:
        if not LINE_NAME.match(name) or name not in shipped:
            raise CliError(
                f"--lines: no model line {name!r} ships with closedloop (lines: {', '.join(shipped)}; "
                "a line is a file layers/shared/closedloop/lines/<line>.json)"
            )
    if len(set(names)) != len(names):
        raise CliError("--lines names a model line twice")
    return ",".join(names)


# -- demo ------------------------------------------------------------------------------------------


def _accounts_demo(args: argparse.Namespace, state_file: Path) -> int:
    """`demo --accounts`: the loop across accounts; 0 when the last stage deployed only what its approver released."""
    import time

    from closedloop_ops.local.accounts_demo import run_accounts_demo
    from closedloop_ops.stackref import write_local_state

    stages = [stage.strip() for stage in args.accounts.split(",") if stage.strip()]
    if args.chaos is not None or args.approval_mode != "auto" or args.prep_engine is not None:
        raise CliError(
            "--accounts runs the stages' own approval modes: it takes no --chaos, --approval-mode or --prep-engine"
        )

    def keep(accounts: Any) -> None:
        estate = accounts.estate
        first = estate.build.stack
        write_local_state(
            state_file,
            name=first.stack_name,
            region=first.region,
            endpoint_url=estate.endpoint_url,
            outputs=first.outputs,
            stages={
                stage: {"name": loop.stack.stack_name, "account": loop.stack.account, "outputs": loop.stack.outputs}
                for stage, loop in estate.loops.items()
            },
        )
        print(
            f"the local loop stays up at {estate.endpoint_url}: try `closedloop status --local --stage prod`",
            flush=True,
        )
        try:
            while True:
                estate.settle()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            state_file.unlink(missing_ok=True)

    try:
        report = run_accounts_demo(
            Path(args.out), stages, say=lambda line: print(line, flush=True), keep=keep if args.keep else None
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    last = report.get("accounts", {}).get(stages[-1], {})
    released = {(a["line"], a["version"]) for a in last.get("approvals", [])}
    live = {(entry["line"], entry["version"]) for entry in last.get("live_after_approval", [])}
    ok = (
        "failure" not in report
        and report["events_in_dlq"] == 0
        and not report.get("handler_errors")
        and bool(live)
        and live <= released
        and not last.get("endpoints_before_approval")
    )
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from closedloop_ops.local.demo import run_demo
    from closedloop_ops.stackref import default_state_file, write_local_state

    state_file = default_state_file()

    def keep(demo: Any) -> None:
        stack = demo.loop.stack
        write_local_state(
            state_file,
            name=stack.stack_name,
            region=stack.region,
            endpoint_url=stack.endpoint_url,
            outputs=stack.outputs,
        )
        print(
            f"the local loop stays up at {stack.endpoint_url}: try `closedloop status --local`; Ctrl-C stops it",
            flush=True,
        )
        try:
            while True:
                demo.loop.settle()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            state_file.unlink(missing_ok=True)

    if not (ROOT / "pipelines" / "definition.json").is_file():
        raise CliError("pipelines/definition.json is missing: run `make pipeline` (it is checked in)")
    if args.accounts:
        return _accounts_demo(args, state_file)
    report = run_demo(
        Path(args.out),
        say=lambda line: print(line, flush=True),
        keep=keep if args.keep else None,
        chaos_seed=args.chaos,
        prep_engine=args.prep_engine,
        **_approval_mode(args),
    )
    if args.approval_mode == "manual":  # the story ends where a person takes over
        return 0 if report.get("pending_versions") and report["events_in_dlq"] == 0 else 1
    # the drifted line was retrained and redeployed, once; no other line was retrained
    drifted = report.get("model_lines", {}).get(report.get("drifted_line"), {})
    ok = (
        len(drifted.get("model_versions_deployed", [])) >= 2
        and drifted.get("retrainings") == report["retrainings"] == 1
        and report["events_in_dlq"] == 0
    )
    return 0 if ok else 1


# -- approval console (`closedloop ui`), approval mode of the local loop, acting as a role ------------


def _as_role(stack: Any, args: argparse.Namespace) -> Any:
    """The stack as a session of `--assume-role` (approve, reject, ui), else as it is."""
    role = getattr(args, "assume_role", None)
    if not role:
        return stack
    from closedloop_ops.ui.identity import assume_role

    return assume_role(stack, role, getattr(args, "role_session_name", None))


def _role_options(parser: argparse.ArgumentParser) -> None:
    who = parser.add_argument_group("acting as a role (the approver allow-list names roles)")
    who.add_argument(
        "--assume-role", metavar="ROLE_ARN", help="assume this role with your credentials first (sts:AssumeRole)"
    )
    who.add_argument("--role-session-name", metavar="NAME", help="the role session's name (default: your login)")


def _approval_mode(args: argparse.Namespace) -> dict[str, Any]:
    """`--approval-mode`/`--approvers` of `demo` and `local up`, checked."""
    if args.approvers and args.approval_mode != "manual":
        raise CliError("--approvers needs --approval-mode manual (in auto mode the approval policy releases versions)")
    return {"approval_mode": args.approval_mode, "approvers": args.approvers}


def _prep_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prep-engine",
        choices=["processing", "glue", "glue-spark", "auto"],
        help="where preparation runs (the template's DataPrepEngine, default processing); glue-spark runs the "
        "Spark job on local pyspark (a JVM start, ~10 s, per run)",
    )


def _approval_mode_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--approval-mode",
        choices=["auto", "manual"],
        default="auto",
        help="auto (default): the approval policy releases versions; manual: an approver on the allow-list does",
    )
    parser.add_argument(
        "--approvers",
        metavar="ARN,...",
        help="manual mode's allow-list (default: the local role arn:aws:iam::123456789012:role/ComplianceOfficer, "
        "which the local loop creates so that you can assume it)",
    )


def cmd_ui(args: argparse.Namespace) -> int:
    import webbrowser

    from werkzeug.serving import make_server

    from closedloop_ops import approvals
    from closedloop_ops.ui.app import create_app

    stack = _stack(args)
    identity = approvals.caller_identity(stack)
    app = create_app(stack, identity=identity)
    try:
        server = make_server("127.0.0.1", args.port, app, threaded=True)
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror} (pass another --port, or 0)") from None
    url = f"http://127.0.0.1:{server.server_port}/"
    where = "the local loop" if stack.local else f"{stack.name} in {stack.region}"
    print(f"closedloop ui for {where} as {identity}\n  {url}   (127.0.0.1 only; Ctrl-C stops it)", flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _add_ui(commands: Any) -> None:
    ui = _command(
        commands,
        "ui",
        "the approval console: a local web page with status, evidence, lineage, drift, audit and dead letters",
        "Serve a web page on 127.0.0.1 (like `mlflow ui`) that shows the model lines and their stages, a version's "
        "evidence as charts, lineage as a graph, drift against the alarms' thresholds, the audit log and the "
        "dead-letter queues, and lets you approve or reject a version with a reason and redrive dead letters. It "
        "acts with your credentials (or the role you assume), through the same functions as `closedloop approve`.",
        "examples:\n  closedloop ui --local --assume-role arn:aws:iam::123456789012:role/ComplianceOfficer\n"
        "  closedloop ui --stack closedloop-prod --region eu-west-1 --profile compliance --open",
    )
    ui.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765; 0: any free port)")
    ui.add_argument("--open", action="store_true", help="open the page in your browser")
    _stack_options(ui, json_output=False)
    _role_options(ui)
    ui.set_defaults(func=cmd_ui)


# -- entry point ---------------------------------------------------------------------------------

EPILOG = """\
examples:
  closedloop status --local                     where the local loop stands
  closedloop status --stack closedloop-prod     the same for a deployed stack (AWS profile and region as usual)
  closedloop approve 7 --reason "reviewed bias report, CR-118"
  closedloop lineage --inference-id 3f1c… --format dot | dot -Tsvg > lineage.svg
  closedloop dlq list
  closedloop audit --since 2026-11-01 --format csv > decisions.csv

Runbook: docs/runbook.md. Governance (approvals, lineage, audit): docs/governance.md."""


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs to the terminal; keeps example blocks (indented lines) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if paragraph.startswith("examples:") or any(line.startswith("  ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(paragraphs)


def _command(
    commands: Any, name: str, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=_HelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="closedloop",
        description="The operator's and compliance officer's command line for a closedloop stack: what is live, "
        "who approved it, where a prediction came from, what failed and what automation decided.",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_status,
        _add_flips,
        _add_lineage,
        _add_dlq,
        _add_audit,
        _add_pipeline,
        _add_line,
        _add_route,
        _add_local,
        _add_ui,
    ):
        add(commands)
    return parser


def _add_status(commands: Any) -> None:
    status = _command(
        commands,
        "status",
        "per model line: live version, rollout, last retraining, lock, cooldown, drift alarms, pending approvals, DLQs",
        "Where the loop stands, per model line: the live version and its endpoint, a rollout in progress, the "
        "last training run and what triggered it, the retraining lock and cooldown, the state of its drift alarms, "
        "the versions waiting for an approver; and how many events sit in each dead-letter queue.",
        "examples:\n  closedloop status --local\n  closedloop status --local --line churn\n"
        "  closedloop status --stack closedloop-prod --json | jq '.groups[] | {line, live}'",
    )
    status.add_argument("--line", metavar="NAME", help="only this model line (default: every line of the stack)")
    _stack_options(status)
    status.set_defaults(func=cmd_status)


def _add_flips(commands: Any) -> None:
    for action, summary, allowed, effect in (
        (
            "approve",
            "approve a pending model version (the compliance officer's flip), with a reason",
            "a PendingManualApproval version",
            "In manual approval mode the rollout deploys it if you are on the approver allow-list "
            "(`Approvers`); anyone else's approval is refused, recorded and notified.",
        ),
        (
            "reject",
            "reject an approved or pending model version, with a reason",
            "an Approved or PendingManualApproval version",
            "Rejecting the live version rolls the endpoint back to the previous approved version when you are "
            "an approver (or the approval gate).",
        ),
    ):
        flip = _command(
            commands,
            action,
            summary,
            f"Set {allowed} to {'Approved' if action == 'approve' else 'Rejected'} in the Model Registry with your "
            "own AWS identity. The evidence is printed first (evaluation metrics, bias figures, PII report, the "
            "approval gate's recorded decision) and you are asked to confirm. The registry's ApprovalDescription "
            f"records who and why. {effect}",
            f'examples:\n  closedloop {action} loans/7 --reason "reviewed the bias report with legal, CR-118"\n'
            f'  closedloop {action} loans/7 --reason "…" --yes --profile compliance-officer',
        )
        flip.add_argument(
            "version",
            help="<line>/<version> (e.g. loans/7), the version's ARN, or a bare number when the stack serves one line",
        )
        flip.add_argument("--reason", help="why (mandatory; recorded in the registry)")
        flip.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        _stack_options(flip)
        _role_options(flip)
        flip.set_defaults(func=cmd_flip)


def _add_lineage(commands: Any) -> None:
    lineage = _command(
        commands,
        "lineage",
        "trace a prediction, an endpoint or a model version back to its data, code and approval",
        "The chain inference → endpoint config → model version → approval decision (who or which policy, when, "
        "why) → pipeline execution and its trigger (upload or alarm) → prepared-data manifest → raw object "
        "versions → code version. Without a starting point: what the stack's endpoint serves now.",
        "examples:\n  closedloop lineage --inference-id demo-loans-post-retraining-043734b7eabc --local\n"
        "  closedloop lineage --model-version 7 --format json\n"
        "  closedloop lineage --endpoint closedloop-loans --format dot | dot -Tsvg > lineage.svg",
    )
    start = lineage.add_mutually_exclusive_group()
    start.add_argument(
        "--inference-id", metavar="ID", help="the InferenceId a caller passed to InvokeEndpoint (from data capture)"
    )
    start.add_argument("--endpoint", metavar="NAME", help="an endpoint: the version it serves now")
    start.add_argument(
        "--model-version", metavar="VERSION", help="a version number of the stack's model group (or its ARN)"
    )
    lineage.add_argument("--format", choices=["text", "json", "dot"], default="text", help="output (default: text)")
    lineage.add_argument(
        "--build-stage",
        default="dev",
        metavar="NAME",
        help="with --stage of a stage that serves another account's versions: the samconfig.toml environment of "
        "the stack that trained them, where the chain continues (default: dev; locally the loop's first stage)",
    )
    _stack_options(lineage, json_output=False)
    lineage.set_defaults(func=cmd_lineage)


def _add_dlq(commands: Any) -> None:
    dlq = _command(
        commands,
        "dlq",
        "dead letters: list the queues, show why events failed, redrive them safely",
        "The stack's dead-letter queues: EventsDlq, DataArrivalDlq, FunctionFailuresDlq, DeployModelDlq, "
        "DriftScheduleDlq. `show` reads messages without removing them and says why each failed; `redrive` sends "
        "them back where they were going — an event that was handled meanwhile is a no-op there (idempotency).",
        "examples:\n  closedloop dlq list\n  closedloop dlq show DeployModelDlq\n"
        "  closedloop dlq redrive DeployModelDlq --yes",
    )
    dlq.add_argument("action", choices=["list", "show", "redrive"], help="list queues, show messages, or redrive")
    dlq.add_argument("queue", nargs="?", help="queue name as `dlq list` shows it (a unique prefix is enough)")
    dlq.add_argument("--max", type=int, default=10, help="at most this many messages (default: 10)")
    dlq.add_argument("--yes", action="store_true", help="redrive without asking")
    _stack_options(dlq)
    dlq.set_defaults(func=cmd_dlq)


def _add_audit(commands: Any) -> None:
    audit_cmd = _command(
        commands,
        "audit",
        "the ledger's automated decisions since a date (the compliance report), as a table or CSV",
        "Every decision automation recorded in the ledger: what event, which route, what action, what result and "
        "why. A person's approval is in the Model Registry (see `closedloop lineage`); the rollout's reaction to it "
        "is here.",
        "examples:\n  closedloop audit --since 2026-11-01\n"
        "  closedloop audit --since 2026-11-01 --until 2026-12-01 --format csv > november.csv",
    )
    audit_cmd.add_argument("--since", required=True, help="date or time (UTC unless given), e.g. 2026-11-27")
    audit_cmd.add_argument("--until", help="end, exclusive (default: now)")
    audit_cmd.add_argument("--format", choices=["table", "csv"], default="table", help="output (default: table)")
    _stack_options(audit_cmd)
    audit_cmd.set_defaults(func=cmd_audit)


def _add_pipeline(commands: Any) -> None:
    pipeline = _command(
        commands,
        "pipeline",
        "create or update the training pipeline from its definition",
        "`upsert` creates the stack's training pipeline, or updates it when its definition or role changed "
        "(unchanged: a no-op). Name and role default to the stack's outputs TrainingPipelineName and "
        "TrainingPipelineRoleArn. For a deployed stack, generate the definition against the account first "
        "(pipelines/definition.py, docs/training.md): the offline one of `make pipeline` is for the local loop.",
        "examples:\n  closedloop pipeline upsert --stack closedloop-dev --region eu-west-1\n"
        "  closedloop pipeline upsert --local",
    )
    pipeline.add_argument("action", choices=["upsert"], help="upsert: create or update")
    pipeline.add_argument(
        "--definition",
        default="pipelines/definition.json",
        help="default: pipelines/definition.json (the offline one, for the local loop)",
    )
    pipeline.add_argument("--name", help="pipeline name (default: the stack's TrainingPipelineName)")
    pipeline.add_argument("--role-arn", help="execution role (default: the stack's TrainingPipelineRoleArn)")
    pipeline.add_argument("--description", default="", help="pipeline description")
    _stack_options(pipeline)
    pipeline.set_defaults(func=cmd_pipeline_upsert)


def _add_line(commands: Any) -> None:
    line = _command(
        commands,
        "line",
        "model lines: validate a line file, add it to the stack, list the lines, print the JSON Schema",
        "A model line is one JSON file, layers/shared/closedloop/lines/<line>.json: the dataset policy of the "
        "files under raw/<line>/ and the line's approval and retraining overrides (docs/onboarding.md). The stack "
        "serves the lines its ModelLines parameter names. These commands work on this checkout and "
        "samconfig.toml; they call no AWS API (except `add --deploy`, which runs the SAM CLI).",
        "examples:\n  closedloop line validate my-line.json\n  closedloop line add my-line.json --config-env dev\n"
        "  closedloop line list\n  closedloop line schema > schemas/model-line.schema.json",
    )
    actions = line.add_subparsers(dest="line_command", required=True, metavar="ACTION")

    def project_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--project", metavar="DIR", help="the closedloop checkout (default: the one this closedloop runs from)"
        )

    validate = _command(
        actions,
        "validate",
        "check line files as the stack reads them",
        "Validate each file with the full rules of a model line (fields, types and the rules across fields), "
        "check that it is named <line>.json, and warn about what would not work as the file may intend (no "
        "label, nothing to learn from, alarms in retraining.alarms that the stack's ExtraAlarmNames lacks). "
        "One line per file on stdout: OK with a summary, or INVALID with every problem by field path; "
        "warnings on stderr. Exit status 1 when any file is invalid.",
        "examples:\n  closedloop line validate my-line.json\n"
        "  closedloop line validate layers/shared/closedloop/lines/*.json --json",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="line files (JSON)")
    validate.add_argument("--json", action="store_true", help="print JSON instead of text (for scripts)")
    project_option(validate)
    validate.set_defaults(func=cmd_line_validate)

    add = _command(
        actions,
        "add",
        "add a line file to the project and to ModelLines in samconfig.toml",
        "Validate FILE, copy it to layers/shared/closedloop/lines/<line>.json (a different file of that line is "
        "only overwritten with --replace) and add the line to the ModelLines parameter override of the config "
        "env in samconfig.toml (nothing else in that file changes). Then deploy with `sam build && sam deploy "
        "--config-env ENV`, which --deploy runs for you.",
        "examples:\n  closedloop line add my-line.json --config-env dev\n"
        "  closedloop line add my-line.json --config-env dev --deploy --dry-run   # what it would do",
    )
    add.add_argument("file", metavar="FILE", help="the line file (JSON)")
    add.add_argument(
        "--config-env", default="dev", metavar="ENV", help="samconfig.toml's config env (default: dev, as make deploy)"
    )
    add.add_argument("--replace", action="store_true", help="overwrite a different file of the same line")
    add.add_argument("--deploy", action="store_true", help="then run `sam build` and `sam deploy --config-env ENV`")
    add.add_argument("--dry-run", action="store_true", help="change nothing, run nothing: print what it would do")
    add.add_argument("--json", action="store_true", help="print JSON instead of text (for scripts)")
    project_option(add)
    add.set_defaults(func=cmd_line_add)

    listing = _command(
        actions,
        "list",
        "the lines shipped, and per config env the lines it deploys with their AWS names",
        "The line files in layers/shared/closedloop/lines (checked), and for every config env of samconfig.toml "
        "that deploys: the lines in its ModelLines (or the template's default) with the names of what each owns "
        "(model package group, endpoint, alarms, drift schedule, raw prefix).",
        "examples:\n  closedloop line list\n  closedloop line list --json | jq '.config_envs[].model_lines'",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of text (for scripts)")
    project_option(listing)
    listing.set_defaults(func=cmd_line_list)

    template = _command(
        actions,
        "template",
        "write template.yaml's per-line resource blocks from the line files",
        "Rewrite the generated blocks of template.yaml (each line's model group, alarms and drift schedule, under "
        "the condition that ModelLines lists the line) from the line files in layers/shared/closedloop/lines. "
        "`add` does this for the line it adds. --check changes nothing and fails when they differ.",
        "examples:\n  closedloop line template\n  closedloop line template --check",
    )
    template.add_argument("--check", action="store_true", help="change nothing; exit 1 when the blocks differ")
    project_option(template)
    template.set_defaults(func=cmd_line_template)

    schema = _command(
        actions,
        "schema",
        "print the JSON Schema of a line file",
        "Print the JSON Schema (draft 2020-12) of a line file, for editors and other tools; the checked-in copy is "
        "schemas/model-line.schema.json. The rules across fields are not expressible in it: `closedloop line "
        "validate` applies them.",
        "examples:\n  closedloop line schema > schemas/model-line.schema.json",
    )
    schema.set_defaults(func=cmd_line_schema)

    retire = _command(
        actions,
        "retire",
        "remove the endpoint, endpoint configurations and models of a line the stack no longer serves",
        "A line's alarms and drift schedule go with the stack update that takes it out of ModelLines; its endpoint, "
        "endpoint configurations and models were made by the rollout and stay until this removes them (endpoint "
        "first). Refused while the stack still serves the line. The model package group, the ledger and the data "
        "are kept. `closedloop status` lists what removed lines left behind.",
        "examples:\n  closedloop line retire claims --stack closedloop-dev --dry-run\n"
        "  closedloop line retire claims --local --yes",
    )
    retire.add_argument("name", metavar="LINE", help="the line's name")
    retire.add_argument("--dry-run", action="store_true", help="change nothing: print what it would remove")
    retire.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _stack_options(retire)
    retire.set_defaults(func=cmd_line_retire)


def _add_route(commands: Any) -> None:
    route = _command(
        commands,
        "route",
        "which rules and handlers of template.yaml an event reaches (offline)",
        "Match an EventBridge event against the template's own rules (its parameter defaults, or --param "
        "overrides) and say which handlers it reaches, with near misses. Needs no AWS account.",
        "examples:\n  closedloop route events/s3_object_created.json\n"
        "  closedloop route my-event.json --param RawPrefix=landing/",
    )
    route.add_argument("event", help="an EventBridge event as JSON (e.g. events/s3_object_created.json)")
    route.add_argument("--template", default=str(ROOT / "template.yaml"), help="default: the project's template.yaml")
    route.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override")
    route.add_argument("--json", action="store_true", help="print JSON instead of text")
    route.set_defaults(func=cmd_route)


def _add_local(commands: Any) -> None:
    demo = _command(
        commands,
        "demo",
        "run the whole closed loop locally (no AWS account) and write a report",
        "Upload → preparation → training → approval → rollout → drift → retraining → redeployment, on the local "
        "loop (moto on loopback, provisioned from template.yaml, with the real handlers), for two model lines side "
        "by side: loans and churn, each with its own model group and endpoint; only the loans traffic drifts, so "
        "only loans is retrained.",
        "examples:\n  closedloop demo\n"
        "  closedloop demo --keep    # then, in another terminal: closedloop status --local\n"
        "  closedloop demo --chaos 7 # the same loop on a bad day: duplicates, reordering, throttling, crashes\n"
        "  closedloop demo --accounts dev,staging,prod  # promotion across accounts, prod after its approver",
    )
    demo.add_argument("--out", default=str(ROOT / "build" / "demo"), help="where report.json and report.md go")
    demo.add_argument("--keep", action="store_true", help="keep the local loop up afterwards (for the other commands)")
    demo.add_argument(
        "--chaos", type=int, metavar="SEED", help="the bad day: duplicates, reordering, throttling, crashes"
    )
    demo.add_argument(
        "--accounts",
        metavar="STAGES",
        help="run across accounts, e.g. dev,staging,prod: the first trains, each later stage promotes from the one "
        "before, the last deploys only what its approver releases (docs/multi-account.md)",
    )
    _approval_mode_options(demo)
    _prep_engine_option(demo)
    demo.set_defaults(func=cmd_demo)

    local = _command(
        commands,
        "local",
        "run the local loop (moto on loopback, provisioned from template.yaml)",
        "`up` starts the local loop and keeps delivering events until Ctrl-C; the other commands reach it with "
        "--local.",
        "examples:\n  closedloop local up\n  closedloop local up --lines loans,churn\n"
        "  closedloop status --local    # in another terminal",
    )
    local.add_argument("action", choices=["up"], help="up: start it")
    local.add_argument(
        "--lines",
        metavar="LINE,...",
        help="the model lines to serve, the template's ModelLines (default: the template's, loans)",
    )
    local.add_argument("--stack-name", default="closedloop-local", help="default: closedloop-local")
    local.add_argument("--interval", type=float, default=0.5, help="seconds between delivery passes (default: 0.5)")
    local.add_argument("--state-file", help=argparse.SUPPRESS)
    _approval_mode_options(local)
    _prep_engine_option(local)
    local.set_defaults(func=cmd_local_up)


def _one_line(exc: BaseException) -> str:
    """An unexpected AWS or closedloop error as one line with what to check."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    from closedloop.errors import ClosedloopError

    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: set AWS_PROFILE or run `aws configure` / `aws sso login` (or use --local)"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(exc, EndpointConnectionError | ReadTimeoutError):
        where = getattr(exc, "kwargs", {}).get("endpoint_url", "AWS")
        return f"cannot reach {where}: is the local loop (or the network) up?"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "?")
        hint = (
            " (your identity lacks a permission: see docs/governance.md for who needs what)"
            if "AccessDenied" in str(error.get("Code"))
            else ""
        )
        message = " ".join(str(error.get("Message")).split())
        return f"AWS refused {operation}: {error.get('Code')}: {message}{hint}"
    if isinstance(exc, ClosedloopError):
        return " ".join(exc.message.split())
    text = " ".join(str(exc).split())
    text = shorten(text, 300)
    return f"unexpected {type(exc).__name__}: {text} (rerun with `closedloop --debug …` for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from closedloop.errors import ClosedloopError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"closedloop: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `closedloop … | head`: the reader has gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (BotoCoreError, ClientError, ClosedloopError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"closedloop: {_one_line(exc)}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
