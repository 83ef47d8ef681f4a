"""The benchmark harness reports a figure that fails and goes on with the others.

One figure of a run used to stop the whole run (a ``TooManyConnectionsError`` while taking
the CHECKPOINT before a run). Here a benchmark that always fails with it, one that fails in
its second run, and one that works run under ``bench.run`` in a subprocess of their own (so
its registry and signal handler stay out of this session), with the CHECKPOINT failing too:
every run is attempted, the failures are shown in the table and in the JSON with their
one-line cause, targets that need a failed figure are "failed", and the exit status is 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys

    import asyncpg

    from bench import db, run
    from bench.registry import Context, benchmark

    async def refused(server_url: str) -> None:
        raise asyncpg.TooManyConnectionsError("sorry, too many clients already")

    db.checkpoint = refused  # what stopped a whole run before

    @benchmark("harness.fails", "harness", "ops/s")
    async def fails(ctx: Context) -> float:
        raise asyncpg.TooManyConnectionsError("sorry, too many clients already\\nDETAIL: x")

    @benchmark("harness.flaky", "harness", "ops/s")
    async def flaky(ctx: Context) -> float:
        if ctx.run_index == 1:
            raise RuntimeError("the second run broke")
        return 10.0

    @benchmark("harness.works", "harness", "ops/s")
    async def works(ctx: Context) -> float:
        conn = await ctx.connect()  # the group's scratch database
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        ctx.report("p99_ms", 2.0, "ms")
        return 100.0

    run.RATIOS = [
        ("harness.fails", None, 1.0, "ge"),
        ("harness.fails.p99_ms", None, 5.0, "le"),
        ("harness.works", "harness.fails", 1.0, "ge"),
        ("harness.works.p99_ms", None, 5.0, "le"),
        ("harness.flaky", None, 1.0, "ge"),
    ]
    sys.exit(run.main(sys.argv[1:]))
    """
)


def test_a_failing_figure_is_reported_and_the_run_goes_on(server_url: str, tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    args = ["--only", "harness", "--database-url", server_url, "--runs", "3"]
    args += ["--duration", "0.05", "--warmup", "0", "--output", str(output)]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads(output.read_text())
    figures = result["figures"]

    failed = figures["harness.fails"]
    assert failed["values"] == [None, None, None]  # every run was attempted
    assert failed["status"] == "failed"
    assert failed["error"] == "TooManyConnectionsError: sorry, too many clients already"

    flaky = figures["harness.flaky"]
    assert flaky["values"] == [10.0, None, 10.0]
    assert flaky["status"] == "partial"
    assert flaky["error"] == "RuntimeError: the second run broke"

    works = figures["harness.works"]
    assert works["values"] == [100.0, 100.0, 100.0]
    assert works["status"] == "ok" and works["error"] is None
    assert figures["harness.works.p99_ms"]["median"] == 2.0

    status = {(r["figure"], r["against"]): r["status"] for r in result["ratios"]}
    assert status == {
        ("harness.fails", None): "failed",
        ("harness.fails.p99_ms", None): "failed",
        ("harness.works", "harness.fails"): "failed",
        ("harness.works.p99_ms", None): "met",
        ("harness.flaky", None): "met",
    }
    causes = {r["figure"]: r["error"] for r in result["ratios"] if r["status"] == "failed"}
    assert causes["harness.fails.p99_ms"] == (
        "harness.fails: TooManyConnectionsError: sorry, too many clients already"
    )

    table = " ".join(done.stdout.split())
    assert "failed: TooManyConnectionsError: sorry, too many clients already" in table
    assert "1 failed: RuntimeError: the second run broke" in table
    assert "harness.fails failed (3/3 runs)" in " ".join(done.stderr.split())
