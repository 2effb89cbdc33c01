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
from closedloop_ops.text import shorten

LABEL_WIDTH = 140  # characters of a label line: a trigger reason may be 1,000; an alarm name alone 60


def _s3_json(stack: StackRef, uri: str) -> dict[str, Any] | None:
    """A JSON document in S3, or None when it is gone, unreadable or not a JSON object."""
    from botocore.exceptions import ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        document = json.loads(stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except (ClientError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value) if value else None


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
    raise CliError(
        f"no captured inference with id {inference_id!r} in s3://{capture_bucket}/{prefix} (the id is the "
        "InferenceId the caller passed to InvokeEndpoint; is data capture on?)"
    )


def _serving_at(stack: StackRef, endpoint: str, at: datetime) -> dict[str, Any]:
    """The version `endpoint` served at `at`: the last `live` outcome recorded before it for a
    version of the endpoint's model line.

    Raises:
        CliError: the endpoint is no line's of the stack, or nothing of its line was live then.
    """
    owned = stack.line_of_endpoint(endpoint)
    if owned is None:
        raise CliError(f"endpoint {endpoint} is not the endpoint of a model line of stack {stack.name}")
    versions_of = f":model-package/{owned.model_package_group}/"
    decisions = [
        d
        for d in audit(stack, at - timedelta(days=90), at + timedelta(seconds=1))
        if d.route == "deployment-outcome"
        and d.action == "record_outcome"
        and d.result == "live"
        and versions_of in d.business_key
    ]
    if not decisions:
        raise CliError(f"no deployment was live on {endpoint} at {at.isoformat()} according to the ledger")
    last = decisions[-1]
    return {
        "model_package_arn": last.business_key,
        "endpoint_config": last.details.get("endpoint_config"),
        "live_since": last.at.isoformat(),
    }


def trace(
    stack: StackRef,
    *,
    inference_id: str | None = None,
    endpoint: str | None = None,
    model_version: str | None = None,
    build_stack: StackRef | None = None,
) -> dict[str, Any]:
    """The whole chain for one inference, the endpoint's live version, or one model version.

    In a stage's stack (its versions are copies of versions trained in another account), the chain
    crosses into `build_stack` — the stack that trained the version — at the copy's source version:
    its approval, every stage's change of it, and its pipeline execution, data and code.

    Raises:
        CliError: the starting point is unknown (with what was looked for).
    """
    env = stack.settings_environment()
    chain: dict[str, Any] = {}
    if inference_id:
        inference = find_inference(stack, inference_id, env["CAPTURE_BUCKET"], env.get("CAPTURE_PREFIX", "capture/"))
        chain["inference"] = inference
        at = datetime.fromisoformat(str(inference["inference_time"]).replace("Z", "+00:00")).astimezone(UTC)
        serving = _serving_at(stack, inference["endpoint"], at)
        chain["endpoint_config"] = {
            "endpoint": inference["endpoint"],
            "name": serving["endpoint_config"],
            "live_since": serving["live_since"],
        }
        arn = serving["model_package_arn"]
    elif endpoint or (not model_version):
        endpoints = ", ".join(line.endpoint_name for line in stack.lines())
        if not endpoint and len(stack.lines()) > 1:
            raise CliError(f"stack {stack.name} has an endpoint per model line ({endpoints}): pass --endpoint NAME")
        name = endpoint or stack.line().endpoint_name
        sm = stack.client("sagemaker")
        try:
            described = sm.describe_endpoint(EndpointName=name)
        except sm.exceptions.ClientError:
            raise CliError(
                f"no endpoint {name!r} in stack {stack.name} (its endpoints: {endpoints}; "
                "`closedloop status` shows whether a version is deployed)"
            ) from None
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
        from closedloop_ops.approvals import resolve_version

        arn = resolve_version(stack, str(model_version))
    _follow_version(stack, arn, chain, model_version, build_stack)
    return chain


def stage_changes(build_stack: StackRef, source_arn: str) -> list[dict[str, Any]]:
    """What every stage made of a version, as the build account's ledger recorded it (route 8), oldest first."""
    changes = [d for d in decisions_for(build_stack, source_arn) if d.route == "stage-change"]
    return [
        {
            "stage": d.details.get("stage") or d.action.removeprefix("stage:"),
            "change": d.result,
            "account": d.details.get("account"),
            "model_package_arn": d.details.get("model_package_arn"),
            "approval": d.details.get("approval") or None,
            "status": d.details.get("status") or None,
            "at": d.at.isoformat(),
            "reason": d.reason,
        }
        for d in changes
    ]


def _follow_version(
    stack: StackRef, arn: str, chain: dict[str, Any], model_version: str | None, build_stack: StackRef | None = None
) -> None:
    """Add the model version and everything behind it to `chain` (across into `build_stack` for a stage's copy)."""
    sm = stack.client("sagemaker")
    try:
        package = sm.describe_model_package(ModelPackageName=arn)
    except sm.exceptions.ClientError:
        group = arn.split(":model-package/", 1)[-1].rsplit("/", 1)[0]
        raise CliError(f"no model version {model_version or arn!r} in group {group}") from None
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
    status = str(package.get("ModelApprovalStatus") or "")
    # The policy decided the current status only if the registry still holds the gate's own flip:
    # the gate's result, with its decision id in the description. A person's later flip is theirs.
    by_policy = (
        bool(gate)
        and gate[-1].details.get("mode") == "auto"
        and gate[-1].result == status.lower()
        and f"[decision {gate[-1].decision_id}]" in str(package.get("ApprovalDescription") or "")
    )
    verdicts = [d for d in history if d.route == "model-approval"]
    refused = verdicts[-1] if verdicts and verdicts[-1].result == "refused" else None
    if by_policy:
        decided_by = f"policy {gate[-1].details.get('policy_version')} (auto mode)"
    elif refused is not None:
        decided_by = f"{identity or 'unknown'} (the rollout refused to act on it: {refused.reason})"
    else:
        decided_by = f"approver {identity or 'unknown'}"
    chain["approval_decision"] = {
        "status": package.get("ModelApprovalStatus"),
        "by": identity or "unknown",
        "policy_version": gate[-1].details.get("policy_version") if gate else None,
        "decided_by": decided_by,
        "when": (gate[-1].at.isoformat() if by_policy else _iso(package.get("LastModifiedTime"))),
        "why": package.get("ApprovalDescription", ""),
        "numbers": gate[-1].details.get("numbers") if gate else None,
        "gate": (
            {"result": gate[-1].result, "mode": gate[-1].details.get("mode"), "at": gate[-1].at.isoformat()}
            if gate
            else None
        ),
        "rollout_verdict": (
            {
                "action": verdicts[-1].action,
                "result": verdicts[-1].result,
                "reason": verdicts[-1].reason,
                "at": verdicts[-1].at.isoformat(),
            }
            if verdicts
            else None
        ),
    }
    outcomes = [d for d in history if d.action == "record_outcome"]
    if outcomes:
        chain["deployment"] = {
            "outcome": outcomes[-1].result,
            "at": outcomes[-1].at.isoformat(),
            "endpoint_config": outcomes[-1].details.get("endpoint_config"),
        }
    if metadata.get(keys.SOURCE_PACKAGE):  # a stage's copy: the rest is in the account that trained it
        _cross_into_build_account(chain, metadata, build_stack)
        return
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
            execution["started"] = _iso(described_execution.get("CreationTime"))
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
    manifest = _s3_json(stack, manifest_uri) if manifest_uri.startswith("s3://") else None
    if manifest is None and manifest_uri:
        chain["prepared_data"]["problem"] = "the prepared manifest could not be read"
    if manifest is not None:
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


def _cross_into_build_account(chain: dict[str, Any], metadata: dict[str, str], build_stack: StackRef | None) -> None:
    """A stage's copy: its source version, every stage's change of it, and its training, from `build_stack`."""
    source_arn = metadata[keys.SOURCE_PACKAGE]
    chain["model_version"].update(source=source_arn, promoted_from=metadata.get(keys.PROMOTED_FROM))
    if build_stack is None:
        chain["build_account"] = {
            "account": metadata.get(keys.SOURCE_ACCOUNT),
            "problem": "the version was trained in another account: trace it with that account's stack too",
        }
        return
    built: dict[str, Any] = {}
    _follow_version(build_stack, source_arn, built, None)
    chain["source_version"] = built["model_version"]
    chain["source_approval_decision"] = built["approval_decision"]
    chain["stages"] = stage_changes(build_stack, source_arn)
    for key in ("pipeline_execution", "prepared_data", "raw_objects", "code_version"):
        chain[key] = built[key]


def _stage_lines(chain: dict[str, Any]) -> list[str]:
    """The stage part of the text chain: where the stage's copy came from and what each stage made of it."""
    if "build_account" in chain:
        return [f"← trained in account {chain['build_account']['account']}: {chain['build_account']['problem']}"]
    if "source_version" not in chain:
        return []
    source, approval = chain["source_version"], chain["source_approval_decision"]
    lines = [
        f"← promoted from {chain['model_version'].get('promoted_from') or '?'}; trained as "
        f"{source['group']}/{source['version']} in account {str(source['arn']).split(':')[4]}",
        f"    approval there: {approval['status']} by {approval['decided_by']} at {approval.get('when')}",
    ]
    for change in chain.get("stages", []):
        lines.append(
            f"    stage {change['stage']} ({change['account']}): {change['change']} at {change['at']}"
            + (f", released by {change['approval']}" if change.get("approval") else "")
        )
    return lines


def _short(arn: Any) -> str:
    return str(arn or "").rsplit("/", 1)[-1] or "?"


def format_text(chain: dict[str, Any]) -> str:
    """The chain as a reader follows it: from the prediction back to the raw data and the code."""
    lines: list[str] = []
    if "inference" in chain:
        inference = chain["inference"]
        lines.append(f"inference {inference['inference_id']} at {inference['inference_time']}")
        lines.append(f"    captured in {inference['capture_file']}")
    if "endpoint_config" in chain:
        config = chain["endpoint_config"]
        since = f", live since {config['live_since']}" if config.get("live_since") else ""
        status = f", {config['status']}" if config.get("status") else ""
        lines.append(f"← endpoint {config['endpoint']}, config {config.get('name')}{status}{since}")
    model = chain["model_version"]
    lines.append(f"← model version {model['group']}/{model['version']} ({model['status']})")
    lines.append(f"    model data {model.get('model_data')}")
    approval = chain["approval_decision"]
    lines.append(f"← approval: {approval['status']} by {approval['decided_by']} at {approval.get('when')}")
    if approval.get("why"):
        lines.append(f"    why: {approval['why']}")
    verdict = approval.get("rollout_verdict")
    if verdict:
        lines.append(f"    rollout: {verdict['action']} → {verdict['result']}" + _reason(verdict.get("reason")))
    if "deployment" in chain:
        deployment = chain["deployment"]
        lines.append(
            f"    deployment: {deployment['outcome']} at {deployment['at']} ({deployment.get('endpoint_config')})"
        )
    lines += _stage_lines(chain)
    if "build_account" in chain:
        return "\n".join(lines)
    execution = chain["pipeline_execution"]
    lines.append(
        f"← pipeline execution {_short(execution.get('arn'))} ({execution.get('status', 'unknown')}, "
        f"started {execution.get('started')})"
    )
    lines.append(f"    trigger {execution.get('trigger')}: {execution.get('trigger_reason')}")
    prepared = chain["prepared_data"]
    rows = f", {prepared['rows']} rows" if prepared.get("rows") is not None else ""
    policy = prepared.get("policy") or {}
    policy_text = f", PII policy {policy.get('dataset')}/{policy.get('version')}" if policy else ""
    lines.append(f"← prepared data: run {prepared.get('prep_run_id')} of {prepared.get('dataset')}{rows}{policy_text}")
    lines.append(f"    manifest {prepared.get('manifest')}")
    if prepared.get("pii_report"):
        lines.append(f"    PII report {prepared['pii_report']}")
    if prepared.get("problem"):
        lines.append(f"    {prepared['problem']}")
    raw = chain.get("raw_objects", [])
    lines.append(f"← raw objects ({len(raw)})")
    lines.extend(f"    s3://{o['bucket']}/{o['key']} version {o.get('version_id')} ({o.get('status')})" for o in raw)
    code = chain.get("code_version", {})
    lines.append(f"← code {code.get('model')}")
    if code.get("preparation_script_sha256"):
        lines.append(f"    preparation script sha256 {code['preparation_script_sha256']}")
    return "\n".join(lines)


def _reason(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def _label(text: str) -> str:
    """A Graphviz label: quotes and backslashes escaped, newlines as `\\n`."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def graph(chain: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The chain as nodes (name, label) and edges, newest first: what `to_dot` writes and the report draws.

    Label lines are shortened at word boundaries (`closedloop_ops.text.shorten`), never inside a number.
    """
    nodes: list[tuple[str, str]] = []
    if "inference" in chain:
        inference = chain["inference"]
        nodes.append(("inference", f"inference {inference['inference_id']}\n{inference['inference_time']}"))
    if "endpoint_config" in chain:
        config = chain["endpoint_config"]
        nodes.append(("config", f"endpoint {config.get('endpoint')}\nconfig {config.get('name')}"))
    model = chain["model_version"]
    nodes.append(("model", f"model version {model['group']}/{model['version']}\n{model['status']}"))
    approval = chain["approval_decision"]
    nodes.append(("approval", f"approval: {approval['status']}\n{approval['decided_by']}\n{approval.get('when')}"))
    execution = chain["pipeline_execution"]
    nodes.append(
        (
            "execution",
            f"pipeline execution {_short(execution.get('arn'))}\n"
            + shorten(f"trigger {execution.get('trigger')}: {execution.get('trigger_reason')}", LABEL_WIDTH),
        )
    )
    prepared = chain["prepared_data"]
    nodes.append(("prepared", f"prepared data\nrun {prepared.get('prep_run_id')} ({prepared.get('rows')} rows)"))
    raws = chain.get("raw_objects", [])[:20]
    nodes += [(f"raw{i}", f"{raw['key']}\nversion {raw.get('version_id')}") for i, raw in enumerate(raws)]
    nodes.append(("code", f"code\n{shorten(str(chain.get('code_version', {}).get('model')), 120)}"))
    order = [n for n, _ in nodes if not n.startswith("raw") and n != "code"]
    edges = list(itertools.pairwise(order))
    edges += [("prepared", n) for n, _ in nodes if n.startswith("raw")]
    edges.append(("execution", "code"))
    return nodes, edges


def to_dot(chain: dict[str, Any]) -> str:
    """The chain as a Graphviz digraph (`closedloop lineage --format dot | dot -Tsvg > lineage.svg`)."""
    nodes, edges = graph(chain)
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    lines += [f'  {name} [label="{_label(label)}"];' for name, label in nodes]
    lines += [f"  {a} -> {b};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines)
