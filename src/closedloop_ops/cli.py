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

ROOT = Path(__file__).resolve().parents[2]


class CliError(Exception):
    """A user-facing failure: one line, with the fix."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


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
