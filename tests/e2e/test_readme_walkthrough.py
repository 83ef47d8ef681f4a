"""The README's walk-through, run as written: every ```sh block marked ``<!-- walkthrough -->``,
in order, in one bash, against `civic dev` on a fresh embedded PostgreSQL on 127.0.0.1.

So the walk-through cannot rot: a step that answers an error status stops it (the README's
``curl`` wrapper uses ``--fail-with-body``) and fails this test with the problem document.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_dev_server import REPO, dev_server  # noqa: F401  (the fixture)

BLOCK = re.compile(r"<!-- walkthrough -->\n```sh\n(.*?)\n```", re.DOTALL)


def walkthrough() -> str:
    blocks = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 5, "the README's walk-through blocks are not marked"
    return "set -euo pipefail\n" + "\n".join(blocks) + "\necho WALKTHROUGH-DONE\n"


@pytest.mark.skipif(shutil.which("jq") is None, reason="the walk-through uses jq")
def test_readme_walkthrough_runs_against_a_live_server(dev_server, tmp_path: Path):  # noqa: F811
    base, _ = dev_server
    work = tmp_path / "walk"
    work.mkdir()
    # "from the repository's directory": .venv/bin/civic resolves; files it writes stay here
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "API": base,
        "CIVIC_DATA_DIR": str(tmp_path / "data"),  # the server's: its development JWT secret
    }
    env.pop("CIVIC_JWT_SECRET", None)
    result = subprocess.run(
        ["bash", "-c", walkthrough()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WALKTHROUGH-DONE" in result.stdout, output[-4000:]
    assert '"status":"closed"' in result.stdout  # the issue went the whole loop
    assert (work / "ledger.xlsx").stat().st_size > 1000
    assert (work / "ledger.csv").read_bytes().startswith(b"\xef\xbb\xbf")
