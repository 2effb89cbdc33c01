"""Names of the ledger's state items that more than one route reads or writes."""

from __future__ import annotations


def latest_prepared(model_group: str) -> str:
    """The newest prepared data of a model group: written when training starts on it (route 2),
    read when an alarm retrains on "the latest prepared data" (route 6).
    Values: prepared_manifest_uri, data_uri, prep_run_id, dataset, code_version."""
    return f"latest-prepared#{model_group}"


def endpoint_state(endpoint_name: str) -> str:
    """What is live on an endpoint (routes 4 and 5 write it; the drift monitor and the CLI read it).
    Values: live_model_package_arn, live_version, endpoint_config, previous_model_package_arn,
    status, updated_at."""
    return f"endpoint#{endpoint_name}"


def rolled_back(model_package_arn: str) -> str:
    """Marks a version that was rolled back: it is never redeployed automatically."""
    return f"rolled-back#{model_package_arn}"


def cooldown(model_group: str) -> str:
    """Retraining cooldown of a model group. Values: until (ISO time), reason, execution_arn."""
    return f"cooldown#{model_group}"


def capture_watermark(endpoint_name: str) -> str:
    """The drift monitor's position in an endpoint's data capture. Values: last_key, updated_at."""
    return f"watermark#{endpoint_name}"
