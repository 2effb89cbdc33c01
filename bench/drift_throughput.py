"""Drift monitor throughput on 100,000 captured records (SageMaker's data capture format).

Two figures, each the median of N runs, every run in a fresh process:
* `service`: the whole scheduled run on moto — describe the live endpoint, config, model package,
  read baseline and bias report, list and stream the capture files from S3, count, compute,
  PutMetricData, ledger — exactly the code the Lambda function runs;
* `reader`: the same capture files read from local disk through the same streaming reader and
  sketches, without any AWS call (the computation alone).

Records are rows: one captured request per row (the costliest shape, one JSON line per record),
in files of `--per-file` records. Peak RSS is the process's high-water mark during the run (reset
before it where Linux allows), and the growth over the memory held before the run.

    PYTHONPATH=layers/shared:src:tests .venv/bin/python bench/drift_throughput.py [--records 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "closedloop-loans"


def _rss_kb(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS: now, VmHWM: peak), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def generate(directory: Path, records: int, per_file: int) -> list[Path]:
    """Capture files of `records` rows (one request per row), laid out as SageMaker writes them."""
    from closedloop_ops.synthetic import rows
    from support.capture import baseline_document, bias_report, capture_file, capture_key

    (directory / "baseline.json").write_text(json.dumps(baseline_document(n=4000, seed=1)))
    (directory / "bias.json").write_text(json.dumps(bias_report(dppl=0.02)))
    start = datetime.now(UTC) - timedelta(hours=2)
    files: list[Path] = []
    generated = rows(records, seed=2)
    for index in range(0, records, per_file):
        at = start + timedelta(seconds=index // per_file)
        batch = [next(generated) for _ in range(min(per_file, records - index))]
        key = capture_key(ENDPOINT, at)
        path = directory / "s3" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(capture_file(batch, start=at, rows_per_request=1))
        files.append(path)
    return files


def run_reader(directory: Path) -> dict[str, Any]:
    from closedloop.drift.baseline import Baseline, BiasReport
    from closedloop.drift.capture import CHUNK_SIZE, read_capture
    from closedloop.drift.sketch import DriftPlan

    files = sorted((directory / "s3").rglob("*.jsonl"))
    before = _rss_kb("VmRSS")
    reset = _reset_peak()
    started = time.perf_counter()
    plan = DriftPlan(
        Baseline.model_validate_json((directory / "baseline.json").read_text()),
        BiasReport.model_validate_json((directory / "bias.json").read_text()),
    )
    total = plan.new_sketch()
    for path in files:
        sketch = plan.new_sketch()
        with path.open("rb") as body:
            chunks = iter(partial(body.read, CHUNK_SIZE), b"")
            for request in read_capture(chunks, expected_bytes=path.stat().st_size):
                sketch.add_request(request.inputs, request.outputs)
        total.merge(sketch)
    report = plan.report(total)
    seconds = time.perf_counter() - started
    return _figures(report.records, seconds, before, reset, report.max_feature_psi)


def run_service(directory: Path) -> dict[str, Any]:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "closedloop",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    import boto3
    from moto import mock_aws

    from closedloop.drift.monitor import DriftMonitor
    from closedloop.events.scheduler import DriftMonitorRun
    from closedloop.ledger import Ledger
    from closedloop_ops import moto_ext
    from support.capture import deploy_live_model
    from support.stack import ACCOUNT, REGION, provision, stack_env

    moto_ext.install()
    env = stack_env()
    os.environ.update(env)
    with mock_aws():
        settings = provision(env).settings
        deploy_live_model(
            account=ACCOUNT,
            region=REGION,
            endpoint=settings.endpoint_name,
            model_group=settings.model_package_group,
            evidence_bucket=settings.artifacts_bucket,
            capture_bucket=settings.capture_bucket,
            baseline=json.loads((directory / "baseline.json").read_text()),
            bias=json.loads((directory / "bias.json").read_text()),
            deployed_at=datetime.now(UTC) - timedelta(hours=3),
        )
        s3 = boto3.client("s3", region_name=REGION)
        for path in sorted((directory / "s3").rglob("*.jsonl")):
            key = path.relative_to(directory / "s3").as_posix()
            s3.put_object(Bucket=settings.capture_bucket, Key=key, Body=path.read_bytes())
        monitor = DriftMonitor(
            settings=settings,
            s3=boto3.client("s3", region_name=REGION),
            sagemaker=boto3.client("sagemaker", region_name=REGION),
            cloudwatch=boto3.client("cloudwatch", region_name=REGION),
            ledger=Ledger(settings.ledger_table, boto3.client("dynamodb", region_name=REGION)),
        )
        trigger = DriftMonitorRun(
            action="measure-drift",
            line="loans",
            schedule_arn=f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/bench",
            scheduled_time=datetime.now(UTC),
            execution_id="bench",
            attempt=1,
        )
        before = _rss_kb("VmRSS")
        reset = _reset_peak()
        started = time.perf_counter()
        result = monitor.handle(trigger)
        seconds = time.perf_counter() - started
    if result.result != "published":
        raise RuntimeError(f"the run did not publish: {result.reason}")
    return _figures(result.records, seconds, before, reset, result.report.max_feature_psi if result.report else None)


def _figures(records: int, seconds: float, before_kb: int, reset: bool, max_psi: float | None) -> dict[str, Any]:
    peak = _rss_kb("VmHWM")
    return {
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds),
        "peak_rss_mb": round(peak / 1024, 1),
        "growth_mb": round(max(0, peak - before_kb) / 1024, 1),
        "peak_reset": reset,
        "max_feature_psi": max_psi,
    }


def _child(mode: str, directory: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--data", str(directory)]
    paths = [str(ROOT / "layers" / "shared"), str(ROOT / "src"), str(ROOT / "tests")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(records: int = 100_000, runs: int = 5, per_file: int = 1000) -> dict[str, Any]:
    """Generate the traffic once, then time each mode `runs` times in fresh processes."""
    with tempfile.TemporaryDirectory(prefix="closedloop-loans-drift-bench-") as tmp:
        directory = Path(tmp)
        files = generate(directory, records, per_file)
        size_mb = sum(p.stat().st_size for p in files) / 2**20
        figures: dict[str, Any] = {"records": records, "files": len(files), "capture_mb": round(size_mb, 1)}
        for mode in ("service", "reader"):
            results = [_child(mode, directory) for _ in range(runs)]
            assert all(r["records"] == records for r in results), results
            figures[mode] = {
                "median_records_per_s": round(statistics.median(r["records_per_s"] for r in results)),
                "median_seconds": round(statistics.median(r["seconds"] for r in results), 3),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                "median_growth_mb": round(statistics.median(r["growth_mb"] for r in results), 1),
                "runs": results,
            }
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-file", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="1,000 records, 1 run: checks the script works")
    parser.add_argument("--child", choices=["service", "reader"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_service(args.data) if args.child == "service" else run_reader(args.data)
        print(json.dumps(result))
        return
    if args.smoke:
        args.records, args.runs, args.per_file = 1000, 1, 250
    figures = measure(args.records, args.runs, args.per_file)
    print(
        f"drift monitor on {figures['records']:,} captured records "
        f"({figures['files']} files, {figures['capture_mb']} MB), median of {args.runs} runs"
    )
    for mode in ("service", "reader"):
        m = figures[mode]
        print(
            f"  {mode:8} {m['median_records_per_s']:>9,} records/s  {m['median_seconds']:>7.2f} s  "
            f"peak RSS {m['peak_rss_mb']:.1f} MB (run added {m['median_growth_mb']:.1f} MB)"
        )
    print(json.dumps({k: v for k, v in figures.items()}, default=str))


if __name__ == "__main__":
    main()
