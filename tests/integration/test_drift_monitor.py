"""Route 7 on moto: the live model's capture files since the watermark → drift metrics in CloudWatch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from closedloop import ledger_keys
from closedloop.drift.monitor import DriftMonitor, key_time
from closedloop.events.scheduler import DriftMonitorRun
from closedloop.ledger import Ledger
from closedloop_ops.synthetic import STRONG_DRIFT, rows
from support.capture import baseline_document, capture_file, deploy_live_model
from support.events import load_event
from support.handlers import FakeLambdaContext, load_handler
from support.stack import ACCOUNT, REGION, Stack
from support.worlds import drift_world, put_capture

NAMESPACE = "closedloop/Drift"


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics of domain calls made without a handler must not leak into another test's flush."""
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return baseline_document(n=4000, seed=1)


@pytest.fixture
def live(stack: Stack, baseline: dict[str, Any]) -> Stack:
    """The endpoint serves a model version (deployed three hours ago) with its baseline and bias report."""
    stack.clients["package"] = drift_world(stack, records=0, baseline=baseline)
    return stack


def run_handler(handler: Any, execution_id: str = "c7b2e9f4a1d35806") -> dict[str, Any]:
    event = {**load_event("drift_monitor_schedule"), "execution_id": execution_id}
    result: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext(remaining_ms=600_000))
    return result


def metric_values(name: str, endpoint: str, feature: str | None = None) -> list[float]:
    dimensions = [{"Name": "Endpoint", "Value": endpoint}]
    if feature:
        dimensions.append({"Name": "Feature", "Value": feature})
    now = datetime.now(UTC)
    response = boto3.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
    )
    return list(response["MetricDataResults"][0]["Values"])


def watermark(stack: Stack) -> dict[str, Any] | None:
    return Ledger(stack.settings.ledger_table, boto3.client("dynamodb")).get_state(
        ledger_keys.capture_watermark(stack.settings.endpoint_name)
    )


def decisions(stack: Stack, key: str) -> list[Any]:
    return Ledger(stack.settings.ledger_table, boto3.client("dynamodb")).decisions_for(key)


def monitor(stack: Stack, *, s3: Any = None, clock: Any = None) -> DriftMonitor:
    return DriftMonitor(
        settings=stack.settings,
        s3=s3 or boto3.client("s3"),
        sagemaker=boto3.client("sagemaker"),
        cloudwatch=boto3.client("cloudwatch"),
        ledger=Ledger(stack.settings.ledger_table, boto3.client("dynamodb")),
        clock=clock or (lambda: datetime.now(UTC)),
    )


def trigger(execution_id: str = "run-1") -> DriftMonitorRun:
    return DriftMonitorRun.model_validate({**load_event("drift_monitor_schedule"), "execution_id": execution_id})


def test_drifted_traffic_is_published_as_metrics_per_feature_and_per_endpoint(live: Stack) -> None:
    endpoint = live.settings.endpoint_name
    start = datetime.now(UTC) - timedelta(hours=2)
    keys = [
        put_capture(live, start + timedelta(minutes=10 * i), 300, seed=10 + i, drift=STRONG_DRIFT) for i in range(3)
    ]
    # When the scheduled run comes
    result = run_handler(load_handler("drift_monitor"))
    # Then the drift was measured on all 900 rows and published
    assert (result["result"], result["records"], result["files_read"]) == ("published", 900, 3)
    assert metric_values("CapturedRecords", endpoint) == [900.0]
    [max_psi] = metric_values("MaxFeaturePSI", endpoint)
    assert max_psi > live.settings.drift_psi_threshold
    assert metric_values("PredictionKS", endpoint)[0] > live.settings.drift_ks_threshold
    assert metric_values("FeaturePSI", endpoint, "income")[0] > 1.0
    assert metric_values("FeatureKS", endpoint, "income")[0] > 0.3
    assert metric_values("FeaturePSI", endpoint, "age")[0] < 0.1
    assert len(metric_values("BiasDrift", endpoint)) == 1
    listed = boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE, MetricName="FeaturePSI")["Metrics"]
    assert len(listed) == 10  # every feature, with dimensions Endpoint and Feature
    # And the watermark moved past the last file read; the run is in the ledger
    assert watermark(live) is not None and watermark(live)["variants"] == {"AllTraffic": keys[-1]}  # type: ignore[index]
    [decision] = decisions(live, f"drift:{endpoint}")
    assert (decision.route, decision.action, decision.result) == ("drift-monitor", "measure_drift", "published")
    assert decision.details["max_feature_psi"] == pytest.approx(max_psi)
    assert decision.details["model_package_arn"] == live.clients["package"]


def test_undrifted_traffic_stays_below_every_alarm_threshold(live: Stack) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    for i in range(3):
        put_capture(live, start + timedelta(minutes=i), 400, seed=20 + i)
    result = run_handler(load_handler("drift_monitor"))
    report = result["report"]
    assert result["result"] == "published"
    assert report["max_feature_psi"] < live.settings.drift_psi_threshold
    assert report["prediction_ks"] < live.settings.drift_ks_threshold
    assert report["bias"]["reference"] == "evaluation"
    assert report["bias"]["drift"] < live.settings.bias_drift_threshold


def test_too_few_records_publish_nothing_keep_the_watermark_and_count_next_time(live: Stack) -> None:
    handler = load_handler("drift_monitor")
    endpoint = live.settings.endpoint_name
    start = datetime.now(UTC) - timedelta(hours=2)
    put_capture(live, start, 300, seed=30)
    # When fewer rows than DriftMinRecords were captured
    first = run_handler(handler, "first")
    # Then nothing is published, the reason is recorded and the watermark has not moved
    assert (first["result"], first["records"], first["metrics_published"]) == ("insufficient-records", 300, 0)
    assert "fewer than 500" in first["reason"]
    assert watermark(live) is None
    assert metric_values("CapturedRecords", endpoint) == []
    # When more arrive, the next run counts both files
    put_capture(live, start + timedelta(minutes=5), 300, seed=31)
    second = run_handler(handler, "second")
    assert (second["result"], second["records"]) == ("published", 600)
    assert [d.result for d in decisions(live, f"drift:{endpoint}")] == ["insufficient-records", "published"]


def test_bad_files_are_skipped_with_reasons_and_unread_files_are_not_passed(live: Stack) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    good = capture_file(rows(300, seed=40), start=start, rows_per_request=3)
    keys = {
        "good-1": put_capture(live, start, 300, seed=41),
        "empty": put_capture(live, start + timedelta(minutes=1), 0, body=b""),
        "truncated": put_capture(live, start + timedelta(minutes=2), 0, body=good[:-50]),
        "unknown-encoding": put_capture(
            live, start + timedelta(minutes=3), 0, body=good.replace(b'"encoding": "CSV"', b'"encoding": "JSON"')
        ),
        "good-2": put_capture(live, start + timedelta(minutes=4), 300, seed=42),
        "unreadable": put_capture(live, start + timedelta(minutes=5), 300, seed=43),
        "good-3": put_capture(live, start + timedelta(minutes=6), 300, seed=44),
    }

    class DroppingS3:
        """S3 whose connection drops halfway through one object (the body ends early)."""

        def __init__(self, client: Any, broken: str) -> None:
            self._client, self._broken = client, broken

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def get_object(self, **kwargs: Any) -> Any:
            response = self._client.get_object(**kwargs)
            if kwargs["Key"] == self._broken:
                data = response["Body"].read()

                class Body:
                    def iter_chunks(self, size: int) -> Iterator[bytes]:
                        yield data[: len(data) // 2]

                    def close(self) -> None:
                        pass

                response["Body"] = Body()
            return response

    # When the run reads them, with the connection dropping on one file
    result = monitor(live, s3=DroppingS3(boto3.client("s3"), keys["unreadable"])).handle(trigger())
    # Then the good files before it count, the bad ones are skipped with their reasons
    assert (result.result, result.records, result.files_read) == ("published", 600, 2)
    assert {(s.key, s.reason) for s in result.skipped} == {
        (keys["empty"], "empty"),
        (keys["truncated"], "truncated"),
        (keys["unknown-encoding"], "unknown-encoding"),
    }
    for reason in ("empty", "truncated", "unknown-encoding"):
        [skipped] = decisions(live, f"capture:{live.settings.capture_bucket}/{keys[reason]}")
        assert (skipped.action, skipped.result) == ("read_capture_file", "skipped")
        assert skipped.reason.startswith(reason)
    # And the watermark stops before the unread file: it and everything after it are read next run
    assert "was not read to the end" in result.stopped_early
    assert result.watermark == {"AllTraffic": keys["good-2"]}
    assert watermark(live)["variants"] == {"AllTraffic": keys["good-2"]}  # type: ignore[index]
    again = monitor(live).handle(trigger("run-2"))
    assert (again.files_read, again.files_skipped, again.records) == (2, 0, 600)
    assert again.watermark == {"AllTraffic": keys["good-3"]}


def test_a_throttled_read_is_unread_data_too(live: Stack) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    first = put_capture(live, start, 600, seed=50)
    second = put_capture(live, start + timedelta(minutes=1), 100, seed=51)

    class ThrottledS3:
        def __init__(self, client: Any) -> None:
            self._client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def get_object(self, **kwargs: Any) -> Any:
            if kwargs["Key"] == second:
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "GetObject")
            return self._client.get_object(**kwargs)

    result = monitor(live, s3=ThrottledS3(boto3.client("s3"))).handle(trigger())
    assert (result.result, result.records, result.watermark) == ("published", 600, {"AllTraffic": first})


def test_files_too_young_or_from_before_the_deployment_are_not_measured(live: Stack) -> None:
    now = datetime.now(UTC)
    old = put_capture(live, now - timedelta(hours=4), 600, seed=60, drift=STRONG_DRIFT)  # the previous model served it
    served = put_capture(live, now - timedelta(hours=1), 600, seed=61)
    young = put_capture(live, now - timedelta(minutes=1), 600, seed=62)  # may still have older files uploading
    result = monitor(live).handle(trigger())
    assert (result.records, result.files_read, result.files_passed_over) == (600, 1, 1)
    assert result.watermark == {"AllTraffic": served}
    assert old < served < young
    assert result.report is not None and result.report.max_feature_psi is not None
    assert result.report.max_feature_psi < live.settings.drift_psi_threshold  # the drifted old file was not counted


def test_each_variant_keeps_its_own_watermark(live: Stack) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    blue = put_capture(live, start + timedelta(minutes=30), 300, seed=70, variant="AllTraffic")
    green = put_capture(live, start, 300, seed=71, variant="Canary")  # earlier key time, other variant
    first = monitor(live).handle(trigger())
    assert first.watermark == {"AllTraffic": blue, "Canary": green}
    # a later file of the variant whose keys sort first is still found
    late = put_capture(live, start + timedelta(minutes=40), 600, seed=72, variant="Canary")
    second = monitor(live).handle(trigger("run-2"))
    assert (second.records, second.watermark["Canary"]) == (600, late)


def test_the_run_stops_reading_before_its_deadline(live: Stack) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    keys = [put_capture(live, start + timedelta(minutes=i), 300, seed=80 + i) for i in range(4)]
    budget = iter([600.0, 600.0, 30.0, 30.0, 30.0])
    result = monitor(live).handle(trigger(), remaining_s=lambda: next(budget))
    assert (result.files_read, result.records) == (2, 600)
    assert "deadline" in result.stopped_early
    assert result.watermark == {"AllTraffic": keys[1]}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("no-endpoint", "does not exist"),
        ("no-baseline", "has no drift baseline"),
        ("untagged", "names no model package"),
        ("invalid-baseline", "is unusable: features.income.numeric"),
    ],
)
def test_runs_that_cannot_measure_say_why(stack: Stack, baseline: dict[str, Any], setup: str, reason: str) -> None:
    broken = {
        **baseline,
        "features": {
            **baseline["features"],
            "income": {"type": "numeric", "quantile_edges": [52000.5, 1.0], "bin_proportions": [1.0]},
        },
    }
    if setup != "no-endpoint":
        deploy_live_model(
            account=ACCOUNT,
            region=REGION,
            endpoint=stack.settings.endpoint_name,
            model_group=stack.settings.model_package_group,
            evidence_bucket=stack.settings.artifacts_bucket,
            capture_bucket=stack.settings.capture_bucket,
            baseline=None if setup == "no-baseline" else broken if setup == "invalid-baseline" else baseline,
            tag_package=setup != "untagged",
        )
    result = run_handler(load_handler("drift_monitor"))
    assert result["result"] == "skipped"
    assert reason in result["reason"]
    [decision] = decisions(stack, f"drift:{stack.settings.endpoint_name}")
    assert decision.result == "skipped" and reason in decision.reason
    assert "52000.5" not in decision.reason  # where and why, never the document's values
    assert boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"] == []


def test_a_second_run_while_one_is_measuring_is_skipped(live: Stack) -> None:
    ledger = Ledger(live.settings.ledger_table, boto3.client("dynamodb"))
    ledger.acquire_lock(f"drift-monitor#{live.settings.endpoint_name}", "other-run", timedelta(minutes=15))
    result = monitor(live).handle(trigger())
    assert (result.result, result.records) == ("skipped", 0)
    assert "another run" in result.reason


def test_a_warm_container_measures_against_the_baseline_file_as_it_is_now(live: Stack) -> None:
    from closedloop.drift import plans as plans_module

    endpoint = live.settings.endpoint_name
    start = datetime.now(UTC) - timedelta(hours=2)
    put_capture(live, start, 600, seed=21)
    monitor(live).handle(trigger("run-1"))
    plans = dict(plans_module._PLANS)
    put_capture(live, start + timedelta(minutes=10), 600, seed=22)
    monitor(live).handle(trigger("run-2"))
    # The same evidence files: the second run used the plan the first one built
    assert plans == plans_module._PLANS
    # When the baseline file is replaced (a baseline from other data), the next run measures against it
    drifted = baseline_document(n=2000, seed=3, drift=STRONG_DRIFT)
    package = boto3.client("sagemaker").describe_model_package(ModelPackageName=live.clients["package"])
    baseline_uri = package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]
    bucket, key = baseline_uri.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(drifted).encode())
    put_capture(live, start + timedelta(minutes=20), 600, seed=23)
    monitor(live).handle(trigger("run-3"))
    psi = [d.details["max_feature_psi"] for d in decisions(live, f"drift:{endpoint}") if d.result == "published"]
    assert len(psi) == 3
    assert max(psi[:2]) < live.settings.drift_psi_threshold < psi[2]


def test_capture_keys_carry_their_start_time() -> None:
    key = "capture/closedloop-loans/AllTraffic/2026/11/27/09/00-01-123-8e5a1ec5-1d47-4c0a-b4c6-4e4ff0a0d3c1.jsonl"
    assert key_time(key) == datetime(2026, 11, 27, 9, 0, 1, 123000, tzinfo=UTC)
    assert key_time("capture/closedloop-loans/AllTraffic/notes.txt") is None
    assert json.loads(json.dumps({"k": key}))["k"] == key


def test_an_untagged_config_is_resolved_through_the_rollouts_record(stack: Stack, baseline: dict[str, Any]) -> None:
    # Given an endpoint config without the model-package tag, but the rollout's record of what is live
    settings = stack.settings
    package = deploy_live_model(
        account=ACCOUNT,
        region=REGION,
        endpoint=settings.endpoint_name,
        model_group=settings.model_package_group,
        evidence_bucket=settings.artifacts_bucket,
        capture_bucket=settings.capture_bucket,
        baseline=baseline,
        deployed_at=datetime.now(UTC) - timedelta(hours=3),
        tag_package=False,
    )
    Ledger(settings.ledger_table, boto3.client("dynamodb")).put_state(
        ledger_keys.endpoint_state(settings.endpoint_name),
        {"live_model_package_arn": package, "endpoint_config": f"{settings.endpoint_name}-v1", "status": "live"},
    )
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600, seed=90)
    # Then the run measures against that version's baseline
    result = monitor(stack).handle(trigger())
    assert (result.result, result.model_package_arn, result.records) == ("published", package, 600)
    # And without a bias report, the baseline's own DPPL is the bias reference
    assert result.report is not None and result.report.bias is not None
    assert result.report.bias.reference == "baseline"
