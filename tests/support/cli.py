"""The command line's test world: the local loop (with the demo scenario, kept running), and ways to drive it."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from closedloop_ops.cli import main
from closedloop_ops.local.demo import Demo, run_demo
from closedloop_ops.local.loop import LocalLoop
from closedloop_ops.stackref import write_local_state

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's
OFFICER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ComplianceOfficer"
SCIENTIST_ROLE = f"arn:aws:iam::{ACCOUNT}:role/DataScientist"
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def fresh_moto() -> None:
    """Forget every resource of the in-process moto (loops of earlier modules share its backends)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def reset_server(endpoint_url: str) -> None:
    """Forget every resource through a running moto server (what `POST /moto-api/reset` does)."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()  # loopback emulator


@contextmanager
def kept_demo(out_dir: Path, lines: list[str]) -> Iterator[Demo]:
    """Run the demo scenario and keep its loop up until the block ends (`closedloop demo --keep`).

    The demo runs in a thread that waits in `keep`; the block drives the loop from the test's thread
    while that one waits, so the two never use the loop at the same time.
    """
    if not (ROOT / "pipelines" / "definition.json").is_file():
        pytest.fail("pipelines/definition.json is missing: run `make pipeline` and commit it")
    ready, done = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def keep(demo: Demo) -> None:
        box["demo"] = demo
        ready.set()
        done.wait()

    def run() -> None:
        try:
            box["report"] = run_demo(out_dir, say=lines.append, keep=keep)
        except BaseException as exc:  # handed to the test's thread
            box["error"] = exc
        finally:
            ready.set()

    fresh_moto()
    thread = threading.Thread(target=run, name="kept-demo", daemon=True)
    thread.start()
    ready.wait(timeout=300)
    if "demo" not in box:
        thread.join(timeout=5)
        raise RuntimeError(f"the demo did not get to the kept loop: {box.get('error')!r}\n" + "\n".join(lines[-20:]))
    demo: Demo = box["demo"]
    try:
        yield demo
    finally:
        reset_server(demo.loop.stack.endpoint_url)
        done.set()
        thread.join(timeout=60)


def local_args(loop: LocalLoop, path: Path) -> list[str]:
    """Write the loop's state file (as `closedloop local up` does) and return the options that reach it."""
    write_local_state(
        path,
        name=loop.stack.stack_name,
        region=loop.stack.region,
        endpoint_url=loop.stack.endpoint_url,
        outputs=loop.stack.outputs,
    )
    return ["--local", "--state-file", str(path)]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `closedloop ARGS`; returns (exit code, stdout, stderr) of the command alone."""
    capsys.readouterr()  # drop what the handlers logged before
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def register_copy(loop: LocalLoop, version: int, line: str = "loans") -> int:
    """Register a new pending version of a line with the evidence and lineage of `version` (a retrained twin)."""
    sm = loop.client("sagemaker")
    group = f"{loop.output('ResourcePrefix')}-{line}"
    arn = f"arn:aws:sagemaker:{loop.stack.region}:{ACCOUNT}:model-package/{group}/{version}"
    described = sm.describe_model_package(ModelPackageName=arn)
    copied = {
        key: described[key]
        for key in (
            "InferenceSpecification",
            "ModelMetrics",
            "DriftCheckBaselines",
            "CustomerMetadataProperties",
            "MetadataProperties",
        )
        if key in described
    }
    created = sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval", **copied
    )["ModelPackageArn"]
    return int(created.rsplit("/", 1)[1])


def assume(loop: LocalLoop, role_arn: str, session: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Become `role_arn` for the command line (its credentials in the environment); returns the session ARN."""
    iam = loop.client("iam")
    name = role_arn.rsplit("/", 1)[1]
    if name not in {r["RoleName"] for r in iam.list_roles()["Roles"]}:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
            ],
        }
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    response = loop.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session)
    credentials = response["Credentials"]
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
    return str(response["AssumedRoleUser"]["Arn"])


def code_cells(notebook: Path) -> list[tuple[str, str]]:
    """(cell id, source) of every code cell of a notebook, in order."""
    document = json.loads(notebook.read_text(encoding="utf-8"))
    assert document["nbformat"] == 4
    return [
        (cell.get("id", str(index)), "".join(cell["source"]))
        for index, cell in enumerate(document["cells"])
        if cell["cell_type"] == "code"
    ]
