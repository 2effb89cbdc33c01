"""The demo's report: `report.json`, a Markdown summary and an SVG picture of the timeline."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

LANES = [
    ("data-arrival", "1 data arrival"),
    ("data-prepared", "2 data prepared"),
    ("pipeline-finished", "3 approval gate"),
    ("model-approval", "4 rollout"),
    ("deployment-outcome", "5 deployment"),
    ("alarm", "6 alarm → retrain"),
    ("drift-monitor", "7 drift monitor"),
    ("local", "local loop"),
]
COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828", "info": "#1565c0"}


def _tone(result: str) -> str:
    lowered = result.lower()
    if any(word in lowered for word in ("fail", "error", "rolled", "refused")):
        return "fail"
    if any(word in lowered for word in ("reject", "suppress", "duplicate", "skip", "quarantin")):
        return "warn"
    if any(
        word in lowered for word in ("start", "approv", "live", "deploy", "prepared", "publish", "succeed", "complet")
    ):
        return "ok"
    return "info"


def timeline_svg(timeline: list[dict[str, Any]], width: int = 1100) -> str:
    """Lanes per route, one dot per timeline entry, time on the x axis."""
    if not timeline:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    times = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in timeline]
    start, end = min(times), max(times)
    span = max((end - start).total_seconds(), 1.0)
    left, lane_height, top = 170, 34, 30
    lanes = [lane for lane, _ in LANES]
    height = top + lane_height * len(LANES) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="18" font-weight="bold">closedloop demo timeline ({span:.1f} s)</text>',
    ]
    for index, (_lane, label) in enumerate(LANES):
        y = top + index * lane_height + lane_height / 2
        parts.append(f'<text x="10" y="{y + 4:.0f}">{html.escape(label)}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.0f}" x2="{width - 20}" y2="{y:.0f}" stroke="#ddd"/>')
    for entry, moment in zip(timeline, times, strict=True):
        lane = entry.get("route", "local")
        index = lanes.index(lane) if lane in lanes else len(LANES) - 1
        x = left + (moment - start).total_seconds() / span * (width - left - 30)
        y = top + index * lane_height + lane_height / 2
        colour = COLOURS[_tone(str(entry.get("result", "")))]
        title = html.escape(
            f"{entry['at']} {entry.get('event', '')}: {entry.get('action', '')} → {entry.get('result', '')}"
        )
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.0f}" r="6" fill="{colour}"><title>{title}</title></circle>')
    axis_y = top + lane_height * len(LANES) + 15
    for tick in range(6):
        x = left + tick / 5 * (width - left - 30)
        parts.append(f'<text x="{x:.0f}" y="{axis_y}" text-anchor="middle" fill="#555">+{span * tick / 5:.0f}s</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def markdown(report: dict[str, Any], svg_name: str) -> str:
    lines = [
        "# closedloop demo report",
        "",
        f"![timeline]({svg_name})",
        "",
        f"- wall time: {report.get('wall_seconds', 0):.1f} s",
        f"- model versions deployed: {', '.join(str(v) for v in report.get('model_versions_deployed', []))}",
        f"- retrainings: {report.get('retrainings', 0)}",
        f"- events in dead-letter queues: {report.get('events_in_dlq', 0)}",
        "",
        "## Lineage of one prediction",
        "",
    ]
    for key, value in report.get("lineage", {}).items():
        rendered = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append(f"- **{key}**: {rendered}")
    lines += ["", "## Timeline", "", "| at | route | event | action | result |", "|---|---|---|---|---|"]
    for entry in report.get("timeline", []):
        cells = [str(entry.get(k, "")).replace("|", "/") for k in ("at", "route", "event", "action", "result")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "svg": out_dir / "timeline.svg"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    paths["svg"].write_text(timeline_svg(report.get("timeline", [])), encoding="utf-8")
    paths["markdown"].write_text(markdown(report, paths["svg"].name), encoding="utf-8")
    return paths
