"""The layer rule of docs/development.md, checked: domain does no I/O, infra knows nothing of
HTTP, and nothing but the tests imports ``tests``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "domain": {
        "asyncpg",
        "litestar",
        "msgspec",
        "asyncio",
        "infra",
        "services",
        "projections",
        "httpx",
        "socket",
        "sqlite3",
    },
    "infra": {"litestar", "services", "projections", "httpx"},
    "projections": {"litestar", "services"},
    "bench": {"tests"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_it_must_not(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no files in {layer}/"
    offences = {
        str(f.relative_to(ROOT)): sorted(imported_modules(f) & FORBIDDEN[layer]) for f in files
    }
    offences = {k: v for k, v in offences.items() if v}
    assert not offences, f"layer rule broken: {offences}"


def code_outside_tests() -> list[Path]:
    """Every Python file of the repository but the tests' own (hidden folders aside: the
    virtualenv, caches)."""
    tops = [p for p in ROOT.iterdir() if p.name != "tests" and not p.name.startswith(".")]
    return sorted(
        f
        for top in tops
        for f in ([top] if top.is_file() else top.rglob("*.py"))
        if f.suffix == ".py"
    )


def test_nothing_outside_tests_imports_tests() -> None:
    files = code_outside_tests()
    assert any(f.relative_to(ROOT).parts[0] == "bench" for f in files)
    offences = [str(f.relative_to(ROOT)) for f in files if "tests" in imported_modules(f)]
    assert not offences, f"imports tests: {offences}"
