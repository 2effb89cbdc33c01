"""Does a report, a log or an error carry a data value, whole or in part?

`leaks(values, texts)` looks for each value, and for every run of four of its characters (any longer
part of a value contains one), in each text. A JSON document is checked as its keys and leaf values
(`document_texts`), less the fields that AWS, the clock or a hash wrote (`SYSTEM_FIELDS`): their
random digits and letters would match a four-digit run of a card or phone number by chance. The
whole-value check still covers those fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

FRAGMENT = 4
SYSTEM_FIELDS = frozenset(
    {"etag", "version_id", "size", "sha256", "run_id", "created_at", "quarantined_at", "policy_sha256"}
)


def fragments(value: str, size: int = FRAGMENT) -> set[str]:
    """Every run of `size` characters of a value (the value itself when shorter)."""
    if len(value) <= size:
        return {value}
    return {value[i : i + size] for i in range(len(value) - size + 1)}


def document_texts(document: Any, volatile: Iterable[str] = ()) -> list[str]:
    """A JSON document's keys and leaf values as strings, less `SYSTEM_FIELDS`; `volatile` strings
    (a run id, a version id) are blanked where they are part of a longer string (an object key)."""
    blanks = sorted((v for v in volatile if v), key=len, reverse=True)  # a key before the run id in it

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield str(key)
                if key not in SYSTEM_FIELDS:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif node is not None:
            yield str(node)

    texts = []
    for text in walk(document):
        for blank in blanks:
            text = text.replace(blank, "<id>")  # noqa: PLW2901
        texts.append(text)
    return texts


def leaks(
    values: Iterable[str], texts: Iterable[str], *, known: Iterable[str] = (), whole_texts: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """(value, what of it was found) for every value found whole in `texts` or `whole_texts`, or by a
    four-character fragment in `texts`. `known` phrases (the code's own fixed reasons, such as "the
    header row looks like data") are taken out of `texts` before the fragment check: "der " of
    "Alder Street" is in "header", and that is not a leak."""
    texts = list(texts)
    whole = "\x00".join([*texts, *whole_texts])
    phrases = sorted(known, key=len, reverse=True)
    joined = "\x00".join(texts)
    for phrase in phrases:
        joined = joined.replace(phrase, "\x00")
    found = []
    for value in values:
        if value in whole:
            found.append((value, value))
            continue
        hit = next((f for f in sorted(fragments(value)) if f in joined), None)
        if hit is not None:
            found.append((value, hit))
    return found


def dumped(document: Any) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False)
