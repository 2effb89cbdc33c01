"""Shared fixtures. Unit tests use none of the AWS ones; integration tests run on moto in-process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

# Powertools reads the metrics namespace when `closedloop.observability` builds its singleton, which
# happens at collection time for any test module importing domain code that emits metrics.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "closedloop")

from closedloop import aws
from closedloop.dataprep.policy import load_policy
from closedloop.settings import load_settings
from support.stack import REGION, Stack, provision, stack_env
from support.xray import udp_daemon


@pytest.fixture(scope="session", autouse=True)
def _shared_service_models() -> Iterator[None]:
    """One botocore loader for the session: service models are parsed from disk once, not per client."""
    import functools

    import botocore.loaders
    import botocore.session

    original = botocore.session.create_loader
    botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)  # type: ignore[assignment]
    yield
    botocore.session.create_loader = original  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real AWS account: fake credentials, a fixed region, no profiles."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance-metadata service
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "closedloop")
    aws.reset_clients()
    load_settings.cache_clear()
    load_policy.cache_clear()


def _stack(monkeypatch: pytest.MonkeyPatch, engine: str) -> Iterator[Stack]:
    from moto import mock_aws

    from closedloop_ops import moto_ext

    moto_ext.install()
    env = stack_env(engine)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        aws.reset_clients()
        yield provision(env)
    aws.reset_clients()
    load_settings.cache_clear()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack's resources in moto (Processing engine), and its environment set."""
    yield from _stack(monkeypatch, "processing")


@pytest.fixture
def glue_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The same stack with the Glue preparation engine."""
    yield from _stack(monkeypatch, "glue")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for the whole test run (the JVM takes ~10 s to start), with the Spark
    preparation job's modules shipped to its workers as the job ships them."""
    import importlib.util
    import sys
    from pathlib import Path

    from pyspark.sql import SparkSession

    script = Path(__file__).resolve().parents[1] / "layers" / "shared" / "closedloop" / "prep" / "spark_prepare.py"
    spec = importlib.util.spec_from_file_location("spark_prepare", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["spark_prepare"] = module
    spec.loader.exec_module(module)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    # the workers' AWS is the test's: fake credentials, never a profile or instance metadata
    worker_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in worker_env.items():
        builder = builder.config(f"spark.executorEnv.{name}", value)
    session = (
        builder.master("local[2]")
        .appName("closedloop-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    module.ship_beside_me(session)
    yield session
    session.stop()


@pytest.fixture
def auto_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack choosing the engine by a run's size: the Glue Spark job from 1 MB, else the Python shell job."""
    for stack in _stack(monkeypatch, "auto"):
        monkeypatch.setenv("PREP_SPARK_THRESHOLD_BYTES", str(1 << 20))
        load_settings.cache_clear()
        yield stack


@pytest.fixture
def xray_daemon() -> Iterator[socket.socket]:
    """A UDP socket on loopback standing in for the X-Ray daemon Lambda runs."""
    with udp_daemon() as sock:
        yield sock
