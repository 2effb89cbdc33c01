"""Text for people: shortened at a word boundary, never inside a number."""

from __future__ import annotations

import re

ELLIPSIS = "…"
_NUMBER_TAIL = re.compile(r"[-+]?[\d.,]*\d[\d.,]*$")


def shorten(text: str, width: int) -> str:
    """`text` on one line, at most `width` characters: cut at the last word boundary that fits, with an ellipsis.

    A single word longer than the room left is cut inside it, but never inside a number: the whole
    number goes (`MaxFeaturePSI = 7.54101` never reads `= 7`).
    """
    flat = " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    room = max(width - len(ELLIPSIS), 1)
    head = flat[:room]
    space = head.rfind(" ")
    if flat[room] == " ":
        pass  # the cut falls on a boundary already
    elif space >= room // 2:
        head = head[:space]
    elif (number := _NUMBER_TAIL.search(head)) and (flat[room].isdigit() or flat[room] in ".,"):
        head = head[: number.start()]
    return head.rstrip(" ,;:(=") + ELLIPSIS
