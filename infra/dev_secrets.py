"""Development secrets: generated once and kept under the data directory (mode 0600).

Production passes every secret through the environment and never reaches this module.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def load_or_create(data_dir: Path, name: str, generate: Callable[[], str]) -> str:
    """The secret ``name``, generated on first use. Several processes starting at once on
    one data directory (two ``civic serve`` and a ``civic project``) agree on one value: it
    is written to a private temporary file and linked into place, which fails for all but
    the first; the others then read the first one's, which is complete once it is visible.
    """
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate()
    draft = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    try:
        os.link(draft, path)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    finally:
        draft.unlink()
    return value


def random_token() -> str:
    return secrets.token_urlsafe(48)
