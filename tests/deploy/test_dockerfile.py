"""Static checks of Dockerfile and .dockerignore (no Docker engine runs in CI)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "dangling line continuation"
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def packages() -> list[str]:
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


def test_multi_stage_slim_runtime() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    builder, runtime = all_stages[0], all_stages[-1]
    assert re.fullmatch(r"\$\{PYTHON_IMAGE\} AS builder", builder[0][1], re.I)
    assert re.fullmatch(r"\$\{PYTHON_IMAGE\} AS runtime", runtime[0][1], re.I)
    assert arg_defaults()["PYTHON_IMAGE"].startswith("python:3.11-slim")
    runtime_text = " ".join(rest for _, rest in runtime)
    assert "--from=builder /opt/venv /opt/venv" in runtime_text
    assert not any(k == "RUN" and "pip install" in rest for k, rest in runtime), "no pip in runtime"
    assert any(k == "RUN" and "python -m venv /opt/venv" in rest for k, rest in builder)


def test_runtime_is_non_root_with_civic_entrypoint() -> None:
    runtime = stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1] in ("10001", "10001:10001")
    assert any("--uid 10001" in rest for keyword, rest in runtime if keyword == "RUN")
    [entrypoint] = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    [cmd] = [rest for keyword, rest in runtime if keyword == "CMD"]
    assert json.loads(entrypoint) == ["civic"]
    assert json.loads(cmd) == ["serve"]
    assert not any(keyword == "HEALTHCHECK" for keyword, _ in instructions())
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOST=0.0.0.0" in env
    assert re.search(r"CIVIC_DATA_DIR=/tmp/", env), "writable data dir under /tmp"
    exposed = " ".join(rest for keyword, rest in runtime if keyword == "EXPOSE").split()
    assert {"8000", "9000"} <= set(exposed)


def test_labels() -> None:
    labels = " ".join(rest for keyword, rest in stages()[-1] if keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_builder_installs_the_project() -> None:
    builder = stages()[0]
    copies = [rest for keyword, rest in builder if keyword == "COPY"]
    copied = {part.split()[0] for part in copies}
    for package in packages():
        assert package in copied, f"package {package} not copied into the image"
    assert "pyproject.toml" in copied
    if pyproject()["project"].get("readme"):
        assert pyproject()["project"]["readme"] in copied
    assert any(k == "RUN" and "pip install --no-deps ." in rest for k, rest in builder)


# --- .dockerignore (Docker's matching: last matching pattern wins, parents count) --------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip("/"))))
    return rules


def ignored(path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in _rules():
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_is_an_allow_list() -> None:
    assert _rules()[0][1].pattern == "[^/]*", "first rule excludes everything"


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "domain/node.py",
        "services/cli.py",
        "projections/runner.py",
        "infra/migrations/0001_init.sql",
        "infra/settings.py",
    ],
)
def test_build_inputs_reach_the_daemon(path: str) -> None:
    assert not ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        ".data/pg/postmaster.pid",
        "tests/unit/test_x.py",
        "bench/run.py",
        "k8s/base/kustomization.yaml",
        "docs/operations.md",
        ".env",
        "infra/.env.local",
        "infra/__pycache__/settings.cpython-311.pyc",
        "services/signing.pem",
        "Dockerfile",
    ],
)
def test_everything_else_stays_out(path: str) -> None:
    assert ignored(path)


def test_every_package_is_allowed() -> None:
    for package in packages():
        assert not ignored(f"{package}/__init__.py"), package
