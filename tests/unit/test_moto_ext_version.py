"""The moto extensions refuse a moto they were not tested with, before patching anything."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from closedloop_ops import moto_ext

ROOT = Path(__file__).resolve().parents[2]


def installed_moto_is(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    """`importlib.metadata` reports `version` for moto (None: not installed)."""
    real = metadata.version

    def version_of(name: str) -> str:
        if name != "moto":
            return real(name)
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(metadata, "version", version_of)


@pytest.mark.parametrize("version", ["5.3.0", "5.2.4", "6.0.1", "5.2.6.dev3", "5.2.7rc1"])
def test_install_refuses_a_moto_outside_the_tested_range(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    # Given a moto the extensions were not tested with, and the extensions not yet installed
    installed_moto_is(monkeypatch, version)
    monkeypatch.setattr(moto_ext, "_installed", False)
    # When they are installed
    with pytest.raises(moto_ext.MotoVersionError) as refused:
        moto_ext.install()
    # Then the error names the installed and the tested versions, and nothing was patched
    assert f"moto {version} is installed" in str(refused.value)
    assert moto_ext.TESTED_MOTO in str(refused.value) and "requirements/dev.txt" in str(refused.value)
    assert moto_ext._installed is False


def test_install_refuses_when_moto_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no moto at all; then installing says what to install
    installed_moto_is(monkeypatch, None)
    monkeypatch.setattr(moto_ext, "_installed", False)
    with pytest.raises(moto_ext.MotoVersionError, match="moto is not installed"):
        moto_ext.install()


@pytest.mark.parametrize("version", ["5.2.5", "5.2.9", "5.2.5.post1"])
def test_versions_in_the_range_pass(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    # Given a moto inside the tested range; then the check passes and says which
    installed_moto_is(monkeypatch, version)
    assert moto_ext.check_moto_version() == version


def test_the_installed_moto_and_the_pinned_ones_are_in_the_tested_range() -> None:
    # Given the moto in this environment and the pins of the requirement files
    pins = {
        path.name: re.search(r"^moto(?:\[[^\]]*\])?==([^\s;#]+)", path.read_text(encoding="utf-8"), re.M)
        for path in (ROOT / "requirements").glob("*.txt")
    }
    pinned = {name: match.group(1) for name, match in pins.items() if match}
    # Then each is one the extensions were tested with
    assert "dev.txt" in pinned
    assert moto_ext.check_moto_version() == metadata.version("moto")
    assert all(moto_ext.in_tested_range(version) for version in pinned.values()), pinned
