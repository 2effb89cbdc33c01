"""Every page of `closedloop ui` against the demo's loop: what it shows, and no seeded PII value anywhere.

The demo runs the whole story (auto mode, two model lines: loans and churn deployed, drift at loans, an
alarm, a retraining) and is kept up; the console (`closedloop_ops.ui.app`) renders each page through
Flask's test client. A version is `<line>/<n>` in its URL, as on the command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from closedloop_ops.local.demo import Demo
from closedloop_ops.ui.app import create_app
from support.cli import kept_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    lines: list[str] = []
    with kept_demo(tmp_path_factory.mktemp("ui-demo"), lines) as demo:
        yield demo


@pytest.fixture(scope="module")
def client(world: Demo) -> Any:
    return create_app(world.stack_ref()).test_client()


def pages(world: Demo) -> list[str]:
    return [
        "/",
        "/versions/loans/1",
        "/versions/loans/2",
        "/versions/loans/3",
        "/versions/churn/1",
        "/lineage",
        "/lineage?model_version=1",
        "/lineage?line=churn",
        "/lineage?line=churn&model_version=1",
        f"/lineage?inference_id={world.inference_ids[-1]}",
        "/drift",
        "/drift?window=20m",
        "/drift?window=20m&line=churn",
        "/audit",
        "/audit?route=alarm&result=started",
        "/dlq",
        "/dlq/DataArrivalDlq/redrive",
    ]


def test_every_page_renders_without_a_seeded_pii_value(world: Demo, client: Any) -> None:
    # Given the values the demo seeded into its raw files
    pii = world.seeded_pii
    assert len(pii) > 10_000
    # When every page is rendered
    rendered = {path: client.get(path) for path in pages(world)}
    # Then each answers, none shows a refusal, and no seeded value appears in any
    assert {path: r.status_code for path, r in rendered.items() if r.status_code != 200} == {}
    texts = {path: r.get_data(as_text=True) for path, r in rendered.items()}
    assert {path: "closedloop:" for path, text in texts.items() if 'class="refusal"' in text} == {}
    leaks = {path: sorted(v for v in pii if v in text)[:3] for path, text in texts.items()}
    assert {path: found for path, found in leaks.items() if found} == {}


def test_the_drift_page_plots_the_monitor_runs_and_marks_the_alarm(world: Demo, client: Any) -> None:
    # When the drift page shows the last 20 minutes
    text = client.get("/drift?window=20m").get_data(as_text=True)
    # Then MaxFeaturePSI shows the drifted run's 7.54 above the alarm's threshold 0.2 (red), and the
    # moment closedloop-loans-drift-features went to ALARM is marked (the demo's two runs are under a second
    # apart: at CloudWatch's finest period they may share one datapoint, the maximum)
    chart = text.split('aria-label="MaxFeaturePSI (alarm closedloop-loans-drift-features', 1)[1].split("</svg>", 1)[0]
    assert "alarm threshold 0.2" in chart
    assert '<circle cx="' in chart and 'fill="#c62828"><title>' in chart and " 7.541</title>" in chart
    assert "closedloop-loans-drift-features → ALARM at " in chart
    assert 'id="alarm-moments"' in text


def test_the_overview_lists_every_line_with_its_versions(client: Any) -> None:
    # When the overview is shown
    text = client.get("/").get_data(as_text=True)
    # Then each line has its card, in the stack's order, with its versions linked by `<line>/<n>`
    assert text.index('id="line-loans"') < text.index('id="line-churn"')
    assert (
        "model line loans: model group closedloop-loans" in text
        and "model line churn: model group closedloop-churn" in text
    )
    churn = text.split('id="line-churn"', 1)[1].split("</section>", 1)[0]
    assert 'href="/versions/churn/1"' in churn and 'href="/lineage?model_version=churn/1"' in churn
    assert "/versions/loans/" not in churn and "version 1 on closedloop-churn (InService" in churn
    assert "features OK, predictions OK, bias OK, attributions OK (closedloop-churn-drift-*)" in churn


def test_a_bare_version_number_is_refused_when_the_stack_serves_several_lines(client: Any) -> None:
    text = client.get("/versions/1").get_data(as_text=True)
    assert "model version 1: stack closedloop-demo serves the model lines loans, churn; name the line" in text


def test_the_churn_line_has_its_own_drift_page(client: Any) -> None:
    # When the drift page of the churn line is shown
    text = client.get("/drift?window=20m&line=churn").get_data(as_text=True)
    # Then its charts are of its own endpoint and alarms, none of which went to ALARM
    assert "endpoint closedloop-churn" in text
    assert 'aria-label="MaxFeaturePSI (alarm closedloop-churn-drift-features: OK)' in text
    assert "closedloop-loans" not in text.split("<h1>Drift</h1>", 1)[1].split("line: ", 1)[0]
    assert 'id="alarm-moments"' not in text


def test_the_evidence_of_a_live_version_and_its_refusals(world: Demo, client: Any) -> None:
    # When the console (as the local identity, in auto mode) looks at the live version 3 (trained on
    # the new world's labels)
    text = client.get("/versions/loans/3").get_data(as_text=True)
    # Then it warns as `closedloop reject` warns: rejecting the live version rolls back
    assert "warning: version 3 is live: rejecting it rolls the endpoint back" in text
    # When it tries to approve the already approved version 1 with a reason
    refused = client.post(
        "/versions/loans/1/approve", data={"reason": "again", "csrf_token": client.application.config["CSRF_TOKEN"]}
    )
    # Then the refusal is the command line's
    assert refused.status_code == 409
    assert (
        "closedloop: closedloop-loans/1 is Approved, not PendingManualApproval: only a pending version can be "
        "approved (it already is)" in refused.get_data(as_text=True)
    )


def test_requests_from_elsewhere_are_refused(client: Any) -> None:
    # When a form is posted without the console's token, or with another site's Origin, or a page is
    # asked for under another host name (DNS rebinding)
    token = client.application.config["CSRF_TOKEN"]
    answers = [
        client.post("/versions/loans/2/reject", data={"reason": "forged"}),
        client.post("/versions/loans/2/reject", data={"reason": "forged", "csrf_token": "x" + token}),
        client.post(
            "/versions/loans/2/reject",
            data={"reason": "forged", "csrf_token": token},
            headers={"Origin": "https://evil.example"},
        ),
        client.get("/", headers={"Host": "evil.example:8765"}),
    ]
    # Then each is refused
    assert [a.status_code for a in answers] == [403, 403, 403, 403]


def test_the_page_lists_what_is_behind_a_version(world: Demo, client: Any, tmp_path: Path) -> None:
    # When the lineage of the last prediction is asked for
    text = client.get(f"/lineage?inference_id={world.inference_ids[-1]}").get_data(as_text=True)
    # Then the graph starts at the inference and reaches version 3, its approval, the raw objects and the code
    ids = [part.split('"', 1)[0] for part in text.split('id="node-')[1:]]
    assert ids[:3] == ["inference", "config", "model"]
    assert {"approval", "execution", "prepared", "code"} <= set(ids)
    assert "model version closedloop-loans/3" in text
