"""Synthetic, seeded datasets with PII for the model lines, generated in code (no downloads).

`rows`: loan applications, the columns of `closedloop/lines/loans.json`: customer PII (names,
addresses, e-mails, phone numbers, bank accounts as IBANs, Luhn-valid card numbers), loan features,
a protected group attribute and the approval label. The label comes from a fixed logistic model of
the features, so a trained model can learn it; group B is approved slightly less often at equal
features, so the bias figures are not trivially zero. `drift` shifts the feature distributions for
drift scenarios; `CONCEPT_DRIFT` also changes the rule behind the label (a concept drift), so a model
of the training world is wrong there, not only far from home.

`churn_rows`: telecom subscriptions, the columns of `closedloop/lines/churn.json` in that order:
subscriber PII (names, e-mails, phone numbers, none shared with the loans), usage and contract
features, the protected attribute `senior` and the label `renewed`, again from a fixed logistic
model of the features. `senior` is drawn independently of everything else, so both groups renew
at the same rate in expectation and a model trained on the features treats them alike.

`DATASETS` names each line's generator, columns and PII columns.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

COLUMNS = [
    "application_id",
    "full_name",
    "address",
    "email",
    "phone",
    "bank_account",
    "card_number",
    "age",
    "income",
    "loan_amount",
    "loan_term_months",
    "credit_history_years",
    "existing_debt",
    "late_payments",
    "employment_years",
    "purpose",
    "home_ownership",
    "notes",
    "group",
    "approved",
]
PII_COLUMNS = ("full_name", "address", "email", "phone", "bank_account", "card_number")
FEATURES = [c for c in COLUMNS if c not in (*PII_COLUMNS, "application_id", "notes", "approved")]

_FIRST = [
    "Ada",
    "Bram",
    "Chen",
    "Dalia",
    "Emeka",
    "Freya",
    "Goran",
    "Hana",
    "Ivo",
    "Jun",
    "Kemal",
    "Lena",
    "Mateo",
    "Nia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rafael",
    "Sofia",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zora",
]
_LAST = [
    "Abara",
    "Bergstrom",
    "Castellanos",
    "Dimitrov",
    "Eriksen",
    "Fontaine",
    "Guerrero",
    "Haddad",
    "Ivanova",
    "Jankowski",
    "Kowalczyk",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rasmussen",
    "Sandoval",
    "Takahashi",
    "Ulrich",
    "Varga",
    "Wojcik",
    "Yilmaz",
]
_STREETS = ["Alder", "Birch", "Cedar", "Elm", "Hawthorn", "Juniper", "Linden", "Maple", "Oak", "Willow"]
_CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Georgetown", "Ashford", "Brookfield"]
_PURPOSES = ["car", "home_improvement", "education", "debt_consolidation", "business", "medical"]
_HOMES = ["rent", "mortgage", "own"]
_NOTES = [
    "",
    "",
    "",
    "returning customer",
    "applied online",
    "branch application",
    "requested callback",
    "documents complete",
    "second application this year",
]


def luhn_check_digit(partial: str) -> str:
    total = 0
    for index, char in enumerate(reversed(partial)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def card_number(rng: random.Random) -> str:
    partial = rng.choice(["4", "51", "52", "53", "54", "55"])
    partial += "".join(str(rng.randrange(10)) for _ in range(15 - len(partial)))
    return partial + luhn_check_digit(partial)


def iban(rng: random.Random) -> str:
    """A German-format IBAN with a valid mod-97 check."""
    bban = "".join(str(rng.randrange(10)) for _ in range(18))
    numeric = "".join(str(int(ch, 36)) for ch in bban + "DE00")
    check = 98 - int(numeric) % 97
    return f"DE{check:02d}{bban}"


SHARPNESS = 2.5
CENTRE = 0.6
# The drifted world's rule is sharper: the model trained on it must clear the approval policy's
# champion comparison against a version of the training world (AUC ~0.9) on merit.
GUARANTEED_SHARPNESS = 4.0


def _approval_logit(row: dict[str, object]) -> float:
    income = float(row["income"])  # type: ignore[arg-type]
    loan = float(row["loan_amount"])  # type: ignore[arg-type]
    ratio = loan / max(income, 1.0)
    return (
        1.2
        - 3.2 * ratio
        + 0.09 * float(row["credit_history_years"])  # type: ignore[arg-type]
        - 0.55 * float(row["late_payments"])  # type: ignore[arg-type]
        - 0.000012 * float(row["existing_debt"])  # type: ignore[arg-type]
        + 0.06 * float(row["employment_years"])  # type: ignore[arg-type]
        + (0.35 if row["home_ownership"] == "own" else 0.0)
        - (0.25 if row["group"] == "B" else 0.0)
    )


def approval_probability(row: dict[str, object]) -> float:
    """The training world's rule: affordability (loan to income) first, then the credit record.

    Sharpened so that the label is learnable (an oracle reaches AUC ~0.9): a demo model should
    clear the approval policy's default thresholds on merit, not on luck.
    """
    return 1 / (1 + math.exp(-SHARPNESS * (_approval_logit(row) - CENTRE)))


def guaranteed_approval_probability(row: dict[str, object]) -> float:
    """The drifted world's rule: a loan guarantee covers the amount, so the loan-to-income ratio no
    longer decides; credit history, job tenure and (less than before) late payments do.

    A model of the training world ranks these applicants mostly by their ratio, and rejects nearly
    all of them; here about half are approved.
    """
    logit = (
        0.3
        + 0.16 * (float(row["credit_history_years"]) - 9)  # type: ignore[arg-type]
        - 0.3 * (float(row["late_payments"]) - 2.5)  # type: ignore[arg-type]
        + 0.14 * (float(row["employment_years"]) - 5)  # type: ignore[arg-type]
        + (0.35 if row["home_ownership"] == "own" else 0.0)
        - (0.25 if row["group"] == "B" else 0.0)
    )
    return 1 / (1 + math.exp(-GUARANTEED_SHARPNESS * logit))


@dataclass(frozen=True)
class Drift:
    """How far the generated population moves from the training population, and which rule labels it.

    `approval` is the probability of approval given an application: the training world's rule
    unless the drift changes the concept too.
    """

    income_factor: float = 1.0
    loan_factor: float = 1.0
    late_payments_shift: float = 0.0
    purpose_weights: tuple[float, ...] | None = None
    approval: Callable[[dict[str, object]], float] = approval_probability


NO_DRIFT = Drift()
# Covariate shift only: poorer applicants, larger loans, more late payments, mostly debt consolidation;
# the label still follows the training world's rule.
STRONG_DRIFT = Drift(
    income_factor=0.55, loan_factor=1.8, late_payments_shift=2.0, purpose_weights=(0.05, 0.05, 0.05, 0.7, 0.1, 0.05)
)
# The same applicants, approved by the drifted world's rule.
CONCEPT_DRIFT = replace(STRONG_DRIFT, approval=guaranteed_approval_probability)


def rows(n: int, seed: int = 7, drift: Drift = NO_DRIFT, start: int = 0) -> Iterator[dict[str, str]]:
    """`n` applications, the same for the same seed (and drift), numbered from `start`."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    for index in range(start, start + n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        age = rng.randint(21, 75)
        income = round(rng.lognormvariate(10.9, 0.45) * drift.income_factor, 2)
        loan = round(rng.lognormvariate(9.6, 0.6) * drift.loan_factor, 2)
        row: dict[str, object] = {
            "application_id": f"APP-{index:07d}",
            "full_name": f"{first} {last}",
            "address": f"{rng.randint(1, 999)} {rng.choice(_STREETS)} Street, {rng.choice(_CITIES)}",
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com",
            "phone": f"+1 555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
            "bank_account": iban(rng),
            "card_number": card_number(rng),
            "age": age,
            "income": income,
            "loan_amount": loan,
            "loan_term_months": rng.choice([12, 24, 36, 48, 60, 72]),
            "credit_history_years": max(0, min(age - 18, int(rng.gauss(9, 5)))),
            "existing_debt": round(max(0.0, rng.gauss(8000, 6000)), 2),
            "late_payments": min(12, max(0, int(rng.expovariate(1.3) + drift.late_payments_shift))),
            "employment_years": max(0, min(age - 18, int(rng.expovariate(1 / 6)))),
            "purpose": rng.choices(_PURPOSES, weights=drift.purpose_weights or (1, 1, 1, 1, 1, 1))[0],
            "home_ownership": rng.choice(_HOMES),
            "notes": rng.choice(_NOTES),
            "group": "A" if rng.random() < 0.6 else "B",
        }
        row["approved"] = 1 if rng.random() < drift.approval(row) else 0
        yield {key: str(row[key]) for key in COLUMNS}


# -- churn ----------------------------------------------------------------------------------------

CHURN_COLUMNS = [
    "subscription_id",
    "full_name",
    "email",
    "phone",
    "tenure_months",
    "monthly_charges",
    "data_usage_gb",
    "support_calls",
    "contract",
    "payment_method",
    "senior",
    "renewed",
]
CHURN_PII_COLUMNS = ("full_name", "email", "phone")
CHURN_FEATURES = ["tenure_months", "monthly_charges", "data_usage_gb", "support_calls", "contract", "payment_method"]

# Names of their own: a value seen in the output is the churn line's leak, not the loans line's.
_CHURN_FIRST = [
    "Aino",
    "Bjorn",
    "Carmen",
    "Dmitri",
    "Elif",
    "Fatou",
    "Gideon",
    "Hiroshi",
    "Ines",
    "Jarrah",
    "Kaveh",
    "Leilani",
    "Malik",
    "Noor",
    "Orla",
    "Pavel",
    "Rania",
    "Soren",
    "Thandiwe",
    "Valentina",
]
_CHURN_LAST = [
    "Achterberg",
    "Bianchi",
    "Chaudhry",
    "Dlamini",
    "Esposito",
    "Farouk",
    "Gallagher",
    "Hernandez",
    "Iwasaki",
    "Jovanovic",
    "Kuznetsov",
    "Laine",
    "Mbeki",
    "Novak",
    "Oyelaran",
    "Pacheco",
    "Rahman",
    "Szabo",
]
CONTRACTS = ("monthly", "one-year", "two-year")
_CONTRACT_WEIGHTS = (0.55, 0.25, 0.2)
_CONTRACT_EFFECT = {"monthly": -0.9, "one-year": 0.5, "two-year": 1.3}
_PAYMENTS = ("card", "direct_debit", "bank_transfer", "invoice")
_PAYMENT_EFFECT = {"card": 0.0, "direct_debit": 0.45, "bank_transfer": 0.1, "invoice": -0.4}
CHURN_SHARPNESS = 2.2
CHURN_CENTRE = -0.2
SENIOR_SHARE = 0.4


def _renewal_logit(row: dict[str, object]) -> float:
    """Renewal: long tenure, a longer contract and direct debit help; support calls and high charges hurt.

    Never a function of `senior`.
    """
    return (
        0.035 * min(float(row["tenure_months"]), 72.0)  # type: ignore[arg-type]
        - 0.5 * float(row["support_calls"])  # type: ignore[arg-type]
        - 0.03 * (float(row["monthly_charges"]) - 60.0)  # type: ignore[arg-type]
        + 0.03 * min(float(row["data_usage_gb"]), 40.0)  # type: ignore[arg-type]
        + _CONTRACT_EFFECT[str(row["contract"])]
        + _PAYMENT_EFFECT[str(row["payment_method"])]
    )


def churn_rows(n: int, seed: int = 11, start: int = 0) -> Iterator[dict[str, str]]:
    """`n` subscriptions with the columns of the churn line, the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    for index in range(start, start + n):
        first, last = rng.choice(_CHURN_FIRST), rng.choice(_CHURN_LAST)
        row: dict[str, object] = {
            "subscription_id": f"SUB-{index:07d}",
            "full_name": f"{first} {last}",
            "email": f"{first.lower()}_{last.lower()}{rng.randint(100, 999)}@example.net",
            "phone": f"+44 7700 9{rng.randint(0, 99999):05d}",
            "tenure_months": min(600, int(rng.expovariate(1 / 26))),
            "monthly_charges": round(min(180.0, rng.lognormvariate(4.0, 0.35)), 2),
            "data_usage_gb": round(rng.lognormvariate(2.4, 0.7), 2),
            "support_calls": min(15, int(rng.expovariate(0.75))),
            "contract": rng.choices(CONTRACTS, weights=_CONTRACT_WEIGHTS)[0],
            "payment_method": rng.choice(_PAYMENTS),
            "senior": "yes" if rng.random() < SENIOR_SHARE else "no",
        }
        probability = 1 / (1 + math.exp(-CHURN_SHARPNESS * (_renewal_logit(row) - CHURN_CENTRE)))
        row["renewed"] = 1 if rng.random() < probability else 0
        yield {key: str(row[key]) for key in CHURN_COLUMNS}


# -- every line ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A line's synthetic data: its generator, its columns in file order, and which hold PII."""

    line: str
    columns: tuple[str, ...]
    pii_columns: tuple[str, ...]
    generate: Callable[..., Iterator[dict[str, str]]]
    file_stem: str  # what one file holds: `applications-000.csv`


DATASETS = {
    "loans": Dataset("loans", tuple(COLUMNS), PII_COLUMNS, rows, "applications"),
    "churn": Dataset("churn", tuple(CHURN_COLUMNS), CHURN_PII_COLUMNS, churn_rows, "subscriptions"),
}


def to_csv(records: list[dict[str, str]], columns: Sequence[str] | None = None) -> str:
    """The records as CSV with a header: `columns` (default: the first record's keys, else the loans')."""
    buffer = io.StringIO()
    fieldnames = list(columns or (records[0] if records else COLUMNS))
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def to_jsonl(records: list[dict[str, str]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def pii_values(records: list[dict[str, str]], columns: Sequence[str] = PII_COLUMNS) -> set[str]:
    """Every seeded PII value of `columns` (default: the loans'), for asserting that none survives preparation."""
    return {record[column] for record in records for column in columns if record.get(column)}
