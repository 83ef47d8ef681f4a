"""Snapshots of long streams (infra/snapshots.py, migration 0042), against the real database.

The application of the session writes a snapshot every 2 events here (``snapshot_every``)
and its aggregate cache keeps nothing, so every command loads cold, through snapshots.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from domain.base import CivicAggregate
from domain.member import Member
from infra import command_read, snapshots
from infra.database import scoped_transaction
from infra.event_store import ConcurrencyError, EventStore, StoredEvent
from infra.pii_crypto import PersonKeyring, cipher_for_profile, is_sealed
from infra.pii_keys import master_key
from services.auth import Principal
from services.commands.aggregate_cache import AggregateCache
from services.commands.session import CommandRequest, CommandSession
from services.roles import Role
from tests.reliability import workflow_bodies
from tests.support import Tree, auth, build_tree, post_ok

EVERY = 2


@pytest.fixture
def snapshotting(ctx: Any) -> Iterator[Any]:
    """The session's application, snapshotting every ``EVERY`` events, with no cache."""
    settings, cache = ctx.settings, ctx.aggregates
    ctx.settings = msgspec.structs.replace(settings, snapshot_every=EVERY)
    ctx.aggregates = AggregateCache(ttl=-1.0)
    try:
        yield ctx
    finally:
        ctx.settings, ctx.aggregates = settings, cache


@pytest.fixture
async def tree(client: Any, jwt: Any, snapshotting: Any) -> AsyncIterator[Tree]:
    yield await build_tree(client, jwt, streets=2, communities=1, units=1)


def state(aggregate: CivicAggregate) -> dict[str, Any]:
    kept = dict(vars(aggregate))
    kept.pop("_pending_events")
    return kept


def keyring(ctx: Any) -> PersonKeyring:
    return PersonKeyring(master_key(ctx.settings), cipher_for_profile(ctx.settings.crypto_profile))


async def root_of(pool: Any, code: str) -> uuid.UUID:
    async with pool.acquire() as conn:
        root: uuid.UUID = await conn.fetchval("SELECT root_id FROM nodes WHERE code = $1", code)
    return root


async def all_events(pool: Any, root: uuid.UUID, stream_id: uuid.UUID) -> list[StoredEvent]:
    """The stream as stored (the test's role is not under row-level security)."""
    async with pool.acquire() as conn:
        return await EventStore().load(conn, root, stream_id)


async def replayed(ctx: Any, pool: Any, root: uuid.UUID, stream_id: uuid.UUID) -> Any:
    """The aggregate every stored event leads to, without any snapshot."""
    events = await all_events(pool, root, stream_id)
    ring = keyring(ctx)
    async with pool.acquire() as conn:
        await ring.load(conn, root, stream_id)
    return snapshots.replay(ctx.codec, ring, events, None)


async def loaded(
    ctx: Any, pool: Any, scope: str, cls: type[CivicAggregate], stream_id: uuid.UUID
) -> snapshots.LoadedStream | None:
    """What a command in ``scope`` loads (row-level security on, snapshots used)."""
    async with pool.acquire() as conn, scoped_transaction(conn, scope) as (_, s):
        return await snapshots.load_stream(
            conn, ctx.store, ctx.codec, keyring(ctx), cls, s.root_id, stream_id
        )


async def visible_snapshots(pool: Any, scope: str, stream_id: uuid.UUID) -> int:
    async with pool.acquire() as conn, scoped_transaction(conn, scope):
        count: int = await conn.fetchval(
            "SELECT count(*) FROM snapshots WHERE stream_id = $1", stream_id
        )
    return count


async def snapshot_row(pool: Any, stream_id: uuid.UUID) -> Any:
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM snapshots WHERE stream_id = $1", stream_id)


async def none_ahead(pool: Any) -> None:
    """Every snapshot ends with an event that is stored, with that version and id."""
    async with pool.acquire() as conn:
        orphans = await conn.fetchval(
            "SELECT count(*) FROM snapshots s WHERE NOT EXISTS (SELECT 1 FROM events e"
            " WHERE e.root_id = s.root_id AND e.stream_id = s.stream_id"
            "   AND e.version = s.version AND e.event_id = s.event_id)"
        )
    assert orphans == 0


def today() -> str:
    return dt.date.today().isoformat()


async def service(client: Any, headers: dict[str, str], member_id: Any, n: int) -> None:
    for i in range(n):
        await post_ok(
            client,
            f"/v1/members/{member_id}/services",
            {"served_on": today(), "hours": 1.25 + i, "kind": "志愿服务"},
            headers,
            200,
        )


async def member(client: Any, admin: dict[str, str], community: str, unit: str) -> Any:
    body = workflow_bodies(community, unit, 0)["/v1/members"]
    return (await post_ok(client, "/v1/members", body, admin))["id"]


async def test_loading_through_snapshots_equals_loading_every_event_for_every_workflow(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    unit = tree.units[0]
    admin = auth(jwt, tree.county, "admin")
    ids: dict[str, str] = {}
    for path, body in workflow_bodies(community, unit, 1).items():
        ids[path] = (await post_ok(client, path, body, admin))["id"]
    await service(client, admin, ids["/v1/members"], 7)
    issue = ids["/v1/issues"]
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    await post_ok(
        client, f"/v1/issues/{issue}/assign", {"assignee_code": unit, "due_at": due}, admin, 200
    )
    for i in range(4):
        await post_ok(client, f"/v1/issues/{issue}/progress", {"note": f"进展{i}"}, admin, 200)
    await post_ok(
        client,
        f"/v1/issues/{issue}/escalate",
        {"to_code": tree.streets[0], "respond_within_minutes": 30},
        admin,
        200,
    )
    for i in range(3):
        await post_ok(
            client,
            f"/v1/findings/{ids['/v1/findings']}/progress",
            {"note": f"整改{i}"},
            admin,
            200,
        )
    root = await root_of(pool, tree.county)
    async with pool.acquire() as conn:
        streams = await conn.fetch(
            "SELECT DISTINCT stream_id, stream_type FROM events WHERE root_id = $1", root
        )
    types = {r["stream_type"] for r in streams}
    # every aggregate of the workflow registry, and the nodes of the tree
    assert types >= {"node", "pairing", "issue", "member", "finding", "survey"}
    assert {"service_offer", "service_order"} <= types
    long_streams = 0
    for r in streams:
        cls = ctx.codec.aggregate_class(r["stream_type"])
        events = await all_events(pool, root, r["stream_id"])
        full = await replayed(ctx, pool, root, r["stream_id"])
        got = await loaded(ctx, pool, tree.county, cls, r["stream_id"])
        assert got is not None and got.whole
        assert state(got.aggregate) == state(full), r["stream_type"]
        if len(events) > EVERY:
            long_streams += 1
            assert got.read <= EVERY, (r["stream_type"], got.read, len(events))
            assert await snapshot_row(pool, r["stream_id"]) is not None
        # every cut point: the state after k events, snapshotted, plus the events after it
        ring = keyring(ctx)
        async with pool.acquire() as conn:
            await ring.load(conn, root, r["stream_id"])
        for k in range(1, len(events) + 1):
            base = snapshots.replay(ctx.codec, ring, events[:k], None)
            encoded = snapshots.encode_state(base, ring)
            assert encoded is not None
            back = snapshots.decode_state(cls, r["stream_id"], encoded, ring)
            assert state(back) == state(base), (r["stream_type"], k)
            rest = snapshots.replay(ctx.codec, ring, events[k:], back)
            assert state(rest) == state(full), (r["stream_type"], k)
    assert long_streams >= 3  # the member, the issue, the finding
    await none_ahead(pool)
    # dropping every snapshot loses nothing: the events still give the same aggregates
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM snapshots WHERE root_id = $1", root)
    for r in streams:
        cls = ctx.codec.aggregate_class(r["stream_type"])
        got = await loaded(ctx, pool, tree.county, cls, r["stream_id"])
        assert got is not None
        assert state(got.aggregate) == state(await replayed(ctx, pool, root, r["stream_id"]))


@pytest.mark.parametrize(
    "spoil",
    [
        "state = '{\"_id\": 1'",  # corrupt JSON
        "state = '{\"points\": 1}'",  # JSON, not an aggregate
        "state_version = 99",  # of another schema of the aggregate
        "event_id = gen_random_uuid()",  # of another history
        "version = version + 50",  # ahead of the stream
        "version = version - 1",  # not the state after its event
    ],
)
async def test_a_bad_snapshot_is_ignored_and_replaced(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree, spoil: str
):
    community = tree.communities[tree.streets[0]][0]
    admin = auth(jwt, tree.county, "admin")
    member_id = await member(client, admin, community, tree.units[0])
    await service(client, admin, member_id, 4)
    stream = uuid.UUID(member_id)
    root = await root_of(pool, tree.county)
    async with pool.acquire() as conn:
        await conn.execute(f"UPDATE snapshots SET {spoil} WHERE stream_id = $1", stream)
    got = await loaded(ctx, pool, tree.county, Member, stream)
    assert got is not None
    assert got.read == len(await all_events(pool, root, stream))  # every event, not the snapshot
    assert state(got.aggregate) == state(await replayed(ctx, pool, root, stream))
    await service(client, admin, member_id, 1)  # loads every event: writes a good one
    row = await snapshot_row(pool, stream)
    assert row["version"] == 6 and row["state_version"] == Member.STATE_VERSION
    again = await loaded(ctx, pool, tree.county, Member, stream)
    assert again is not None and again.read == 0
    assert state(again.aggregate) == state(await replayed(ctx, pool, root, stream))
    await none_ahead(pool)


async def test_a_conflicting_save_leaves_no_snapshot_ahead_of_the_events(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    admin = auth(jwt, tree.county, "admin")
    member_id = await member(client, admin, community, tree.units[0])
    await service(client, admin, member_id, 2)
    stream = uuid.UUID(member_id)
    async with pool.acquire() as conn:  # both loads below read every event: both are due
        await conn.execute("DELETE FROM snapshots WHERE stream_id = $1", stream)
    principal = Principal("t", tree.county, frozenset({Role.ADMIN}))
    request = CommandRequest("POST", "/test", b"{}")
    ctx.settings = msgspec.structs.replace(ctx.settings, snapshot_every=1)  # every load is due
    with pytest.raises(ConcurrencyError):
        async with pool.acquire() as conn, scoped_transaction(conn, tree.county) as (_, scope):
            session = CommandSession(ctx, conn, scope, principal, request, ctx.clock())
            loaded_member = await session.load(Member, stream)
            assert loaded_member is not None and stream in session._snapshot_due
            # another command appends meanwhile (and writes its own snapshot)
            await service(client, admin, member_id, 1)
            loaded_member.record_service(
                served_on=dt.date.today(), hours=2, kind="扫楼", at=ctx.clock()
            )
            await session.save(loaded_member)
    row = await snapshot_row(pool, stream)
    assert row["version"] == 4  # the other command's, not the conflicted one's
    await none_ahead(pool)


async def test_personal_data_stays_sealed_in_snapshots_and_goes_with_the_key(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    admin = auth(jwt, tree.county, "admin")
    body = workflow_bodies(community, tree.units[0], 0)["/v1/members"]
    member_id = (await post_ok(client, "/v1/members", body, admin))["id"]
    await service(client, admin, member_id, 3)
    stream = uuid.UUID(member_id)
    root = await root_of(pool, tree.county)
    row = await snapshot_row(pool, stream)
    assert row is not None
    text = row["state"]
    assert body["phone"] not in text and body["name"] not in text
    assert is_sealed(msgspec.json.decode(text)["person"])
    got = await loaded(ctx, pool, tree.county, Member, stream)
    assert got is not None and got.read < 4
    assert got.aggregate.person is not None and got.aggregate.person.phone == body["phone"]
    await post_ok(client, f"/v1/members/{member_id}/erase", {"reason": "本人申请"}, admin, 200)
    # shredding dropped the snapshot in the same transaction
    assert await snapshot_row(pool, stream) is None
    # and a copy kept elsewhere (a backup) opens no more: its key is gone
    ring = keyring(ctx)
    async with pool.acquire() as conn:
        assert not await ring.load(conn, root, stream)
    stale = snapshots.decode_state(Member, stream, text, ring)
    assert stale.person is None
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO snapshots (root_id, stream_id, stream_type, version, event_id,"
            " state_version, state, node_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            *(row[k] for k in ("root_id", "stream_id", "stream_type", "version", "event_id")),
            row["state_version"],
            text,
            row["node_ids"],
        )
    got = await loaded(ctx, pool, tree.county, Member, stream)
    assert got is not None and got.aggregate.person is None and got.aggregate.erased
    async with pool.acquire() as conn:
        texts = await conn.fetch("SELECT state FROM snapshots WHERE root_id = $1", root)
    assert all(body["phone"] not in r["state"] for r in texts)


async def test_a_snapshot_is_seen_only_by_who_may_read_every_event_it_sums_up(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree
):
    street_a, street_b = tree.streets
    community_a, community_b = tree.communities[street_a][0], tree.communities[street_b][0]
    admin = auth(jwt, tree.county, "admin")
    member_id = await member(client, admin, community_a, tree.units[0])
    await service(client, admin, member_id, 3)
    stream = uuid.UUID(member_id)
    other = await build_tree(client, jwt, streets=1, communities=1, units=1)
    assert await visible_snapshots(pool, tree.county, stream) == 1
    assert await visible_snapshots(pool, street_a, stream) == 1
    assert await visible_snapshots(pool, community_a, stream) == 1
    assert await visible_snapshots(pool, street_b, stream) == 0  # a sibling subtree
    assert await visible_snapshots(pool, other.county, stream) == 0  # another tenant
    # transferred: later events join community B's chain; street A sees only the older ones
    await post_ok(
        client,
        f"/v1/members/{member_id}/transfer",
        {"to_community_code": community_b},
        admin,
        200,
    )
    await service(client, admin, member_id, 3)
    row = await snapshot_row(pool, stream)
    assert len(row["node_ids"]) == 2 and row["version"] > 5
    assert await visible_snapshots(pool, street_a, stream) == 0
    assert await visible_snapshots(pool, street_b, stream) == 1  # a member transferred in
    assert await visible_snapshots(pool, tree.county, stream) == 1
    root = await root_of(pool, tree.county)
    got = await loaded(ctx, pool, street_b, Member, stream)
    assert got is not None and got.whole and got.read < 3
    assert state(got.aggregate) == state(await replayed(ctx, pool, root, stream))
    # an issue assigned to a unit: the unit sees it (a party stream), snapshot included
    body = workflow_bodies(community_a, "", 0)["/v1/issues"]
    issue = (await post_ok(client, "/v1/issues", body, admin))["id"]
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    await post_ok(
        client,
        f"/v1/issues/{issue}/assign",
        {"assignee_code": tree.units[0], "due_at": due},
        admin,
        200,
    )
    for i in range(3):
        await post_ok(client, f"/v1/issues/{issue}/progress", {"note": f"进展{i}"}, admin, 200)
    issue_id = uuid.UUID(issue)
    assert await visible_snapshots(pool, tree.units[0], issue_id) == 1
    assert await visible_snapshots(pool, street_b, issue_id) == 0


async def reads_of(
    pool: Any, scope: str, cls: type[CivicAggregate], stream_id: uuid.UUID
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of ``snapshots.LOAD`` in a scoped transaction, and those of a cold command's
    one read statement (``civic_command_read``), for a principal of ``scope``."""
    kind = (stream_id, cls.STREAM_TYPE, cls.STATE_VERSION)
    async with pool.acquire() as conn, scoped_transaction(conn, scope) as (_, s):
        load = await conn.fetch(snapshots.LOAD, s.root_id, *kind)
    async with pool.acquire() as conn:
        cold = await command_read.read(conn, s, root_id=s.root_id, stream=kind)
    return [tuple(r) for r in load], [tuple(r[: len(load[0]) if load else 0]) for r in cold.rows]


async def test_a_cold_read_returns_the_rows_of_a_load(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree
):
    """Migration 0053 repeats LOAD's query: the same rows, snapshot and row-level security
    included, for whole, partial and hidden views of a stream."""
    street_a, street_b = tree.streets
    community_a, community_b = tree.communities[street_a][0], tree.communities[street_b][0]
    admin = auth(jwt, tree.county, "admin")
    member_id = await member(client, admin, community_a, tree.units[0])
    await service(client, admin, member_id, 3)
    stream = uuid.UUID(member_id)
    await post_ok(
        client, f"/v1/members/{member_id}/transfer", {"to_community_code": community_b}, admin, 200
    )
    await service(client, admin, member_id, 1)
    assert await snapshot_row(pool, stream) is not None
    other = await build_tree(client, jwt, streets=1, communities=1, units=1)
    seen: dict[str, list[tuple[Any, ...]]] = {}
    for scope in (tree.county, street_a, street_b, community_b, tree.units[0], other.county):
        load, cold = await reads_of(pool, scope, Member, stream)
        assert cold == load
        seen[scope] = load
    # the county through the snapshot (on its first row), street A only the events before the
    # transfer and no snapshot, the home unit as a party, another tenant nothing
    s_event_id = 20  # the column after the events' and the node path
    assert len(seen[tree.county]) <= EVERY and seen[tree.county][0][s_event_id] is not None
    assert seen[street_a][0][s_event_id] is None and seen[street_a][0][8] == 1  # version 1 on
    assert seen[tree.units[0]] and not seen[other.county]
    assert len(seen[street_a]) < len(
        await all_events(pool, await root_of(pool, tree.county), stream)
    )
