"""`closedloop` — the operator's and compliance officer's command line.

Every command prints a human-readable answer by default and JSON with `--json`. Errors are one line
that says what to do, with a non-zero exit code and no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from closedloop_ops.cli_errors import CliError

ROOT = Path(__file__).resolve().parents[2]

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
        lines = [f"event: {report.event_source} / {report.detail_type}"]
        if not report.matches:
            lines.append("matches no rule of the template: no handler would run")
        for match in report.matches:
            lines.append(f"rule {match.rule} → {', '.join(match.targets)}")
            lines.extend(f"  handler {handler}" for handler in match.handlers)
            lines.extend(f"  assuming {assumption}" for assumption in match.assumptions)
        lines.extend(f"near miss: {miss}" for miss in report.near_misses)
        return "\n".join(lines)

    _print(args, report.as_dict(), text)
    return 0 if report.matches else 1


# -- stack selection -------------------------------------------------------------------------------


def _stack(args: argparse.Namespace) -> Any:
    from closedloop_ops.stackref import STATE_FILE, aws_stack, local_stack

    if args.local or args.endpoint_url:
        return local_stack(Path(args.state_file) if args.state_file else STATE_FILE, args.endpoint_url)
    return aws_stack(args.stack, args.region, args.profile)


def _stack_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("which stack")
    where.add_argument("--local", action="store_true", help="the local loop (closedloop local up / make demo)")
    where.add_argument("--endpoint-url", help="the local loop's emulator URL (implies --local)")
    where.add_argument("--state-file", help=argparse.SUPPRESS)
    where.add_argument("--stack", default="closedloop-dev", help="deployed stack name (default closedloop-dev)")
    where.add_argument("--region", help="AWS region (default: your profile's)")
    where.add_argument("--profile", help="AWS profile (default: AWS_PROFILE / default)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


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

    decisions = audit(_stack(args), _parse_time(args.since), _parse_time(args.until) if args.until else None)
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
            [letter.__dict__ for letter in letters],
            lambda: (
                _table(
                    [[x.message_id, x.kind, f"{x.event_source} / {x.detail_type}", x.reason] for x in letters],
                    ["message", "kind", "event", "why"],
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


# -- the local loop --------------------------------------------------------------------------------


def cmd_local_up(args: argparse.Namespace) -> int:
    import time

    from closedloop_ops.local.loop import LocalLoop
    from closedloop_ops.stackref import STATE_FILE, write_local_state

    state = Path(args.state_file) if args.state_file else STATE_FILE
    with LocalLoop.start(stack_name=args.stack_name) as loop:
        write_local_state(
            state,
            name=loop.stack.stack_name,
            region=loop.stack.region,
            endpoint_url=loop.stack.endpoint_url,
            outputs=loop.stack.outputs,
        )
        print(
            f"local loop up at {loop.stack.endpoint_url} (stack {loop.stack.stack_name}); Ctrl-C stops it", flush=True
        )
        try:
            while True:
                loop.settle()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            state.unlink(missing_ok=True)
    return 0


# -- demo ------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from closedloop_ops.local.demo import run_demo
    from closedloop_ops.stackref import STATE_FILE, write_local_state

    def keep(demo: Any) -> None:
        stack = demo.loop.stack
        write_local_state(
            STATE_FILE,
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
            STATE_FILE.unlink(missing_ok=True)

    if not (ROOT / "build" / "pipeline.json").is_file():
        raise CliError("build/pipeline.json is missing: run `make pipeline` first (`make demo` does)")
    report = run_demo(
        Path(args.out),
        say=lambda line: print(line, flush=True),
        keep=keep if args.keep else None,
        chaos_seed=args.chaos,
    )
    ok = len(report["model_versions_deployed"]) >= 2 and report["retrainings"] == 1 and report["events_in_dlq"] == 0
    return 0 if ok else 1


# -- entry point ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="closedloop", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    route = commands.add_parser("route", help="which rules and handlers of template.yaml an event reaches")
    route.add_argument("event", help="an EventBridge event as JSON (e.g. events/s3_object_created.json)")
    route.add_argument("--template", default=str(ROOT / "template.yaml"))
    route.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override")
    route.add_argument("--json", action="store_true")
    route.set_defaults(func=cmd_route)

    audit_cmd = commands.add_parser("audit", help="the ledger's automated decisions (the compliance report)")
    audit_cmd.add_argument("--since", required=True, help="date or time (UTC unless given), e.g. 2026-11-27")
    audit_cmd.add_argument("--until", help="end (exclusive); default now")
    audit_cmd.add_argument("--format", choices=["table", "csv"], default="table")
    _stack_options(audit_cmd)
    audit_cmd.set_defaults(func=cmd_audit)

    dlq = commands.add_parser("dlq", help="dead letters: list queues, show why, redrive safely")
    dlq.add_argument("action", choices=["list", "show", "redrive"])
    dlq.add_argument("queue", nargs="?", help="queue name as `dlq list` shows it")
    dlq.add_argument("--max", type=int, default=10, help="at most this many messages")
    dlq.add_argument("--yes", action="store_true", help="redrive without asking")
    _stack_options(dlq)
    dlq.set_defaults(func=cmd_dlq)

    demo = commands.add_parser("demo", help="run the whole closed loop locally and write a report")
    demo.add_argument("--out", default=str(ROOT / "build" / "demo"), help="where report.json and report.md go")
    demo.add_argument("--keep", action="store_true", help="keep the local loop up afterwards (for the other commands)")
    demo.add_argument(
        "--chaos", type=int, metavar="SEED", help="the bad day: duplicates, reordering, throttling, crashes"
    )
    demo.set_defaults(func=cmd_demo)

    local = commands.add_parser("local", help="run the local loop (moto on loopback, provisioned from template.yaml)")
    local.add_argument("action", choices=["up"])
    local.add_argument("--stack-name", default="closedloop-local")
    local.add_argument("--interval", type=float, default=0.5, help="seconds between delivery passes")
    local.add_argument("--state-file", help=argparse.SUPPRESS)
    local.set_defaults(func=cmd_local_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"closedloop: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
