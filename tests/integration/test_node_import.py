"""POST /v1/nodes:import — the division-code table: the sample builds the tree, a re-import
creates nothing, the annual refresh (renames, reissued codes, new codes) is reported by a
dry run and applied only when confirmed, bad rows are reported by line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.findings_support import assert_problem
from tests.integration.test_rebuild import civic
from tests.support import auth, fresh_county_code, post_ok

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "xihu-330106-divisions.csv"
CSV = {"Content-Type": "text/csv; charset=utf-8"}


def sample_for(county: str) -> str:
    """The shipped sample, moved to a county code of this test run."""
    return SAMPLE.read_text(encoding="utf-8").replace("330106", county[:6])


async def county_root(client: Any, jwt: Any) -> tuple[str, dict[str, str]]:
    county = fresh_county_code()
    admin = auth(jwt, county, "admin")
    created = await post_ok(
        client,
        "/v1/nodes",
        {"code": county, "name": "西湖区", "kind": "county", "parent_code": None},
        admin,
    )
    # reads wait for the county too: a dry run answers no position of its own
    LAST[0] = max(LAST[0], int(created["position"]))
    return county, admin


async def run_import(
    client: Any, headers: dict[str, str], county: str, body: str | bytes, *, dry_run: bool = False
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/nodes:import?root={county}&dry_run={'true' if dry_run else 'false'}",
        content=body if isinstance(body, bytes) else body.encode("utf-8"),
        headers={**headers, **CSV},
    )
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()
    if "x-civic-position" in r.headers:
        LAST[0] = max(LAST[0], int(r.headers["x-civic-position"]))
    return report


#: the newest position an import answered with (reads wait for it)
LAST = [0]


async def node(client: Any, headers: dict[str, str], code: str) -> dict[str, Any]:
    r = await client.get(f"/v1/nodes/{code}?min_position={LAST[0]}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_sample_builds_the_tree_and_a_reimport_creates_nothing(client, jwt):
    county, admin = await county_root(client, jwt)
    text = sample_for(county)
    dry = await run_import(client, admin, county, text, dry_run=True)
    assert dry["dry_run"] is True and dry["errors"] == []
    assert (dry["created"], dry["unchanged"], dry["renamed"]) == (36, 1, 0)
    assert len(dry["new_codes"]) == 36 and dry["proposed_moves"] == []
    assert (await node(client, admin, county))["children"] == []  # the dry run wrote nothing

    done = await run_import(client, admin, county, text)
    assert done["dry_run"] is False and done["errors"] == []
    assert (done["created"], done["unchanged"], done["renamed"], done["moved"]) == (36, 1, 0, 0)
    street = f"{county[:6]}001000"
    root = await node(client, admin, county)
    assert len(root["children"]) == 6 and street in root["children"]
    s = await node(client, admin, street)
    assert s["kind"] == "street" and s["name"] == "北山街道"
    assert s["children"] == [f"{county[:6]}001{c:03d}" for c in range(1, 6)]
    c = await node(client, admin, f"{county[:6]}001003")
    assert c["kind"] == "community" and c["path"] == [county, street, f"{county[:6]}001003"]

    again = await run_import(client, admin, county, text)
    assert (again["created"], again["unchanged"], again["renamed"], again["moved"]) == (0, 37, 0, 0)
    assert again["errors"] == [] and again["new_codes"] == []
    # a byte-order mark and a Chinese header are fine too
    bom = "\ufeff统计用区划代码,名称\n" + "\n".join(text.splitlines()[10:]) + "\n"
    assert (await run_import(client, admin, county, bom))["unchanged"] == 36


async def test_the_annual_refresh_is_reported_then_applied_through_node_moved(client, jwt, pool):
    county, admin = await county_root(client, jwt)
    p = county[:6]
    text = sample_for(county)
    await run_import(client, admin, county, text)
    # next year's table: street 3 renamed; 示例社区0105 reissued under street 2 as 002009;
    # a new community 006006; 示例社区0401's code changes within its street (004101)
    lines = text.splitlines()
    refreshed = []
    for line in lines:
        if line.startswith(f"{p}003000,"):
            line = f"{p}003000,灵隐街道（新）,"
        if line.startswith(f"{p}001005,"):
            continue
        if line.startswith(f"{p}004001,"):
            line = line.replace(f"{p}004001", f"{p}004101")
        refreshed.append(line)
    refreshed += [f"{p}002009,示例社区0105,111", f"{p}006006,新建社区,112"]
    new_text = "\n".join(refreshed) + "\n"

    dry = await run_import(client, admin, county, new_text, dry_run=True)
    assert dry["errors"] == []
    street3 = next(n for n, x in enumerate(refreshed, 1) if x.startswith(f"{p}003000,"))
    assert dry["renames"] == [
        {
            "line": street3,
            "code": f"{p}003000",
            "old_name": "灵隐街道",
            "new_name": "灵隐街道（新）",
        }
    ]
    moves = {m["code"]: m for m in dry["proposed_moves"]}
    assert set(moves) == {f"{p}001005", f"{p}004001"}
    assert moves[f"{p}001005"] | {"line": 0} == {
        "line": 0,
        "code": f"{p}001005",
        "new_code": f"{p}002009",
        "name": "示例社区0105",
        "from_parent": f"{p}001000",
        "to_parent": f"{p}002000",
    }
    assert moves[f"{p}004001"]["new_code"] == f"{p}004101"
    assert moves[f"{p}004001"]["from_parent"] == moves[f"{p}004001"]["to_parent"]
    assert dry["new_codes"] == [f"{p}006006"] and dry["created"] == 1
    # nothing applied yet
    assert (await node(client, admin, f"{p}001005"))["code"] == f"{p}001005"
    assert (await node(client, admin, f"{p}003000"))["name"] == "灵隐街道"

    done = await run_import(client, admin, county, new_text)
    assert done["errors"] == []
    assert (done["created"], done["renamed"], done["moved"]) == (1, 1, 2)
    moved = await node(client, admin, f"{p}001005")  # the old code is an alias now
    assert moved["code"] == f"{p}002009"
    assert moved["path"] == [county, f"{p}002000", f"{p}002009"]
    assert (await node(client, admin, f"{p}004001"))["code"] == f"{p}004101"
    assert (await node(client, admin, f"{p}003000"))["name"] == "灵隐街道（新）"
    assert (await node(client, admin, f"{p}006006"))["name"] == "新建社区"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT e.type, e.data->>'new_code' AS new_code FROM events e"
            " JOIN nodes n ON n.id = e.stream_id WHERE n.code = $1 ORDER BY e.version",
            f"{p}002009",
        )
    assert [(r["type"], r["new_code"]) for r in rows] == [
        ("NodeRegistered", None),
        ("NodeMoved", f"{p}002009"),
    ]
    again = await run_import(client, admin, county, new_text)
    assert (again["created"], again["renamed"], again["moved"]) == (0, 0, 0)
    assert again["proposed_moves"] == [] and again["unchanged"] == 38


async def test_bad_rows_are_reported_by_line_and_the_rest_imports(client, jwt):
    county, admin = await county_root(client, jwt)
    p = county[:6]
    other = fresh_county_code()
    text = "\n".join(
        [
            "# a note",  # 1
            "code,name,urban_rural_code",  # 2
            f"{p}001000,一街道,",  # 3
            f"{p}001001,甲社区,111",  # 4
            "33010600100,短代码,",  # 5
            f"{p}001001,重复,",  # 6
            f"{other[:6]}001000,别的县的街道,",  # 7
            f"{p}009001,没有街道的社区,",  # 8
            f"{p}001002,乙社区,11",  # 9
            f"{p}001003,{'长' * 201},",  # 10
            f"{p}000001,错位,",  # 11
            "",  # 12 (blank)
            f"{p}001004,丙社区,121",  # 13
        ]
    )
    done = await run_import(client, admin, county, text)
    assert [e["line"] for e in done["errors"]] == [5, 6, 7, 8, 9, 10, 11]
    messages = {e["line"]: e["message"] for e in done["errors"]}
    assert "12 digits" in messages[5] and "repeats line 4" in messages[6]
    assert "not under the root" in messages[7] and "parent" in messages[8]
    assert "urban_rural_code" in messages[9] and "name" in messages[10]
    assert done["created"] == 3
    assert (await node(client, admin, f"{p}001000"))["children"] == [f"{p}001001", f"{p}001004"]


async def test_limits_roles_and_bad_files(client, jwt):
    county, admin = await county_root(client, jwt)
    url = f"/v1/nodes:import?root={county}"
    ok = f"code,name\n{county},西湖区\n".encode()
    for role in ("viewer", "operator", "unit", "inspector", "integrator"):
        r = await client.post(url, content=ok, headers={**auth(jwt, county, role), **CSV})
        assert_problem(r, 403)
    assert_problem(await client.post(url, content=ok, headers=CSV), 401)
    other, other_admin = await county_root(client, jwt)
    r = await client.post(f"/v1/nodes:import?root={other}", content=ok, headers={**admin, **CSV})
    assert_problem(r, 404)
    r = await client.post(url, content=ok, headers={**admin, "Content-Type": "application/json"})
    assert_problem(r, 415)
    big = b"code,name\n" + b"x" * (5 * 1024 * 1024)
    assert_problem(await client.post(url, content=big, headers={**admin, **CSV}), 413)
    many = "code,name\n" + "".join(
        f"{county[:6]}{1 + n // 999:03d}{1 + n % 999:03d},社区\n" for n in range(20_001)
    )
    assert_problem(await client.post(url, content=many.encode(), headers={**admin, **CSV}), 422)
    for body in (b"\xff\xfe\x00bad", b"", b"id,title\n1,x\n"):
        assert_problem(await client.post(url, content=body, headers={**admin, **CSV}), 422)
    r = await client.post(
        f"/v1/nodes:import?root={county[:6]}001000", content=ok, headers={**admin, **CSV}
    )
    assert_problem(r, 404)  # not a node (yet)
    r = await client.post("/v1/nodes:import?root=U1", content=ok, headers={**admin, **CSV})
    assert_problem(r, 422)
    assert other_admin


@pytest.mark.timeout(300)
async def test_cli_imports_with_a_progress_bar_and_a_rerun_creates_nothing(
    client, jwt, database_url, tmp_path, pool
):
    county, _ = await county_root(client, jwt)
    path = tmp_path / "divisions.csv"
    path.write_text(sample_for(county), encoding="utf-8")
    args = ("nodes", "import", str(path), "--root", county)
    dry = civic(*args, "--dry-run", database_url=database_url, tmp_path=tmp_path)
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "36 would be created" in dry.stdout

    async def count() -> int:
        async with pool.acquire() as conn:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM nodes WHERE root_id = (SELECT id FROM nodes WHERE code = $1)",
                county,
            )
        return n

    assert await count() == 1
    done = civic(*args, "--batch", "10", database_url=database_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "36 created" in done.stdout and "import" in done.stdout and "36/36" in done.stdout
    assert await count() == 37
    again = civic(*args, database_url=database_url, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "0 created" in again.stdout and "37 unchanged" in again.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name\n123,坏\n", encoding="utf-8")
    failed = civic(
        "nodes", "import", str(bad), "--root", county, database_url=database_url, tmp_path=tmp_path
    )
    assert failed.returncode == 1 and "line 2" in failed.stdout
