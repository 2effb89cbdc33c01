"""The local Clarify checks' `analysis.json`: Clarify's documented shape, and figures by Clarify's definitions.

The documented sample (SageMaker Developer Guide, "Get the Analysis Results"):

    {"explanations": {"kernel_shap": {"label0": {"global_shap_values": {"feature_0": 0.0224, …},
                                                 "expected_value": 0.5082}}},
     "post_training_bias_metrics": {"label": "target", "label_value_or_threshold": "1",
                                    "facets": {"feature_2": [{"value_or_threshold": "1",
                                                              "metrics": [{"name": "DI", "description":
                                                                           "Disparate Impact (DI)", "value": …}]}]}}}
"""

from __future__ import annotations

import csv
import io
import json
import random
from types import SimpleNamespace
from typing import Any

import pytest

from closedloop.approval.evidence import parse_bias, parse_explainability
from closedloop_ops.local import clarify

HEADERS = ["approved", "income", "purpose", "noise", "group"]
WEIGHTS = {"income": 0.5, "noise": 0.0}
PURPOSE_EFFECT = 0.2


def rows(count: int = 240, seed: int = 3) -> list[list[str]]:
    """Group A: 2/3 of the rows, label 1 in 3/4 of them; group B: label 1 in 1/2 of them."""
    rng = random.Random(seed)
    made = []
    for i in range(count):
        group = "A" if i % 3 else "B"
        favourable = (i % 4 != 0) if group == "A" else (i % 2 == 0)
        made.append(
            [
                "1" if favourable else "0",
                f"{rng.uniform(0, 1):.4f}",
                rng.choice(["car", "home", "study"]),
                f"{rng.uniform(0, 1):.4f}",
                group,
            ]
        )
    return made


def as_csv(table: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table)
    return buffer.getvalue()


def config(methods: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": HEADERS,
        "label": "approved",
        "label_values_or_threshold": ["1"],
        "facet": [{"name_or_index": "group", "value_or_threshold": ["B"]}],
        "excluded_columns": ["group"],
        "methods": methods,
        **extra,
    }


def additive_model() -> clarify.ServedModel:
    """A served model whose score is additive in its features: 0.5·income + 0.2·[purpose = home] + 0·noise."""

    def score(_: Any, batch: list[list[str]]) -> list[float]:
        return [
            WEIGHTS["income"] * float(income) + (PURPOSE_EFFECT if purpose == "home" else 0.0) + 0 * float(noise)
            for income, purpose, noise in batch
        ]

    return clarify.ServedModel(serving=SimpleNamespace(score=score), loaded=SimpleNamespace())


def metric(section: dict[str, Any], name: str) -> float:
    (entry,) = section["facets"]["group"]
    return next(m["value"] for m in entry["metrics"] if m["name"] == name)


def test_pre_training_bias_has_the_documented_shape_and_clarify_s_ci_and_dpl() -> None:
    # Given 160 rows of group A (120 favourable) and 80 of group B (40 favourable)
    table = rows()
    document = clarify.analysis(
        clarify.DATA_BIAS, config({"pre_training_bias": {"methods": ["CI", "DPL"]}}), as_csv(table)
    )
    # Then the document is Clarify's: version and the one section, nested as documented
    assert set(document) == {"version", "pre_training_bias_metrics"}
    section = document["pre_training_bias_metrics"]
    assert (section["label"], section["label_value_or_threshold"]) == ("approved", "1")
    (entry,) = section["facets"]["group"]
    assert entry["value_or_threshold"] == "B"
    assert [(m["name"], m["description"]) for m in entry["metrics"]] == [
        ("CI", "Class Imbalance (CI)"),
        ("DPL", "Difference in Positive Proportions in Labels (DPL)"),
    ]
    # and the figures follow Clarify's definitions: CI = (na - nd)/(na + nd), DPL = qa - qd
    groups = [row[-1] for row in table]
    n_a, n_d = groups.count("A"), groups.count("B")
    q_a = sum(r[0] == "1" for r in table if r[-1] == "A") / n_a
    q_d = sum(r[0] == "1" for r in table if r[-1] == "B") / n_d
    assert metric(section, "CI") == pytest.approx((n_a - n_d) / (n_a + n_d))
    assert metric(section, "DPL") == pytest.approx(q_a - q_d)
    json.dumps(document, allow_nan=False)  # JSON as Clarify writes it


def test_post_training_bias_uses_the_labels_the_model_predicts_at_the_threshold() -> None:
    # Given a model whose score crosses 0.5 for some rows
    table = rows()
    model = additive_model()
    document = clarify.analysis(
        clarify.MODEL_BIAS,
        config({"post_training_bias": {"methods": "all"}}, probability_threshold=0.5),
        as_csv(table),
        model,
    )
    section = document["post_training_bias_metrics"]
    # Then DI and DPPL are those of the predicted labels (score >= 0.5), per Clarify's definitions
    scores = model.scores([[r[1], r[2], r[3]] for r in table])
    predicted = [s >= 0.5 for s in scores]

    def rate(group: str) -> float:
        members = [p for p, r in zip(predicted, table, strict=True) if r[-1] == group]
        return sum(members) / len(members)

    assert metric(section, "DI") == pytest.approx(rate("B") / rate("A"))
    assert metric(section, "DPPL") == pytest.approx(rate("A") - rate("B"))
    # every post-training metric of the SDK's list is reported (a value, or null with Clarify's "error")
    names = {m["name"] for m in section["facets"]["group"][0]["metrics"]}
    assert {"DPPL", "DI", "DCA", "DCR", "RD", "DAR", "DRR", "AD", "CDDPL", "TE", "FT"} <= names
    # and the gate reads it as it reads Clarify's report
    (facet,) = parse_bias(document)
    assert (facet.attribute, facet.value) == ("group", "B") and facet.di == pytest.approx(rate("B") / rate("A"))
    json.dumps(document, allow_nan=False)


def test_explanations_have_the_documented_shape_and_kernel_shap_s_attributions() -> None:
    # Given a model additive in its features (noise has weight 0)
    table = rows()
    shap_options = {"num_samples": 64, "num_clusters": 8, "agg_method": "mean_abs", "seed": 1}
    document = clarify.analysis(
        clarify.MODEL_EXPLAINABILITY, config({"shap": shap_options}), as_csv(table), additive_model()
    )
    # Then the document is Clarify's: explanations.kernel_shap.label0.{global_shap_values, expected_value}
    assert set(document) == {"version", "explanations"}
    label0 = document["explanations"]["kernel_shap"]["label0"]
    assert set(label0) == {"global_shap_values", "expected_value"}
    values = label0["global_shap_values"]
    # one value per feature the model reads: not the label, not the excluded facet
    assert list(values) == ["income", "purpose", "noise"]
    # a feature the model ignores gets nothing; the others, their share of the score's movement
    assert values["noise"] == pytest.approx(0, abs=1e-9)
    assert values["income"] > values["purpose"] > 0
    # for an additive model, SHAP of a feature is its term minus the term's baseline mean: income's
    # mean |SHAP| is 0.5 · mean |income - baseline mean| (about 0.5 · 0.25 for uniform incomes)
    assert values["income"] == pytest.approx(0.5 * 0.25, rel=0.25)
    assert 0.3 < label0["expected_value"] < 0.5
    assert [a.feature for a in parse_explainability(document)] == ["income", "purpose", "noise"]


def test_a_model_check_without_a_model_or_with_ragged_rows_is_refused() -> None:
    methods = {"post_training_bias": {"methods": "all"}}
    with pytest.raises(clarify.ClarifyCheckError, match="needs the model"):
        clarify.analysis(clarify.MODEL_BIAS, config(methods), as_csv(rows(12)))
    ragged = as_csv(rows(12)) + "1,0.5\n"
    with pytest.raises(clarify.ClarifyCheckError, match=r"rows of \[2, 5\] columns, the headers name 5"):
        clarify.analysis(clarify.DATA_BIAS, config(methods), ragged)
    with pytest.raises(clarify.ClarifyCheckError, match="check type"):
        clarify.analysis("MODEL_QUALITY", config(methods), as_csv(rows(12)))
