"""The loans world's concept drift: the same drifted applicants, labelled by a new rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from closedloop_ops import synthetic

LABEL = "approved"
NUMERIC = [
    "age",
    "income",
    "loan_amount",
    "loan_term_months",
    "credit_history_years",
    "existing_debt",
    "late_payments",
    "employment_years",
]
CATEGORICAL = ["purpose", "home_ownership"]


def without_label(records: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in record.items() if k != LABEL} for record in records]


def approved_share(records: list[dict[str, str]]) -> float:
    return sum(record[LABEL] == "1" for record in records) / len(records)


def fitted(records: list[dict[str, str]]) -> Pipeline:
    """The training pipeline's model: scaled numbers and one-hot categories into a logistic regression."""
    encode = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(range(len(NUMERIC)))),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), [len(NUMERIC), len(NUMERIC) + 1]),
        ]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression(max_iter=1000))])
    return model.fit(matrix(records), [int(r[LABEL]) for r in records])


def matrix(records: list[dict[str, str]]) -> np.ndarray:
    return np.array([[float(r[c]) for c in NUMERIC] + [r[c] for c in CATEGORICAL] for r in records], dtype=object)


def auc(model: Pipeline, records: list[dict[str, str]]) -> float:
    return float(roc_auc_score([int(r[LABEL]) for r in records], model.predict_proba(matrix(records))[:, 1]))


def test_the_concept_drift_moves_the_applicants_like_the_strong_drift_and_changes_only_the_labels() -> None:
    # Given the same seed drawn once with a covariate shift and once with the concept drift
    shifted = list(synthetic.rows(2000, seed=31, drift=synthetic.STRONG_DRIFT))
    changed = list(synthetic.rows(2000, seed=31, drift=synthetic.CONCEPT_DRIFT))
    # Then the applicants are the same, value for value: the drift monitor sees the same shift
    assert without_label(changed) == without_label(shifted)
    # And the labels follow another rule: under the old rule few of them are approved, under the new about half
    assert sum(a[LABEL] != b[LABEL] for a, b in zip(shifted, changed, strict=True)) > 600
    assert approved_share(shifted) < 0.15 and 0.35 < approved_share(changed) < 0.65


def test_the_concept_drift_is_the_same_for_the_same_seed_and_another_for_another() -> None:
    # Given one sample of the changed world
    first = list(synthetic.rows(500, seed=41, drift=synthetic.CONCEPT_DRIFT, start=3000))
    # Then the same seed draws it again, label for label, and another seed draws other labels
    assert list(synthetic.rows(500, seed=41, drift=synthetic.CONCEPT_DRIFT, start=3000)) == first
    other = list(synthetic.rows(500, seed=42, drift=synthetic.CONCEPT_DRIFT, start=3000))
    assert [r[LABEL] for r in other] != [r[LABEL] for r in first]
    # And the applications are numbered from `start`
    assert first[0]["application_id"] == "APP-0003000"


def test_the_drift_s_rule_decides_the_labels_and_the_existing_drifts_keep_the_training_world_s() -> None:
    # Given the strong drift with a rule that approves everyone, and one that approves no one
    everyone = list(synthetic.rows(300, seed=5, drift=replace(synthetic.STRONG_DRIFT, approval=lambda _: 1.0)))
    no_one = list(synthetic.rows(300, seed=5, drift=replace(synthetic.STRONG_DRIFT, approval=lambda _: 0.0)))
    # Then the labels are the rule's, and the applicants are those of the strong drift
    assert approved_share(everyone) == 1.0 and approved_share(no_one) == 0.0
    assert without_label(everyone) == without_label(list(synthetic.rows(300, seed=5, drift=synthetic.STRONG_DRIFT)))
    # And a covariate shift (any Drift made without a rule) labels by the training world's rule
    for drift in (synthetic.NO_DRIFT, synthetic.STRONG_DRIFT, synthetic.Drift(income_factor=0.8)):
        assert drift.approval is synthetic.approval_probability
    assert synthetic.CONCEPT_DRIFT.approval is synthetic.guaranteed_approval_probability


def test_a_model_of_the_training_world_is_wrong_there_and_the_new_world_is_learnable() -> None:
    # Given a model trained on the training world, and one trained on labelled data of the changed world
    old = fitted(list(synthetic.rows(3000, seed=7)))
    new = fitted(list(synthetic.rows(3000, seed=404, drift=synthetic.CONCEPT_DRIFT)))
    # When both are scored on held-out applicants of the drifted population
    shifted_holdout = list(synthetic.rows(2000, seed=505, drift=synthetic.STRONG_DRIFT))
    changed_holdout = list(synthetic.rows(2000, seed=505, drift=synthetic.CONCEPT_DRIFT))
    # Then under a mere covariate shift the old model still ranks them well (why retraining on old data was idle)
    assert auc(old, shifted_holdout) > 0.85
    # And under the concept drift it is measurably wrong, and a model of the new world is right
    assert auc(old, changed_holdout) < 0.8
    assert auc(new, changed_holdout) > auc(old, changed_holdout) + 0.15
    assert auc(new, changed_holdout) > 0.9
