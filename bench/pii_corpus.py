"""A generated PII corpus for the preparation script's detectors: recall per entity and locale,
false positives on ordinary numbers, and the preparation throughput.

Values come from Faker (seeded) in ten locales; where Faker has no generator for an identifier, or
generates values its own scheme rejects, the corpus builds valid ones with python-stdnum's check
digits (noted in `SOURCES`). Each value is scanned alone or inside a sentence of its locale. Only
counts leave this module: no corpus value is ever printed, logged or written.

    python bench/pii_corpus.py            # the full corpus (make bench runs it through run.py)
    python bench/pii_corpus.py --sample   # the seeded sample tests/unit/test_pii_detectors.py uses
"""

from __future__ import annotations

import contextlib
import random
import string
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
from faker import Faker
from stdnum import iban as std_iban
from stdnum import verhoeff
from stdnum.de import idnr
from stdnum.jp import in_ as my_number

from closedloop.prep import detectors

LOCALES: dict[str, str] = {
    "en_US": "US",
    "en_GB": "GB",
    "de_DE": "DE",
    "fr_FR": "FR",
    "es_ES": "ES",
    "it_IT": "IT",
    "nl_NL": "NL",
    "pt_BR": "BR",
    "en_IN": "IN",
    "ja_JP": "JP",
}
# Entity types whose format or checksum a library validates: the ≥ 99 % recall target applies.
ID_KINDS = {kind for kinds in detectors.NATIONAL_IDS.values() for kind in kinds}
VALIDATED = ("email", "phone", "payment_card", "iban", "ip_address", "national_id")
# Found only next to a keyword (no checksum to tell them from other numbers): reported, no target.
KEYWORD_ONLY = ("bank_account", "passport")

SOURCES = {
    "national_id": {
        "en_US": "Faker ssn() (us_ssn)",
        "en_GB": "built: HMRC NINO rules (Faker's en_GB ssn() is the reserved 'ZZ … T' placeholder)",
        "de_DE": "built: Steuer-IdNr with stdnum's check digit (Faker has no generator)",
        "fr_FR": "Faker ssn() (fr_nir)",
        "es_ES": "Faker nif(), nie(), nuss()",
        "it_IT": "Faker ssn() (it_codice_fiscale)",
        "nl_NL": "Faker ssn() (nl_bsn)",
        "pt_BR": "Faker cpf() and ssn() (br_cpf, formatted and bare)",
        "en_IN": "built: Aadhaar with its Verhoeff digit (Faker's aadhaar_id() has none); Faker pan()",
        "ja_JP": "built: My Number with stdnum's check digit (Faker has no generator)",
    }
}


def _nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(sorted(detectors.NINO_FIRST)) + rng.choice(sorted(detectors.NINO_SECOND))
        if prefix not in detectors.NINO_NEVER:
            break
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    value = prefix + digits + rng.choice("ABCD")
    return value if rng.random() < 0.5 else f"{value[:2]} {value[2:4]} {value[4:6]} {value[6:8]} {value[8]}"


def _idnr(rng: random.Random) -> str:
    while True:
        body = str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(9))
        for check in string.digits:
            if idnr.is_valid(body + check):
                value = body + check
                return value if rng.random() < 0.5 else f"{value[:2]} {value[2:5]} {value[5:8]} {value[8:]}"


def _aadhaar(rng: random.Random) -> str:
    body = str(rng.randint(2, 9)) + "".join(rng.choice(string.digits) for _ in range(10))
    value = body + verhoeff.calc_check_digit(body)
    return value if rng.random() < 0.5 else f"{value[:4]} {value[4:8]} {value[8:]}"


def _my_number(rng: random.Random) -> str:
    body = "".join(rng.choice(string.digits) for _ in range(11))
    value = body + my_number.calc_check_digit(body)
    return value if rng.random() < 0.5 else f"{value[:4]} {value[4:8]} {value[8:]}"


def national_ids(locale: str, fake: Faker, rng: random.Random) -> list[Callable[[], tuple[str, str]]]:
    """Generators of (value, expected kind) for the locale's national identifiers."""
    by_locale: dict[str, list[Callable[[], tuple[str, str]]]] = {
        "en_US": [lambda: (fake.ssn(), "us_ssn")],
        "en_GB": [lambda: (_nino(rng), "uk_nino")],
        "de_DE": [lambda: (_idnr(rng), "de_idnr")],
        "fr_FR": [lambda: (fake.ssn(), "fr_nir")],
        "es_ES": [lambda: (fake.nif(), "es_dni"), lambda: (fake.nie(), "es_nie"), lambda: (fake.nuss(), "es_nss")],
        "it_IT": [lambda: (fake.ssn(), "it_codice_fiscale")],
        "nl_NL": [lambda: (fake.ssn(), "nl_bsn")],
        "pt_BR": [lambda: (fake.cpf(), "br_cpf"), lambda: (fake.ssn(), "br_cpf")],
        "en_IN": [lambda: (_aadhaar(rng), "in_aadhaar"), lambda: (fake.pan(), "in_pan")],
        "ja_JP": [lambda: (_my_number(rng), "jp_my_number")],
    }
    return by_locale[locale]


CARD_GROUPS = {12: (4, 4, 4), 13: (4, 3, 3, 3), 14: (4, 6, 4), 15: (4, 6, 5), 16: (4, 4, 4, 4)}
ACCOUNT_WORDS = {
    "en_US": "account",
    "en_GB": "account",
    "de_DE": "Konto",
    "fr_FR": "compte",
    "es_ES": "cuenta",
    "it_IT": "conto",
    "nl_NL": "rekening",
    "pt_BR": "conta",
    "en_IN": "a/c",
    "ja_JP": "account",
}
PASSPORT_WORDS = {
    "en_US": "passport",
    "en_GB": "passport no.",
    "de_DE": "Reisepass",
    "fr_FR": "passeport",
    "es_ES": "pasaporte",
    "it_IT": "passaporto",
    "nl_NL": "paspoort",
    "pt_BR": "passaporte",
    "en_IN": "passport",
    "ja_JP": "passport",
}


def pii_values(locale: str, entity: str, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (value, expected kind) pairs of one entity type in one locale."""
    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = random.Random(f"{seed}-{locale}-{entity}")
    out: list[tuple[str, str]] = []
    ids = national_ids(locale, fake, rng)
    for index in range(count):
        if entity == "email":
            out.append((fake.email(), "email"))
        elif entity == "phone":
            out.append((fake.phone_number(), "phone"))
        elif entity == "payment_card":
            number = fake.credit_card_number()
            if index % 2:  # as issuers print them
                cuts = CARD_GROUPS.get(len(number), (4, 4, 4, 4, 3))
                parts, at = [], 0
                for size in cuts:
                    if at < len(number):
                        parts.append(number[at : at + size])
                        at += size
                number = " ".join(parts)
            out.append((number, "payment_card"))
        elif entity == "iban":
            value = fake.iban()
            out.append((std_iban.format(value) if index % 2 else value, "iban"))
        elif entity == "ip_address":
            out.append((fake.ipv4() if index % 2 else fake.ipv6(), "ip_address"))
        elif entity == "national_id":
            out.append(ids[index % len(ids)]())
        elif entity == "bank_account":
            digits = "".join(rng.choice(string.digits) for _ in range(rng.randint(8, 12)))
            out.append((f"{ACCOUNT_WORDS[locale]} {digits}", "bank_account"))
        elif entity == "passport":
            out.append((f"{PASSPORT_WORDS[locale]} {fake.passport_number()}", "passport"))
    return out


def in_context(value: str, fake: Faker, rng: random.Random) -> str:
    """The value alone, or inside a sentence of the locale (no keyword that names its kind)."""
    shape = rng.randrange(4)
    if shape == 0:
        return value
    sentence = fake.sentence(nb_words=8)
    if shape == 1:
        return f"{sentence} {value}"
    if shape == 2:
        return f"{value} {sentence}"
    return f"{sentence.rstrip('.。')}: {value}. {fake.sentence(nb_words=5)}"


# --- ordinary values that are not PII ------------------------------------------------------------


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def _amount(rng: random.Random) -> str:
    value = rng.uniform(1, 99_999_999)
    euros, cents = f"{value:,.2f}".split(".")
    shapes = [
        f"{euros.replace(',', '.')},{cents} €",
        f"{euros.replace(',', '.')},{cents}",
        f"€ {euros.replace(',', '.')},{cents}",
        f"${euros}.{cents}",
        f"{euros}.{cents} USD",
        f"{euros}.{cents}",
        f"{euros.replace(',', ' ')},{cents} €",
        f"{euros.replace(',', chr(0x202F))},{cents} €",
        f"{euros.replace(',', chr(39))}.{cents} CHF",
        f"EUR {euros.replace(',', '.')}",
        f"£{euros}",
        f"R$ {euros.replace(',', '.')},{cents}",
        f"¥{euros}",
        f"{value:.2f}",
    ]
    return rng.choice(shapes)


def _part(rng: random.Random) -> str:
    a, b, c = _digits(rng, 2), _digits(rng, 4), _digits(rng, 3)
    return rng.choice(
        [
            f"part {a}-{b}-{c}",
            f"P/N {_digits(rng, 4)}-{_digits(rng, 3)}-{_digits(rng, 2)}",
            f"Teil {a}-{b}-{c}",
            f"{a}-{b}-{c}",
            f"{_digits(rng, 3)}-{_digits(rng, 4)}-{_digits(rng, 3)}",
            f"art. {_digits(rng, 3)}.{_digits(rng, 3)}.{_digits(rng, 2)}",
            f"SKU {_digits(rng, 8)}",
        ]
    )


def _version(rng: random.Random) -> str:
    major, minor, patch = rng.randint(0, 20), rng.randint(0, 40), rng.randint(0, 200)
    return rng.choice(
        [
            f"{major}.{minor}.{patch}",
            f"v{major}.{minor}.{patch}",
            f"{major}.{minor}.{patch}-rc.{rng.randint(1, 5)}",
            f"version {major}.{minor}",
            f"10.0.{rng.randint(10000, 22631)}.{rng.randint(1, 4000)}",
            f"release {major}.{minor}.{patch}.{rng.randint(0, 99)}",
            f"{major}.{minor}",
        ]
    )


def _order(rng: random.Random) -> str:
    return rng.choice(
        [
            f"order #{_digits(rng, rng.randint(8, 12))}",
            f"Order no. {_digits(rng, 10)}",
            f"ORD-{rng.randint(2020, 2026)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-{_digits(rng, 5)}",
            f"PO {45}{_digits(rng, 8)}",
            f"invoice {_digits(rng, rng.randint(9, 12))}",
            f"Bestellung Nr. {_digits(rng, 10)}",
            f"commande n° {_digits(rng, 9)}",
            f"pedido {_digits(rng, 11)}",
            f"tracking {_digits(rng, 12)}",
            f"ticket #{_digits(rng, 7)}",
        ]
    )


def _timestamp(rng: random.Random) -> str:
    at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 7 * 365 * 86400))
    return rng.choice(
        [
            at.isoformat().replace("+00:00", "Z"),
            at.strftime("%Y-%m-%d %H:%M:%S"),
            at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+01:00",
            str(int(at.timestamp())),
            str(int(at.timestamp() * 1000)),
            at.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            at.strftime("%d/%m/%Y %H:%M"),
            at.strftime("%Y%m%d%H%M%S"),
            at.strftime("%H:%M:%S"),
        ]
    )


def _date(rng: random.Random, fake: Faker) -> str:
    day = fake.date_between(start_date="-80y", end_date="+5y")
    return rng.choice(
        [
            day.strftime("%d.%m.%Y"),
            day.strftime("%m/%d/%Y"),
            day.strftime("%Y-%m-%d"),
            day.strftime("%d %b %Y"),
            day.strftime("%Y年%m月%d日"),
            day.strftime("%d-%m-%Y"),
            day.strftime("%Y%m%d"),
            day.strftime("%d/%m/%y"),
        ]
    )


def _sentence(rng: random.Random, fake: Faker) -> str:
    n = rng.randint(1, 500)
    return rng.choice(
        [
            fake.sentence(nb_words=12),
            fake.paragraph(nb_sentences=3),
            f"{fake.sentence(nb_words=6)} {n} {fake.word()}.",
            f"Shipped {n} boxes on {fake.date()} for {_amount(rng)}.",
            f"{fake.sentence(nb_words=5)} ({rng.randint(1, 99)}%) {fake.sentence(nb_words=4)}",
            f"Room {rng.randint(100, 999)}, floor {rng.randint(1, 30)}, {rng.randint(2, 12)} people",
        ]
    )


def _quantity(rng: random.Random) -> str:
    return rng.choice(
        [
            f"{rng.uniform(0, 1000):.1f} kg",
            f"{rng.randint(1000, 99999):,} km",
            f"{rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}",
            f"{rng.randint(1, 99)} x {rng.randint(1, 999)} mm",
            f"{rng.uniform(0, 100):.2f} %",
        ]
    )


def non_pii_values(count: int, seed: int) -> dict[str, list[str]]:
    """`count` values of each ordinary kind, drawn over the ten locales."""
    rng = random.Random(f"{seed}-ordinary")
    fakes = [Faker(locale) for locale in LOCALES]
    for index, fake in enumerate(fakes):
        fake.seed_instance(seed + index)
    makers: dict[str, Callable[[Faker], str]] = {
        "isbn13": lambda f: f.isbn13(),
        "isbn10": lambda f: f.isbn10(),
        "ean13": lambda f: f.ean13(),
        "ean8": lambda f: f.ean8(),
        "part_number": lambda f: _part(rng),
        "amount": lambda f: _amount(rng),
        "uuid": lambda f: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "version": lambda f: _version(rng),
        "order_number": lambda f: _order(rng),
        "timestamp": lambda f: _timestamp(rng),
        "date": lambda f: _date(rng, f),
        "sentence": lambda f: _sentence(rng, f),
        "quantity": lambda f: _quantity(rng),
    }
    return {kind: [make(fakes[i % len(fakes)]) for i in range(count)] for kind, make in makers.items()}


# --- measuring -----------------------------------------------------------------------------------


def phone_valid(value: str, region: str) -> bool:
    """Does libphonenumber accept a generated phone number as a valid number of its region?"""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, region))
    except phonenumbers.NumberParseException:
        return False


def _samples(locale: str, entity: str, count: int, seed: int) -> tuple[list[tuple[str, str]], list[str]]:
    """`count` values to measure recall on, and the drawn phone numbers libphonenumber rejects."""
    if entity != "phone":
        return pii_values(locale, entity, count, seed), []
    valid: list[tuple[str, str]] = []
    invalid: list[str] = []
    batch = 0
    while len(valid) < count:
        for value, kind in pii_values(locale, entity, count, seed + 1000 * batch):
            if len(valid) < count and phone_valid(value, LOCALES[locale]):
                valid.append((value, kind))
            elif len(valid) < count:
                invalid.append(value)
        batch += 1
    return valid, invalid


def measure(per_cell: int = 200, ordinary: int = 1000, seed: int = 15) -> dict[str, Any]:
    """Recall per entity x locale and false positives per ordinary kind, as counts and rates only.

    A value is caught when the detectors report PII in it (what keeps it out of the prepared data);
    `own_kind` is the share reported as their own kind (a 12-digit number may pass both Aadhaar's
    and My Number's check). Faker draws phone numbers digit by digit, so some are no number of
    their region's plan (a third of en_IN's are ten random digits): phone recall counts `per_cell`
    numbers libphonenumber validates, and `phone_not_valid_caught` the share of the others caught.
    """
    detector = detectors.detector()
    # a dataset that declares its text holds no Unix times (`unix_times_in_text: false`)
    no_unix_times = detectors.detector(unix_times_in_text=False)
    phone_without_unix_times: dict[str, float] = {}
    recall: dict[str, dict[str, float]] = {}
    own_kind: dict[str, dict[str, float]] = {}
    not_valid_caught: dict[str, float] = {}
    for entity in (*VALIDATED, *KEYWORD_ONLY):
        recall[entity], own_kind[entity] = {}, {}
        for locale in LOCALES:
            fake = Faker(locale)
            fake.seed_instance(seed + 1)
            rng = random.Random(f"{seed}-{locale}-{entity}-context")
            values, invalid = _samples(locale, entity, per_cell, seed)
            caught = own = caught_without_unix_times = 0
            for value, kind in values:
                text = in_context(value, fake, rng)
                found = detector.detect(text)
                caught += bool(found)
                own += kind in found or (entity == "national_id" and bool(ID_KINDS & set(found)))
                if entity == "phone":
                    caught_without_unix_times += bool(no_unix_times.detect(text))
            recall[entity][locale] = round(caught / len(values), 4)
            if entity == "phone":
                phone_without_unix_times[locale] = round(caught_without_unix_times / len(values), 4)
            own_kind[entity][locale] = round(own / len(values), 4)
            if invalid:
                hits = sum(1 for value in invalid if detector.detect(in_context(value, fake, rng)))
                not_valid_caught[locale] = round(hits / len(invalid), 4)
    false_positives: dict[str, float] = {}
    flagged_total = total = flagged_without_unix_times = 0
    for kind, values in non_pii_values(ordinary, seed).items():
        flagged = sum(1 for value in values if detector.detect(value))
        false_positives[kind] = round(flagged / len(values), 4)
        flagged_total += flagged
        total += len(values)
        flagged_without_unix_times += sum(1 for value in values if no_unix_times.detect(value))
    return {
        "recall": recall,
        "worst_recall": {entity: min(by_locale.values()) for entity, by_locale in recall.items()},
        "own_kind": own_kind,
        "phone_not_valid_caught": not_valid_caught,
        "false_positive_rate": round(flagged_total / total, 5),
        # the same corpus read by a dataset that declares `unix_times_in_text: false`: its phone
        # recall, and what the same reading costs on ordinary values that include Unix times
        "without_unix_times": {
            "phone_recall": phone_without_unix_times,
            "false_positive_rate": round(flagged_without_unix_times / total, 5),
        },
        "false_positives": false_positives,
        "ordinary_values": total,
        "values_per_entity_and_locale": per_cell,
        "regions": list(detector.regions),
    }


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", action="store_true", help="the small seeded sample of the unit tests")
    parser.add_argument("--throughput", type=int, metavar="ROWS", help="measure prepare_stream on ROWS rows")
    parser.add_argument("--rss", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        _rss(args.rss)
        return
    if args.throughput:
        result = prep_throughput(args.throughput)
    else:
        result = measure(per_cell=40, ordinary=150) if args.sample else measure()
    print(json.dumps(result, indent=1, ensure_ascii=False))


# --- preparation throughput ----------------------------------------------------------------------

THROUGHPUT_POLICY: dict[str, Any] = {
    "dataset": "bench",
    "version": 1,
    "label": "approved",
    "columns": {
        "application_id": {"type": "identifier", "scan": False},
        "full_name": {"action": "pseudonymise", "rename": "customer_id", "type": "identifier", "pii": "name"},
        "email": {"action": "drop", "pii": "email"},
        "age": {"type": "numeric"},
        "income": {"type": "numeric"},
        "loan_amount": {"type": "numeric"},
        "purpose": {"type": "categorical"},
        "home_ownership": {"type": "categorical"},
        "notes": {"type": "text"},
        "approved": {"type": "label"},
    },
}


def throughput_file(rows: int, seed: int = 15) -> bytes:
    """A 10-column CSV without PII in its kept columns: free-text notes with dates, amounts and
    order numbers, categorical and numeric columns, a label (pools drawn from Faker, seeded)."""
    import io

    out = io.StringIO()
    write_throughput_file(out, rows, seed)
    return out.getvalue().encode("utf-8")


def write_throughput_file(out: Any, rows: int, seed: int = 15) -> None:
    """Write `throughput_file`'s rows to a text stream, row by row."""
    import csv

    rng = random.Random(seed)
    fake = Faker(list(LOCALES))
    fake.seed_instance(seed)
    names = [fake.name() for _ in range(500)]
    emails = [fake.email() for _ in range(500)]
    ordinary = non_pii_values(60, seed)
    notes = [fake.sentence(nb_words=10) for _ in range(400)] + [
        f"{fake.sentence(nb_words=5)} {value}" for values in ordinary.values() for value in values
    ]
    notes += [""] * 300
    purposes = ["car", "home", "education", "business", "medical", "wedding", "holiday", "debt consolidation"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(THROUGHPUT_POLICY["columns"]))
    for index in range(rows):
        writer.writerow(
            [
                f"APP-{index:08d}",
                rng.choice(names),
                rng.choice(emails),
                rng.randint(18, 90),
                round(rng.uniform(8_000, 250_000), 2),
                rng.randint(1_000, 80_000),
                rng.choice(purposes),
                rng.choice(("rent", "own", "mortgage")),
                f"{rng.choice(notes)} {rng.choice(notes)}".strip(),  # distinct, as free text is
                rng.choice("01"),
            ]
        )


def prep_throughput(rows: int, repeats: int = 3, prepare: Any = None) -> dict[str, Any]:
    """Rows per second of `prepare_stream` on one core, scanning on, and the peak RSS of a
    separate process preparing `rows` and 4 x `rows` (constant memory: the two stay close)."""
    import io
    import statistics
    import subprocess
    import sys
    import time

    if prepare is None:
        from closedloop.prep import prepare
    data = throughput_file(rows)
    rates = []
    flagged = 0
    for _ in range(repeats):
        out = io.StringIO()
        started = time.perf_counter()
        try:
            report = prepare.prepare_stream(io.BytesIO(data), "csv", THROUGHPUT_POLICY, b"k" * 48, out)
        except prepare.FileRejected as rejected:  # every row was read: false alarms on ordinary values
            report = rejected.details["report"]
        rates.append(rows / (time.perf_counter() - started))
        flagged = sum(sum(counts.values()) for counts in report["undeclared"].values())
    return {
        "rows_per_s": round(statistics.median(rates)),
        "values_flagged": flagged,
        "rows": rows,
        "repeats": repeats,
        "peak_rss_mb": {
            str(n): float(
                subprocess.run(
                    [sys.executable, __file__, "--rss", str(n)], capture_output=True, text=True, check=True
                ).stdout.strip()
            )
            for n in (rows, 4 * rows)
        },
    }


def _rss(rows: int) -> None:
    """Prepare `rows` rows from a temporary file to another, print this process's peak RSS (MB)."""
    import os
    import resource
    import tempfile

    from closedloop.prep import prepare

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "raw.csv")
        with open(path, "w", encoding="utf-8", newline="") as handle:
            write_throughput_file(handle, rows)
        with (
            open(path, "rb") as raw,
            open(os.devnull, "w", encoding="utf-8", newline="") as out,
            contextlib.suppress(prepare.FileRejected),  # read to the end all the same
        ):
            prepare.prepare_stream(raw, "csv", THROUGHPUT_POLICY, b"k" * 48, out)
    print(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


if __name__ == "__main__":
    main()
