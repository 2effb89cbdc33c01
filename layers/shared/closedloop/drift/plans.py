"""The live model's drift plan, built once per warm container for the same evidence files.

Every run reads the baseline and bias report again (a new version brings new files); only when
their bytes are those of a plan already built is the parsing and preparing skipped.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import ValidationError

from closedloop.drift.baseline import Baseline, BiasReport
from closedloop.drift.evidence import EvidenceFiles
from closedloop.drift.live import LiveModel
from closedloop.drift.reasons import NotMeasurable, problem
from closedloop.drift.sketch import DriftPlan
from closedloop.observability import logger

# Drift plans by the digests of (baseline, bias report): (plan, why the bias report was not used).
_PLANS: dict[tuple[str, str], tuple[DriftPlan, str]] = {}
PLANS_KEPT = 4


def drift_plan(live: LiveModel, files: EvidenceFiles) -> DriftPlan:
    """The plan that measures traffic against the live model's baseline (and bias report, if usable).

    A bias report that is missing or unusable only costs a warning: the baseline's DPPL is then
    the bias reference.

    Raises:
        NotMeasurable: the baseline does not exist or is unusable.
        InvalidEventError: an evidence location is not an s3:// URI.
        ClosedloopError: S3 could not be read.
    """
    baseline_bytes = files.read(live.baseline_uri)
    if baseline_bytes is None:
        raise _missing(live.baseline_uri)
    bias_bytes, bias_problem = None, ""
    if live.bias_report_uri:
        bias_bytes = files.read(live.bias_report_uri)
        if bias_bytes is None:
            bias_problem = problem(_missing(live.bias_report_uri))
    key = (hashlib.sha256(baseline_bytes).hexdigest(), hashlib.sha256(bias_bytes or b"").hexdigest())
    if key not in _PLANS:
        _PLANS[key] = _build_plan(live, baseline_bytes, bias_bytes)
        while len(_PLANS) > PLANS_KEPT:
            _PLANS.pop(next(iter(_PLANS)))
    plan, parse_problem = _PLANS[key]
    if bias_problem or parse_problem:
        logger.warning(
            "bias report unusable; the baseline's DPPL is the reference", error=bias_problem or parse_problem
        )
    return plan


def _missing(uri: str) -> NotMeasurable:
    return NotMeasurable("no-baseline", f"{uri} does not exist")


def _build_plan(live: LiveModel, baseline_bytes: bytes, bias_bytes: bytes | None) -> tuple[DriftPlan, str]:
    """Parse the evidence files and prepare the plan.

    Raises:
        NotMeasurable: the baseline is unusable (a bias report that is not only costs the warning).
    """
    try:
        baseline = Baseline.model_validate(json.loads(baseline_bytes))
    except (ValueError, ValidationError) as exc:
        raise NotMeasurable("invalid-baseline", f"baseline {live.baseline_uri} is unusable: {problem(exc)}") from None
    bias_report, parse_problem = None, ""
    if bias_bytes is not None:
        try:
            bias_report = BiasReport.model_validate(json.loads(bias_bytes))
        except (ValueError, ValidationError) as exc:
            parse_problem = problem(exc)
    return DriftPlan(baseline, bias_report), parse_problem
