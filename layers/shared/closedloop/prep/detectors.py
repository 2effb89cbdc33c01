"""Undeclared-PII detectors of the preparation script: a cheap candidate pass, then a library check.

One module, used unchanged wherever preparation runs (the SageMaker Processing job, the Glue Python
shell job, the local loop): it needs the standard library, `phonenumbers` (Google's libphonenumber)
and `python-stdnum`, which ship with the jobs as pure-Python wheels in `wheels/` next to this file.
Those wheels go on `sys.path` ahead of anything installed, so every engine runs the same pinned
versions, and no job needs the internet to start. Python 3.9+ (Glue's Python shell).

What is found, in a value of a kept column (kinds in `KINDS`):

* `email`; `ip_address` (IPv4 and IPv6, checked by `ipaddress`);
* `iban` (ISO 13616 structure of the country and mod-97, by stdnum), `bank_account` (digits next to
  an account keyword);
* `payment_card`: 12-19 digits passing the Luhn check inside an issuer's range;
* national identifiers of the dataset's regions, each checked by its checksum or structure:
  `us_ssn`, `uk_nino`, `de_idnr`, `fr_nir`, `es_dni`, `es_nie`, `es_nss`, `it_codice_fiscale`,
  `nl_bsn`, `br_cpf`, `in_aadhaar`, `in_pan`, `jp_my_number`;
* `phone`: international numbers of any country (`+` or `00`), and national numbers of the dataset's
  regions, read by libphonenumber;
* `passport`: a passport-shaped token only next to a passport keyword (no passport number carries a
  check digit of its own outside the machine-readable zone).

Shapes that are ordinary numbers (dates, times, amounts, version strings, UUIDs, valid ISBNs and
EANs, numbers labelled as an order, invoice, part or reference number) are set aside first. Nothing
here returns, logs or raises with a value: findings are kinds and positions.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Callable, NamedTuple


def _use_shipped_wheels() -> None:
    """Put the pinned wheels shipped next to this module ahead of anything installed."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "wheels", "*.whl")), reverse=True):
        if path not in sys.path:
            sys.path.insert(0, path)


_use_shipped_wheels()

import phonenumbers  # noqa: E402
import stdnum  # noqa: E402
from stdnum import ean, iban, isbn, luhn, verhoeff  # noqa: E402
from stdnum.br import cpf  # noqa: E402
from stdnum.de import idnr  # noqa: E402
from stdnum.es import dni, nie  # noqa: E402
from stdnum.fr import nir  # noqa: E402
from stdnum.in_ import pan  # noqa: E402
from stdnum.it import codicefiscale  # noqa: E402
from stdnum.jp import in_ as my_number  # noqa: E402
from stdnum.nl import bsn  # noqa: E402
from stdnum.us import ssn  # noqa: E402

# The regions a dataset gets when its policy names none: the ten locales the detectors are measured
# on (bench/pii_corpus.py). International numbers (+CC / 00CC) are found for every country anyway.
DEFAULT_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN", "JP")

NATIONAL_IDS: dict[str, tuple[str, ...]] = {
    "US": ("us_ssn",),
    "GB": ("uk_nino",),
    "DE": ("de_idnr",),
    "FR": ("fr_nir",),
    "ES": ("es_dni", "es_nie", "es_nss"),
    "IT": ("it_codice_fiscale",),
    "NL": ("nl_bsn",),
    "BR": ("br_cpf",),
    "IN": ("in_aadhaar", "in_pan"),
    "JP": ("jp_my_number",),
}
KINDS: tuple[str, ...] = (
    "email",
    "payment_card",
    "iban",
    "bank_account",
    *(kind for kinds in NATIONAL_IDS.values() for kind in kinds),
    "passport",
    "ip_address",
    "phone",
)
_ORDER = {kind: index for index, kind in enumerate(KINDS)}


class Finding(NamedTuple):
    """One detected value: its kind and where it is in the scanned text (never the value)."""

    kind: str
    start: int
    end: int


# --- candidates ---------------------------------------------------------------------------------

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
IPV4 = re.compile(r"(?=\d)(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
IPV6 = re.compile(
    r"(?=[0-9A-Fa-f:])(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)
IBAN_CANDIDATE = re.compile(r"(?=[A-Z])(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}")
# Digit runs with at most one space, hyphen or dot between digits (cards, identifiers).
DIGIT_RUN = re.compile(r"(?=\d)(?<![\w.,/\-])\d(?:[ \-.]?\d){5,18}(?![\w]|[.,/\-]\d)")
PHONE_CANDIDATE = re.compile(
    r"(?=[\d+(])(?<![\w+.,/\-])(?:\+|\b00)?\(?\d[\d \-./()]{4,22}\d"
    r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?(?![\w]|[.,/\-]\d)"
)
EXTENSION = re.compile(r"\s?(?:x|ext\.?|#)\s?\d{1,6}$")
NINO_FIRST, NINO_SECOND = set("ABCEGHJKLMNOPRSTWXYZ"), set("ABCEGHJKLMNPRSTWXYZ")
NINO_NEVER = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
ACCOUNT = re.compile(
    r"(?i)\b(?:account|acct|a/c|iban|routing|sort code|konto|kontonummer|compte|cuenta|conto|rekening|conta)\b"
    r"\D{0,20}(\d[\d \-]{6,20}\d)"
)
PASSPORT = re.compile(
    r"(?i)\b(?:passport|reisepass|passeport|pasaporte|passaporto|paspoort|passaporte|pass(?:port)? no)\b"
    r"[^A-Za-z0-9]{0,20}(?:(?:no|nr|n°|number|num)\.?[^A-Za-z0-9]{0,5})?([A-Z0-9]{6,9})\b"
)
ACCOUNT_WORDS: tuple[str, ...] = (
    "account",
    "acct",
    "a/c",
    "iban",
    "routing",
    "sort code",
    "konto",
    "compte",
    "cuenta",
    "conto",
    "rekening",
    "conta",
)
PASSPORT_WORDS = ("pass", "paspoort", "pasaporte", "旅券")
PASSPORT_JA = re.compile(r"旅券(?:番号)?[^A-Za-z0-9]{0,5}([A-Z]{2}\d{7})")

NON_DIGIT = re.compile(r"\D")
# What every detector needs at least one of (`scan` looks before anything else): an @, five
# digits in a run (separators allowed), an IPv6 shape, five capitals (an Indian PAN, an Italian
# codice fiscale), a passport keyword. Cards, identifiers and phones need six digits and more.
FIVE_DIGITS = re.compile(r"(?=\d)\d[\d \-./()]{3,}\d")
UPPER_RUN = re.compile(r"(?=[A-Z])[A-Z]{5}")
IPV6_SHAPE = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:")
SIX_DIGITS = re.compile(r"(?=\d)\d(?:[ \-./()]{0,3}\d){5}")
# Ordinary numbers, set aside before identifiers and phones are looked for.
_CURRENCY = r"(?:[$€£¥₹]|R\$|USD|EUR|GBP|JPY|INR|BRL|CHF|US\$)"
_AMOUNT = r"\d{1,3}(?:[.,'\u00a0\u202f ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
ORDINARY = re.compile(
    r"(?=[\da-fA-F$€£¥₹RUEGJICBvV\-])(?:"  # each shape starts with one of these: skip other positions fast
    + "|".join(
        (
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",  # UUID
            r"(?<![\w.])\d{4}-\d{2}-\d{2}"  # ISO dates and timestamps
            r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w]|[.\-]\d)",
            r"(?<![\w.:])\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?[AaPp][Mm])?(?![\w:])",  # times
            r"(?<![\w./\-])(?:\d{1,2}([./\-])\d{1,2}\1(?:\d{4}|\d{2})|\d{4}([./\-])\d{1,2}\2\d{1,2})(?![\w]|[./\-]\d)",
            rf"{_CURRENCY}\s?-?(?:{_AMOUNT})(?![\w]|[.,]\d)",
            rf"(?<![\w.,])-?(?:{_AMOUNT})\s?{_CURRENCY}",
            r"(?<![\w.,])\d{1,3}(?:[.,'\u00a0\u202f ]\d{3})+[.,]\d{2}(?![\w]|[.,]\d)",  # amounts with cents
            r"(?<![\w.,])\d{1,3}(?:\.\d{3}){2,}(?![\w]|[.,]\d)",  # 17.684.135
            r"(?<![\w.,+])\d+[.,]\d{1,2}(?![\w]|[.,]\d)",  # 38305935.38
            r"(?<![\w.,+])-?\d{1,3}\.\d{3,}(?![\w]|[.,]\d)",  # 35.8044 (a coordinate)
            r"(?<![\w.])[vV]?\d{1,2}\.\d{1,3}\.\d{1,5}(?:[.\-+][0-9A-Za-z.\-]+)?(?![\w])",  # version strings
        )
    )
    + ")"
)
ISBN_HYPHENATED = re.compile(r"(?=9)(?<![\w\-])97[89][\- ]\d{1,5}[\- ]\d{1,7}[\- ]\d{1,7}[\- ][\dX](?![\w]|-\d)")
ISBN10_HYPHENATED = re.compile(r"(?=\d)(?<![\w\-])\d{1,5}-\d{1,7}-\d{1,7}-[\dX](?![\w]|-\d)")
# A number labelled as belonging to a thing (an order, a part), not a person.
THING_LABEL = re.compile(
    r"(?i)(?:\b(?:order|invoice|reference|tracking|shipment|isbn|ean|gtin|upc|barcode|bestellung|rechnung|"
    r"auftrag|artikel|commande|facture|pedido|factura|ordine|fattura|bestelling|factuur)"
    r"(?:\s*(?:no|nr|num)\.?|\s*(?:n°|number|nummer|numéro|número|numero))?"
    r"|\b(?:part|article|product|ticket|batch|serial|item|teil)\s*(?:(?:no|nr|num)\.?|n°|number|nummer|#)"
    r"|\b(?:inv|ref|p/n|po|sku)\b\.?|\bart\.|#|№|n°)[\s:#\-]*$"
)
VERSION_LABEL = re.compile(r"(?i)\b(?:v|ver|version|release|build|rev|revision|firmware|fw)\b\.?[\s:]*$")
PERSON_LABEL = re.compile(
    r"(?i)\b(?:ssn|social|security|nino|national|insurance|bsn|burgerservicenummer|cpf|aadhaar|pan|"
    r"nir|insee|steuer|idnr|codice|fiscale|nif|nie|nuss|dni|my ?number|passport|tax|phone|tel|mobile|"
    r"cell|fax|call|card|visa|mastercard|amex|handy|telefon|téléphone|teléfono|telefono|portable)\b"
)
# A phone keyword right before a number: what a bare run that also reads as a Unix time needs.
PHONE_LABEL = re.compile(
    r"(?i)\b(?:phone|ph|tel|telephone|mobile|mob|cell|landline|fax|whatsapp|contact|call|handy|telefon|"
    r"téléphone|teléfono|telefono|portable)\b\.?(?:\s*(?:no|nr|num|number|n°)\b\.?)?(?:\s+(?:me\s+)?(?:at|on))?[\s:#\-]*$"
)

# Issuer (IIN) ranges of payment cards: (low, high) prefixes compared on the same number of digits,
# and the lengths the brand issues. Maestro and the domestic schemes issue 12-19 digits.
CARD_RANGES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("6011", "6011", (16, 17, 18, 19)),  # Discover
    ("644", "649", (16, 17, 18, 19)),
    ("65", "65", (16, 17, 18, 19)),
    ("35", "35", (15, 16, 17, 18, 19)),  # JCB (3528-3589, and the 35xx Faker issues)
    ("1800", "1800", (15,)),  # JCB, legacy ranges
    ("2131", "2131", (15,)),
    ("300", "305", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("36", "36", (14, 15, 16, 17, 18, 19)),
    ("38", "39", (14, 15, 16, 17, 18, 19)),
    ("50", "50", tuple(range(12, 20))),  # Maestro, Elo, RuPay
    ("56", "69", tuple(range(12, 20))),  # Maestro, UnionPay (62), RuPay (60), Elo, Hipercard
    ("0604", "0604", tuple(range(12, 20))),  # Maestro (UK, as Faker issues it)
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
    ("81", "82", (16,)),  # RuPay
)


def card_issuer_valid(digits: str) -> bool:
    """Is `digits` inside an issuer range at a length that issuer uses (no checksum here)?"""
    return any(len(digits) in lengths and low <= digits[: len(low)] <= high for low, high, lengths in CARD_RANGES)


def nino_valid(candidate: str) -> bool:
    """HMRC's National Insurance number rules (no check digit exists): prefix letters and A-D suffix."""
    compact = candidate.replace(" ", "")
    prefix = compact[:2]
    return (
        len(compact) == 9
        and prefix[0] in NINO_FIRST
        and prefix[1] in NINO_SECOND
        and prefix not in NINO_NEVER
        and compact[2:8].isdigit()
        and compact[8] in "ABCD"
    )


def nss_valid(digits: str) -> bool:
    """Spain's social security number: province (01-53, 66), body, and (province+body) mod 97."""
    if len(digits) != 12 or not digits.isdigit():
        return False
    province = int(digits[:2])
    return (1 <= province <= 53 or province == 66) and int(digits[:10]) % 97 == int(digits[10:])


def aadhaar_valid(digits: str) -> bool:
    """UIDAI Aadhaar: 12 digits, not starting with 0 or 1, Verhoeff check digit, not a palindrome."""
    return len(digits) == 12 and digits[0] not in "01" and digits != digits[::-1] and verhoeff.is_valid(digits)


def _is_valid(module: object, value: str) -> bool:
    try:
        return bool(module.is_valid(value))  # type: ignore[attr-defined]
    except Exception:  # a library check must never stop the scan on a strange input
        return False


# Identifiers written as digits only, by length: (kind, check), and the groupings people write them in.
_DIGIT_IDS: dict[int, tuple[tuple[str, object], ...]] = {
    9: (("nl_bsn", lambda d: _is_valid(bsn, d)),),
    11: (("br_cpf", lambda d: _is_valid(cpf, d)), ("de_idnr", lambda d: _is_valid(idnr, d))),
    12: (
        ("in_aadhaar", aadhaar_valid),
        ("jp_my_number", lambda d: _is_valid(my_number, d)),
        ("es_nss", nss_valid),
    ),
    15: (("fr_nir", lambda d: _is_valid(nir, d)),),
}
# Identifiers written in a shape of their own, and their checks (keyed by kind, in matching order).
FORMATTED_SHAPES: dict[str, str] = {
    "us_ssn": r"(?<![\w\-])\d{3}[- ]\d{2}[- ]\d{4}(?![\w]|-\d)",
    "br_cpf": r"(?<![\w.\-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\w]|[.\-]\d)",
    "fr_nir": r"(?<![\w])[12] ?\d{2} ?\d{2} ?2[AB] ?\d{3} ?\d{3} ?\d{2}(?![\w])",
    "it_codice_fiscale": (
        r"(?<!\w)[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPR-T][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]"
        r"(?!\w)"
    ),
    "uk_nino": r"(?<!\w)[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)",
    "in_pan": r"(?<!\w)[A-Z]{5}\d{4}[A-Z](?!\w)",
    "es_dni": r"(?<!\w)\d{8}[ \-]?[A-Z](?!\w)",
    "es_nie": r"(?<!\w)[XYZ][ \-]?\d{7}[ \-]?[A-Z](?!\w)",
}
FORMATTED_CHECKS: dict[str, Callable[[str], bool]] = {
    "us_ssn": lambda v: _is_valid(ssn, v),
    "br_cpf": lambda v: _is_valid(cpf, v),
    "fr_nir": lambda v: _is_valid(nir, v),
    "it_codice_fiscale": lambda v: _is_valid(codicefiscale, v),
    "uk_nino": nino_valid,
    "in_pan": lambda v: _is_valid(pan, v),
    "es_dni": lambda v: _is_valid(dni, v),
    "es_nie": lambda v: _is_valid(nie, v),
}
ID_GROUPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "nl_bsn": ((4, 2, 3), (3, 3, 3)),
    "br_cpf": ((3, 3, 3, 2),),
    "de_idnr": ((2, 3, 3, 3),),
    "in_aadhaar": ((4, 4, 4),),
    "jp_my_number": ((4, 4, 4),),
    "es_nss": ((2, 8, 2), (2, 2, 8)),
    "fr_nir": ((1, 2, 2, 2, 3, 3, 2), (13, 2)),
}


def _windows(spans: list[tuple[int, int]], size: int, margin: int = 32) -> list[tuple[int, int]]:
    """The spans widened by `margin` on each side, merged where they overlap."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        low, high = max(0, start - margin), min(size, end + margin)
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _groups(run: str) -> tuple[int, ...]:
    return tuple(len(g) for g in re.split(r"[ \-.]+", run) if g)


def _digits(text: str) -> str:
    return NON_DIGIT.sub("", text)


class Detector:
    """The detectors of one dataset: its phone regions and the national identifiers they imply."""

    def __init__(self, regions: Iterable[str] | None = None, unix_times_in_text: bool = True) -> None:
        wanted = tuple(regions) if regions is not None else DEFAULT_REGIONS
        # False: the dataset's text holds no Unix times, so ten bare digits from 1 may be a phone
        self.unix_times_in_text = unix_times_in_text
        self.regions: tuple[str, ...] = tuple(r.upper() for r in wanted)
        unknown = [r for r in self.regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown region codes: {', '.join(sorted(unknown))}")
        self.id_kinds = {kind for region in self.regions for kind in NATIONAL_IDS.get(region, ())}
        # one pass for the identifiers written in their own shape (letters, dashes, dots)
        shapes = [f"(?P<{kind}>{FORMATTED_SHAPES[kind]})" for kind in FORMATTED_SHAPES if kind in self.id_kinds]
        self._formatted_pattern = re.compile(r"(?=[\dA-Z])(?:" + "|".join(shapes) + ")") if shapes else None
        self._cache: dict[str, list[str]] = {}

    # -- public --------------------------------------------------------------------------------

    def detect(self, text: str) -> list[str]:
        """The kinds of PII in one value, each once, in `KINDS` order (never the values)."""
        if len(text) <= 64:
            cached = self._cache.get(text)
            if cached is not None:
                return cached
        kinds = sorted({finding.kind for finding in self.scan(text)}, key=_ORDER.__getitem__)
        if len(text) <= 64:
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[text] = kinds
        return kinds

    def redact(self, text: str) -> tuple[str, list[str]]:
        """`text` with each finding replaced by `[<kind>]`, and the kinds replaced."""
        findings = sorted(self.scan(text), key=lambda f: f.start)
        out, last, kinds = [], 0, []
        for finding in findings:
            if finding.start < last:
                continue
            out.append(text[last : finding.start])
            out.append(f"[{finding.kind}]")
            last = finding.end
            if finding.kind not in kinds:
                kinds.append(finding.kind)
        out.append(text[last:])
        return "".join(out), sorted(kinds, key=_ORDER.__getitem__)

    def detect_number(self, text: str) -> list[str]:
        """Identifier-shaped numbers in a numeric column: cards, phones, national identifiers.

        A quantity has no leading `+` or `00` and no leading zero, and is not 9-19 digits that pass
        an identifier's checksum; a value that is one of these is reported like text would be.
        """
        value = text.strip()
        if len(value) < 7:
            return []
        digits = _digits(value)
        if len(digits) < 7:
            return []
        if value[0] in "+0" or (len(digits) >= 9 and value.isdigit()):
            return self.detect(value)
        return []

    def scan(self, text: str) -> list[Finding]:
        """Every finding in `text`: a stronger detector claims its span before a weaker one looks."""
        findings: list[Finding] = []
        low = text.lower()
        if not (
            "@" in text
            or FIVE_DIGITS.search(text)
            or (":" in text and IPV6_SHAPE.search(text))
            or UPPER_RUN.search(text)
            or any(word in low for word in PASSPORT_WORDS)
        ):
            return findings  # no digit run, no @, no identifier shape: most words and sentences
        work = self._shaped(text, low, findings)
        self._long_numbers(work, low, findings)
        return findings

    def _shaped(self, work: str, low: str, findings: list[Finding]) -> str:
        """Values with a shape of their own: e-mail, passport (keyword), IP, IBAN, identifiers
        written with letters or separators, international phone numbers."""
        if "@" in work:
            for match in EMAIL.finditer(work):
                findings.append(Finding("email", match.start(), match.end()))
                work = _blank(work, match.start(), match.end())
        if any(word in low for word in PASSPORT_WORDS):
            work = self._passports(work, findings)
        work = self._ip_addresses(work, findings)
        work = self._ibans(work, findings)
        work = self._formatted_ids(work, findings)
        if "+" in work or "00" in work:
            work = self._phones(work, findings, international=True)
        return work

    def _long_numbers(self, work: str, low: str, findings: list[Finding]) -> None:
        """Digit runs of six and more, once the ordinary numbers around them are set aside: bank
        accounts (keyword), cards and identifiers (checksums), national phone numbers."""
        candidates = [match.span() for match in SIX_DIGITS.finditer(work)]
        if not candidates:
            return  # too short for a card, an identifier or a phone
        # ordinary numbers are looked for around the candidates only (an amount or a date is short)
        windows = _windows(candidates, len(work))
        for start, stop in windows:
            for match in ORDINARY.finditer(work, start, stop):
                work = _blank(work, match.start(), match.end())
        if not any(SIX_DIGITS.search(work, start, stop) for start, stop in windows):
            return  # every long number was an ordinary one (a date, an amount, a version)
        for pattern in (ISBN_HYPHENATED, ISBN10_HYPHENATED) if "-" in work or " 97" in work else ():
            for match in pattern.finditer(work):
                if _is_valid(isbn, match.group(0).replace(" ", "-")):
                    work = _blank(work, match.start(), match.end())
        if any(word in low for word in ACCOUNT_WORDS):
            work = self._accounts(work, findings)
        work = self._digit_runs(work, findings)
        self._phones(work, findings, international=False)

    # -- detectors, strongest first ---------------------------------------------------------------

    def _passports(self, work: str, findings: list[Finding]) -> str:
        for pattern in (PASSPORT, PASSPORT_JA):
            for match in pattern.finditer(work):
                token = match.group(1)
                if any(ch.isdigit() for ch in token):
                    findings.append(Finding("passport", match.start(1), match.end(1)))
                    work = _blank(work, match.start(1), match.end(1))
        return work

    def _ip_addresses(self, work: str, findings: list[Finding]) -> str:
        for match in IPV4.finditer(work):
            candidate = match.group(0)
            if any(len(part) > 1 and part[0] == "0" for part in candidate.split(".")):
                continue
            if VERSION_LABEL.search(work[max(0, match.start() - 12) : match.start()]):
                continue
            try:
                ipaddress.IPv4Address(candidate)
            except ValueError:
                continue
            findings.append(Finding("ip_address", match.start(), match.end()))
            work = _blank(work, match.start(), match.end())
        if work.count(":") >= 2:
            for match in IPV6.finditer(work):
                candidate = match.group(0)
                if candidate.count(":") < 2 or len(candidate) < 6:
                    continue
                try:
                    ipaddress.IPv6Address(candidate)
                except ValueError:
                    continue
                findings.append(Finding("ip_address", match.start(), match.end()))
                work = _blank(work, match.start(), match.end())
        return work

    def _ibans(self, work: str, findings: list[Finding]) -> str:
        for match in IBAN_CANDIDATE.finditer(work):
            candidate = match.group(0)
            compact = candidate.replace(" ", "")
            # the candidate may run on into the next word: try the longest valid prefix
            for length in range(len(compact), 14, -1):
                if _mod97(compact[:length]) and (
                    _is_valid(iban, compact[:length]) or compact[:2] in phonenumbers.SUPPORTED_REGIONS
                ):
                    end = match.start() + _span_of(candidate, length)
                    findings.append(Finding("iban", match.start(), end))
                    work = _blank(work, match.start(), end)
                    break
        return work

    def _accounts(self, work: str, findings: list[Finding]) -> str:
        for match in ACCOUNT.finditer(work):
            digits = _digits(match.group(1))
            if self._digit_kind(digits, match.group(1), _groups(match.group(1))):
                continue  # a card number or an identifier after a word like "account" is still one
            findings.append(Finding("bank_account", match.start(1), match.end(1)))
            work = _blank(work, match.start(1), match.end(1))
        return work

    def _formatted_ids(self, work: str, findings: list[Finding]) -> str:
        pattern = self._formatted_pattern
        if pattern is None:
            return work
        for match in pattern.finditer(work):
            kind = match.lastgroup or ""
            if FORMATTED_CHECKS[kind](match.group(0)):
                findings.append(Finding(kind, match.start(), match.end()))
                work = _blank(work, match.start(), match.end())
        return work

    def _digit_runs(self, work: str, findings: list[Finding]) -> str:
        for match in DIGIT_RUN.finditer(work):
            run = match.group(0)
            digits = _digits(run)
            before = work[max(0, match.start() - 24) : match.start()]
            if THING_LABEL.search(before) and not PERSON_LABEL.search(before):
                continue
            groups = _groups(run)
            if len(groups) == 1 and len(digits) in (8, 13) and _is_valid(ean, digits):
                work = _blank(work, match.start(), match.end())  # a product's barcode
                continue
            kind = self._digit_kind(digits, run, groups)
            if kind:
                findings.append(Finding(kind, match.start(), match.end()))
                work = _blank(work, match.start(), match.end())
        return work

    def _digit_kind(self, digits: str, run: str, groups: tuple[int, ...] = ()) -> str | None:
        groups = groups or (len(digits),)
        if 12 <= len(digits) <= 19 and card_issuer_valid(digits) and luhn.is_valid(digits):
            # a valid EAN-13 that no card keyword points at is a product's barcode
            barcode = len(groups) == 1 and len(digits) == 13 and _is_valid(ean, digits)
            if not barcode and "." not in run and min(groups) >= 3:
                return "payment_card"
        for kind, check in _DIGIT_IDS.get(len(digits), ()):
            if kind in self.id_kinds and (len(groups) == 1 or groups in ID_GROUPS[kind]) and check(digits):  # type: ignore[operator]
                return kind
        return None

    def _phones(self, work: str, findings: list[Finding], international: bool) -> str:
        """International numbers (`+`, `00`) of any country, or national numbers of the regions."""
        for match in PHONE_CANDIDATE.finditer(work):
            candidate = match.group(0)
            if candidate.startswith(("+", "00")) is not international:
                continue
            number = EXTENSION.sub("", candidate).strip()
            digits = _digits(number)
            if not 7 <= len(digits) <= 15 or "--" in number or ".." in number or "//" in number:
                continue
            before = work[max(0, match.start() - 24) : match.start()]
            labelled = bool(THING_LABEL.search(before)) and not PERSON_LABEL.search(before)
            if labelled and international:
                continue
            # ten bare digits from 1 are also a Unix time in seconds: a phone only after a phone keyword,
            # or in a dataset that declares its text holds no Unix times
            phone_label = (
                digits[0] == "1"
                and len(digits) == 10
                and (not self.unix_times_in_text or bool(PHONE_LABEL.search(before)))
            )
            if (
                self._is_international(number, digits)
                if international
                else self._is_national(number, digits, labelled, phone_label)
            ):
                findings.append(Finding("phone", match.start(), match.end()))
                work = _blank(work, match.start(), match.end())
        return work

    def _is_international(self, number: str, digits: str) -> bool:
        if number.startswith("00") and (
            self._digit_kind(digits, number) or (number.isdigit() and len(digits) in (8, 13) and _is_valid(ean, digits))
        ):
            return False  # an identifier or a barcode that happens to start with 00
        text = "+" + digits[2:] if number.startswith("00") else number
        parsed = _parse(text, None)
        if parsed is not None and phonenumbers.is_possible_number(parsed):
            return True
        return number.startswith("00") and self._is_national(number, digits)

    def _is_national(self, number: str, digits: str, labelled: bool = False, phone_label: bool = False) -> bool:
        """A national number of a region: written with the region's trunk prefix where people do,
        in a phone grouping when separated, and a mobile number of a region when a bare digit run
        (in India a landline too, see `_bare_plausible`). After a label such as "order" or "part",
        only a valid number in a phone grouping counts; `phone_label`: a phone keyword right before."""
        groups = [len(g) for g in re.split(r"[ \-./()]+", number) if g]
        separated = len(groups) > 1 or number.startswith("(")
        if (separated and not _phone_grouping(groups, number)) or (labelled and not separated and digits[0] != "0"):
            return False
        if not labelled and not separated and "US" in self.regions and NANP.fullmatch(digits):
            return True  # ten digits in the North American plan's shape, assigned area code or not
        trunk = digits.startswith("0")
        for region in self.regions:
            if region in TRUNK_WRITTEN and not trunk:
                continue
            if not separated and not _bare_plausible(region, digits, trunk, phone_label):
                continue
            parsed = _parse(number, region)
            if parsed is None:
                continue
            if not separated:
                if phonenumbers.is_valid_number(parsed) and (
                    trunk
                    or phonenumbers.number_type(parsed) in BARE_TYPES.get(region, MOBILE_TYPES)
                    or region in ("US", "CA")
                ):
                    return True
                if region == "IT" and digits[0] == "3" and phonenumbers.is_possible_number(parsed):
                    return True  # an Italian mobile (3xx), of any length the plan allows
                continue
            if phonenumbers.is_valid_number(parsed) or (not labelled and phonenumbers.is_possible_number(parsed)):
                return True
        return False


# Regions whose national numbers are written with their trunk prefix 0 (and without it only after
# the country code): a national number there without the 0 is not how people write a phone.
NANP = re.compile(r"[2-9]\d{2}[2-9]\d{6}")
TRUNK_WRITTEN = {"GB", "DE", "FR", "NL", "JP", "AT", "CH", "BE", "IE", "AU", "NZ", "SE", "NO", "DK", "FI"}
# The types of number a bare digit run (no trunk prefix, no separators) is taken for: a mobile, and
# in India a landline as well (STD code and number, ten digits: libphonenumber's metadata for India
# marks the trunk 0 optional when a number is written nationally).
MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})
BARE_TYPES: dict[str, frozenset[int]] = {"IN": MOBILE_TYPES | {phonenumbers.PhoneNumberType.FIXED_LINE}}


def _bare_plausible(region: str, digits: str, trunk: bool, phone_label: bool = False) -> bool:
    """Can a bare digit run be a national number of `region` as people write it (no parse needed)?

    US/CA: only the plan's shape (checked before); Brazil: area code in parentheses, or +55; India:
    ten bare digits from 2-9 (a mobile from 6-9, a landline's STD code and number), and from 1 (Delhi
    11, the north's 12x-19x) only after a phone keyword: ten digits from 1 are also a Unix time in
    seconds (2001-2033), which no digit of the number tells apart; Spain: nine digits from 6-9;
    Italy: 0 (fixed) or 3 (mobile).
    """
    if region in ("US", "CA", "BR"):
        return False
    if region == "IN":
        return trunk or (len(digits) == 10 and (digits[0] in "23456789" or (digits[0] == "1" and phone_label)))
    if region == "ES":
        return len(digits) == 9 and digits[0] in "6789"
    if region == "IT":
        return digits[0] in "03"
    return True


def _phone_grouping(groups: list[int], number: str) -> bool:
    """Digit groups that people write phone numbers in (a part number's 2-4-3 is not one)."""
    if number.startswith("(") or groups[-1] >= 4:
        return True
    if len(groups) >= 4 and all(g == 2 for g in groups[1:]):
        return True  # 01 23 45 67 89, 912 34 56 78, 91 234 56 78
    return groups in ([3, 3, 3], [2, 3, 2, 2], [3, 2, 2, 2], [2, 3, 3], [3, 3, 2, 2], [5, 3, 3])


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _mod97(compact: str) -> bool:
    if len(compact) < 15 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    try:
        return int("".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])) % 97 == 1
    except ValueError:
        return False


def _span_of(candidate: str, compact_length: int) -> int:
    """How many characters of `candidate` (spaces included) hold its first `compact_length` non-spaces."""
    seen = 0
    for index, ch in enumerate(candidate):
        if ch != " ":
            seen += 1
            if seen == compact_length:
                return index + 1
    return len(candidate)


_DETECTORS: dict[tuple[tuple[str, ...], bool], Detector] = {}


def detector(regions: Sequence[str] | None = None, unix_times_in_text: bool = True) -> Detector:
    """The (cached) detector of a set of regions; `None` means `DEFAULT_REGIONS`.

    `unix_times_in_text=False`: the dataset declares that its text holds no Unix times in seconds,
    so ten bare digits from 1 are read as a phone number where a region's plan allows (an Indian
    landline) without a phone keyword before them.
    """
    key = tuple(regions) if regions is not None else DEFAULT_REGIONS
    found = _DETECTORS.get((key, unix_times_in_text))
    if found is None:
        found = _DETECTORS[(key, unix_times_in_text)] = Detector(key, unix_times_in_text)
    return found


def detect_pii(text: str, regions: Sequence[str] | None = None) -> list[str]:
    """The kinds of PII found in one value (each kind once), never the values themselves."""
    return detector(regions).detect(text)


def library_versions() -> dict[str, str]:
    """The versions of the detector libraries in use, for the run's lineage."""
    return {"phonenumbers": phonenumbers.__version__, "python-stdnum": stdnum.__version__}
