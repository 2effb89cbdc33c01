"""The approval gate's evidence: which version an execution registered, and what is known about it.

Read through the adapters: the registry (`approval.registry`), the pipeline's executions
(`training.pipeline`), the reports in S3 (`training.prepared.read_json`) and the ledger.

* The registered version: `ListPipelineExecutionSteps` — the RegisterModel step's metadata names
  the package ARN. Where that is not available (the step list is gone, or the API is not
  there), the newest packages of the group are searched for the one whose lineage metadata
  (`closedloop:pipeline-execution`) names the execution.
* The evidence: the reports the package's `ModelMetrics` point at — `evaluation.json`; the
  post-training bias report, Clarify's `analysis.json` (DI and DPPL per facet value), or the
  Evaluate step's `bias.json` for versions registered before the pipeline ran Clarify (the same
  section, `post_training_bias_metrics`); Clarify's explainability report, whose global SHAP values
  (mean |SHAP| per feature) the approver reads — and the PII report of its data (prepared
  manifest in the package's lineage → `pii_report_uri`), clean by the preparation script's own
  definition (`closedloop.prep.prepare.is_clean`). A report that is missing or unreadable becomes
  a *problem* in the evidence — the policy rejects on it (the explainability report is evidence
  for the approver, no rule: its absence rejects nothing); nothing here approves by default.
* The champion: the live version (`ledger_keys.endpoint_state`), else the newest Approved version
  of the group that was never rolled back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from closedloop import ledger_keys, lineage
from closedloop.approval.policy import Attribution, BiasFacet, Champion, Evidence, Quality
from closedloop.approval.registry import Candidate, GateRegistry, group_and_version
from closedloop.errors import ClosedloopError, MissingEvidenceError
from closedloop.ledger import Ledger
from closedloop.prep.prepare import is_clean
from closedloop.training.pipeline import TrainingPipeline
from closedloop.training.prepared import read_json

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

# Candidate and group_and_version: the registry's, kept importable here
__all__ = [
    "Candidate",
    "EvidenceReader",
    "bias_source",
    "group_and_version",
    "parse_bias",
    "parse_evaluation",
    "parse_explainability",
]

EVALUATION_SCHEMA = "closedloop.evaluation/1"
CLARIFY_REPORT = "analysis.json"  # the file every Clarify processing job writes
TOP_ATTRIBUTIONS = 10
SEARCHED_PACKAGES = 25
APPROVED_SCANNED = 50


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_evaluation(document: dict[str, Any]) -> Quality:
    """`evaluation.json` → quality figures (a missing figure stays None: the policy rejects on it).

    Raises:
        ValueError: not a `closedloop.evaluation/1` document.
    """
    if document.get("schema") != EVALUATION_SCHEMA:
        raise ValueError(f"not a {EVALUATION_SCHEMA} document")
    metrics = document.get("binary_classification_metrics")
    if not isinstance(metrics, dict):
        raise ValueError("no binary_classification_metrics")

    def metric(name: str) -> float | None:
        entry = metrics.get(name)
        return _number(entry.get("value")) if isinstance(entry, dict) else None

    rows = document.get("rows_evaluated")
    return Quality(
        auc=metric("auc"),
        f1=metric("f1"),
        accuracy=metric("accuracy"),
        precision=metric("precision"),
        recall=metric("recall"),
        majority_class_accuracy=_number(document.get("majority_class_accuracy")),
        rows_evaluated=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
    )


def parse_bias(document: dict[str, Any]) -> tuple[BiasFacet, ...]:
    """Clarify's post-training bias report → DI and DPPL per facet value.

    Raises:
        ValueError: no `post_training_bias_metrics.facets`, or no facet value in it.
    """
    section = document.get("post_training_bias_metrics")
    facets = section.get("facets") if isinstance(section, dict) else None
    if not isinstance(facets, dict):
        raise ValueError("no post_training_bias_metrics.facets")
    found: list[BiasFacet] = []
    for attribute, entries in facets.items():
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            values = {
                str(m.get("name")): _number(m.get("value")) for m in entry.get("metrics", []) if isinstance(m, dict)
            }
            found.append(
                BiasFacet(
                    attribute=str(attribute),
                    value=str(entry.get("value_or_threshold")),
                    di=values.get("DI"),
                    dppl=values.get("DPPL"),
                )
            )
    if not found:
        raise ValueError("the bias report lists no facet value")
    return tuple(found)


def parse_explainability(document: dict[str, Any]) -> tuple[Attribution, ...]:
    """Clarify's explainability report → the features by global SHAP value (mean |SHAP|), largest first.

    Reads `explanations.kernel_shap.<label>.global_shap_values` (`label0` for a model with one score).

    Raises:
        ValueError: no `explanations.kernel_shap`, or no feature with a number in it.
    """
    explanations = document.get("explanations")
    kernel = explanations.get("kernel_shap") if isinstance(explanations, dict) else None
    if not isinstance(kernel, dict) or not kernel:
        raise ValueError("no explanations.kernel_shap")
    entry = kernel.get("label0", kernel[sorted(kernel)[0]])
    values = entry.get("global_shap_values") if isinstance(entry, dict) else None
    if not isinstance(values, dict):
        raise ValueError("no global_shap_values")
    found = [
        Attribution(feature=str(name), mean_abs_shap=abs(number))
        for name, value in values.items()
        if (number := _number(value)) is not None
    ]
    if not found:
        raise ValueError("the explainability report lists no feature")
    return tuple(sorted(found, key=lambda a: (-a.mean_abs_shap, a.feature)))


def bias_source(uri: str | None) -> str | None:
    """ "clarify" for a Clarify report (`…/analysis.json`), "evaluate" for the Evaluate step's `bias.json`."""
    if not uri:
        return None
    return "clarify" if uri.rsplit("/", 1)[-1] == CLARIFY_REPORT else "evaluate"


class EvidenceReader:
    """Reads the registry, the reports in S3 and the ledger's live-version state. Clients come in."""

    def __init__(
        self, *, s3: S3Client, sagemaker: SageMakerClient, ledger: Ledger, model_group: str, endpoint_name: str
    ) -> None:
        self._s3 = s3
        self._registry = GateRegistry(sagemaker)
        self._pipeline = TrainingPipeline(sagemaker)
        self._ledger = ledger
        self._group = model_group
        self._endpoint = endpoint_name

    # -- which version ------------------------------------------------------------------------------

    def registered_by(self, execution_arn: str) -> tuple[str | None, str]:
        """The package ARN the execution registered, and how it was found ("steps", "metadata", "none").

        Raises:
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        from_steps = self._pipeline.registered_package(execution_arn)
        if from_steps:
            return from_steps, "steps"
        from_metadata = self._from_metadata(execution_arn)
        return (from_metadata, "metadata") if from_metadata else (None, "none")

    def _from_metadata(self, execution_arn: str) -> str | None:
        for arn in self._registry.newest(self._group, limit=SEARCHED_PACKAGES):
            try:
                candidate = self.describe(arn)
            except MissingEvidenceError:
                continue
            if candidate.execution_arn == execution_arn:
                return candidate.arn
        return None

    def describe(self, arn: str) -> Candidate:
        """The registry's description of a versioned package.

        Raises:
            MissingEvidenceError: no such package, or not a versioned package ARN.
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        if group_and_version(arn) is None:
            raise MissingEvidenceError("not a versioned model package ARN", model_package_arn=arn)
        candidate = self._registry.describe(arn)
        if candidate is None:
            raise MissingEvidenceError("the model package does not exist", model_package_arn=arn)
        return candidate

    # -- the evidence -------------------------------------------------------------------------------

    def evidence(self, candidate: Candidate) -> Evidence:
        """Quality, bias, PII cleanliness and the champion for a candidate; missing pieces become problems.

        Raises:
            AwsServiceError / ThrottledError: a read failed in a way a retry may fix.
        """
        quality, quality_problem = self._read(candidate.evaluation_uri, "evaluation report", parse_evaluation)
        bias, bias_problem = self._read(candidate.bias_uri, "bias report", parse_bias)
        attributions, attributions_problem = self._read(
            candidate.explainability_uri, "explainability report", parse_explainability
        )
        pii_clean, pii_files, pii_problem = self._pii(candidate)
        return Evidence(
            model_package_arn=candidate.arn,
            version=candidate.version,
            quality=quality,
            quality_problem=quality_problem,
            bias=bias,
            bias_problem=bias_problem,
            bias_source=bias_source(candidate.bias_uri),
            attributions=attributions[:TOP_ATTRIBUTIONS] if attributions else None,
            attributions_problem=attributions_problem,
            pii_clean=pii_clean,
            pii_undeclared_files=pii_files,
            pii_problem=pii_problem,
            champion=self.champion(candidate),
        )

    def _read(self, uri: str | None, what: str, parse: Any) -> tuple[Any, str | None]:
        if not uri:
            return None, f"the package names no {what}"
        try:
            return parse(read_json(self._s3, uri, what)), None
        except MissingEvidenceError as exc:
            return None, exc.message
        except (ValueError, TypeError, AttributeError) as exc:
            return None, f"the {what} is malformed: {exc}"
        except ClosedloopError as exc:
            if exc.retryable:
                raise
            return None, f"the {what} could not be read: {exc.context.get('aws_error') or exc.message}"

    def _pii(self, candidate: Candidate) -> tuple[bool | None, int | None, str | None]:
        manifest_uri = candidate.metadata.get(lineage.PREPARED_MANIFEST)
        if not manifest_uri or not manifest_uri.startswith("s3://"):
            return None, None, "the package's lineage names no prepared manifest"
        manifest, problem = self._read(manifest_uri, "prepared manifest", lambda doc: doc)
        if manifest is None:
            return None, None, problem
        report, problem = self._read(manifest.get("pii_report_uri"), "PII report", lambda doc: doc)
        if report is None:
            return None, None, problem
        clean, files = report.get("clean"), report.get("undeclared_pii_files")
        if not isinstance(clean, bool) or not isinstance(files, int) or isinstance(files, bool) or files < 0:
            return None, None, "the PII report has no clean / undeclared_pii_files"
        # The one definition (the script's own): a report written before it, saying clean next to
        # files with undeclared PII, is read as not clean.
        return clean and is_clean(files), files, None

    def champion(self, candidate: Candidate) -> Champion | None:
        """The live version of the endpoint, else the newest Approved version never rolled back."""
        state = self._ledger.get_state(ledger_keys.endpoint_state(self._endpoint)) or {}
        live = str(state.get("live_model_package_arn") or "")
        if live and live != candidate.arn and (group_and_version(live) or ("", 0))[0] == candidate.group:
            return self._champion_from(live, "live")
        for arn in self._registry.newest(candidate.group, limit=APPROVED_SCANNED, approved_only=True):
            if arn == candidate.arn or self._ledger.get_state(ledger_keys.rolled_back(arn)) is not None:
                continue
            return self._champion_from(arn, "latest-approved")
        return None

    def _champion_from(self, arn: str, source: str) -> Champion:
        parsed = group_and_version(arn) or ("", 0)
        try:
            described = self.describe(arn)
        except MissingEvidenceError as exc:
            return Champion(model_package_arn=arn, version=parsed[1], source=source, problem=exc.message)  # type: ignore[arg-type]
        quality, problem = self._read(described.evaluation_uri, "champion's evaluation report", parse_evaluation)
        return Champion(
            model_package_arn=arn,
            version=described.version,
            source=source,  # type: ignore[arg-type]
            auc=quality.auc if quality else None,
            problem=problem if quality is None else (None if quality.auc is not None else "the report has no AUC"),
        )
