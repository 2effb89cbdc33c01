"""Where moto (5.2.x) falls short of the AWS behaviour closedloop relies on, it is extended here — only here.

Each module patches one area and documents the AWS behaviour it reproduces; `tests/integration/
test_moto_ext.py` pins every patch. Handlers never know about this package: the local loop and the
tests install it into the moto they run, and the same boto3 calls then behave as on AWS.

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
- `iam_conditions`: a policy condition whose key the request does not carry does not match (so
  the template's TLS-only bucket policies deny nothing they should not).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Apply every extension to the moto in this process (idempotent)."""
    global _installed  # noqa: PLW0603 - one process-wide switch
    with _lock:
        if _installed:
            return
        from closedloop_ops.moto_ext import (
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
        _installed = True
