"""Preparation throughput: the single-node script against the Spark job on local pyspark, 1 and 2 cores.

One run of the loans line's shape (synthetic applications with PII, `files` files) is uploaded to a
moto server on loopback; each engine prepares the same run in a fresh process:

* `single` — `prepare.run`, the Processing / Glue Python shell engine, one core;
* `spark-local[N]` — `spark_prepare.run` on `local[N]` (the JVM is started before the clock starts:
  Glue bills its start-up too, but it does not grow with the data).

Rows per second are the run's prepared rows over the wall time of `run()` (reading S3, preparing,
writing the outputs). The scaling ratio `spark-local[2] / spark-local[1]` is the figure that
transfers to Glue's workers; `docs/performance.md` projects from it.

    PYTHONPATH=layers/shared:src:tests .venv/bin/python bench/spark_prep.py [--rows 1000000] [--files 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "layers" / "shared" / "closedloop" / "prep" / "spark_prepare.py"


def _child(engine: str, manifest_uri: str) -> dict[str, Any]:
    """In this process: prepare the run with `engine`, return the timing."""
    import boto3

    s3, secrets = boto3.client("s3"), boto3.client("secretsmanager")
    if engine == "single":
        from closedloop.prep import prepare

        started = time.perf_counter()
        output = prepare.run(manifest_uri, s3, secrets)
    else:
        import importlib.util

        from pyspark.sql import SparkSession

        spec = importlib.util.spec_from_file_location("spark_prepare", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["spark_prepare"] = module
        spec.loader.exec_module(module)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (
            SparkSession.builder.master(engine.removeprefix("spark-"))
            .config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        module.ship_beside_me(spark)
        spark.createDataFrame([(1,)], "x int").count()  # the JVM and a Python worker are up
        started = time.perf_counter()
        output = module.run(manifest_uri, spark, s3, secrets)
    seconds = time.perf_counter() - started
    rows = int(output["output"]["rows"])
    return {"engine": engine, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def measure(rows: int = 1_000_000, files: int = 20, engines: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Upload one run of `rows` rows in `files` files; prepare it with each engine in a fresh process."""
    from moto.server import ThreadedMotoServer

    from closedloop_ops import moto_ext, synthetic
    from support.stack import provision, stack_env

    engines = engines or ("single", "spark-local[1]", "spark-local[2]")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    moto_ext.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's backends are this process's: empty them of what earlier figures of the run created
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).read()
    env = {
        **os.environ,
        **stack_env(),
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        stack = provision(env)
        from integration.test_prepare_script import upload, write_manifest

        per_file = -(-rows // files)
        objects = []
        for index in range(files):
            count = min(per_file, rows - index * per_file)
            records = list(synthetic.rows(count, seed=1000 + index, start=index * per_file))
            objects.append(upload(stack, f"raw/loans/bench/part-{index:03d}.csv", synthetic.to_csv(records).encode()))
        manifest_uri, _ = write_manifest(stack, objects)
        size_mb = sum(o.size or 0 for o in objects) / 2**20
        paths = [str(ROOT / "layers" / "shared"), str(ROOT / "src"), str(ROOT / "tests")]
        child_env = {**env, "PYTHONPATH": os.pathsep.join(paths), "PYSPARK_PYTHON": sys.executable}
        results = {}
        for engine in engines:
            done = subprocess.run(
                [sys.executable, __file__, "--child", engine, "--manifest", manifest_uri],
                env=child_env,
                capture_output=True,
                text=True,
                check=False,
                cwd=tempfile.gettempdir(),
            )
            if done.returncode != 0:
                raise RuntimeError(f"{engine} failed: {done.stderr[-2000:]}")
            results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    one, two = results.get("spark-local[1]"), results.get("spark-local[2]")
    return {
        "rows": rows,
        "files": files,
        "input_mb": round(size_mb, 1),
        "engines": results,
        "spark_scaling_2_over_1": round(two["rows_per_s"] / one["rows_per_s"], 2) if one and two else None,
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.manifest)))
        return
    print(json.dumps(measure(args.rows, args.files), indent=2))


if __name__ == "__main__":
    main()
