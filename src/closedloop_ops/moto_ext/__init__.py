"""Where moto falls short of the AWS behaviour closedloop relies on, it is extended here — only here.

Each module patches one area and documents the AWS behaviour it reproduces; `tests/integration/
test_moto_ext.py` pins every patch. Handlers never know about this package: the local loop and the
tests install it into the moto they run, and the same boto3 calls then behave as on AWS.

The patches replace moto internals, so `install()` refuses a moto outside `TESTED_MOTO` (the range
the patches were tested with; `requirements/dev.txt` pins a version inside it) with
`MotoVersionError`, instead of patching what may have moved.

- `registry`: UpdateModelPackage leaves omitted fields alone (moto clobbers them with None) and
  records the caller as `LastModifiedBy`; tagging a versioned model-package ARN works.
- `s3_events`: S3 → EventBridge events carry AWS's fields (unique ids, `etag`, `reason`
  `PutObject`…, a real sequencer, `version-id` only when versioned).
- `jobs`: Processing jobs and Glue job runs stay running until the local job runner finishes them.
- `runtime`: InvokeEndpoint can be served by a real model server (the local loop's).
- `lambda_invoke`: asynchronous Lambda invocations can be routed to a local function.
- `monitoring`: pipeline executions stay `Executing` until ended, starts are idempotent on
  `ClientRequestToken`, ListPipelineExecutions sorts and pages; DynamoDB conditional writes are atomic.
- `hosting`: UpdateEndpoint (InService only; keeps the DeploymentConfig; can fail or hold an
  update), duplicate CreateModel / CreateEndpointConfig / CreateEndpoint rejected, AddTags upserts.
- `pipelines`: ListPipelineExecutionSteps returns the steps recorded for an execution
  (`record_execution_step`), e.g. the RegisterModel step's package ARN.
- `accounts`: model package group policies, and reads of another account's versions only where its
  group's policy allows; cross-account event bus targets honour the bus policy and keep the envelope.
- `featurestore`: featurestore-runtime PutRecord, GetRecord, BatchGetRecord, DeleteRecord on moto's
  feature groups (online store when enabled) and the offline store written as Feature Store writes
  it (Parquet under the group's `ResolvedOutputS3Uri`, hourly event-time partitions).
- `iam_conditions`: a policy condition whose key the request does not carry does not match (so
  the template's TLS-only bucket policies deny nothing they should not).
"""

from __future__ import annotations

import operator
import re
import threading
from importlib import metadata

TESTED_MOTO = ">=5.2.5,<5.3"

_lock = threading.Lock()
_installed = False


class MotoVersionError(RuntimeError):
    """The installed moto is outside the range the extensions were tested with."""


def _release(version: str) -> tuple[int, ...] | None:
    """The release numbers of a final version ("5.2.5" → (5, 2, 5)); None for a pre-release or a build."""
    match = re.fullmatch(r"(\d+(?:\.\d+)*)(\.post\d+)?", version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _padded(release: tuple[int, ...], width: int) -> tuple[int, ...]:
    return release + (0,) * (width - len(release))


COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def in_tested_range(version: str, tested: str = TESTED_MOTO) -> bool:
    """Whether a moto version satisfies `tested` (comma-separated `>=`, `>`, `<=`, `<`, `==` clauses).

    Final releases only: a pre-release or development build of moto was never tested.

    Raises:
        ValueError: `tested` is not such a list of clauses.
    """
    release = _release(version)
    if release is None:
        return False
    for clause in tested.split(","):
        parsed = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*(\d+(?:\.\d+)*)\s*", clause)
        if parsed is None:
            raise ValueError(f"not a version clause: {clause!r}")
        bound = tuple(int(part) for part in parsed.group(2).split("."))
        width = max(len(release), len(bound))
        if not COMPARISONS[parsed.group(1)](_padded(release, width), _padded(bound, width)):
            return False
    return True


def check_moto_version() -> str:
    """The installed moto's version, if the extensions were tested with it.

    Raises:
        MotoVersionError: moto is not installed, or its version is outside `TESTED_MOTO`.
    """
    try:
        installed = metadata.version("moto")
    except metadata.PackageNotFoundError:
        raise MotoVersionError(
            f"moto is not installed; closedloop's local loop needs moto {TESTED_MOTO} "
            "(pip install -r requirements/dev.txt)"
        ) from None
    if not in_tested_range(installed):
        raise MotoVersionError(
            f"moto {installed} is installed, but closedloop's moto extensions (closedloop_ops.moto_ext) "
            f"replace moto internals and were tested with moto {TESTED_MOTO} only: install the pinned "
            "version (pip install -r requirements/dev.txt), or move TESTED_MOTO after running "
            "tests/integration/test_moto_ext*.py on the new one"
        )
    return installed


def install() -> None:
    """Apply every extension to the moto in this process (idempotent).

    Raises:
        MotoVersionError: the installed moto is outside `TESTED_MOTO`; nothing is patched.
    """
    global _installed  # noqa: PLW0603 - one process-wide switch
    with _lock:
        if _installed:
            return
        check_moto_version()
        from closedloop_ops.moto_ext import (
            accounts,
            featurestore,
            hosting,
            iam_conditions,
            jobs,
            lambda_invoke,
            monitoring,
            pipelines,
            registry,
            runtime,
            s3_events,
        )

        registry.install()
        s3_events.install()
        iam_conditions.install()
        jobs.install()
        runtime.install()
        lambda_invoke.install()
        monitoring.install()
        hosting.install()
        pipelines.install()
        accounts.install()
        featurestore.install()
        _installed = True
