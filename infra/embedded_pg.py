"""An embedded PostgreSQL (``pgserver`` from PyPI) for development when DATABASE_URL is unset.

Data lives under ``<data_dir>/pg``. The server keeps running after this process exits
(``cleanup_mode=None``) so restarts are fast; ``pgserver`` reuses it.
"""

from __future__ import annotations

from pathlib import Path


def start(data_dir: Path) -> str:
    """Start (or reuse) the embedded server and return a libpq URL for it."""
    import pgserver  # imported lazily: production never needs it

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    uri: str = server.get_uri()
    return uri
