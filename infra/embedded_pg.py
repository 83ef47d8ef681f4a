"""An embedded PostgreSQL (``pgserver`` from PyPI) for development when DATABASE_URL is unset.

Data lives under ``<data_dir>/pg``. The server keeps running after this process exits
(``cleanup_mode=None``) so restarts are fast; ``pgserver`` reuses it.
"""

from __future__ import annotations

from pathlib import Path


def start(data_dir: Path, *, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded server and return a libpq URL for it.

    ``keep_running=False`` stops it when this process exits, unless another process
    still uses it (tests use that, so they stop what they started).
    """
    import pgserver  # imported lazily: production never needs it

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    uri: str = server.get_uri()
    return uri
