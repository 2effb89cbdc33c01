"""Indian phone numbers written as ten bare digits (closedloop/prep/detectors.py, `_bare_plausible`).

A bare ten-digit run is an Indian phone when libphonenumber validates it as a mobile or a landline
(STD code and number) and it starts with 2-9. From 1 (Delhi 11, the north's 12x-19x) it is one only
after a phone keyword: ten digits from 1 are also a Unix time in seconds (2001-2033). The numbers are
built from shapes with seeded digits, never copied from anywhere.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import phonenumbers
import pytest

from closedloop.prep import detectors

FIXED_LINE = phonenumbers.PhoneNumberType.FIXED_LINE


def _is_indian_landline(digits: str) -> bool:
    parsed = phonenumbers.parse(digits, "IN")
    return phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) == FIXED_LINE


def _fill(shape: str, seed: str) -> str:
    """The first filling of the shape's `#` with seeded digits that is a valid Indian landline."""
    rng = random.Random(seed)
    for _ in range(1000):
        digits = "".join(rng.choice("0123456789") if ch == "#" else ch for ch in shape)
        if _is_indian_landline(digits):
            return digits
    raise AssertionError(f"no valid Indian landline of shape {shape}")


def _unix_time_landlines(count: int) -> list[str]:
    """Unix times in seconds (2001-2033) that libphonenumber also reads as Indian landlines."""
    rng = random.Random("unix-times")
    low = int(datetime(2001, 9, 10, tzinfo=UTC).timestamp())
    high = int(datetime(2033, 5, 17, tzinfo=UTC).timestamp())
    found: list[str] = []
    while len(found) < count:
        digits = str(rng.randrange(low, high))
        if _is_indian_landline(digits):
            found.append(digits)
    return found


# STD code and number with a fourth digit of 0 or 1: no North American number has that shape, so
# only the Indian rule can find them (Mumbai 22, Chennai 44, Bengaluru 80, Kolkata 33, Hyderabad 40).
LANDLINE_SHAPES = ("2220######", "4421######", "8020######", "3321######", "4020######")


@pytest.mark.parametrize("shape", LANDLINE_SHAPES)
def test_a_bare_indian_landline_from_2_to_9_is_a_phone(shape: str) -> None:
    # Given a landline written as ten bare digits, alone and inside a sentence
    number = _fill(shape, shape)
    # Then it is found for a dataset of India and with the default regions (India among them)
    for regions in (["IN"], None):
        assert detectors.detect_pii(number, regions) == ["phone"], shape
        assert detectors.detect_pii(f"Reach the branch on {number} after ten.", regions) == ["phone"], shape
    # And a dataset that does not declare India does not look for it
    assert detectors.detect_pii(number, ["US"]) == [], shape


def test_ten_digits_from_1_read_as_a_unix_time_not_a_phone() -> None:
    # Given Unix times in seconds that libphonenumber also validates as Delhi or northern landlines
    times = _unix_time_landlines(200)
    detector = detectors.detector()
    # Then none is reported: alone, in a sentence, after a word that is no phone keyword, in a
    # numeric column
    flagged = [
        value
        for value in times
        if detector.detect(value)
        or detector.detect(f"Synced at {value} by the nightly job.")
        or detector.detect(f"created {value}")
        or detector.detect_number(value)
    ]
    assert len(flagged) == 0


@pytest.mark.parametrize("label", ["phone: ", "Tel. ", "Mobile No.: ", "landline ", "call me at "])
def test_ten_digits_from_1_after_a_phone_keyword_are_a_phone(label: str) -> None:
    # Given Delhi-shaped and northern landlines written bare, right after a phone keyword
    numbers = [_fill("112#######", "delhi"), _fill("172#######", "north"), *_unix_time_landlines(20)]
    detector = detectors.detector()
    # Then each is found and redacted as a phone
    missed = [number for number in numbers if detector.detect(f"{label}{number}") != ["phone"]]
    assert len(missed) == 0
    redacted, kinds = detector.redact(f"{label}{numbers[0]} (office)")
    assert redacted == f"{label}[phone] (office)" and kinds == ["phone"]


def test_a_thing_label_still_wins_over_the_landline_rule() -> None:
    # Given a landline-shaped run after an order label
    number = _fill(LANDLINE_SHAPES[0], "order")
    # Then it is the order's number, not a phone
    assert detectors.detect_pii(f"order no. {number}", ["IN"]) == []


def test_a_dataset_whose_text_holds_no_unix_times_reads_ten_digits_from_1_as_a_phone() -> None:
    # Given Delhi-shaped and northern landlines written bare, with no phone keyword before them
    numbers = [_fill("112#######", "delhi"), _fill("172#######", "north"), *_unix_time_landlines(20)]
    strict = detectors.detector(unix_times_in_text=False)
    # Then a dataset that declares its text holds no Unix times finds each, alone or in a sentence
    missed = [n for n in numbers if strict.detect(n) != ["phone"] or strict.detect(f"Ring {n} today.") != ["phone"]]
    assert len(missed) == 0
    # While the default reading (Unix times possible) still finds none of them, and the two are
    # separate detectors: declaring one dataset does not change another's reading
    assert [n for n in numbers if detectors.detector().detect(n)] == []
    assert detectors.detector() is not strict
    # And only India's plan makes them phones: a dataset of the US alone still finds nothing
    assert [n for n in numbers if detectors.detector(["US"], unix_times_in_text=False).detect(n)] == []
