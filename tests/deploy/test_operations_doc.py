"""docs/operations.md: every environment variable documented, the sizing arithmetic adds up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
SETTINGS = ROOT / "infra" / "settings.py"

# The application's configuration surface (infra/settings.py and the embedded-database switch).
APP_VARIABLES = {
    "DATABASE_URL",
    "PORT",
    "HOST",
    "CIVIC_ENV",
    "CIVIC_DATA_DIR",
    "CIVIC_JWT_SECRET",
    "CIVIC_JWT_PUBLIC_KEY",
    "CIVIC_JWT_ALGORITHMS",
    "CIVIC_JWT_ISSUER",
    "CIVIC_JWT_AUDIENCE",
    "CIVIC_SIGNING_KEY",
    "CIVIC_PII_MASTER_KEY",
    "CIVIC_DB_POOL_MIN",
    "CIVIC_DB_POOL_MAX",
    "CIVIC_RUN_PROJECTOR",
    "CIVIC_MIGRATE_ON_START",
    "CIVIC_LOG_LEVEL",
    "CIVIC_NATS_URL",
    "CIVIC_RATE_LIMIT",
}
SECTIONS = (
    "Configuration",
    "Container image",
    "Kubernetes",
    "Secrets",
    "Several API and projector replicas",
    "Sizing a province",
    "Sharding by root tenant on Citus",
    "Backup and point-in-time restore",
    "Key rotation",
    "Zero-downtime upgrades",
)


def text() -> str:
    return DOC.read_text(encoding="utf-8")


def documented() -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", text(), flags=re.M))


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text(), flags=re.M | re.S)
    assert match, f"missing section {title!r}"
    return match[1]


def test_every_application_variable_is_in_the_table() -> None:
    missing = APP_VARIABLES - documented()
    assert not missing, sorted(missing)


def test_settings_module_and_table_agree() -> None:
    if not SETTINGS.exists():
        pytest.skip("infra/settings.py not present")
    source = SETTINGS.read_text(encoding="utf-8")
    read = set(
        re.findall(
            r"""(?:env\.get|flag|environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""", source
        )
    )
    assert read, "no environment reads found: update this test's pattern"
    missing = read - documented()
    assert not missing, f"undocumented in docs/operations.md: {sorted(missing)}"


def test_sections_present() -> None:
    for title in SECTIONS:
        section(title)


def _number(cell: str) -> int:
    return int(re.sub(r"[^0-9]", "", cell))


def test_sizing_arithmetic_adds_up() -> None:
    sizing = section("Sizing a province")
    rows = [line.split("|")[1:-1] for line in sizing.splitlines() if line.startswith("| ")]
    events = [
        _number(cells[-1])
        for cells in rows
        if len(cells) == 4 and re.fullmatch(r"\s*[0-9,]+\s*", cells[-1])
    ]
    assert len(events) == 6
    total = sum(events)
    assert f"≈ {total:,}" in sizing
    per_day = total / 365
    assert 580_000 <= per_day <= 620_000 and "600,000 events/day" in sizing
    working_rate = total / 250 / (9 * 3600)
    assert round(working_rate) == 27 and "≈ **27 events/s**" in sizing
    gigabytes = total * 1_000 / 1e9
    assert round(gigabytes, -1) == 220 and "220 GB/year" in sizing
