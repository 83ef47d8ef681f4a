"""Development secrets: generated once and kept under the data directory (mode 0600).

Production passes every secret through the environment and never reaches this module.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def load_or_create(data_dir: Path, name: str, generate: Callable[[], str]) -> str:
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return value


def random_token() -> str:
    return secrets.token_urlsafe(48)
