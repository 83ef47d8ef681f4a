"""civic_verify runs where the server does not: only the standard library and cryptography."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "civic_verify"
ALLOWED = {"cryptography", "civic_verify", "__future__"}


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add("civic_verify")
    return found


def test_every_module_imports_only_the_standard_library_and_cryptography() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        foreign = _imported(path) - ALLOWED - set(sys.stdlib_module_names)
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_loading_the_verifier_loads_nothing_of_the_server() -> None:
    code = (
        "import sys, civic_verify.bundle, civic_verify.witness;"
        "bad = {'infra', 'services', 'domain', 'projections', 'msgspec', 'asyncpg',"
        " 'litestar', 'httpx'};"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
        timeout=60,
    )
    assert out.stdout.strip() == "[]", out.stdout
