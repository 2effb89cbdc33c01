"""The demo report's pictures read on paper: lanes labelled, a legend, key events named, one wall time."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from closedloop_ops.local.report import TONES, write_report

SVG = "{http://www.w3.org/2000/svg}"
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/closedloop-loans/{}"


def entry(second: float, route: str, event: str, action: str, result: str) -> dict[str, str]:
    return {
        "at": f"2026-11-27T07:21:{second:06.3f}Z",
        "route": route,
        "event": event,
        "action": action,
        "result": result,
    }


def a_report() -> dict[str, Any]:
    """What `Demo.report` returns, for a loop that closed: v1 live, drift, an alarm, retraining, v2 live."""
    timeline = [
        entry(0.0, "local", "local loop", "moto on http://127.0.0.1:1", "79 resources"),
        entry(0.4, "local", "upload", "3 files with PII to raw/loans/", "3000 applications"),
        entry(2.0, "data-arrival", "run:loans/abc", "start_data_prep", "started"),
        entry(4.0, "data-prepared", "run:loans/abc", "start_training", "started"),
        entry(6.0, "local", "pipeline step", "Train (Training)", "Succeeded in 2.1s"),
        entry(9.0, "pipeline-finished", PACKAGE.format(1), "approval_gate", "approved"),
        entry(9.5, "model-approval", PACKAGE.format(1), "deploy", "deploying"),
        entry(10.0, "deployment-outcome", PACKAGE.format(1), "record_outcome", "live"),
        entry(12.0, "drift-monitor", "drift:closedloop-loans", "measure_drift", "published"),
        entry(14.0, "drift-monitor", "drift:closedloop-loans", "measure_drift", "published"),
        entry(14.1, "local", "alarm", "closedloop-loans-drift-features", "OK → ALARM"),
        entry(14.3, "alarm", "alarm:closedloop-loans-drift-features@t", "start_retraining", "started"),
        entry(14.4, "alarm", "alarm:closedloop-loans-drift-predictions@t", "start_retraining", "suppressed"),
        entry(20.0, "pipeline-finished", PACKAGE.format(2), "approval_gate", "approved"),
        entry(21.0, "deployment-outcome", PACKAGE.format(2), "record_outcome", "live"),
    ]
    chain = {
        "inference": {"inference_id": "demo-post-retraining-1", "inference_time": "2026-11-27T07:21:22Z"},
        "endpoint_config": {"endpoint": "closedloop-loans", "name": "closedloop-loans-v2-1"},
        "model_version": {"group": "closedloop-loans", "version": 2, "status": "Approved"},
        "approval_decision": {"status": "Approved", "decided_by": "policy approval-policy/1 (auto mode)"},
        "pipeline_execution": {
            "arn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/closedloop-training/execution/ex1",
            "trigger": "alarm",
            "trigger_reason": "closedloop-loans-drift-features closedloop/Drift MaxFeaturePSI = 7.54101 threshold 0.2",
        },
        "prepared_data": {"prep_run_id": "abc", "rows": 3000},
        "raw_objects": [{"key": f"raw/loans/applications-00{i}.csv", "version_id": f"v{i}"} for i in range(3)],
        "code_version": {"model": "train=3a14daf20ab1"},
    }

    def series(alarm: str, metric: str, threshold: float, values: list[float]) -> dict[str, Any]:
        points = [[f"2026-11-27T07:21:{12 + 2 * i:02d}.000+00:00", v] for i, v in enumerate(values)]
        return {
            "alarm": alarm,
            "metric": metric,
            "dimensions": {"Endpoint": "closedloop-loans"},
            "threshold": threshold,
            "comparison": "GreaterThanThreshold",
            "points": points,
        }

    return {
        "wall_seconds": 22.4,
        "timeline": timeline,
        "model_versions_deployed": [1, 2],
        "retrainings": 1,
        "events_in_dlq": 0,
        "lineage": chain,
        "side_effects_without_decision": 1,
        "side_effects_unexplained": [{"kind": "endpoint_update", "subject": "closedloop-loans"}],
        "drift_metrics": [
            series("closedloop-loans-drift-features", "MaxFeaturePSI", 0.2, [0.05, 7.54]),
            series("closedloop-loans-drift-predictions", "PredictionKS", 0.15, [0.05, 0.74]),
        ],
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    """The report of a loop that closed, and the files `write_report` made of it (drawn once: it takes seconds)."""
    report = a_report()
    return report, write_report(report, tmp_path_factory.mktemp("report"))


def texts(svg: Path) -> list[str]:
    """The text elements of a picture (a valid SVG document, or ET raises)."""
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    return ["".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")]


def test_the_pictures_are_svg_with_labelled_lanes_a_legend_and_the_key_events_named(
    written: tuple[dict[str, Any], dict[str, Path]],
) -> None:
    # Given the report of a loop that closed
    # When it is written (once, by the fixture)
    report, paths = written
    # Then there are three pictures, each an SVG with a PNG beside it
    assert {name: paths[name].name for name in ("svg", "drift", "lineage")} == {
        "svg": "timeline.svg",
        "drift": "drift.svg",
        "lineage": "lineage.svg",
    }
    assert all(paths[name].with_suffix(".png").read_bytes()[:4] == b"\x89PNG" for name in ("svg", "drift", "lineage"))
    timeline = texts(paths["svg"])
    # the lanes are labelled, one per route the timeline touches (plus what the local loop did between them)
    lanes = {"upload to raw/", "1 data arrival", "2 data prepared", "training pipeline", "3 approval gate"}
    lanes |= {"4 rollout", "5 deployment", "7 drift monitor", "CloudWatch alarms", "6 alarm → retraining"}
    assert lanes <= set(timeline)
    # the colours and shapes have a legend
    assert {text for _, _, text in TONES.values()} <= set(timeline)
    # the key events are named on the picture, not only in hover titles
    named = {"upload", "v1 approved", "v1 live", "ALARM loans-drift-features", "retraining started", "v2 approved"}
    named.add("v2 live")
    assert named <= set(timeline)
    # one marker per timeline entry
    assert len(re.findall(r'id="event-\d+"', paths["svg"].read_text())) == len(report["timeline"])


def test_the_pictures_and_the_text_state_the_same_wall_time(written: tuple[dict[str, Any], dict[str, Path]]) -> None:
    # Given a report whose last event came 21.0 s after the first, and which took 22.4 s in all
    # When it is written (once, by the fixture)
    _, paths = written
    # Then the picture's title and the report's text give the same wall time
    title = next(t for t in texts(paths["svg"]) if t.startswith("closedloop demo timeline"))
    assert title == "closedloop demo timeline: 22.4 s wall time, 15 events"
    assert "- wall time: 22.4 s\n" in paths["markdown"].read_text()


def test_drift_is_plotted_against_the_alarm_thresholds(written: tuple[dict[str, Any], dict[str, Path]]) -> None:
    # Given the drift metrics the monitor published, with the thresholds of their alarms
    # When it is written (once, by the fixture)
    _, paths = written
    drift = texts(paths["drift"])
    # Then every metric has its panel and its alarm's threshold, values are labelled, the rollout marked
    assert {"MaxFeaturePSI", "PredictionKS"} <= set(drift)
    assert "threshold 0.2 (alarm closedloop-loans-drift-features)" in drift
    assert "threshold 0.15 (alarm closedloop-loans-drift-predictions)" in drift
    assert {"7.54", "0.74", "retraining started", "v2 live"} <= set(drift)


def test_report_md_draws_the_lineage_and_counts_side_effects_without_a_decision(
    written: tuple[dict[str, Any], dict[str, Path]],
) -> None:
    # Given the report of a loop with one side effect no decision explains
    # When it is written (once, by the fixture)
    _, paths = written
    markdown = paths["markdown"].read_text()
    # Then report.md embeds the three pictures instead of pasting the lineage as JSON
    assert "](timeline.svg)" in markdown and "](drift.svg)" in markdown and "](lineage.svg)" in markdown
    assert '"trigger_reason"' not in markdown and "{" not in markdown.split("## Events")[0].split("## Lineage")[1]
    # and it states the side effects without a decision, with what they were
    assert "- side effects without a decision: 1\n" in markdown
    assert '"kind": "endpoint_update"' in markdown
    # And the lineage picture is the graph `closedloop lineage --format dot` gives, its labels whole
    lineage = " ".join(texts(paths["lineage"]))
    assert "model version closedloop-loans/2" in lineage and "prepared data" in lineage
    assert "MaxFeaturePSI = 7.54101 threshold 0.2" in lineage
    assert all(f"raw/loans/applications-00{i}.csv" in lineage for i in range(3))


def two_lines_report() -> dict[str, Any]:
    """A demo of two model lines: both deployed, only loans drifted and was retrained."""
    churn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/closedloop-churn/{}"
    timeline = [
        {**entry(0.0, "local", "upload", "3 files with PII to raw/loans/", "3000 applications"), "line": "loans"},
        {**entry(0.1, "local", "upload", "3 files with PII to raw/churn/", "3000 subscriptions"), "line": "churn"},
        {**entry(1.0, "data-arrival", "run:loans/abc", "start_data_prep", "started"), "line": "loans"},
        {**entry(1.1, "data-arrival", "run:churn/def", "start_data_prep", "started"), "line": "churn"},
        {**entry(9.0, "pipeline-finished", PACKAGE.format(1), "approval_gate", "approved"), "line": "loans"},
        {**entry(9.2, "pipeline-finished", churn.format(1), "approval_gate", "approved"), "line": "churn"},
        {**entry(10.0, "deployment-outcome", PACKAGE.format(1), "record_outcome", "live"), "line": "loans"},
        {**entry(10.2, "deployment-outcome", churn.format(1), "record_outcome", "live"), "line": "churn"},
        {**entry(14.1, "local", "alarm", "closedloop-loans-drift-features", "OK → ALARM"), "line": "loans"},
        {**entry(20.0, "deployment-outcome", PACKAGE.format(2), "record_outcome", "live"), "line": "loans"},
        entry(20.5, "local", "local loop", "moto", "stopped"),
    ]
    return {
        "wall_seconds": 21.0,
        "timeline": timeline,
        "model_versions_deployed": [1, 1, 2],
        "retrainings": 1,
        "model_lines": {
            "loans": {"model_versions_deployed": [1, 2], "retrainings": 1, "endpoint": "closedloop-loans"},
            "churn": {"model_versions_deployed": [1], "retrainings": 0, "endpoint": "closedloop-churn"},
        },
        "events_in_dlq": 0,
    }


def test_the_timeline_has_a_lane_per_line_and_route(tmp_path: Path) -> None:
    # Given the report of two lines, each entry about one line except the loop's own note
    report = two_lines_report()
    # When it is written
    paths = write_report(report, tmp_path)
    # Then each route's lane is split per line, in the order the lines first appear, the loop's lane is not
    timeline = texts(paths["svg"])
    labels = timeline[timeline.index("upload to raw/") : timeline.index("local loop") + 1]
    routes = ("upload to raw/", "1 data arrival", "3 approval gate", "5 deployment")
    split = [part for route in routes for line in ("loans", "churn") for part in (route, line)]
    assert labels == [*split, "CloudWatch alarms", "loans", "local loop"]
    # and every entry still has its marker
    assert len(re.findall(r'id="event-\d+"', paths["svg"].read_text())) == len(report["timeline"])
    # And report.md states each line's figures under the totals
    markdown = paths["markdown"].read_text()
    assert "- model versions deployed: 1, 1, 2\n- retrainings: 1\n" in markdown
    assert "  - model line loans (closedloop-loans): versions deployed 1, 2, retrainings 1\n" in markdown
    assert "  - model line churn (closedloop-churn): versions deployed 1, retrainings 0\n" in markdown
