"""The approval policy: a pure function from a model version's evidence to approve-or-reject.

No I/O here: `Evidence` is gathered elsewhere (`approval.evidence`), and `ApprovalPolicy.evaluate`
returns every reason to reject (not just the first) with every number it used, so the decision
can be written into the model package's `ApprovalDescription` and the ledger and be re-checked by
anyone later. Missing evidence is a reason to reject, never a pass.

The policy is versioned (`POLICY_VERSION`): change the rules, change the version, and the
recorded decisions say which rules made them. docs/training.md holds the table of reasons.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from closedloop.model import Model
from closedloop.prep.prepare import is_clean
from closedloop.settings import Settings

POLICY_VERSION = "approval-policy/1"
MAX_DESCRIPTION = 1024

Number = float | int | str | bool | None

RejectionCode = Literal[
    "evaluation-missing",
    "metric-missing",
    "auc-below-minimum",
    "f1-below-minimum",
    "accuracy-below-minimum",
    "not-better-than-majority",
    "champion-evidence-missing",
    "worse-than-champion",
    "older-than-champion",
    "bias-missing",
    "bias-metric-missing",
    "disparate-impact-out-of-range",
    "dppl-above-maximum",
    "pii-report-missing",
    "pii-not-clean",
]


class Quality(Model):
    """From `evaluation.json` (`closedloop.evaluation/1`)."""

    model_config = ConfigDict(frozen=True)

    auc: float | None = None
    f1: float | None = None
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    majority_class_accuracy: float | None = None
    rows_evaluated: int | None = None


class BiasFacet(Model):
    """One facet value of `bias.json` (Clarify's post-training format) against the advantaged group."""

    model_config = ConfigDict(frozen=True)

    attribute: str
    value: str
    di: float | None = None
    dppl: float | None = None


class Attribution(Model):
    """One feature's global attribution in Clarify's explainability report (`kernel_shap`, mean |SHAP|)."""

    model_config = ConfigDict(frozen=True)

    feature: str
    mean_abs_shap: float


class Champion(Model):
    """The version the candidate must not be (much) worse than: the live one, else the latest approved."""

    model_config = ConfigDict(frozen=True)

    model_package_arn: str
    version: int
    source: Literal["live", "latest-approved"]
    auc: float | None = None
    problem: str | None = None  # why its evidence could not be read


class Evidence(Model):
    """Everything the policy looks at for one candidate version (no data values)."""

    model_config = ConfigDict(frozen=True)

    model_package_arn: str
    version: int
    quality: Quality | None = None
    quality_problem: str | None = None
    bias: tuple[BiasFacet, ...] | None = None
    bias_problem: str | None = None
    # "clarify": Clarify's post-training analysis.json; "evaluate": the Evaluate step's bias.json
    # (versions registered before the pipeline ran Clarify)
    bias_source: Literal["clarify", "evaluate"] | None = None
    # Evidence for the approver, not a rule: the features by mean |SHAP|, largest first
    attributions: tuple[Attribution, ...] | None = None
    attributions_problem: str | None = None
    pii_clean: bool | None = None
    pii_undeclared_files: int | None = None
    pii_problem: str | None = None
    champion: Champion | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_definition_of_clean(cls, data: Any) -> Any:
        """`pii_clean` means what the PII report's `clean` means (`closedloop.prep.prepare.is_clean`):
        never clean next to a file with undeclared PII, so the decision and its numbers agree."""
        if isinstance(data, dict) and data.get("pii_clean") is True:
            files = data.get("pii_undeclared_files")
            if not is_clean(files if isinstance(files, int) else 0):
                return {**data, "pii_clean": False}
        return data


class Rejection(Model):
    model_config = ConfigDict(frozen=True)

    code: RejectionCode
    detail: str


class PolicyDecision(Model):
    """The verdict, every reason against, and every number used."""

    model_config = ConfigDict(frozen=True)

    policy_version: str = POLICY_VERSION
    approve: bool
    rejections: tuple[Rejection, ...] = ()
    numbers: dict[str, Number] = Field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.rejections]


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class ApprovalPolicy(Model):
    """Thresholds of the approval policy (template parameters, through `Settings`)."""

    model_config = ConfigDict(frozen=True)

    min_auc: float = Field(ge=0, le=1)
    min_f1: float = Field(ge=0, le=1)
    min_accuracy: float = Field(ge=0, le=1)
    champion_tolerance: float = Field(ge=0, le=1)
    min_disparate_impact: float = Field(gt=0, le=1)
    max_abs_dppl: float = Field(ge=0, le=1)
    version: str = POLICY_VERSION

    @classmethod
    def from_settings(cls, settings: Settings) -> ApprovalPolicy:
        return cls(
            min_auc=settings.min_auc,
            min_f1=settings.min_f1,
            min_accuracy=settings.min_accuracy,
            champion_tolerance=settings.champion_tolerance,
            min_disparate_impact=max(settings.min_disparate_impact, 1e-9),
            max_abs_dppl=settings.max_abs_dppl,
        )

    def evaluate(self, evidence: Evidence) -> PolicyDecision:
        """Approve only when every rule passes on evidence that is there; otherwise list every failure."""
        rejections: list[Rejection] = []
        numbers: dict[str, Number] = {
            "min_auc": self.min_auc,
            "min_f1": self.min_f1,
            "min_accuracy": self.min_accuracy,
            "champion_tolerance": self.champion_tolerance,
            "min_disparate_impact": self.min_disparate_impact,
            "max_abs_dppl": self.max_abs_dppl,
            "version": evidence.version,
        }
        self._quality(evidence, rejections, numbers)
        self._champion(evidence, rejections, numbers)
        self._bias(evidence, rejections, numbers)
        self._pii(evidence, rejections, numbers)
        return PolicyDecision(
            policy_version=self.version, approve=not rejections, rejections=tuple(rejections), numbers=numbers
        )

    # -- the rules ---------------------------------------------------------------------------------

    def _quality(self, evidence: Evidence, out: list[Rejection], numbers: dict[str, Number]) -> None:
        quality = evidence.quality
        if quality is None:
            out.append(Rejection(code="evaluation-missing", detail=evidence.quality_problem or "no evaluation report"))
            return
        numbers.update(
            auc=quality.auc,
            f1=quality.f1,
            accuracy=quality.accuracy,
            majority_class_accuracy=quality.majority_class_accuracy,
            rows_evaluated=quality.rows_evaluated,
        )
        for name, value, minimum, code in (
            ("auc", quality.auc, self.min_auc, "auc-below-minimum"),
            ("f1", quality.f1, self.min_f1, "f1-below-minimum"),
            ("accuracy", quality.accuracy, self.min_accuracy, "accuracy-below-minimum"),
        ):
            if value is None:
                out.append(Rejection(code="metric-missing", detail=f"{name} is missing from the evaluation"))
            elif value < minimum:
                out.append(Rejection(code=code, detail=f"{name} {_n(value)} < {minimum}"))  # type: ignore[arg-type]
        if quality.majority_class_accuracy is None:
            out.append(Rejection(code="metric-missing", detail="majority_class_accuracy is missing"))
        elif quality.accuracy is not None and quality.accuracy <= quality.majority_class_accuracy:
            out.append(
                Rejection(
                    code="not-better-than-majority",
                    detail=f"accuracy {_n(quality.accuracy)} <= majority class {_n(quality.majority_class_accuracy)}",
                )
            )

    def _champion(self, evidence: Evidence, out: list[Rejection], numbers: dict[str, Number]) -> None:
        champion = evidence.champion
        if champion is None:
            numbers["champion"] = "none"
            return
        numbers.update(champion_version=champion.version, champion_source=champion.source, champion_auc=champion.auc)
        if evidence.version < champion.version:
            out.append(
                Rejection(
                    code="older-than-champion",
                    detail=f"version {evidence.version} is older than the {champion.source} version {champion.version}",
                )
            )
        if champion.auc is None:
            out.append(
                Rejection(
                    code="champion-evidence-missing",
                    detail=f"{champion.source} version {champion.version}: {champion.problem or 'no AUC'}",
                )
            )
            return
        auc = evidence.quality.auc if evidence.quality else None
        if auc is not None and auc < champion.auc - self.champion_tolerance:
            out.append(
                Rejection(
                    code="worse-than-champion",
                    detail=f"auc {_n(auc)} < {champion.source} v{champion.version} auc {_n(champion.auc)} "
                    f"- tolerance {self.champion_tolerance}",
                )
            )

    def _bias(self, evidence: Evidence, out: list[Rejection], numbers: dict[str, Number]) -> None:
        if not evidence.bias:
            out.append(Rejection(code="bias-missing", detail=evidence.bias_problem or "no bias facets in the report"))
            return
        low, high = self.min_disparate_impact, 1 / self.min_disparate_impact
        for facet in evidence.bias:
            label = f"{facet.attribute}={facet.value}"
            numbers[f"di[{label}]"] = facet.di
            numbers[f"dppl[{label}]"] = facet.dppl
            if facet.di is None or facet.dppl is None:
                out.append(Rejection(code="bias-metric-missing", detail=f"{label}: DI or DPPL is missing"))
                continue
            if not low <= facet.di <= high:
                out.append(
                    Rejection(
                        code="disparate-impact-out-of-range",
                        detail=f"{label}: DI {_n(facet.di)} outside [{low:.4f}, {high:.4f}]",
                    )
                )
            if abs(facet.dppl) > self.max_abs_dppl:
                out.append(
                    Rejection(
                        code="dppl-above-maximum", detail=f"{label}: |DPPL| {_n(abs(facet.dppl))} > {self.max_abs_dppl}"
                    )
                )

    def _pii(self, evidence: Evidence, out: list[Rejection], numbers: dict[str, Number]) -> None:
        numbers.update(pii_clean=evidence.pii_clean, pii_undeclared_files=evidence.pii_undeclared_files)
        if evidence.pii_clean is None:
            out.append(Rejection(code="pii-report-missing", detail=evidence.pii_problem or "no PII report"))
        elif not evidence.pii_clean:
            out.append(
                Rejection(
                    code="pii-not-clean",
                    detail=f"the PII report is not clean ({evidence.pii_undeclared_files or 0} files with "
                    "undeclared PII)",
                )
            )


def describe(decision: PolicyDecision, *, mode: str, decision_id: str = "") -> str:
    """The `ApprovalDescription` (at most 1024 characters): verdict and policy first, then reasons and numbers.

    In manual mode the verdict is the policy's recommendation to the approver, not a decision.
    """
    if mode == "manual":
        verdict = "awaiting an approver; the policy recommends " + ("APPROVAL" if decision.approve else "REJECTION")
    else:
        verdict = "APPROVED" if decision.approve else "REJECTED"
    head = f"closedloop {decision.policy_version} ({mode}): {verdict}"
    reasons = "; ".join(f"{r.code}: {r.detail}" for r in decision.rejections)
    figures = " ".join(f"{key}={_fmt(value)}" for key, value in decision.numbers.items())
    tail = f" [decision {decision_id}]" if decision_id else ""
    text = head + (f". Reasons: {reasons}" if reasons else "") + f". Numbers: {figures}"
    if len(text) + len(tail) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - len(tail) - 1] + "…"
    return text + tail


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(value)
