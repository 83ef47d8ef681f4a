"""An embedded PostgreSQL (``pgserver`` from PyPI) for development when DATABASE_URL is unset.

Data lives under ``<data_dir>/pg``. ``start`` leaves the server running when this process
exits (``cleanup_mode=None``), so ``pgserver`` can reuse it; ``civic dev`` stops the one it
started with ``stop`` when it is stopped itself (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path


def start(data_dir: Path, *, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded server and return a libpq URL for it.

    ``keep_running=False`` stops it when this process exits, unless another process
    still uses it (tests use that, so they stop what they started).
    """
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import; without a login session
        # XDG_RUNTIME_DIR is unset and the fallback under /tmp is what we want, silently.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver  # imported lazily: production never needs it

        pgdata = (data_dir / "pg").resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    uri: str = server.get_uri()
    return uri


def running_pid(data_dir: Path) -> int | None:
    """The postmaster's pid when a server runs on ``<data_dir>/pg``, else None."""
    pidfile = (data_dir / "pg").resolve() / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, IndexError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def stop(data_dir: Path, timeout: float = 30.0) -> None:
    """Fast shutdown (SIGINT to the postmaster), bounded; SIGKILL if it does not stop."""
    pid = running_pid(data_dir)
    if pid is None:
        return
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
