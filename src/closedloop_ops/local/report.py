"""The demo's report: `report.json`, a Markdown summary, and three pictures (SVG, with a PNG of each).

* `timeline.svg` — one labelled lane per route (and per model line when there are several), one
  marker per timeline entry, coloured and shaped by its outcome (legend), the key events named;
* `drift.svg` — the drift metrics the monitor published for one endpoint (the drifted line's), over
  the same time axis, against the thresholds of the alarms that watch them;
* `lineage.svg` — the chain of one prediction: the graph `closedloop lineage --format dot` gives.

All times are seconds since the report's first timeline entry; the timeline's axis ends at the
report's `wall_seconds`, the number `report.md` states, so picture and text agree. Drawn with
matplotlib's Agg/SVG backends (no display, no network, its bundled DejaVu Sans), text kept as text.
"""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from closedloop_ops.text import shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DRIFT_NAMESPACE = "closedloop/Drift"
# (lane, label): the routes in loop order, with what the local loop does between them.
LANES = [
    ("upload", "upload to raw/"),
    ("data-arrival", "1 data arrival"),
    ("data-prepared", "2 data prepared"),
    ("pipeline", "training pipeline"),
    ("pipeline-finished", "3 approval gate"),
    ("model-approval", "4 rollout"),
    ("deployment-outcome", "5 deployment"),
    ("traffic", "endpoint traffic"),
    ("drift-monitor", "7 drift monitor"),
    ("cloudwatch", "CloudWatch alarms"),
    ("alarm", "6 alarm → retraining"),
    ("local", "local loop"),
]
LOCAL_LANES = {
    "upload": "upload",
    "pipeline": "pipeline",
    "pipeline step": "pipeline",
    "traffic": "traffic",
    "schedule": "drift-monitor",
    "alarm": "cloudwatch",
}
MODEL_ROUTES = {"pipeline-finished", "model-approval", "deployment-outcome"}
# The lane that never splits per line: the loop's own notes are about no one line.
SHARED_LANES = {"local"}
# tone: (colour, marker, legend text). Shapes differ too, so the picture reads in black and white.
TONES = {
    "ok": ("#2e7d32", "o", "done: started, approved, live, published"),
    "warn": ("#ef6c00", "^", "held back: rejected, suppressed, duplicate"),
    "fail": ("#c62828", "X", "failed, refused, rolled back"),
    "info": ("#1565c0", "s", "step or state change"),
}
_VERSION = re.compile(r"model-package/([^/]+)/(\d+)$")


def _tone(result: str) -> str:
    lowered = result.lower()
    if any(word in lowered for word in ("fail", "error", "rolled", "refused")):
        return "fail"
    if any(word in lowered for word in ("reject", "suppress", "duplicate", "skip", "quarantin")):
        return "warn"
    if any(
        word in lowered
        for word in ("start", "approv", "live", "deploy", "prepared", "publish", "succeed", "complet", "captur")
    ):
        return "ok"
    return "info"


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00"))


def _lane(entry: dict[str, Any]) -> str:
    route = str(entry.get("route", "local"))
    if route == "local":
        return LOCAL_LANES.get(str(entry.get("event", "")), "local")
    return route if route in dict(LANES) else "local"


def _version(entry: dict[str, Any]) -> tuple[str, str] | None:
    """(model group, version) of an entry about a model version, else None."""
    match = _VERSION.search(str(entry.get("event", "")))
    return (match.group(1), match.group(2)) if match else None


def key_event(entry: dict[str, Any]) -> str | None:
    """The name the picture gives an entry worth naming (upload, approvals, live, alarm, retraining)."""
    route, result, event = entry.get("route"), str(entry.get("result", "")), str(entry.get("event", ""))
    version = _version(entry)
    if route == "local" and event == "upload":
        return "upload"
    if route == "pipeline-finished" and version and result in {"approved", "rejected"}:
        return f"v{version[1]} {result}"
    if route == "deployment-outcome" and version and result in {"live", "rolled_back", "rolled-back", "failed"}:
        return f"v{version[1]} {result.replace('_', ' ')}"
    if route == "local" and event == "alarm" and result.endswith("→ ALARM"):
        return f"ALARM {str(entry.get('action', '')).removeprefix('closedloop-')}"
    if route == "alarm" and result == "started":
        return "retraining started"
    return None


class Clock:
    """Seconds since the first timeline entry; the axis ends at the report's wall time."""

    def __init__(self, report: dict[str, Any]) -> None:
        timeline = report.get("timeline", [])
        times = [_at(e) for e in timeline]
        self.start = min(times) if times else datetime.now(UTC)
        last = (max(times) - self.start).total_seconds() if times else 0.0
        self.wall = float(report.get("wall_seconds") or 0.0)
        self.end = max(self.wall, last, 1.0)

    def seconds(self, moment: datetime) -> float:
        return (moment - self.start).total_seconds()


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _line(entry: dict[str, Any]) -> str | None:
    """The model line an entry is about: its `line`, else the model group of the version it names."""
    version = _version(entry)
    return entry.get("line") or (version[0] if version else None)


def _lane_key(entry: dict[str, Any], split: bool) -> str:
    """`route` or, when the timeline has several lines, `route|line` for an entry about one line."""
    lane = _lane(entry)
    line = _line(entry)
    return f"{lane}|{line}" if split and line and lane not in SHARED_LANES else lane


def _lines(timeline: list[dict[str, Any]]) -> list[str]:
    """The model lines the timeline is about, in the order they first appear."""
    return list(dict.fromkeys(line for e in timeline if (line := _line(e))))


def _lanes(timeline: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The lanes the timeline uses, in loop order; split per model line when there are several."""
    lines = _lines(timeline)
    split = len(lines) > 1
    used = {_lane_key(e, split) for e in timeline}
    lanes: list[tuple[str, str]] = []
    for lane, label in LANES:
        if lane in used:
            lanes.append((lane, label))
        lanes += [(f"{lane}|{line}", f"{label}\n{line}") for line in lines if f"{lane}|{line}" in used]
    return lanes


def timeline_figure(report: dict[str, Any]) -> Figure:
    """Labelled lanes (per line when there are several), outcome markers with a legend, key events
    named; x: seconds since the first entry."""
    from matplotlib.lines import Line2D

    timeline = report.get("timeline", [])
    clock = Clock(report)
    lanes = _lanes(timeline)
    split = len(_lines(timeline)) > 1
    row = {lane: index for index, (lane, _) in enumerate(lanes)}
    figure = _figure(11, 1.6 + 0.42 * max(len(lanes), 1))
    axes = figure.add_subplot()
    named_in_lane: dict[str, float] = {}
    for index, entry in enumerate(timeline):
        lane = _lane_key(entry, split)
        x, y = clock.seconds(_at(entry)), row[lane]
        colour, marker, _ = TONES[_tone(str(entry.get("result", "")))]
        axes.scatter(
            [x],
            [y],
            s=46,
            color=colour,
            marker=marker,
            zorder=3,
            edgecolors="white",
            linewidths=0.6,
            gid=f"event-{index}",
        )
        name = key_event(entry)
        # One name per lane and moment: a burst (two alarms in the same second) is named once.
        if name and abs(named_in_lane.get(lane, -99.0) - x) > clock.end / 40:
            named_in_lane[lane] = x
            axes.annotate(
                name,
                (x, y),
                xytext=(0, 9),
                textcoords="offset points",
                ha="center",
                fontsize=8.5,
                fontweight="bold",
                color="#212121",
            )
    axes.set_yticks(range(len(lanes)), [label for _, label in lanes], fontsize=9)
    axes.set_ylim(len(lanes) - 0.4, -0.8)
    axes.set_xlim(-clock.end * 0.01, clock.end * 1.02)
    axes.set_xlabel(f"seconds since the first event ({clock.start:%Y-%m-%d %H:%M:%S} UTC)", fontsize=9)
    axes.grid(axis="y", color="#e0e0e0", linewidth=0.8)
    axes.grid(axis="x", color="#f0f0f0", linewidth=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.set_title(
        f"closedloop demo timeline: {clock.wall:.1f} s wall time, {len(timeline)} events", fontsize=11, loc="left"
    )
    handles = [
        Line2D([], [], color=colour, marker=marker, linestyle="", markersize=7, label=text)
        for colour, marker, text in TONES.values()
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8.5, frameon=False)
    return figure


def drift_metrics(
    cloudwatch: Any, since: datetime, until: datetime | None = None, endpoint: str | None = None
) -> list[dict[str, Any]]:
    """The drift metrics the stack's alarms watch (of `endpoint` alone, when given), read back from
    CloudWatch with their thresholds.

    One entry per alarm on namespace `closedloop/Drift`: alarm, metric, dimensions, threshold,
    comparison and every datapoint (ISO time, value). Read at one-second resolution, which only the
    local loop keeps (CloudWatch itself aggregates standard-resolution metrics to a minute).
    """
    until = until or datetime.now(UTC) + timedelta(minutes=1)
    series = []
    alarms = cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]
    order = ["MaxFeaturePSI", "PredictionKS", "BiasDrift"]
    for alarm in sorted(
        alarms, key=lambda a: (order.index(a["MetricName"]) if a.get("MetricName") in order else 9, a["AlarmName"])
    ):
        if alarm.get("Namespace") != DRIFT_NAMESPACE or not alarm.get("MetricName"):
            continue
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        if endpoint is not None and dimensions.get("Endpoint") != endpoint:
            continue
        result = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": DRIFT_NAMESPACE,
                            "MetricName": alarm["MetricName"],
                            "Dimensions": alarm.get("Dimensions", []),
                        },
                        "Period": 1,
                        "Stat": alarm.get("Statistic", "Maximum"),
                    },
                }
            ],
            StartTime=since,
            EndTime=until,
            ScanBy="TimestampAscending",
        )["MetricDataResults"][0]
        points = sorted(zip(result["Timestamps"], result["Values"], strict=True))
        series.append(
            {
                "alarm": alarm["AlarmName"],
                "metric": alarm["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                "threshold": float(alarm["Threshold"]),
                "comparison": alarm["ComparisonOperator"],
                "points": [[t.astimezone(UTC).isoformat(timespec="milliseconds"), float(v)] for t, v in points],
            }
        )
    return series


def drift_figure(report: dict[str, Any]) -> Figure:
    """One panel per drift metric: its values over time, its alarm's threshold, rollouts and retraining marked."""
    series = report.get("drift_metrics") or []
    clock = Clock(report)
    figure = _figure(11, 0.6 + 2.0 * max(len(series), 1))
    if not series:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no drift metrics were published", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return figure
    marks = [(clock.seconds(_at(e)), name) for e in report.get("timeline", []) if (name := key_event(e))]
    marks = [(x, name) for x, name in marks if name == "retraining started" or name.endswith(" live")]
    panels = figure.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for axes, metric in zip(panels, series, strict=True):
        xs = [clock.seconds(datetime.fromisoformat(t)) for t, _ in metric["points"]]
        values = [v for _, v in metric["points"]]
        threshold = metric["threshold"]
        above = [v > threshold if "Greater" in metric["comparison"] else v < threshold for v in values]
        axes.plot(xs, values, color="#455a64", linewidth=1.2, zorder=2)
        axes.scatter(
            xs,
            values,
            color=[TONES["fail"][0] if a else TONES["ok"][0] for a in above],
            marker="o",
            s=40,
            zorder=3,
        )
        for x, value in zip(xs, values, strict=True):
            axes.annotate(f"{value:.3g}", (x, value), xytext=(6, 4), textcoords="offset points", fontsize=8)
        axes.axhline(threshold, color=TONES["fail"][0], linestyle="--", linewidth=1)
        axes.annotate(
            f"threshold {threshold:g} (alarm {metric['alarm']})",
            (0, threshold),
            xycoords=("axes fraction", "data"),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=8,
            color=TONES["fail"][0],
        )
        for x, _ in marks:
            axes.axvline(x, color="#9e9e9e", linestyle=":", linewidth=1)
        axes.set_ylabel(metric["metric"], fontsize=9)
        axes.set_ylim(bottom=0, top=max([*values, threshold]) * 1.45 or 1)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    for x, name in marks:
        panels[0].annotate(
            name,
            (x, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -2),
            textcoords="offset points",
            fontsize=8,
            color="#616161",
            va="top",
        )
    dimensions = ", ".join(f"{k} {v}" for k, v in series[0]["dimensions"].items())
    panels[0].set_title(
        f"drift metrics ({DRIFT_NAMESPACE}, {dimensions}) against their alarm thresholds; red: above the threshold",
        fontsize=11,
        loc="left",
    )
    panels[-1].set_xlim(-clock.end * 0.01, clock.end * 1.02)
    panels[-1].set_xlabel("seconds since the first event (the timeline's axis)", fontsize=9)
    return figure


def lineage_figure(chain: dict[str, Any]) -> Figure:
    """The graph of `closedloop lineage --format dot`, top to bottom: the prediction, back to data and code.

    Laid out in inches (the axes fill the figure, one data unit is one inch), so boxes sized from
    their text never overlap: the chain in a column, the code beside its pipeline execution, the
    raw objects in a row under the prepared data.
    """
    from closedloop_ops.lineage import graph

    nodes, edges = graph(chain)
    labels = dict(nodes)
    raws = [name for name, _ in nodes if name.startswith("raw")]
    spine = [name for name, _ in nodes if not name.startswith("raw") and name != "code"]
    font, gap = 8.0, 0.35

    def text(name: str) -> str:
        width = 44 if name.startswith("raw") or name == "code" else 64
        return "\n".join(textwrap.fill(shorten(line, 150), width) for line in labels[name].split("\n"))

    def size(name: str) -> tuple[float, float]:
        lines = text(name).split("\n")
        return max(len(t) for t in lines) * font * 0.56 / 72 + 0.3, len(lines) * font * 1.3 / 72 + 0.25

    sizes = {name: size(name) for name in labels}
    spine_w = max(sizes[n][0] for n in spine)
    code_w = sizes["code"][0] if "code" in sizes else 0.0
    row_w = sum(sizes[n][0] for n in raws) + gap * max(len(raws) - 1, 0)
    width = max(row_w, spine_w + 2 * (code_w + gap), 6.0) + 0.6
    centre = width / 2
    where: dict[str, tuple[float, float]] = {}
    y = -0.55
    for name in spine:
        y -= sizes[name][1] / 2
        where[name] = (centre, y)
        y -= sizes[name][1] / 2 + 0.45
    if "code" in labels and "execution" in where:
        where["code"] = (centre + sizes["execution"][0] / 2 + gap + code_w / 2, where["execution"][1])
    row_h = max((sizes[n][1] for n in raws), default=0.0)
    x = centre - row_w / 2
    for name in raws:
        where[name] = (x + sizes[name][0] / 2, y - row_h / 2)
        x += sizes[name][0] + gap
    height = -(y - row_h - 0.3)
    figure = _figure(width, height)
    figure.set_layout_engine("none")
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, width)
    axes.set_ylim(-height, 0)
    axes.set_axis_off()
    fills = {"model": "#fff8e1", "approval": "#fff8e1", "inference": "#e3f2fd"}
    boxes = {}
    for name, (x_at, y_at) in where.items():
        boxes[name] = axes.text(
            x_at,
            y_at,
            text(name),
            ha="center",
            va="center",
            fontsize=font,
            bbox={"boxstyle": "round,pad=0.45", "facecolor": fills.get(name, "#f6f8fa"), "edgecolor": "#546e7a"},
            zorder=3,
        )
    for a, b in edges:
        if a in boxes and b in boxes:
            axes.annotate(
                "",
                xy=where[b],
                xytext=where[a],
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": "#546e7a",
                    "patchA": boxes[a].get_bbox_patch(),
                    "patchB": boxes[b].get_bbox_patch(),
                    "shrinkA": 2,
                    "shrinkB": 2,
                },
                zorder=2,
            )
    axes.text(
        0.15, -0.2, "lineage of one prediction (closedloop lineage --format dot)", fontsize=11, va="top", ha="left"
    )
    return figure


def save(figure: Figure, svg: Path) -> Path:
    """Write `figure` as SVG (text as text, no timestamp: the same figure gives the same file) and PNG."""
    import matplotlib

    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "closedloop", "font.family": "DejaVu Sans", "font.size": 9}
    ):
        figure.savefig(svg, format="svg", metadata={"Date": None})
        figure.savefig(svg.with_suffix(".png"), format="png", dpi=110, metadata={"Software": None})
    return svg


def retraining_effect_line(effect: dict[str, Any]) -> str:
    """The report's `retraining_effect` in one line: old and new version on the drifted hold-out, every
    version's figure, and the drift monitor's figures after the rollout."""
    metric = str(effect.get("metric", "auc"))
    every = ", ".join(
        f"v{v['version']} {v[metric]:.3f}" + (f" ({v['trigger']})" if v.get("trigger") else "")
        for v in effect.get("versions", [])
    )
    after = effect.get("drift_after_rollout") or {}
    psi, ks = after.get("max_feature_psi"), after.get("prediction_ks")
    drift = (
        f"max PSI {psi:.2f}, prediction KS {ks:.2f}"
        if psi is not None and ks is not None
        else str(after.get("result") or "not measured")
    )
    old = f"{effect['old']:.3f} (v{effect['old_version']}, served the drifted traffic)"
    new = f"{effect['new']:.3f} (v{effect['new_version']}, live after the rollout)"
    return (
        f"retraining effect on {effect.get('line')} ({effect.get('holdout_rows')} labelled rows of the drifted "
        f"world, held out): {metric.upper()} {old} → {new}; every version, by trigger: {every}; "
        f"drift after the rollout: {drift}"
    )


def _wall(report: dict[str, Any]) -> str:
    return f"{float(report.get('wall_seconds') or 0):.1f} s"


def clarify_section(report: dict[str, Any]) -> list[str]:
    """Each line's versions: their Clarify bias figures and top attributions, and the feature group's records."""
    lines: list[str] = []
    for line, facts in (report.get("model_lines") or {}).items():
        reports = facts.get("clarify") or {}
        if not reports and facts.get("feature_group_records") is None:
            continue
        lines += ["", f"## Model line {line}: Clarify and Feature Store", ""]
        if facts.get("feature_group_records") is not None:
            lines.append(f"- feature group: {facts['feature_group_records']} records ingested")
        for version, clarify in reports.items():
            post = "; ".join(
                f"{facet}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in values.items() if k in ("DI", "DPPL") and v is not None)
                for facet, values in (clarify.get("post_training") or {}).items()
            )
            top = ", ".join(f"{a['feature']} {a['mean_abs_shap']:.3f}" for a in (clarify.get("attributions") or [])[:3])
            lines.append(
                f"- version {version} ({clarify.get('bias_source')}): {post or 'no bias figures'}; "
                f"top |SHAP|: {top or 'none'}"
            )
    return lines


def markdown(report: dict[str, Any], pictures: dict[str, str]) -> str:
    """The report for people: the numbers, the pictures, then the timeline as a table."""
    unexplained = report.get("side_effects_unexplained") or []
    lines = [
        "# closedloop demo report",
        "",
        f"- wall time: {_wall(report)}",
        f"- model versions deployed: {', '.join(str(v) for v in report.get('model_versions_deployed', []))}",
        f"- retrainings: {report.get('retrainings', 0)}",
        *(
            f"  - model line {line} ({facts.get('endpoint')}): versions deployed "
            f"{', '.join(str(v) for v in facts.get('model_versions_deployed', [])) or 'none'}, "
            f"retrainings {facts.get('retrainings', 0)}"
            for line, facts in (report.get("model_lines") or {}).items()
        ),
        *([f"- {retraining_effect_line(report['retraining_effect'])}"] if report.get("retraining_effect") else []),
        f"- events in dead-letter queues: {report.get('events_in_dlq', 0)}",
        f"- side effects without a decision: {report.get('side_effects_without_decision', 0)}",
    ]
    lines += [f"  - {shorten(json.dumps(item, default=str), 200)}" for item in unexplained]
    lines += clarify_section(report)
    lines += ["", "## Timeline", "", f"![timeline: lanes per route, key events named]({pictures['timeline']})", ""]
    if "drift" in pictures:
        lines += ["## Drift", "", f"![drift metrics against their alarm thresholds]({pictures['drift']})", ""]
    chain = report.get("lineage") or {}
    lines += ["## Lineage of one prediction", ""]
    if "lineage" in pictures:
        lines += [f"![lineage of one prediction]({pictures['lineage']})", ""]
        inference = chain.get("inference", {}).get("inference_id")
        lines += [f"`closedloop lineage --inference-id {inference}` prints the same chain as text.", ""]
    else:
        lines += ["(no prediction was traced)", ""]
    lines += ["## Events", "", "| at | route | event | action | result |", "|---|---|---|---|---|"]
    for entry in report.get("timeline", []):
        cells = [str(entry.get(k, "")).replace("|", "/") for k in ("at", "route", "event", "action", "result")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    report: dict[str, Any], out_dir: Path, cloudwatch: Any = None, drift_endpoint: str | None = None
) -> dict[str, Path]:
    """Write report.json, report.md and the pictures under `out_dir`; returns their paths.

    With `cloudwatch` (the loop's client), the drift metrics are read back into `report["drift_metrics"]`:
    those of `drift_endpoint` (the drifted line's), else every endpoint's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if cloudwatch is not None and report.get("timeline"):
        since = Clock(report).start - timedelta(minutes=1)
        report["drift_metrics"] = drift_metrics(cloudwatch, since, endpoint=drift_endpoint)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "svg": out_dir / "timeline.svg"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    save(timeline_figure(report), paths["svg"])
    pictures = {"timeline": paths["svg"].name}
    if any(metric["points"] for metric in report.get("drift_metrics") or []):
        paths["drift"] = save(drift_figure(report), out_dir / "drift.svg")
        pictures["drift"] = paths["drift"].name
    if report.get("lineage", {}).get("model_version"):
        paths["lineage"] = save(lineage_figure(report["lineage"]), out_dir / "lineage.svg")
        pictures["lineage"] = paths["lineage"].name
    paths["markdown"].write_text(markdown(report, pictures), encoding="utf-8")
    return paths
