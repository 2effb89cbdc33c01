"""Walk a prediction back to everything behind it.

inference → endpoint config → model version → approval decision (who or which policy, when, why) →
pipeline execution and its trigger (upload or alarm) → prepared-data manifest → raw object versions
→ code version. Every link is read from where the routes wrote it: data capture, the ledger, the
model package's metadata and tags, and the prepared data's manifest.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from closedloop import lineage as keys
from closedloop_ops.cli_errors import CliError
from closedloop_ops.operations import audit, decisions_for
from closedloop_ops.stackref import StackRef


def _s3_json(stack: StackRef, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    document: dict[str, Any] = json.loads(body)
    return document


def find_inference(stack: StackRef, inference_id: str, capture_bucket: str, prefix: str = "capture/") -> dict[str, Any]:
    """The data-capture record of one inference (by the `InferenceId` its caller passed).

    Raises:
        CliError: no captured request carries that id.
    """
    s3 = stack.client("s3")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=capture_bucket, Prefix=prefix):
        for obj in sorted(page.get("Contents", []), key=lambda o: o["Key"], reverse=True):
            body = s3.get_object(Bucket=capture_bucket, Key=obj["Key"])["Body"].read().decode("utf-8", "replace")
            if inference_id not in body:
                continue
            for line in body.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                metadata = record.get("eventMetadata", {})
                if metadata.get("inferenceId") == inference_id:
                    parts = obj["Key"][len(prefix) :].split("/")
                    return {
                        "inference_id": inference_id,
                        "inference_time": metadata.get("inferenceTime"),
                        "event_id": metadata.get("eventId"),
                        "endpoint": parts[0],
                        "variant": parts[1] if len(parts) > 1 else "",
                        "capture_file": f"s3://{capture_bucket}/{obj['Key']}",
                    }
    raise CliError(f"no captured inference with id {inference_id!r} (is data capture on, and the id right?)")


def _serving_at(stack: StackRef, at: datetime) -> dict[str, Any]:
    """The version the endpoint served at `at`: the last `live` outcome recorded before it."""
    decisions = [
        d
        for d in audit(stack, at - timedelta(days=90), at + timedelta(seconds=1))
        if d.route == "deployment-outcome" and d.action == "record_outcome" and d.result == "live"
    ]
    if not decisions:
        raise CliError(f"no deployment was live at {at.isoformat()} according to the ledger")
    last = decisions[-1]
    return {
        "model_package_arn": last.business_key,
        "endpoint_config": last.details.get("endpoint_config"),
        "live_since": last.at.isoformat(),
    }


def _resolve_version(stack: StackRef, group: str, model_version: str) -> str:
    if model_version.startswith("arn:"):
        return model_version
    sm = stack.client("sagemaker")
    described = sm.describe_model_package_group(ModelPackageGroupName=group)
    base = described["ModelPackageGroupArn"].replace(":model-package-group/", ":model-package/")
    return f"{base}/{int(model_version)}"


def trace(
    stack: StackRef, *, inference_id: str | None = None, endpoint: str | None = None, model_version: str | None = None
) -> dict[str, Any]:
    """The whole chain for one inference, the endpoint's live version, or one model version.

    Raises:
        CliError: the starting point is unknown (with what was looked for).
    """
    env = stack.settings_environment()
    chain: dict[str, Any] = {}
    if inference_id:
        inference = find_inference(stack, inference_id, env["CAPTURE_BUCKET"], env.get("CAPTURE_PREFIX", "capture/"))
        chain["inference"] = inference
        at = datetime.fromisoformat(str(inference["inference_time"]).replace("Z", "+00:00")).astimezone(UTC)
        serving = _serving_at(stack, at)
        chain["endpoint_config"] = {
            "endpoint": inference["endpoint"],
            "name": serving["endpoint_config"],
            "live_since": serving["live_since"],
        }
        arn = serving["model_package_arn"]
    elif endpoint or (not model_version):
        name = endpoint or env["ENDPOINT_NAME"]
        sm = stack.client("sagemaker")
        try:
            described = sm.describe_endpoint(EndpointName=name)
        except sm.exceptions.ClientError:
            raise CliError(f"no endpoint {name!r} in stack {stack.name}") from None
        config = described["EndpointConfigName"]
        config_arn = sm.describe_endpoint_config(EndpointConfigName=config)["EndpointConfigArn"]
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=config_arn)["Tags"]}
        arn = tags.get(keys.MODEL_PACKAGE, "")
        if not arn:
            raise CliError(
                f"endpoint config {config} has no {keys.MODEL_PACKAGE} tag: it was not deployed by closedloop"
            )
        chain["endpoint_config"] = {"endpoint": name, "name": config, "status": described["EndpointStatus"]}
    else:
        arn = _resolve_version(stack, env["MODEL_PACKAGE_GROUP"], str(model_version))
    _follow_version(stack, env, arn, chain, model_version)
    return chain


def _follow_version(
    stack: StackRef, env: dict[str, str], arn: str, chain: dict[str, Any], model_version: str | None
) -> None:
    """Add the model version and everything behind it to `chain`."""
    sm = stack.client("sagemaker")
    try:
        package = sm.describe_model_package(ModelPackageName=arn)
    except sm.exceptions.ClientError:
        raise CliError(f"no model version {model_version or arn!r} in group {env['MODEL_PACKAGE_GROUP']}") from None
    metadata = package.get("CustomerMetadataProperties", {})
    chain["model_version"] = {
        "arn": arn,
        "group": package.get("ModelPackageGroupName"),
        "version": package.get("ModelPackageVersion"),
        "status": package.get("ModelApprovalStatus"),
        "model_data": package.get("InferenceSpecification", {}).get("Containers", [{}])[0].get("ModelDataUrl"),
    }
    history = decisions_for(stack, arn)
    gate = [d for d in history if d.action == "approval_gate"]
    identity = package.get("LastModifiedBy", {}).get("IamIdentity", {}).get("Arn")
    chain["approval_decision"] = {
        "status": package.get("ModelApprovalStatus"),
        "by": identity or "unknown",
        "policy_version": gate[-1].details.get("policy_version") if gate else None,
        "decided_by": (
            f"policy {gate[-1].details.get('policy_version')} ({gate[-1].details.get('mode')} mode)"
            if gate and gate[-1].details.get("mode") == "auto"
            else f"approver {identity}"
        ),
        "when": gate[-1].at.isoformat() if gate else None,
        "why": package.get("ApprovalDescription", ""),
        "numbers": gate[-1].details.get("numbers") if gate else None,
    }
    outcomes = [d for d in history if d.action == "record_outcome"]
    if outcomes:
        chain["deployment"] = {
            "outcome": outcomes[-1].result,
            "at": outcomes[-1].at.isoformat(),
            "endpoint_config": outcomes[-1].details.get("endpoint_config"),
        }
    execution_arn = metadata.get(keys.PIPELINE_EXECUTION, "")
    execution: dict[str, Any] = {
        "arn": execution_arn,
        "trigger": metadata.get(keys.TRIGGER),
        "trigger_reason": metadata.get(keys.TRIGGER_REASON),
    }
    if execution_arn:
        try:
            described_execution = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
            execution["status"] = described_execution.get("PipelineExecutionStatus")
            execution["started"] = str(described_execution.get("CreationTime", ""))
        except sm.exceptions.ClientError:
            execution["status"] = "unknown (execution no longer listed)"
    chain["pipeline_execution"] = execution
    manifest_uri = metadata.get(keys.PREPARED_MANIFEST, "")
    chain["prepared_data"] = {
        "manifest": manifest_uri,
        "data": metadata.get(keys.PREPARED_DATA),
        "prep_run_id": metadata.get(keys.PREP_RUN_ID),
        "dataset": metadata.get(keys.DATASET),
    }
    if manifest_uri:
        manifest = _s3_json(stack, manifest_uri)
        chain["prepared_data"].update(
            rows=manifest.get("output", {}).get("rows"),
            policy=manifest.get("policy"),
            pii_report=manifest.get("pii_report_uri"),
        )
        chain["raw_objects"] = [
            {k: i.get(k) for k in ("bucket", "key", "version_id", "etag", "status")} for i in manifest.get("inputs", [])
        ]
        chain["code_version"] = {
            "model": metadata.get(keys.CODE_VERSION),
            "preparation_script_sha256": manifest.get("code", {}).get("sha256"),
        }
    else:
        chain["raw_objects"] = []
        chain["code_version"] = {"model": metadata.get(keys.CODE_VERSION)}


def to_dot(chain: dict[str, Any]) -> str:
    """The chain as a Graphviz digraph (`closedloop lineage --format dot | dot -Tsvg`)."""
    nodes: list[tuple[str, str]] = []
    if "inference" in chain:
        nodes.append(
            ("inference", f"inference {chain['inference']['inference_id']}\\n{chain['inference']['inference_time']}")
        )
    if "endpoint_config" in chain:
        nodes.append(("config", f"endpoint config\\n{chain['endpoint_config'].get('name')}"))
    model = chain["model_version"]
    nodes.append(("model", f"model version {model['version']}\\n{model['status']}"))
    nodes.append(("approval", f"approval\\n{chain['approval_decision']['decided_by']}"))
    execution = chain["pipeline_execution"]
    nodes.append(
        (
            "execution",
            f"pipeline execution\\n{str(execution.get('arn', '')).rsplit('/', 1)[-1]}\\n"
            f"trigger: {execution.get('trigger')}",
        )
    )
    nodes.append(("prepared", f"prepared data\\nrun {chain['prepared_data'].get('prep_run_id')}"))
    for index, raw in enumerate(chain.get("raw_objects", [])[:20]):
        nodes.append((f"raw{index}", f"{raw['key']}\\nversion {raw.get('version_id')}"))
    nodes.append(("code", f"code\\n{chain.get('code_version', {}).get('model')}"[:120]))
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    lines += [f'  {name} [label="{label.replace(chr(34), "")}"];' for name, label in nodes]
    order = [n for n, _ in nodes if not n.startswith("raw") and n != "code"]
    lines += [f"  {a} -> {b};" for a, b in itertools.pairwise(order)]
    lines += [f"  prepared -> {n};" for n, _ in nodes if n.startswith("raw")]
    lines += ["  execution -> code;", "}"]
    return "\n".join(lines)
