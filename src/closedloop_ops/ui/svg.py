"""Charts as inline SVG, drawn on the server (no script, no font or file from the network).

Each function returns SVG markup (`markupsafe.Markup`); every text in it is escaped. The charts carry
figures only (metrics, thresholds, counts, times): the pages never show a data value.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

OK = "#2e7d32"
BAD = "#c62828"
NEUTRAL = "#546e7a"
LIMIT = "#111111"
BAND = "#e8f5e9"
GRID = "#d0d7de"
FONT = 'font-family="system-ui, sans-serif"'


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", fill: str = "#24292f") -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" {FONT}>'
        f"{escape(text)}</text>"
    )


def _svg(width: float, height: float, body: Sequence[str], label: str) -> Markup:
    return Markup(  # noqa: S704 - every text inside went through escape()
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


# -- a version's metrics against the policy -------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One metric: its value, the policy's minimum (if any) and other markers (name → value)."""

    name: str
    value: float | None
    minimum: float | None = None
    markers: dict[str, float] = field(default_factory=dict)


def metric_bars(bars: Sequence[Bar], *, title: str, low: float = 0.0, high: float = 1.0) -> Markup:
    """Horizontal bars on [low, high]; a bar below its minimum is red; the minimum is a black tick."""
    left, right, row = 90, 230, 30
    width = 620
    scale = width - left - right
    height = 34 + row * len(bars) + 24

    def x(value: float) -> float:
        return left + scale * (min(max(value, low), high) - low) / (high - low)

    body = [_text(0, 16, title, size=13)]
    for tick in (low, low + (high - low) / 2, high):
        body.append(f'<line x1="{_n(x(tick))}" y1="26" x2="{_n(x(tick))}" y2="{height - 20}" stroke="{GRID}"/>')
        body.append(_text(x(tick), height - 6, f"{tick:g}", size=10, anchor="middle", fill=NEUTRAL))
    for index, bar in enumerate(bars):
        y = 30 + index * row
        body.append(_text(left - 8, y + 15, bar.name, anchor="end"))
        if bar.value is None:
            body.append(_text(left, y + 15, "missing", fill=BAD))
            continue
        passed = bar.minimum is None or bar.value >= bar.minimum
        colour = (OK if passed else BAD) if bar.minimum is not None else NEUTRAL
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{_n(x(bar.value) - left)}" height="16" fill="{colour}" '
            f'rx="2"><title>{escape(f"{bar.name} {bar.value:.4f}")}</title></rect>'
        )
        notes = [f"{bar.value:.3f}"]
        if bar.minimum is not None:
            body.append(
                f'<line x1="{_n(x(bar.minimum))}" y1="{y}" x2="{_n(x(bar.minimum))}" y2="{y + 24}" '
                f'stroke="{LIMIT}" stroke-width="3"><title>{escape(f"minimum {bar.minimum:g}")}</title></line>'
            )
            notes.append(f"min {bar.minimum:g}")
        for name, value in bar.markers.items():
            body.append(
                f'<line x1="{_n(x(value))}" y1="{y + 2}" x2="{_n(x(value))}" y2="{y + 22}" stroke="{LIMIT}" '
                f'stroke-width="2" stroke-dasharray="3 2"><title>{escape(f"{name} {value:.3f}")}</title></line>'
            )
            notes.append(f"{name} {value:.3f}")
        body.append(_text(width - right + 10, y + 15, ", ".join(notes), size=11, fill=NEUTRAL))
    return _svg(width, height, body, title)


def band_chart(
    rows: Sequence[tuple[str, float | None]], *, title: str, low: float, high: float, allowed: tuple[float, float]
) -> Markup:
    """Values on [low, high] with the allowed band shaded: a marker outside the band is red."""
    left, right, row = 90, 150, 28
    width = 620
    scale = width - left - right
    height = 34 + row * max(len(rows), 1) + 24

    def x(value: float) -> float:
        return left + scale * (min(max(value, low), high) - low) / (high - low)

    top, bottom = 26, height - 20
    body = [
        _text(0, 16, title, size=13),
        f'<rect x="{_n(x(allowed[0]))}" y="{top}" width="{_n(x(allowed[1]) - x(allowed[0]))}" '
        f'height="{bottom - top}" fill="{BAND}"><title>{escape(f"allowed {allowed[0]:g} to {allowed[1]:g}")}'
        "</title></rect>",
    ]
    for tick in (low, allowed[0], allowed[1], high):
        body.append(f'<line x1="{_n(x(tick))}" y1="{top}" x2="{_n(x(tick))}" y2="{bottom}" stroke="{GRID}"/>')
        body.append(_text(x(tick), height - 6, f"{tick:.2f}".rstrip("0").rstrip("."), size=10, anchor="middle"))
    for index, (name, value) in enumerate(rows):
        y = 30 + index * row
        body.append(_text(left - 8, y + 14, name, anchor="end"))
        if value is None:
            body.append(_text(left, y + 14, "missing", fill=BAD))
            continue
        inside = allowed[0] <= value <= allowed[1]
        body.append(
            f'<circle cx="{_n(x(value))}" cy="{y + 10}" r="7" fill="{OK if inside else BAD}">'
            f"<title>{escape(f'{name} {value:.4f}')}</title></circle>"
        )
        body.append(_text(width - right + 10, y + 14, f"{value:.3f} ({'within' if inside else 'OUTSIDE'})", size=11))
    return _svg(width, height, body, title)


# -- drift over time -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    at: datetime
    label: str


def time_series(
    points: Sequence[tuple[datetime, float]],
    *,
    title: str,
    start: datetime,
    end: datetime,
    threshold: float | None = None,
    alarms: Sequence[Moment] = (),
) -> Markup:
    """A metric over [start, end]: points joined by a line, the alarm threshold dashed, alarm moments red."""
    width, height = 640, 220
    left, right, top, bottom = 56, 16, 28, 40
    span = max((end - start).total_seconds(), 1.0)
    values = [v for _, v in points] + ([threshold] if threshold is not None else [])
    high = max([*values, 0.0]) * 1.15 or 1.0

    def x(moment: datetime) -> float:
        return left + (width - left - right) * (moment - start).total_seconds() / span

    def y(value: float) -> float:
        return height - bottom - (height - top - bottom) * value / high

    body = [_text(0, 16, title, size=13)]
    for fraction in (0.0, 0.5, 1.0):
        level = high * fraction
        body.append(f'<line x1="{left}" y1="{_n(y(level))}" x2="{width - right}" y2="{_n(y(level))}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y(level) + 4, f"{level:.3g}", size=10, anchor="end", fill=NEUTRAL))
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        moment = start + (end - start) * fraction
        body.append(_text(x(moment), height - bottom + 16, moment.strftime("%m-%d %H:%M:%S"), size=10, anchor=anchor))
    if threshold is not None:
        body.append(
            f'<line x1="{left}" y1="{_n(y(threshold))}" x2="{width - right}" y2="{_n(y(threshold))}" '
            f'stroke="{BAD}" stroke-dasharray="6 4"><title>{escape(f"alarm threshold {threshold:g}")}</title></line>'
        )
        body.append(_text(width - right, y(threshold) - 4, f"threshold {threshold:g}", size=10, anchor="end", fill=BAD))
    for moment in alarms:
        if start <= moment.at <= end:
            body.append(
                f'<line x1="{_n(x(moment.at))}" y1="{top}" x2="{_n(x(moment.at))}" y2="{height - bottom}" '
                f'stroke="{BAD}" stroke-width="2"><title>{escape(moment.label)}</title></line>'
            )
            body.append(f'<path d="M{_n(x(moment.at))},{top} l-6,-8 h12 z" fill="{BAD}"/>')
    ordered = sorted(points)
    if len(ordered) > 1:
        path = " ".join(f"{_n(x(at))},{_n(y(v))}" for at, v in ordered)
        body.append(f'<polyline points="{path}" fill="none" stroke="{NEUTRAL}" stroke-width="2"/>')
    for at, value in ordered:
        above = threshold is not None and value > threshold
        body.append(
            f'<circle cx="{_n(x(at))}" cy="{_n(y(value))}" r="4" fill="{BAD if above else NEUTRAL}">'
            f"<title>{escape(f'{at:%Y-%m-%d %H:%M:%S} {value:.4g}')}</title></circle>"
        )
    if not ordered:
        body.append(_text(width / 2, height / 2, "no datapoints in this window", anchor="middle", fill=NEUTRAL))
    return _svg(width, height, body, title)


# -- lineage ---------------------------------------------------------------------------------------

_NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"\];$')
_EDGE = re.compile(r"^\s*(\w+) -> (\w+);$")


def parse_dot(dot: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Nodes (name, label) and edges of the digraph `closedloop_ops.lineage.to_dot` writes."""
    nodes: list[tuple[str, str]] = []
    edges: list[tuple[str, str]] = []
    for line in dot.splitlines():
        if match := _NODE.match(line):
            label = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), match.group(2))
            nodes.append((match.group(1), label))
        elif match := _EDGE.match(line):
            edges.append((match.group(1), match.group(2)))
    return nodes, edges


def graphviz(dot: str) -> Markup | None:
    """The graph laid out by Graphviz's `dot`, when it is installed (None otherwise, or when it fails)."""
    program = shutil.which("dot")
    if program is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program, the graph on stdin
            [program, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    start = done.stdout.find("<svg")
    return Markup(done.stdout[start:]) if start >= 0 else None  # noqa: S704 - dot escapes its labels


def lineage_graph(dot: str, *, max_chars: int = 35) -> Markup:
    """The graph of `to_dot`, left to right: a column per rank (longest path from a source)."""
    laid_out = graphviz(dot)
    if laid_out is not None:
        return laid_out
    nodes, edges = parse_dot(dot)
    names = [name for name, _ in nodes]
    rank = dict.fromkeys(names, 0)
    for _ in names:  # longest path: relax as often as there are nodes (a chain, so a few passes)
        for a, b in edges:
            if a in rank and b in rank:
                rank[b] = max(rank[b], rank[a] + 1)
    columns: dict[int, list[str]] = {}
    for name in names:
        columns.setdefault(rank[name], []).append(name)
    labels = dict(nodes)
    box_w, gap_x, gap_y, line_h = 230, 40, 14, 15

    def lines(name: str) -> list[str]:
        return [t if len(t) <= max_chars else t[: max_chars - 1] + "…" for t in labels[name].split("\n")]

    heights = {name: 14 + line_h * len(lines(name)) for name in names}
    where: dict[str, tuple[float, float]] = {}
    total_h = 0.0
    for column, members in sorted(columns.items()):
        y = 10.0
        for name in members:
            where[name] = (10 + column * (box_w + gap_x), y)
            y += heights[name] + gap_y
        total_h = max(total_h, y)
    width = 10 + (max(columns) + 1 if columns else 1) * (box_w + gap_x)
    body = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{NEUTRAL}"/></marker></defs>'
    ]
    for a, b in edges:
        if a not in where or b not in where:
            continue
        (ax, ay), (bx, by) = where[a], where[b]
        body.append(
            f'<line x1="{_n(ax + box_w)}" y1="{_n(ay + heights[a] / 2)}" x2="{_n(bx)}" y2="{_n(by + heights[b] / 2)}" '
            f'stroke="{NEUTRAL}" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for name in names:
        x, y = where[name]
        fill = "#fff8e1" if name in {"approval", "model"} else "#f6f8fa"
        body.append(
            f'<g class="node" id="node-{escape(name)}"><title>{escape(labels[name])}</title>'
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{box_w}" height="{heights[name]}" rx="6" fill="{fill}" '
            f'stroke="{NEUTRAL}"/>'
        )
        for index, text in enumerate(lines(name)):
            body.append(_text(x + 8, y + 18 + index * line_h, text, size=11 if index else 12))
        body.append("</g>")
    return _svg(width, total_h + 10, body, "lineage graph")


def as_float(value: Any) -> float | None:
    """A number from a report field (None when absent or not a number)."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
