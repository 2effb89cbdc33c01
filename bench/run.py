"""`make bench`: measure what closedloop's users pay for, on this machine.

Writes build/bench/results.json and regenerates docs/performance.md. Every figure is a median of
repeated runs, and ratios are measured side by side in the same run, because the machine is shared
and noisy. `--smoke` runs every figure at tiny sizes with no targets (part of `make test`, so this
script cannot rot).

Figures (target in brackets):
* cold_init_ms per handler — a fresh process importing the handler module and building its
  module-level objects, next to a process that only imports boto3 [median ≤ 300 ms]
* package_mb per function — `sam build` for python3.13/arm64, function + layers unzipped [≤ 30 MB]
* warm_overhead_ms per route — our own code's time per event, AWS calls excluded [median ≤ 5 ms]
* burst_coalescing — 1,000 uploads over 3 datasets as the SQS event source batches them [3 runs]
* drift_records_per_s — the drift monitor over 100,000 captured records [≥ 10,000/s]
* retrain_storm — 20 concurrent ALARM events for one model [1 pipeline execution]
* demo_wall_s — the whole local loop [≤ 60 s]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `make bench` puts tests/ on PYTHONPATH: the benchmarks reuse the test-support stack and events.

FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))


@dataclass
class Figure:
    name: str
    value: Any
    target: str
    anchor: str
    met: bool | None
    detail: dict[str, Any] = field(default_factory=dict)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


# -- cold init ------------------------------------------------------------------------------------

COLD_SCRIPT = """
import os, sys, time, importlib.util
start = time.perf_counter()
{body}
print(round((time.perf_counter() - start) * 1000, 2))
"""


def _stack_env() -> dict[str, str]:
    from support.stack import stack_env

    # What the Lambda runtime sets: with LAMBDA_TASK_ROOT the X-Ray SDK takes its Lambda path.
    env = {
        **os.environ,
        **stack_env(),
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_SESSION_TOKEN": "x",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": "closedloop-bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions"),
        "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers/shared"), env.get("PYTHONPATH", "")])
    return env


def _process_ms(body: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall time of the whole process, in-process import time), in ms."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT.format(body=body)], env=env, capture_output=True, text=True, check=True
    )
    wall = (time.perf_counter() - started) * 1000
    return wall, float(result.stdout.strip().splitlines()[-1])


def cold_init(repeats: int) -> list[Figure]:
    env = _stack_env()
    bare = [_process_ms("import boto3", env) for _ in range(repeats)]
    bare_wall = median([w for w, _ in bare])
    figures = []
    for function in FUNCTIONS:
        path = ROOT / "functions" / function / "app.py"
        body = (
            f"spec = importlib.util.spec_from_file_location('app', {str(path)!r})\n"
            "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)"
        )
        runs = [_process_ms(body, env) for _ in range(repeats)]
        wall = median([w for w, _ in runs])
        imported = median([i for _, i in runs])
        figures.append(
            Figure(
                name=f"cold_init_ms[{function}]",
                value=imported,
                target="median ≤ 300 ms",
                anchor="hello-world python3.13 zip cold start on Lambda ≈ 80 ms",
                met=imported <= 300,
                detail={
                    "process_wall_ms": wall,
                    "bare_boto3_process_wall_ms": bare_wall,
                    "ratio_to_bare_boto3_process": round(wall / bare_wall, 2),
                    "repeats": repeats,
                },
            )
        )
    return figures


# -- package size ---------------------------------------------------------------------------------


def package_sizes() -> list[Figure]:
    build = ROOT / ".aws-sam" / "build"
    subprocess.run(["make", "-s", "build"], cwd=ROOT, check=True, capture_output=True)
    layer = _size_mb(build / "SharedLayer")
    figures = []
    for directory in sorted(p for p in build.iterdir() if p.is_dir() and p.name.endswith("Function")):
        total = round(_size_mb(directory) + layer, 2)
        figures.append(
            Figure(
                name=f"package_mb[{directory.name}]",
                value=total,
                target="≤ 30 MB",
                anchor="Lambda limit 250 MB unzipped; the sagemaker SDK alone is ~1 GB",
                met=total <= 30,
                detail={"function_mb": round(_size_mb(directory), 3), "layer_mb": round(layer, 2)},
            )
        )
    return figures


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


# -- burst coalescing -----------------------------------------------------------------------------


def burst_coalescing(uploads: int) -> Figure:
    from moto import mock_aws

    from closedloop import aws
    from closedloop.dataprep import policy as policy_module
    from closedloop.settings import load_settings
    from closedloop_ops import moto_ext
    from support.events import object_created, sqs_batch
    from support.handlers import FakeLambdaContext, load_handler
    from support.stack import provision, stack_env

    moto_ext.install()
    env = stack_env()
    os.environ.update(env)
    loans = policy_module.load_policy("loans")
    datasets = ("loans", "cards", "churn")
    real = policy_module.load_policy

    def declared(name: str) -> Any:
        return loans.model_copy(update={"dataset": name}) if name in datasets else real(name)

    from closedloop.dataprep import arrival, service

    arrival.load_policy, service.load_policy = declared, declared  # type: ignore[assignment]
    try:
        with mock_aws():
            aws.reset_clients()
            load_settings.cache_clear()
            stack = provision(env)
            handler = load_handler("start_data_prep")
            events = [
                object_created(stack.data_bucket, f"raw/{datasets[i % 3]}/burst/f-{i:05d}.csv", version_id=f"v{i}")
                for i in range(uploads)
            ]
            started = time.perf_counter()
            response = handler.lambda_handler(sqs_batch(events), FakeLambdaContext())
            seconds = time.perf_counter() - started
            import boto3

            jobs = boto3.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"]
    finally:
        arrival.load_policy, service.load_policy = real, real  # type: ignore[assignment]
    return Figure(
        name="burst_coalescing",
        value=len(jobs),
        target="exactly 3 preparation runs",
        anchor="every public sample starts one run per upload (1,000)",
        met=len(jobs) == 3 and not response["batchItemFailures"],
        detail={
            "uploads": uploads,
            "datasets": 3,
            "handler_seconds": round(seconds, 2),
            "batch_item_failures": len(response["batchItemFailures"]),
        },
    )


# -- report ---------------------------------------------------------------------------------------


def write(figures: list[Figure], smoke: bool) -> None:
    out = ROOT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "smoke": smoke,
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "figures": [f.__dict__ for f in figures]}, indent=2))
    if smoke:
        return
    rows = ["| figure | value | target | met | anchor / detail |", "|---|---|---|---|---|"]
    for f in figures:
        detail = ", ".join(f"{k}={v}" for k, v in f.detail.items() if k not in {"repeats"})
        rows.append(f"| `{f.name}` | {f.value} | {f.target} | {'yes' if f.met else 'NO'} | {f.anchor}; {detail} |")
    text = (
        "# Performance\n\n"
        "Generated by `make bench` (`bench/run.py`); do not edit by hand. Medians of repeated runs on a\n"
        f"shared {meta['cpus']}-core {meta['machine']} machine, Python {meta['python']}, {meta['at']}.\n"
        "Ratios are measured side by side in the same run.\n\n" + "\n".join(rows) + "\n"
    )
    (ROOT / "docs" / "performance.md").write_text(text, encoding="utf-8")


FIGURES: dict[str, Callable[[bool], list[Figure]]] = {
    "cold_init": lambda smoke: cold_init(2 if smoke else 10),
    "package": lambda smoke: package_sizes(),
    "burst": lambda smoke: [burst_coalescing(30 if smoke else 1000)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closedloop benchmarks")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no targets (for make test)")
    parser.add_argument("--only", action="append", choices=sorted(FIGURES), help="run only these figures")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    for name, run in FIGURES.items():
        if args.only and name not in args.only:
            continue
        if args.smoke and name == "package":
            continue  # sam build takes a while and is exercised by `make build`
        started = time.perf_counter()
        produced = run(args.smoke)
        figures.extend(produced)
        for figure in produced:
            print(f"{figure.name}: {figure.value} ({figure.target}; {'met' if figure.met else 'MISSED'})", flush=True)
        print(f"  [{name} took {time.perf_counter() - started:.1f} s]", flush=True)
    write(figures, args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
