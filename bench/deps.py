"""Installing the anchors at benchmark time, from the package registries, so a fresh machine works.

Python packages go into the running interpreter's environment with pip; npm packages are
fetched with ``npm pack`` into a temporary directory and unpacked there (nothing is installed
globally and nothing lands in the repository).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

PIP_TIMEOUT = 600.0
NPM_TIMEOUT = 180.0


class DependencyError(RuntimeError):
    pass


def _importable(modules: list[str]) -> bool:
    importlib.invalidate_caches()
    try:
        for m in modules:
            importlib.import_module(m)
    except ImportError:
        return False
    return True


def ensure_pip(requirements: list[str], modules: list[str], *, log: bool = True) -> None:
    """Make ``modules`` importable, running ``pip install requirements`` if any is missing."""
    if _importable(modules):
        return
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if log:
        print(f"[bench] installing {' '.join(requirements)} with pip", file=sys.stderr)
    try:
        subprocess.run(
            [*cmd, *requirements],
            check=True,
            timeout=PIP_TIMEOUT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise DependencyError(f"pip install {requirements} failed:\n{exc.stderr[-2000:]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(f"pip install {requirements} timed out") from exc
    if not _importable(modules):
        raise DependencyError(f"{modules} still not importable after pip install {requirements}")


def npm_pack(spec: str, dest: Path) -> Path:
    """Fetch the npm package ``spec`` (e.g. ``"@eventide/message-db@1.3.1"``) into ``dest``.

    Returns the unpacked package directory (``dest/package``). Runs ``npm pack``, which only
    downloads the tarball: no install scripts of the package are run.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError("npm is not on PATH (Node.js and npm are needed for message-db)")
    dest.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "npm_config_loglevel": "error",
    }
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--json", "--pack-destination", str(dest)],
            cwd=dest,
            env=env,
            check=True,
            timeout=NPM_TIMEOUT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise DependencyError(f"npm pack {spec} failed:\n{exc.stderr[-2000:]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(f"npm pack {spec} timed out") from exc
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        tarballs = sorted(dest.glob("*.tgz"))
        if not tarballs:
            raise DependencyError(f"npm pack {spec} left no tarball in {dest}") from None
        filename = tarballs[-1].name
    # npm >= 9 may report "@scope/name-x.y.z.tgz" while writing "scope-name-x.y.z.tgz"
    tarball = dest / filename
    if not tarball.exists():
        candidates = sorted(dest.glob("*.tgz"))
        if not candidates:
            raise DependencyError(f"npm pack {spec}: {filename} not found in {dest}")
        tarball = candidates[-1]
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    pkg = dest / "package"
    if not (pkg / "package.json").exists():
        raise DependencyError(f"{tarball.name} has no package/package.json")
    return pkg
