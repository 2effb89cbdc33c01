"""`closedloop ui` in a real browser: headless Chromium (Debian's) drives the console of a manual-mode loop.

The loop runs with `ApprovalMode=manual` and the local ComplianceOfficer role on the allow-list (what
`closedloop demo --approval-mode manual` sets up); the console runs as a session of that role, as
`closedloop ui --local --assume-role …` does. It serves the demo's two model lines (loans, churn), so
a version's page is `versions/<line>/<n>`. A person opens the overview, reviews loans version 1's
evidence, is refused without a reason, approves it with one, and watches the rollout start. Every page
is photographed to build/ui-screenshots/ and checked for seeded PII values.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from closedloop.ledger import Ledger
from closedloop_ops.local.demo import DEMO_PARAMETERS, Demo
from closedloop_ops.local.loop import LOCAL_APPROVER_ROLE, LocalLoop, approval_parameters
from closedloop_ops.ui.app import create_app, running
from closedloop_ops.ui.identity import assume_role
from support.cli import ACCOUNT, OFFICER_ROLE, fresh_moto, reset_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "ui-screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
OFFICER = f"arn:aws:sts::{ACCOUNT}:assumed-role/ComplianceOfficer/jane@example.com"
VERSION_1 = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/closedloop-loans/1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # Given a manual-mode loop whose allow-list is the role the loop creates, with version 1 pending
    assert LOCAL_APPROVER_ROLE == OFFICER_ROLE
    fresh_moto()
    parameters = {**DEMO_PARAMETERS, **approval_parameters("manual")}
    with LocalLoop.start(stack_name="closedloop-ui", parameters=parameters) as loop:
        demo = Demo(loop=loop, out_dir=tmp_path_factory.mktemp("ui"), say=lambda _: None)
        demo.setup()
        try:
            demo.upload()
            # an upload nobody declared a policy for: a dead letter with its reason
            loop.client("s3").put_object(
                Bucket=loop.output("DataBucketName"), Key="raw/payroll/2026-11-27/staff.csv", Body=b"a,b\n1,2\n"
            )
            demo.settle()
            yield demo
        finally:
            demo.teardown()
            reset_server(loop.stack.endpoint_url)


@pytest.fixture(scope="module")
def console(world: Demo) -> Iterator[str]:
    # the console as the compliance officer: a session of the allow-listed role (`--assume-role`)
    officer = assume_role(world.stack_ref(), OFFICER_ROLE, "jane@example.com")
    with running(create_app(officer)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("Debian's chromium and chromium-driver are missing: `make browser` installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="closedloop-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1360,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download a browser or a driver
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def press(browser: Any, element_id: str) -> None:
    """Click a button or link and wait until the browser shows the page it leads to."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, element_id).click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(page))


def look(browser: Any, world: Demo, name: str) -> str:
    """Photograph the whole page to build/ui-screenshots/NAME.png; return its text. No seeded PII value in it."""
    import base64

    from selenium.webdriver.common.by import By

    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1},
        },
    )
    (SHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
    html = browser.page_source
    assert not [value for value in world.seeded_pii if value in html]
    return str(browser.find_element(By.TAG_NAME, "body").text)


def test_the_overview_shows_the_version_waiting_for_an_approver(browser: Any, console: str, world: Demo) -> None:
    # When the officer opens the console
    browser.get(console)
    text = look(browser, world, "1-overview")
    # Then she sees who she is, the manual mode and version 1 waiting, with the policy's recommendation
    assert f"you are {OFFICER}" in text and "approval mode manual" in text
    assert "review version 1" in text and "the policy says approve" in text
    assert "live nothing: closedloop-loans does not exist yet (no version deployed)" in text


def test_the_evidence_shows_the_metrics_against_the_policy(browser: Any, console: str, world: Demo) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    # When she follows the link to version 1
    browser.get(console)
    browser.find_element(By.LINK_TEXT, "review version 1").click()
    WebDriverWait(browser, 30).until(expected_conditions.title_contains("version 1"))
    text = look(browser, world, "2-evidence")
    # Then the evidence is there: charts of the metrics and bias against the thresholds, PII, the gate
    assert "Model version closedloop-loans/1 PendingManualApproval" in text
    charts = browser.find_elements(By.CSS_SELECTOR, "section.card svg")
    assert [c.get_attribute("aria-label") for c in charts] == [
        "evaluation against the approval policy (black tick: minimum, dashed: reference)",
        "disparate impact per facet (green band: allowed)",
        "difference in positive proportions of labels (green band: allowed)",
    ]
    assert "PII report clean: 0 file(s) with undeclared PII quarantined" in text
    assert "the gate: pending by approval-policy/1 (manual mode, policy said approve)" in text
    assert "today: approval-policy/1 says approve" in text
    assert "warning:" not in text  # she is on the allow-list


def test_an_approval_without_a_reason_is_refused_as_the_command_line_refuses_it(
    browser: Any, console: str, world: Demo
) -> None:
    from selenium.webdriver.common.by import By

    # Given the evidence page, and no reason typed
    browser.get(f"{console}versions/loans/1")
    browser.find_element(By.ID, "reason").clear()
    # When she presses Approve
    press(browser, "approve")
    text = look(browser, world, "3-refused")
    # Then the page says what `closedloop approve` says, and the registry is unchanged
    assert "closedloop: --reason must say why: it is recorded in the registry next to who decided" in text
    described = world.loop.client("sagemaker").describe_model_package(ModelPackageName=VERSION_1)
    assert described["ModelApprovalStatus"] == "PendingManualApproval"


def test_the_officer_approves_and_the_rollout_starts(browser: Any, console: str, world: Demo) -> None:
    from selenium.webdriver.common.by import By

    # Given the evidence page
    browser.get(f"{console}versions/loans/1")
    # When she approves with a reason
    browser.find_element(By.ID, "reason").send_keys("bias and PII reports reviewed with legal, CR-118")
    press(browser, "approve")
    text = look(browser, world, "4-approved")
    # Then the registry records her flip with her reason, exactly as the command line would
    assert f"approved closedloop-loans/1 (was PendingManualApproval) as {OFFICER}" in text
    described = world.loop.client("sagemaker").describe_model_package(ModelPackageName=VERSION_1)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"].startswith(f"Approved by {OFFICER} at ")
    assert described["ApprovalDescription"].endswith("via closedloop: bias and PII reports reviewed with legal, CR-118")
    # And the rollout route verifies her and deploys version 1: the overview shows it live
    world.settle()
    ledger = Ledger(world.loop.output("LedgerTableName"), world.loop.client("dynamodb"))
    assert [(d.action, d.result) for d in ledger.decisions_for(VERSION_1) if d.route == "model-approval"] == [
        ("deploy", "deploying")
    ]
    browser.get(console)
    text = look(browser, world, "5-overview-live")
    assert "live version 1 on closedloop-loans (InService" in text


def test_the_lineage_names_the_officer(browser: Any, console: str, world: Demo) -> None:
    from selenium.webdriver.common.by import By

    # When she traces version 1
    browser.get(f"{console}lineage?model_version=1")
    text = look(browser, world, "6-lineage")
    # Then the graph shows the chain, with her as the one who decided
    nodes = browser.find_elements(By.CSS_SELECTOR, "#lineage-graph g.node")
    names = [n.get_attribute("id") for n in nodes]
    assert names[:4] == ["node-model", "node-approval", "node-execution", "node-prepared"]
    assert "node-code" in names and sum(n.startswith("node-raw") for n in names) == 3
    assert f"approver {OFFICER}" in text


def test_the_drift_audit_and_dead_letter_pages(browser: Any, console: str, world: Demo) -> None:
    from selenium.webdriver.common.by import By

    # When she opens the drift page: a chart per metric, with the alarm's threshold where one watches it
    browser.get(f"{console}drift?window=20m")
    text = look(browser, world, "7-drift")
    titles = [c.get_attribute("aria-label") for c in browser.find_elements(By.CSS_SELECTOR, "svg")]
    assert any(t.startswith("MaxFeaturePSI (alarm closedloop-loans-drift-features") for t in titles)
    # And the audit, filtered by route
    browser.get(f"{console}audit?route=pipeline-finished")
    text = look(browser, world, "8-audit")
    assert "approval_gate" in text and "data-arrival" not in text.split("decision(s)", 1)[1]
    # And the dead letters, with the reason of the undeclared dataset
    browser.get(f"{console}dlq")
    text = look(browser, world, "9-dlq")
    assert "no model line 'payroll' is deployed in this stack (ModelLines)" in text
    # When she asks to redrive them: a question first, then the redrive
    press(browser, "redrive-DataArrivalDlq")
    text = look(browser, world, "10-redrive-question")
    assert "1 message(s) would be redriven from DataArrivalDlq" in text
    press(browser, "confirm-redrive")
    text = look(browser, world, "11-redriven")
    assert "redriven 1 message(s) from DataArrivalDlq" in text


def test_a_forged_request_is_refused(console: str, world: Demo) -> None:
    # Given a request that did not come from the console's own form (no token, a wrong one, another site)
    url = f"{console}versions/loans/1/reject"
    page = requests.get(f"{console}versions/loans/1", timeout=10).text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    forged = [
        requests.post(url, data={"reason": "forged"}, timeout=10),
        requests.post(url, data={"reason": "forged", "csrf_token": "guess"}, timeout=10),
        requests.post(
            url,
            data={"reason": "forged", "csrf_token": token},
            headers={"Origin": "http://evil.example"},
            timeout=10,
        ),
        requests.get(console, headers={"Host": "evil.example:8765"}, timeout=10),  # DNS rebinding
    ]
    # Then each is refused with 403, and the registry is unchanged
    assert [r.status_code for r in forged] == [403, 403, 403, 403]
    # (while the console's own token, from a loopback origin, is accepted)
    own = requests.post(
        f"{console}dlq/EventsDlq/redrive", data={"csrf_token": token}, headers={"Origin": console[:-1]}, timeout=10
    )
    assert own.status_code == 200 and "redriven 0 message(s) from EventsDlq" in own.text
    described = world.loop.client("sagemaker").describe_model_package(ModelPackageName=VERSION_1)
    assert described["ModelApprovalStatus"] == "Approved"
