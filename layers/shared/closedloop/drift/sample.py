"""A bounded, reproducible sample of the captured rows of one drift run (reservoir sampling).

The explainability analysis of the captured window (`explain`) needs rows, not counts; the run keeps
at most `capacity` of them, whatever the traffic. Like the sketches, a file's rows are sampled into
a sample of their own and merged into the run's only when the whole file proved usable. The random
draws are seeded by the window and the file, so a retried run samples the same rows.
"""

from __future__ import annotations

import csv
import io
import random


class RowSample:
    """At most `capacity` of the CSV rows offered, each row equally likely to be kept."""

    def __init__(self, capacity: int, seed: str) -> None:
        self.capacity = capacity
        self.seed = seed
        self.seen = 0
        self.rows: list[str] = []
        self._rng = random.Random(seed)  # noqa: S311 - a sample, not a secret

    def for_file(self, key: str) -> RowSample:
        """An empty sample for one file's rows, to `merge` once the file proved usable."""
        return RowSample(self.capacity, f"{self.seed}#{key}")

    def offer_request(self, inputs: str) -> None:
        """Offer every non-empty line of one captured request body (CSV rows)."""
        for line in inputs.splitlines():
            if line.strip():
                self.offer(line)

    def offer(self, line: str) -> None:
        self.seen += 1
        if len(self.rows) < self.capacity:
            self.rows.append(line)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.capacity:
            self.rows[slot] = line

    def merge(self, other: RowSample) -> None:
        """Take `other`'s rows in: each side keeps rows in proportion to the rows it saw."""
        total = self.seen + other.seen
        if len(self.rows) + len(other.rows) <= self.capacity:
            self.rows += other.rows
        else:
            theirs = min(len(other.rows), round(self.capacity * other.seen / total))
            ours = min(len(self.rows), self.capacity - theirs)
            theirs = min(len(other.rows), self.capacity - ours)
            self.rows = self._rng.sample(self.rows, ours) + self._rng.sample(other.rows, theirs)
        self.seen = total

    def to_csv(self, width: int) -> tuple[str, int]:
        """The kept rows with their first `width` columns (the features), as CSV without a header.

        A row of `width` or `width + 1` columns (the inference contract's extra protected attribute)
        is kept; any other is left out. Returns the CSV text and how many rows it holds.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        written = 0
        for line in self.rows:
            cells = line.split(",") if '"' not in line else next(csv.reader([line]))
            if len(cells) in (width, width + 1):
                writer.writerow(cell.strip() for cell in cells[:width])
                written += 1
        return buffer.getvalue(), written
