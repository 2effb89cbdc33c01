"""Hypothesis strategies that break a real-format event the ways real inputs break.

`mutated(sample)` applies one to three mutations at random places of a JSON document:
* a field dropped, or emptied;
* a value of the wrong type (null, boolean, number, list, object, text);
* a huge string (up to half a megabyte: more than a DynamoDB item, an SQS message, a tag);
* unicode: any code point a JSON document can carry (controls, RTL marks, emoji, combining marks);
* a number written as a string, or a numeric string as a number;
* a timestamp re-written in the other format AWS uses: ISO 8601 (`Z`, `+00:00`, CloudWatch's `+0000`,
  with or without milliseconds) or epoch milliseconds (number, float, string);
* an unknown extra field.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

Path = tuple[str | int, ...]

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
EPOCH_MS = (10**12, 10**13)  # 2001-09-09 … 2286-11-20 in milliseconds
KINDS = ("drop", "empty", "wrong-type", "huge", "unicode", "number-string", "timestamp", "extra")

# any code point valid in JSON text, so no lone surrogates (AWS sends UTF-8; SQS refuses them)
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
tricky_text = st.sampled_from(["\u0000", "\u202e", "\u200b", "🙂", "İ", "ß", "e\u0301", "..", "../..", " ", "\n"])
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    unicode_text,
)
instants = st.datetimes(min_value=datetime(2001, 10, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


def paths(document: Any, prefix: Path = ()) -> list[Path]:
    """Every place in the document (the root excluded), parents before children."""
    found: list[Path] = []
    if isinstance(document, dict):
        for key, value in document.items():
            found.append((*prefix, key))
            found.extend(paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.append((*prefix, index))
            found.extend(paths(value, (*prefix, index)))
    return found


def _parent(document: Any, path: Path) -> Any:
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


def is_timestamp(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return EPOCH_MS[0] <= value < EPOCH_MS[1]
    if isinstance(value, str):
        if ISO.match(value):
            return True
        return value.replace(".", "", 1).isdigit() and EPOCH_MS[0] <= float(value) < EPOCH_MS[1]
    return False


def render_time(at: datetime, style: int) -> str | int | float:
    """One instant in one of the formats AWS events use."""
    ms = int(at.timestamp() * 1000)
    return [
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        at.isoformat(timespec="seconds"),
        at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000",
        at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        ms,
        float(ms),
        str(ms),
    ][style]


TIME_STYLES = 7


def _other_number(value: Any, draw: st.DrawFn) -> Any:
    """A number written as a string, or a numeric string as a number."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value) if "." in value else int(value)
    return draw(st.integers(-10, 10**6))


def _emptied(value: Any) -> Any:
    if isinstance(value, str):
        return ""
    return type(value)() if isinstance(value, list | dict) else None


def _replacement(kind: str, value: Any, draw: st.DrawFn) -> Any:
    """The new value of one field for a mutation `kind` (not drop, extra or timestamp)."""
    if kind == "empty":
        return _emptied(value)
    if kind == "huge":
        seed = draw(st.one_of(st.just("x"), unicode_text))
        return (seed * (draw(st.integers(10_000, 500_000)) // len(seed) + 1))[:500_000]
    if kind == "unicode":
        text = draw(st.one_of(unicode_text, tricky_text))
        return draw(st.sampled_from([text, f"{value}{text}" if isinstance(value, str) else text]))
    if kind == "number-string":
        return _other_number(value, draw)
    return draw(wrong_types)


@st.composite
def mutation(draw: st.DrawFn, document: Any) -> str:
    """Apply one mutation to `document` in place; returns what it did (for the failure report)."""
    places = paths(document)
    if not places:
        return "nothing to mutate"
    kind = draw(st.sampled_from(KINDS))
    if kind == "timestamp":
        times = [p for p in places if is_timestamp(_parent(document, p)[p[-1]])]
        if times:
            place = draw(st.sampled_from(times))
            _parent(document, place)[place[-1]] = render_time(draw(instants), draw(st.integers(0, TIME_STYLES - 1)))
            return f"timestamp at {place}"
        kind = "wrong-type"
    place = draw(st.sampled_from(places))
    parent = _parent(document, place)
    value = parent[place[-1]]
    if kind == "drop":
        del parent[place[-1]]
    elif kind == "extra" and isinstance(value, dict):
        value[draw(unicode_text)] = draw(wrong_types)
    else:
        parent[place[-1]] = _replacement(kind, value, draw)
    return f"{kind} at {place}"


@st.composite
def mutated(draw: st.DrawFn, sample: Any, *, max_mutations: int = 3) -> tuple[Any, list[str]]:
    """A deep copy of `sample` with 1 to `max_mutations` mutations, and what they were."""
    document = copy.deepcopy(sample)
    done = [draw(mutation(document)) for _ in range(draw(st.integers(1, max_mutations)))]
    return document, done
