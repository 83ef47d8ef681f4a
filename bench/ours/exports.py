"""Exports (issue 18): a county's 100k issues as XLSX and CSV — time and the server's peak memory.

The API runs under uvicorn on the group's scratch database with a county of 20 streets x 15
communities (``bench.ours.http.api_with_county``); 100k issues (20k with ``--quick``) are
COPYed straight into the issues read model (the export reads nothing else), spread over the
communities, a quarter of them assigned to a unit and closed with a callback. A client
downloads ``GET /v1/issues/export?format=xlsx|csv`` as a county viewer, streaming the body
to nowhere.

* ``export.issues_xlsx`` / ``export.issues_csv``: rows/s of the whole download (request to
  last byte). ``.seconds``: its wall time. ``.peak_rss_mb``: the server process's peak
  resident memory during the download (``VmHWM``, reset through ``/proc/<pid>/clear_refs``
  just before), ``.rss_growth_mb``: that peak minus the resident memory just before.

Standalone: ``python -m bench.ours.exports`` runs these two against ``$DATABASE_URL``.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.ours.http import SECRET, api_with_county
from bench.registry import Context, benchmark, group_fixture
from domain.refs import CHINA_TZ
from services.auth import JwtConfig, issue_token

GROUP = "exports"
COUNTY = "330107000000"
START = datetime(2031, 1, 1, 8, tzinfo=CHINA_TZ)
TITLES = ("路灯不亮", "楼道堆物存在消防隐患", "井盖缺失", "噪音扰民", "垃圾清运不及时")
CATEGORIES = ("市政设施", "消防安全", "环境卫生", "社会治安", "物业管理")

COLUMNS = (
    "root_id",
    "id",
    "node_id",
    "node_code",
    "title",
    "description",
    "category",
    "source",
    "status",
    "due_at",
    "assignee_id",
    "assignee_code",
    "reported_at",
    "assigned_at",
    "accepted_at",
    "resolved_at",
    "closed_at",
    "closed_on_time",
    "result",
    "last_note",
    "evaluation_satisfaction",
    "evaluation_resolved",
    "evaluated_at",
    "version",
    "updated_at",
)


def _reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current resident size (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status(vm: str, pid: int) -> int:
    """A ``/proc/<pid>/status`` figure in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(vm + ":"):
            return int(line.split()[1])
    raise LookupError(vm)


async def _load(ctx: Context, rows: int) -> None:
    conn = await ctx.connect()
    try:
        root_id, unit_id = await conn.fetchrow(
            "SELECT r.id, (SELECT id FROM nodes WHERE code = $2) FROM nodes r WHERE r.code = $1",
            COUNTY,
            f"U{COUNTY[:6]}001",
        )
        communities = await conn.fetch(
            "SELECT id, code FROM nodes WHERE root_id = $1 AND kind = 'community'", root_id
        )
        rng = random.Random(18)
        records = []
        for n in range(rows):
            community = communities[n % len(communities)]
            reported = START + timedelta(minutes=5 * n)
            closed = n % 4 == 0
            records.append(
                (
                    root_id,
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    community["id"],
                    community["code"],
                    f"{TITLES[n % len(TITLES)]}（{n}号）",
                    "居民来电反映，请尽快处理",
                    CATEGORIES[n % len(CATEGORIES)],
                    "hotline" if n % 3 else "grid",
                    "closed" if closed else "reported",
                    reported + timedelta(days=3) if closed else None,
                    unit_id if closed else None,
                    f"U{COUNTY[:6]}001" if closed else None,
                    reported,
                    reported + timedelta(hours=1) if closed else None,
                    reported + timedelta(hours=2) if closed else None,
                    reported + timedelta(days=1) if closed else None,
                    reported + timedelta(days=2) if closed else None,
                    True if closed else None,
                    "已处理完毕" if closed else None,
                    "已联系物业" if closed else None,
                    "satisfied" if closed else None,
                    True if closed else None,
                    reported + timedelta(days=2) if closed else None,
                    6 if closed else 1,
                    reported,
                )
            )
        await conn.copy_records_to_table("rm_issues", records=records, columns=COLUMNS)
        await conn.execute("ANALYZE rm_issues")
    finally:
        await conn.close()


@group_fixture(GROUP)
async def _server(ctx: Context) -> AsyncIterator[None]:
    async with api_with_county(ctx, COUNTY):
        admin = {"Authorization": f"Bearer {ctx.state['token']}"}
        async with httpx.AsyncClient(base_url=ctx.state["server"].url, headers=admin) as c:
            body = {"code": f"U{COUNTY[:6]}001", "name": "县住建局", "kind": "unit"}
            r = await c.post("/v1/nodes", json={**body, "parent_code": COUNTY})
            r.raise_for_status()
        rows = ctx.scaled(100_000, 20_000)
        await _load(ctx, rows)
        ctx.state["rows"] = rows
        yield


def _viewer() -> str:
    config = JwtConfig(verify_key=SECRET, signing_key=SECRET, algorithms=("HS256",))
    return issue_token(config, subject="bench", scope=COUNTY, roles=["viewer"], ttl_seconds=3600)


async def _download(ctx: Context, fmt: str) -> float:
    server: Any = ctx.state["server"]
    pid = server.pid
    headers = {"Authorization": f"Bearer {_viewer()}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=600) as c:
        before = _status("VmRSS", pid)
        _reset_peak(pid)
        started = time.perf_counter()
        size = 0
        async with c.stream("GET", f"/v1/issues/export?format={fmt}") as r:
            r.raise_for_status()
            async for chunk in r.aiter_bytes():
                size += len(chunk)
        seconds = time.perf_counter() - started
        peak = _status("VmHWM", pid)
    ctx.report("seconds", seconds, "s")
    ctx.report("peak_rss_mb", peak / 1024, "MB")
    ctx.report("rss_growth_mb", (peak - before) / 1024, "MB")
    ctx.report("file_mb", size / 2**20, "MB")
    rows: int = ctx.state["rows"]
    return rows / seconds


@benchmark(
    "export.issues_xlsx",
    GROUP,
    "rows/s",
    description="GET /v1/issues/export?format=xlsx of 100k issues: whole download",
    timeout=900,
)
async def issues_xlsx(ctx: Context) -> float:
    return await _download(ctx, "xlsx")


@benchmark(
    "export.issues_csv",
    GROUP,
    "rows/s",
    description="GET /v1/issues/export?format=csv of 100k issues: whole download",
    timeout=900,
)
async def issues_csv(ctx: Context) -> float:
    return await _download(ctx, "csv")


if __name__ == "__main__":
    from bench.run import main

    sys.exit(main(["--only", "export.issues_xlsx,export.issues_csv", *sys.argv[1:]]))
