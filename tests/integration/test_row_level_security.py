"""Row-level security alone keeps scopes apart: raw SQL inside a scoped transaction."""

from __future__ import annotations

from infra.database import scoped_transaction
from tests.support import build_tree


async def test_street_scope_sees_only_its_subtree_even_with_raw_sql(client, jwt, pool):
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    async with pool.acquire() as conn:
        async with scoped_transaction(conn, tree.county) as (_, county_scope):
            all_events = await conn.fetchval("SELECT count(*) FROM events")
            assert county_scope.code == tree.county
        async with scoped_transaction(conn, a) as (_, scope):
            assert scope.code == a
            # no WHERE clause at all: RLS is the only filter
            rows = await conn.fetch("SELECT DISTINCT node_id FROM events")
            node_codes = {
                r["code"]
                for r in await conn.fetch(
                    "SELECT code FROM nodes WHERE id = ANY($1::uuid[])",
                    [r["node_id"] for r in rows],
                )
            }
            assert node_codes == {a, *tree.communities[a]}
            assert await conn.fetchval("SELECT count(*) FROM events") < all_events
            b_ids = await conn.fetch(
                "SELECT id FROM nodes WHERE code = ANY($1::text[])", [b, *tree.communities[b]]
            )
            assert len(b_ids) == 3  # the directory is readable within the root...
            leaked = await conn.fetchval(
                "SELECT count(*) FROM events WHERE node_id = ANY($1::uuid[])",
                [r["id"] for r in b_ids],
            )
            assert leaked == 0  # ...but its events are not
            assert await conn.fetchval("SELECT current_user") == "civic_app"
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM rm_nodes WHERE id = ANY($1::uuid[])",
                    [r["id"] for r in b_ids],
                )
                == 0
            )


async def test_other_root_tenants_are_invisible(client, jwt, pool):
    one = await build_tree(client, jwt, streets=1, communities=1, units=0)
    two = await build_tree(client, jwt, streets=1, communities=1, units=0)
    async with pool.acquire() as conn, scoped_transaction(conn, one.county):
        codes = {r["code"] for r in await conn.fetch("SELECT code FROM nodes")}
        assert two.county not in codes and one.county in codes
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM events e JOIN nodes n ON n.id = e.node_id WHERE n.code = $1",
                two.county,
            )
            == 0
        )
        heads = await conn.fetchval("SELECT count(*) FROM chain_heads")
        assert heads == 3  # county, street, community of tenant one


async def test_runtime_role_cannot_write_outside_scope_or_rewrite_history(client, jwt, pool):
    import asyncpg
    import pytest

    tree = await build_tree(client, jwt)
    a, b = tree.streets
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with scoped_transaction(conn, a):
                await conn.execute("UPDATE events SET actor = 'x'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with scoped_transaction(conn, a):
                await conn.execute("UPDATE nodes SET name = 'x' WHERE code = $1", b)
                # The directory is writable within the root only through commands, but RLS
                # alone would allow it; the grant is what stops DELETE.
                await conn.execute("DELETE FROM nodes WHERE code = $1", b)
