"""`closedloop ui`: the approval console, a local web page on 127.0.0.1.

The page acts with the identity of the person who started it: the `StackRef` it is given carries
their credentials (or a role they assumed), so the Model Registry records the real approver. Every
read and every change goes through the same functions as the command line (`approvals`, `lineage`,
`status`, `operations`), with the same refusals and warnings.

Security: the server binds 127.0.0.1 only; every request must name a loopback host (no DNS
rebinding); every POST carries this process's random token and, when the browser sends one, a
loopback Origin (no cross-site request forgery); nothing is cached or framed.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, render_template, request
from markupsafe import Markup

from closedloop_ops import approvals
from closedloop_ops.cli_errors import CliError
from closedloop_ops.stackref import StackRef
from closedloop_ops.ui import data, svg

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _hostname(netloc: str) -> str:
    """`127.0.0.1` of `127.0.0.1:8765`, `[::1]` of `[::1]:8765`."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc.split("]", 1)[0] + "]"
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def refusal(exc: BaseException) -> str:
    """An error as the command line prints it (`closedloop: …`)."""
    if isinstance(exc, CliError):
        return f"closedloop: {exc}"
    from closedloop_ops.cli import _one_line

    return f"closedloop: {_one_line(exc)}"


def create_app(stack: StackRef, *, identity: str | None = None) -> Flask:  # noqa: PLR0915 - routes live with the app
    """The console for one stack, acting as the identity behind `stack`'s credentials."""
    app = Flask(__name__)
    app.config["TEMPLATES_AUTO_RELOAD"] = False
    token = secrets.token_urlsafe(32)
    me = identity or approvals.caller_identity(stack)
    settings = stack.settings()
    app.config.update(CSRF_TOKEN=token, IDENTITY=me, STACK=stack)

    @app.before_request
    def guard() -> None:
        if _hostname(request.host) not in LOOPBACK_HOSTS:
            abort(403, "this console answers to 127.0.0.1 or localhost only")
        if request.method in UNSAFE_METHODS:
            origin = request.headers.get("Origin") or request.headers.get("Referer")
            if origin and origin != "null" and _hostname(urlsplit(origin).netloc) not in LOOPBACK_HOSTS:
                abort(403, "cross-site request refused")
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, token):
                abort(403, "missing or wrong form token: reload the page and try again")

    @app.after_request
    def headers(response: Any) -> Any:
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(403)
    def forbidden(error: Any) -> tuple[str, int]:
        return render_template("error.html", title="refused", message=error.description), 403

    @app.context_processor
    def common() -> dict[str, Any]:
        return {
            "csrf_token": token,
            "identity": me,
            "stack": stack,
            "mode": settings.approval_mode.value,
            "approvers": list(settings.approvers),
        }

    def page(template: str, **values: Any) -> str:
        return render_template(template, **values)

    def attempt(work: Callable[[], Any]) -> tuple[Any, str | None]:
        try:
            return work(), None
        except Exception as exc:
            return None, refusal(exc)

    # -- overview ---------------------------------------------------------------------------------

    @app.get("/")
    def overview() -> str:
        from closedloop_ops.status import _group_rows, stack_status

        report, problem = attempt(lambda: stack_status(stack))
        versions: dict[str, list[dict[str, Any]]] = {}
        for group in report.groups if report else []:
            listed, _ = attempt(partial(data.versions, stack, group.model_group))
            versions[group.model_group] = listed or []
        # the command line's wording of each fact (`closedloop status`), less the pending lines listed below
        return page(
            "overview.html",
            title="overview",
            report=report,
            problem=problem,
            versions=versions,
            rows=lambda group: [(label, text) for label, text in _group_rows(group) if label and label != "pending"],
        )

    # -- a version's evidence and the flip ---------------------------------------------------------

    def evidence_page(version: str, **extra: Any) -> str:
        ev, problem = attempt(lambda: approvals.evidence(stack, version))
        if ev is None:
            return page("version.html", title=f"version {version}", ev=None, problem=problem, **extra)
        notes = {action: approvals.warnings(ev, action, me) for action in ("approve", "reject")}
        allowed = {action: ev.status in approvals.ALLOWED_FROM[action] for action in ("approve", "reject")}
        return page(
            "version.html",
            title=f"version {ev.version}",
            ev=ev,
            problem=problem,
            notes=notes,
            allowed=allowed,
            quality_chart=_quality_chart(ev),
            bias_charts=_bias_charts(ev),
            text=approvals.format_evidence(ev),
            **extra,
        )

    # a version is `3` (a stack of one line), `<line>/3`, or its ARN: the command line's forms
    @app.get("/versions/<path:version>")
    def version_page(version: str) -> str:
        return evidence_page(version)

    @app.post("/versions/<path:version>/<action>")
    def flip(version: str, action: str) -> tuple[str, int]:
        if action not in approvals.TARGET:
            abort(404)
        reason = request.form.get("reason", "")

        def work() -> tuple[approvals.FlipResult, list[str]]:
            # the command line's order (cmd_flip): reason, evidence, transition, description, warnings, flip
            if not reason.strip():
                raise CliError("--reason must say why: it is recorded in the registry next to who decided")
            ev = approvals.evidence(stack, version)
            approvals.check_transition(ev, action)  # type: ignore[arg-type]
            who = approvals.caller_identity(stack)
            approvals.approval_description(action, who, reason)  # type: ignore[arg-type]
            notes = approvals.warnings(ev, action, who)  # type: ignore[arg-type]
            return approvals.flip(stack, ev, action, reason, who), notes  # type: ignore[arg-type]

        done, problem = attempt(work)
        if problem is not None:
            return evidence_page(version, refused=problem, action=action, reason=reason), 409
        result, notes = done
        lines = [
            f"{result.status.lower()} {result.group}/{result.version} (was {result.previous_status}) as {result.by}",
            f"registry description: {result.description}",
            *(f"warning: {note}" for note in notes),
            "the rollout route decides next: follow it on the overview and the lineage of this version",
        ]
        return evidence_page(version, flipped=lines), 200

    # -- lineage -----------------------------------------------------------------------------------

    @app.get("/lineage")
    def lineage_page() -> str:
        from closedloop_ops.lineage import format_text, to_dot, trace

        inference_id = request.args.get("inference_id", "").strip() or None
        model_version = request.args.get("model_version", "").strip() or None
        lines, problem = attempt(lambda: [owned.line for owned in stack.lines()])
        line = request.args.get("line", "").strip() or (lines[0] if lines else "")

        def work() -> dict[str, Any]:
            # no starting point: what the chosen line's endpoint serves now; a bare number: the line's version
            endpoint = None if inference_id or model_version else stack.line(line).endpoint_name
            version = f"{line}/{model_version}" if model_version and model_version.isdigit() else model_version
            return trace(stack, inference_id=inference_id, endpoint=endpoint, model_version=version)

        chain, problem = attempt(work) if problem is None else (None, problem)
        return page(
            "lineage.html",
            title="lineage",
            chain=chain,
            problem=problem,
            inference_id=inference_id or "",
            model_version=model_version or "",
            lines=lines or [],
            line=line,
            graph=svg.lineage_graph(to_dot(chain)) if chain else None,
            text=format_text(chain) if chain else "",
        )

    # -- drift -------------------------------------------------------------------------------------

    @app.get("/drift")
    def drift_page() -> str:
        window = request.args.get("window", "24h")
        window = window if window in data.WINDOWS else "24h"
        line = request.args.get("line", "").strip() or None
        lines, _ = attempt(lambda: [owned.line for owned in stack.lines()])
        view, problem = attempt(lambda: data.drift(stack, window, line=line))
        charts: list[Markup] = []
        if view is not None:
            moments = [svg.Moment(at, f"{name} → ALARM at {at:%Y-%m-%d %H:%M:%S}Z") for at, name in view.alarm_moments]
            for series in view.series:
                watched = f" (alarm {series.alarm}: {series.alarm_state})" if series.alarm else ""
                charts.append(
                    svg.time_series(
                        series.points,
                        title=f"{series.metric}{watched}",
                        start=view.start,
                        end=view.end,
                        threshold=series.threshold,
                        alarms=moments if series.alarm else (),
                    )
                )
        return page(
            "drift.html",
            title="drift",
            view=view,
            problem=problem,
            charts=charts,
            window=window,
            windows=data.WINDOWS,
            lines=lines or [],
        )

    # -- audit -------------------------------------------------------------------------------------

    @app.get("/audit")
    def audit_page() -> str:
        now = datetime.now(UTC)
        since_text = request.args.get("since", "").strip() or (now - timedelta(days=7)).strftime("%Y-%m-%d")
        until_text = request.args.get("until", "").strip()
        route = request.args.get("route", "")
        result = request.args.get("result", "")

        def work() -> Any:
            from closedloop_ops.cli import _parse_time

            since = _parse_time(since_text)
            until = _parse_time(until_text) if until_text else None
            return data.audit_rows(stack, since, until, route, result)

        found, problem = attempt(work)
        decisions, routes, results = found or ([], [], [])
        return page(
            "audit.html",
            title="audit",
            decisions=decisions,
            routes=routes,
            results=results,
            problem=problem,
            since=since_text,
            until=until_text,
            route=route,
            result=result,
        )

    # -- dead letters ------------------------------------------------------------------------------

    @app.get("/dlq")
    def dlq_page() -> str:
        from closedloop_ops.operations import dlq_depths, peek

        def work() -> list[tuple[Any, list[Any]]]:
            return [(d, peek(stack, d.queue, 10) if d.messages else []) for d in dlq_depths(stack)]

        queues, problem = attempt(work)
        return page("dlq.html", title="dead letters", queues=queues or [], problem=problem)

    @app.get("/dlq/<queue>/redrive")
    def redrive_confirm(queue: str) -> str:
        from closedloop_ops.operations import peek

        letters, problem = attempt(lambda: peek(stack, queue, 10))
        return page("redrive.html", title=f"redrive {queue}", queue=queue, letters=letters, problem=problem)

    @app.post("/dlq/<queue>/redrive")
    def redrive(queue: str) -> str:
        from closedloop_ops.operations import redrive as redrive_queue

        result, problem = attempt(lambda: redrive_queue(stack, queue, 10))
        return page("redrive.html", title=f"redrive {queue}", queue=queue, letters=None, result=result, problem=problem)

    return app


def _quality_chart(ev: approvals.VersionEvidence) -> Markup | None:
    quality = ev.quality
    if not quality:
        return None
    limits = ev.policy_now.get("thresholds", {})
    champion = ev.champion or {}
    champion_auc = svg.as_float(champion.get("auc"))
    tolerance = svg.as_float(limits.get("champion_tolerance")) or 0.0
    auc_markers = {"champion - tolerance": champion_auc - tolerance} if champion_auc is not None else {}
    majority = svg.as_float(quality.get("majority_class_accuracy"))
    bars = [
        svg.Bar("auc", svg.as_float(quality.get("auc")), svg.as_float(limits.get("min_auc")), auc_markers),
        svg.Bar("f1", svg.as_float(quality.get("f1")), svg.as_float(limits.get("min_f1"))),
        svg.Bar(
            "accuracy",
            svg.as_float(quality.get("accuracy")),
            svg.as_float(limits.get("min_accuracy")),
            {"majority class": majority} if majority is not None else {},
        ),
        svg.Bar("precision", svg.as_float(quality.get("precision"))),
        svg.Bar("recall", svg.as_float(quality.get("recall"))),
    ]
    return svg.metric_bars(
        bars, title="evaluation against the approval policy (black tick: minimum, dashed: reference)"
    )


def _bias_charts(ev: approvals.VersionEvidence) -> list[Markup]:
    if not ev.bias:
        return []
    limits = ev.policy_now.get("thresholds", {})
    minimum = svg.as_float(limits.get("min_disparate_impact")) or 0.8
    max_dppl = svg.as_float(limits.get("max_abs_dppl")) or 0.1
    names = [f"{facet.get('attribute')}={facet.get('value')}" for facet in ev.bias]
    return [
        svg.band_chart(
            [(name, svg.as_float(f.get("di"))) for name, f in zip(names, ev.bias, strict=True)],
            title="disparate impact per facet (green band: allowed)",
            low=0.0,
            high=max(2.0, 1 / minimum + 0.25),
            allowed=(minimum, 1 / minimum),
        ),
        svg.band_chart(
            [(name, svg.as_float(f.get("dppl"))) for name, f in zip(names, ev.bias, strict=True)],
            title="difference in positive proportions of labels (green band: allowed)",
            low=-max(0.5, 2 * max_dppl),
            high=max(0.5, 2 * max_dppl),
            allowed=(-max_dppl, max_dppl),
        ),
    ]


# -- serving ---------------------------------------------------------------------------------------


@contextmanager
def running(app: Flask, port: int = 0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:`port` (0: a free port) in a thread; yields its URL; stops after."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="closedloop-ui", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)
