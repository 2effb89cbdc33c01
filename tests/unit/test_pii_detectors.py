"""The preparation script's PII detectors (closedloop/prep/detectors.py) on a seeded Faker sample.

The full corpus (200 values per entity type and locale) runs in `make bench` (bench/pii_corpus.py);
this sample of the same generator keeps `make test` fast. Only counts are asserted or shown.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pii_corpus  # bench/pii_corpus.py, on the tests' path: the same generator as make bench
import pytest

from closedloop.prep import detectors

ROOT = Path(__file__).resolve().parents[2]
PREP = ROOT / "layers" / "shared" / "closedloop" / "prep"


@pytest.fixture(scope="module")
def sample() -> dict[str, object]:
    started = time.perf_counter()
    result = pii_corpus.measure(per_cell=40, ordinary=150, seed=15)
    result["seconds"] = time.perf_counter() - started
    return result


def test_the_sample_is_seeded_small_and_fast(sample: dict[str, object]) -> None:
    # Given the sample (40 values per entity type and locale, 150 per ordinary kind)
    # Then it covers the ten locales and runs well inside `make test`'s budget
    recall = sample["recall"]
    assert isinstance(recall, dict)
    assert set(recall["phone"]) == set(pii_corpus.LOCALES) and len(pii_corpus.LOCALES) == 10
    assert sample["ordinary_values"] == 150 * 13
    assert float(sample["seconds"]) < 10  # type: ignore[arg-type]


@pytest.mark.parametrize("entity", pii_corpus.VALIDATED)
def test_recall_of_each_validated_entity_is_at_least_99_percent_in_every_locale(
    sample: dict[str, object], entity: str
) -> None:
    # Given values Faker generates in ten locales, alone or inside a sentence of the locale
    recall = sample["recall"]
    assert isinstance(recall, dict)
    # Then at least 99 % of each entity type are caught in every locale (a 96 % floor for India's
    # phones: a ten-digit landline written without its 0, which no detector can tell from a Unix
    # timestamp, is the one known gap; docs/governance.md)
    floor = {locale: 0.99 for locale in pii_corpus.LOCALES}
    if entity == "phone":
        floor["en_IN"] = 0.95
    assert {loc: rate for loc, rate in recall[entity].items() if rate < floor[loc]} == {}


def test_false_positives_on_ordinary_numbers_stay_under_half_a_percent(sample: dict[str, object]) -> None:
    # Given ISBNs, EANs, part numbers, EU/US amounts, UUIDs, versions, order numbers, timestamps,
    # dates, sentences and quantities
    # Then at most 0.5 % of them are reported as PII
    assert float(sample["false_positive_rate"]) <= 0.005  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # the phone numbers today's script missed (issue 15)
        ("(878)734-4309", "phone"),
        ("3094940396", "phone"),
        ("0121 4960214", "phone"),
        ("+49(0)7869890926", "phone"),
        ("+33 2 61 92 75 88", "phone"),
        ("+39 049527916", "phone"),
        ("+31377-415561", "phone"),
        # a 12-digit Maestro card, and cards as issuers print them
        ("maestro 675936625853", "payment_card"),
        ("3782 822463 10005", "payment_card"),
        # national identifiers, each checked by its library
        ("NI number AB 12 34 56 C", "uk_nino"),
        ("CF RSSMRA85T10A562S", "it_codice_fiscale"),
        ("BSN 111222333", "nl_bsn"),
        ("NIR 2 84 08 2A 004 001 31", "fr_nir"),
        ("DNI 12345678Z", "es_dni"),
        ("NIE X1234567L", "es_nie"),
        ("PAN ABCPE1234F", "in_pan"),
        ("CPF 390.533.447-05", "br_cpf"),
        ("IdNr 86 095 742 719", "de_idnr"),
        ("Aadhaar 2341 2341 2346", "in_aadhaar"),
        ("マイナンバー 1234 5678 9018", "jp_my_number"),
        ("from 2001:db8::8a2e:370:7334", "ip_address"),
        ("from 81.2.69.160", "ip_address"),
        ("Reisepass Nr. C01X00T47", "passport"),
    ],
)
def test_values_are_found_as_their_kind(text: str, kind: str) -> None:
    assert kind in detectors.detect_pii(text)


@pytest.mark.parametrize(
    "text",
    [
        "part 57-9234-563",
        "17.684.135,17 €",
        "$17,684,135.17",
        "ISBN 978-3-16-148410-0",
        "4006381333931",  # an EAN-13
        "order no. 4839201734",
        "1732712712",  # a Unix timestamp
        "2026-11-27T13:45:12Z",
        "version 10.0.19045.2965",
        "release 2.14.3.1",
        "123e4567-e89b-42d3-a456-426614174000",
        "27.11.2026",
        "48.8566, 2.3522",
    ],
)
def test_ordinary_numbers_are_not_pii(text: str) -> None:
    assert detectors.detect_pii(text) == []


def test_regions_decide_which_national_numbers_are_looked_for() -> None:
    # Given a Dutch citizen service number and a German national phone number
    bsn, phone = "burgerservicenummer 111222333", "Tel. 030 901820"
    # Then a dataset declaring only the US finds neither, one declaring NL and DE finds both
    assert detectors.detect_pii(bsn, ["US"]) == [] and detectors.detect_pii(phone, ["US"]) == []
    assert detectors.detect_pii(bsn, ["NL", "DE"]) == ["nl_bsn"]
    assert detectors.detect_pii(phone, ["NL", "DE"]) == ["phone"]
    # And an international number is found whatever the regions
    assert detectors.detect_pii("+49 30 901820", ["US"]) == ["phone"]
    with pytest.raises(ValueError, match="unknown region"):
        detectors.Detector(["XX"])


def test_numbers_in_a_numeric_column_are_scanned_for_identifiers_only() -> None:
    detector = detectors.detector()
    assert detector.detect_number("4111111111111111") == ["payment_card"]
    assert detector.detect_number("+4915112345678") == ["phone"]
    assert detector.detect_number("52000.50") == []
    assert detector.detect_number("1732712712") == []


def test_redaction_replaces_each_value_by_its_kind() -> None:
    redacted, kinds = detectors.detector().redact("mail a.b@example.org or call +44 20 7946 0958 today")
    assert redacted == "mail [email] or call [phone] today"
    assert kinds == ["email", "phone"]


def _interpreters() -> list[str]:
    """This interpreter, and Glue's Python 3.9 where the machine has one."""
    found = [sys.executable]
    candidates = [shutil.which("python3.9"), *sorted(Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            found.append(str(candidate))
            break
    return found


def test_the_shipped_wheels_alone_run_the_detectors(tmp_path: Path) -> None:
    # Given the detector module and the wheels shipped with the jobs, in a directory of their own
    # (as the Processing job downloads its code), and an interpreter that sees nothing else:
    # isolated mode, no site-packages (-I -S)
    shutil.copy(PREP / "detectors.py", tmp_path / "detectors.py")
    shutil.copytree(PREP / "wheels", tmp_path / "wheels")
    wheels = sorted(p.name for p in (tmp_path / "wheels").glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["phonenumberslite", "python_stdnum"]
    assert all(zipfile.is_zipfile(tmp_path / "wheels" / w) and w.endswith("-none-any.whl") for w in wheels)
    probe = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[2])\n"  # what running the script from there gives the jobs
        "import detectors\n"
        "assert all(m.__file__.startswith(sys.argv[1]) for m in "
        "(sys.modules['phonenumbers'], sys.modules['stdnum']))\n"
        "found = [detectors.detect_pii(t) for t in ('+33 2 61 92 75 88', 'DE89370400440532013000', "
        "'BSN 111222333', '4111 1111 1111 1111')]\n"
        "print(found)\n"
    )
    interpreters = _interpreters()
    for python in interpreters:
        # When the detectors run there
        result = subprocess.run(
            [python, "-I", "-S", "-c", probe, str(tmp_path / "wheels"), str(tmp_path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
        )
        # Then they import their libraries from the shipped wheels and find every value
        assert result.returncode == 0, (python, result.stderr[-2000:])
        assert result.stdout.strip() == "[['phone'], ['iban'], ['nl_bsn'], ['payment_card']]", python


def test_the_shipped_wheels_are_the_pinned_development_versions() -> None:
    pins = dict(
        line.split("#")[0].strip().split("==")
        for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines()
        if line.split("==")[0].lower() in ("phonenumberslite", "python-stdnum")
    )
    shipped = {w.name.split("-")[0].replace("_", "-"): w.name.split("-")[1] for w in (PREP / "wheels").glob("*.whl")}
    assert shipped == {name.lower(): version for name, version in pins.items()}
    assert detectors.library_versions() == {
        "phonenumbers": pins["phonenumberslite"],
        "python-stdnum": pins["python-stdnum"],
    }
