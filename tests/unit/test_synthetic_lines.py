"""The demo's synthetic data per model line: the line file's columns, learnable labels, fair by design."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from closedloop.line import load_line
from closedloop_ops import synthetic


@pytest.mark.parametrize("line", sorted(synthetic.DATASETS))
def test_each_dataset_has_its_line_files_columns_in_order_and_its_pii(line: str) -> None:
    # Given a line's file and the generator the demo uploads for it
    spec, dataset = load_line(line), synthetic.DATASETS[line]
    records = list(dataset.generate(50, seed=3))
    # Then its records have exactly the declared columns, in the file's order, and the CSV header says so
    assert dataset.columns == tuple(spec.columns) == tuple(records[0])
    assert synthetic.to_csv(records, dataset.columns).splitlines()[0] == ",".join(spec.columns)
    # And the PII columns are the ones the file declares as PII
    assert set(dataset.pii_columns) == {name for name, column in spec.columns.items() if column.pii}


def test_churn_values_keep_to_the_line_files_types_classes_and_ranges() -> None:
    spec = load_line("churn")
    records = list(synthetic.churn_rows(2000, seed=5))
    for name, column in spec.columns.items():
        values = [record[name] for record in records]
        if column.classes is not None:
            assert set(values) == set(column.classes), name  # every class occurs, no other value
        if column.type == "numeric":
            numbers = [float(v) for v in values]
            assert column.minimum is None or min(numbers) >= column.minimum, name
            assert column.maximum is None or max(numbers) <= column.maximum, name
            if column.decimals == 0:
                assert all(v.lstrip("-").isdigit() for v in values), name


def test_churn_pii_is_its_own_and_the_same_for_the_same_seed() -> None:
    churn = list(synthetic.churn_rows(500, seed=9))
    loans = list(synthetic.rows(500, seed=9))
    pii = synthetic.pii_values(churn, synthetic.CHURN_PII_COLUMNS)
    assert len(pii) > 1000
    assert not pii & synthetic.pii_values(loans)  # a value found in the output is one line's own leak
    assert list(synthetic.churn_rows(500, seed=9)) == churn


def test_renewal_is_learnable_and_seniors_renew_as_often_as_the_others() -> None:
    # Given two samples of subscriptions: one to learn from, one held out
    train, test = list(synthetic.churn_rows(3000, seed=21)), list(synthetic.churn_rows(3000, seed=22))
    numeric = ["tenure_months", "monthly_charges", "data_usage_gb", "support_calls"]
    categorical = ["contract", "payment_method"]

    def matrix(records: list[dict[str, str]]) -> np.ndarray:
        return np.array([[float(r[c]) for c in numeric] + [r[c] for c in categorical] for r in records], dtype=object)

    def target(records: list[dict[str, str]]) -> np.ndarray:
        return np.array([int(r["renewed"]) for r in records])

    model = Pipeline(
        [
            ("encode", ColumnTransformer([("n", StandardScaler(), [0, 1, 2, 3]), ("c", OneHotEncoder(), [4, 5])])),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    ).fit(matrix(train), target(train))
    # When the model trained without `senior` scores the held-out rows
    scores = model.predict_proba(matrix(test))[:, 1]
    # Then it ranks renewals well above the line's approval floor (min_auc 0.7)
    assert roc_auc_score(target(test), scores) > 0.85
    assert load_line("churn").approval.min_auc == 0.7
    # And both senior groups are predicted and labelled favourably at similar rates (DI >= 0.8, |DPPL| <= 0.1)
    senior = np.array([r["senior"] == "yes" for r in test])
    predicted = scores >= 0.5
    labelled = target(test) == 1
    for favourable in (predicted, labelled):
        seniors, others = favourable[senior].mean(), favourable[~senior].mean()
        assert abs(others - seniors) <= 0.05 and 0.9 <= seniors / others <= 1.1
    assert 0.3 <= senior.mean() <= 0.5
