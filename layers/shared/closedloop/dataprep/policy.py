"""Declarative per-dataset PII and schema policies: the dataset part of a model line (`closedloop/lines/<line>.json`).

A policy lists every column a raw file of the dataset must have, in order, with what preparation
does to it: `keep`, `drop`, `pseudonymise` (keyed hash, stable across runs) or `mask`. Kept text,
categorical and label columns are scanned for undeclared PII, kept numeric columns for
identifier-shaped numbers (`closedloop/prep/detectors.py`), phones and national identifiers for the
policy's `regions`. Numeric columns may declare a range and a precision, label and categorical
columns their classes. `undeclared_pii` says what happens to a file in which undeclared PII is
found (docs/governance.md). Policies are validated when loaded; an unknown dataset is an
`UnknownDatasetError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from typing import Literal, TypeVar

from pydantic import ConfigDict, Field, ValidationError, model_validator

from closedloop.errors import DatasetPolicyError
from closedloop.model import Model

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

PiiAction = Literal["keep", "drop", "pseudonymise", "mask"]
ColumnType = Literal["numeric", "categorical", "text", "identifier", "label"]
# What preparation does with a file in which undeclared PII is found (docs/governance.md).
UndeclaredPiiAction = Literal["quarantine_file", "quarantine_rows", "redact"]
REGION = r"^[A-Z]{2}$"
M = TypeVar("M", bound=Model)


class ColumnPolicy(Model):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: PiiAction = "keep"
    type: ColumnType = "text"
    rename: str | None = Field(default=None, pattern=COLUMN_NAME.pattern)
    pii: str | None = Field(default=None, description="the kind of PII the column holds, for the report")
    scan: bool = True
    classes: tuple[str, ...] | None = Field(default=None, min_length=1, description="label/categorical values")
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = Field(default=None, ge=0, le=12, description="digits after the decimal point, at most")

    @model_validator(mode="after")
    def _fits_type(self) -> ColumnPolicy:
        numeric_only = ("minimum", "maximum", "decimals")
        if self.type != "numeric" and any(getattr(self, name) is not None for name in numeric_only):
            raise ValueError("minimum, maximum and decimals apply to numeric columns only")
        if self.classes is not None and self.type not in ("label", "categorical"):
            raise ValueError("classes apply to label and categorical columns only")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is larger than maximum")
        return self


class DatasetPolicy(Model):
    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field(pattern=DATASET_NAME.pattern)
    version: int = Field(ge=1)
    description: str = ""
    formats: tuple[Literal["csv", "jsonl"], ...] = ("csv", "jsonl")
    label: str | None = None
    protected_attribute: str | None = None
    favourable_label: str = "1"
    regions: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="ISO 3166 codes whose phone numbers and national identifiers are looked for; none: the default ten",
    )
    unix_times_in_text: bool = Field(
        default=True,
        description=(
            "false: the dataset's text holds no Unix times in seconds, so ten bare digits from 1 are read "
            "as a phone number (an Indian landline) without a phone keyword before them"
        ),
    )
    undeclared_pii: UndeclaredPiiAction = "quarantine_file"
    columns: dict[str, ColumnPolicy] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> DatasetPolicy:
        for name in self.columns:
            if not COLUMN_NAME.match(name):
                raise ValueError(f"column name {name!r} is not a safe identifier")
        for region in self.regions or ():
            if not re.match(REGION, region):
                raise ValueError(f"region {region!r} is not an upper-case ISO 3166 alpha-2 code")
        outputs = self.output_columns()
        if not outputs:
            raise ValueError("every column is dropped: nothing would be prepared")
        if len(set(outputs)) != len(outputs):
            raise ValueError("two columns would have the same output name")
        for role, wanted in (("label", self.label), ("protected_attribute", self.protected_attribute)):
            if wanted is not None and (wanted not in self.columns or self.columns[wanted].action != "keep"):
                raise ValueError(f"{role} {wanted!r} must be a kept column of the dataset")
        for name, column in self.columns.items():
            if column.action == "pseudonymise" and column.rename is None:
                raise ValueError(f"pseudonymised column {name!r} needs 'rename' (e.g. customer_id)")
            if column.action != "pseudonymise" and column.rename is not None:
                raise ValueError(f"only pseudonymised columns are renamed ({name!r})")
        return self

    def output_columns(self) -> list[str]:
        """The prepared file's header, in policy order."""
        return [column.rename or name for name, column in self.columns.items() if column.action != "drop"]

    def sha256(self) -> str:
        """A content hash recorded in lineage: which exact policy prepared the data."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def parse_policy(text: str, *, source: str) -> DatasetPolicy:
    """Validate a policy document.

    Raises:
        DatasetPolicyError: the document is not valid JSON or breaks a policy rule.
    """
    return validate_document(DatasetPolicy, text, source=source, what="dataset policy")


def validate_document(model: type[M], text: str, *, source: str, what: str) -> M:
    """Validate a JSON document against a model; the error names every problem by its field path.

    Raises:
        DatasetPolicyError: the document is not valid JSON or breaks a rule.
    """
    try:
        return model.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        detail = (
            "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(document)'}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise DatasetPolicyError(f"invalid {what} {source}: {detail}", source=source) from None


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(map(str, loc)) or "(document)"


@cache
def load_policy(dataset: str) -> DatasetPolicy:
    """The dataset policy of the model line of this name (`closedloop/lines/<dataset>.json`).

    Raises:
        UnknownDatasetError: no line is declared for this dataset.
        DatasetPolicyError: the declared line is invalid.
    """
    from closedloop.line import load_line  # noqa: PLC0415 - the line module builds on this one

    return load_line(dataset).dataset_policy()


def known_datasets() -> list[str]:
    from closedloop.line import known_lines  # noqa: PLC0415 - as above

    return known_lines()
