"""What is live: the endpoint's model package, its evidence files and where its traffic is captured.

Endpoint (must exist and serve) → endpoint config → its `closedloop:model-package` tag (or the
rollout's record of that very config) → the model package's `DriftCheckBaselines` (baseline.json;
`Explainability`, when the version has one) and `ModelMetrics.Bias.PostTrainingReport` (bias.json).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict

from closedloop import ledger_keys, lineage
from closedloop.drift.reasons import NotMeasurable
from closedloop.drift.serving import Serving
from closedloop.ledger import Ledger
from closedloop.model import Model
from closedloop.s3uri import split_s3_uri
from closedloop.settings import Settings

LIVE_STATUSES = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack"})


class LiveModel(Model):
    """What the endpoint serves, and where its evidence and captured traffic are."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    endpoint_config: str
    model_package_arn: str
    capture_bucket: str
    capture_root: str  # "<prefix>/<endpoint>/": variants are the next level
    baseline_uri: str
    bias_report_uri: str | None = None
    explainability_uri: str | None = None  # DriftCheckBaselines.Explainability.Constraints (analysis.json)
    explainability_config_uri: str | None = None  # DriftCheckBaselines.Explainability.ConfigFile
    serving_since: datetime | None = None


def find_live_model(serving: Serving, ledger: Ledger, settings: Settings) -> LiveModel:
    """The endpoint's live model package and its evidence.

    Raises:
        NotMeasurable: no endpoint, not serving, capture off, no package or no baseline.
        InvalidEventError: the endpoint captures to something that is not an s3:// URI.
        ClosedloopError: a SageMaker call failed.
    """
    endpoint = settings.endpoint_name
    described = serving.endpoint()
    if described is None:
        raise NotMeasurable("no-endpoint", f"endpoint {endpoint} does not exist")
    if described.status not in LIVE_STATUSES:
        raise NotMeasurable("endpoint-not-live", f"endpoint {endpoint} is {described.status}")
    if not described.capture_enabled:
        raise NotMeasurable("capture-disabled", f"endpoint {endpoint} does not capture data")
    bucket, root = capture_location(described.capture_destination, settings)
    config_name = described.config_name
    package_arn = serving.tagged_package(config_name) or _recorded_package(ledger, endpoint, config_name)
    if package_arn is None:
        raise NotMeasurable(
            "unknown-model", f"endpoint config {config_name} names no model package ({lineage.MODEL_PACKAGE} tag)"
        )
    evidence = serving.evidence(package_arn)
    if not evidence.baseline_uri:
        raise NotMeasurable("no-baseline", f"model package {package_arn} has no drift baseline")
    return LiveModel(
        endpoint=endpoint,
        endpoint_config=config_name,
        model_package_arn=package_arn,
        capture_bucket=bucket,
        capture_root=root,
        baseline_uri=evidence.baseline_uri,
        bias_report_uri=evidence.bias_report_uri,
        explainability_uri=evidence.explainability_uri,
        explainability_config_uri=evidence.explainability_config_uri,
        serving_since=described.serving_since,
    )


def capture_location(destination: str | None, settings: Settings) -> tuple[str, str]:
    """The capture bucket and the key prefix of the endpoint's files in it (the settings' without a destination).

    Raises:
        InvalidEventError: the destination is not an s3:// URI.
    """
    if destination:
        bucket, prefix = split_s3_uri(destination.rstrip("/") + "/")
    else:
        bucket, prefix = settings.capture_bucket, settings.capture_prefix
    prefix = prefix.strip("/")
    endpoint = settings.endpoint_name
    return bucket, f"{prefix}/{endpoint}/" if prefix else f"{endpoint}/"


def _recorded_package(ledger: Ledger, endpoint: str, config_name: str) -> str | None:
    """The rollout's record of what is live, when it is about this very endpoint config."""
    state = ledger.get_state(ledger_keys.endpoint_state(endpoint)) or {}
    if state.get("endpoint_config") == config_name and state.get("live_model_package_arn"):
        return str(state["live_model_package_arn"])
    return None
