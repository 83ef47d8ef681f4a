"""The layer rule of DESIGN.md, checked: domain does no I/O, infra knows nothing of HTTP."""

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
