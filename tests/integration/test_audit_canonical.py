"""Verification hashes PostgreSQL's text of the stored columns (ids as ``uuid::text``,
instants through ``to_char`` in UTC) instead of Python objects: for any stored values and
any session time zone, that must give the digests ``canonical_event`` gave when the events
were written, or untouched events would be reported as altered.

Each example writes one fresh county (node, chain, head) as the superuser, with digests and
links computed here from the Python values, and verifies it through ``verify_subtree``. The
events are arbitrary (any type, any data), so they go to a database of this module's own:
in the session's, the projections and relays would stop on them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from infra.audit.guard import canonical_guard
from infra.audit.verify import VerifyReport, verify_subtree
from infra.chain import GENESIS, Sha256Chain, Sm3Chain, canonical_event
from infra.database import create_pool, scoped_transaction
from infra.directory import find_by_code
from infra.event_codec import NewEvent, decode_json
from infra.event_store import AppendContext, EventStore, TxAppender
from tests.conftest import scratch_database
from tests.support import fresh_county_code

hasher = Sha256Chain()


@pytest.fixture(scope="module")
async def own_pool(server_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_database(server_url) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            yield pool
        finally:
            await pool.close()


# PostgreSQL text and jsonb strings hold neither NUL nor lone surrogates.
texts = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30
)
# Numbers as jsonb keeps them: it stores numeric, so -0.0 comes back as 0.0 and a large
# integral float (1e+20) as an integer, whatever the verifier does (the digest taken at
# append time is of the value before). Event data never holds either: the only float the
# domain records is service hours in (0, 24] (docs/audit.md).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda x: x + 0.0)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=15,
)
offsets = st.builds(
    lambda minutes, seconds: timezone(timedelta(minutes=minutes, seconds=seconds)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
    st.sampled_from([0, 0, 0, 17, 43]),
)
instants = st.one_of(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets),
    # whole seconds (isoformat must still write .000000)
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
    ).map(lambda d: d.replace(microsecond=0)),
)
events = st.fixed_dictionaries(
    {
        "stream_type": texts,
        "type": texts,
        "schema_version": st.integers(min_value=1, max_value=2**15 - 1),
        "data": st.dictionaries(texts, json_values, max_size=5),
        "occurred_at": instants,
        "recorded_at": instants,
        "actor": texts,
        "correlation_id": st.none() | st.uuids(),
        "causation_id": st.none() | st.uuids(),
        "idempotency_key": st.none() | texts,
    }
)
# Session zones the instants must not depend on: half-hour and historical LMT offsets.
zones = st.sampled_from(["UTC", "Asia/Shanghai", "America/St_Johns", "Asia/Kathmandu"])

INSERT_EVENT = """
INSERT INTO events (position, root_id, node_id, node_seq, prev_hash, hash, stream_id,
                    stream_type, version, event_id, type, schema_version, data, occurred_at,
                    recorded_at, actor, correlation_id, causation_id, idempotency_key, canonical)
VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14, $15, $16,
        $17, $18, $19)
"""


async def write_county(
    conn: asyncpg.Connection, code: str, items: list[dict[str, Any]], *, stored: bool = False
) -> UUID:
    """A county node whose own chain holds ``items``, linked as civic_append links, with each
    event's canonical bytes stored as the store stores them when ``stored`` (else NULL, as
    for events appended before migration 0038). Returns the county's id."""
    root = uuid4()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO nodes (id, root_id, code, name, kind, parent_id, path, depth, version)"
            " VALUES ($1, $1, $2, '县', 'county', NULL, $3, 1, 1)",
            root,
            code,
            f"/{root}/",
        )
        xid = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        prev = GENESIS
        for seq, e in enumerate(items, start=1):
            position = (xid << 16) + seq
            stream_id, event_id = uuid4(), uuid4()
            stored_data = msgspec.json.encode(e["data"]).decode()
            canonical = canonical_event(
                root_id=root,
                node_id=root,
                stream_id=stream_id,
                version=seq,
                event_id=event_id,
                **{**e, "data": decode_json(stored_data)},
            )
            link = hasher.link(prev, seq, position, hasher.digest(canonical))
            await conn.execute(
                INSERT_EVENT,
                position,
                root,
                seq,
                prev,
                link,
                stream_id,
                e["stream_type"],
                seq,
                event_id,
                e["type"],
                e["schema_version"],
                stored_data,
                e["occurred_at"],
                e["recorded_at"],
                e["actor"],
                e["correlation_id"],
                e["causation_id"],
                e["idempotency_key"],
                canonical if stored else None,
            )
            prev = link
        await conn.execute(
            "INSERT INTO chain_heads (node_id, root_id, seq, hash) VALUES ($1, $1, $2, $3)",
            root,
            len(items),
            prev,
        )
    return root


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example writes a county
    suppress_health_check=list(HealthCheck),
)
@given(items=st.lists(events, min_size=1, max_size=8), zone=zones, stored=st.booleans())
async def test_stored_events_verify_whatever_their_values(
    own_pool: asyncpg.Pool, items: list[dict[str, Any]], zone: str, stored: bool
):
    """Also with their canonical bytes stored: PostgreSQL's rendering of the columns in
    civic_canonical_matches (migration 0038) must agree with the encoder for any values, in
    any session time zone, or honest events would be flagged (``canonical_ok`` false)."""
    code = fresh_county_code()
    async with own_pool.acquire() as conn:
        await conn.execute(f"SET TIME ZONE '{zone}'")
        try:
            root = await write_county(conn, code, items, stored=stored)
            flags = await conn.fetch(
                "SELECT canonical_ok FROM events WHERE node_id = $1 ORDER BY node_seq", root
            )
            async with scoped_transaction(conn, code) as (_, scope):
                node = await find_by_code(conn, scope.code)
                assert node is not None
                report = await verify_subtree(conn, node, hasher)
        finally:
            await conn.execute("RESET TIME ZONE")
    assert [f[0] for f in flags] == [True if stored else None] * len(items), items
    assert report.ok, (report.first_failure, items)
    assert report.events_checked == len(items)


@pytest.mark.parametrize("stored", [False, True])
async def test_an_instant_changed_by_one_microsecond_is_altered(
    own_pool: asyncpg.Pool, stored: bool
):
    """The rendering keeps every microsecond: a shifted instant no longer matches its hash
    (nor, with the canonical bytes stored, those bytes)."""
    code = fresh_county_code()
    at = datetime(2031, 1, 1, 8, 0, 0, 0, tzinfo=UTC)
    item = {
        "stream_type": "issue",
        "type": "IssueReported",
        "schema_version": 1,
        "data": {"title": "井盖缺失"},
        "occurred_at": at,
        "recorded_at": at,
        "actor": "user:1",
        "correlation_id": None,
        "causation_id": None,
        "idempotency_key": None,
    }
    async with own_pool.acquire() as conn:
        root = await write_county(conn, code, [item, item], stored=stored)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE events SET occurred_at = occurred_at + interval '1 microsecond'"
                " WHERE node_id = $1 AND node_seq = 2",
                root,
            )
        async with scoped_transaction(conn, code) as (_, scope):
            node = await find_by_code(conn, scope.code)
            assert node is not None
            report = await verify_subtree(conn, node, hasher)
    assert report.first_failure is not None
    assert (report.first_failure.seq, report.first_failure.reason) == (2, "altered")
    assert report.events_checked == 2


# ---------------------------------------------------------------------------------------
# The stored canonical bytes (migration 0038) under attack: the superuser with the
# append-only trigger off (session_replication_role = replica), who can write any column
# but canonical_ok, which PostgreSQL computes.

AT = datetime(2031, 1, 1, 8, 0, 0, 123456, tzinfo=UTC)
PLAIN: dict[str, Any] = {
    "stream_type": "issue",
    "type": "IssueReported",
    "schema_version": 1,
    "data": {"title": "井盖缺失", "count": 1},
    "occurred_at": AT,
    "recorded_at": AT + timedelta(seconds=1),
    "actor": "user:1",
    "correlation_id": None,
    "causation_id": None,
    "idempotency_key": "k-1",
}


# the stored bytes with the title changed (still an event's JSON)
RENAMED = "convert_to(replace(convert_from(canonical, 'UTF8'), '缺失', '完好'), 'UTF8')"


async def verify_county(conn: asyncpg.Connection, code: str, **options: Any) -> VerifyReport:
    async with scoped_transaction(conn, code) as (_, scope):
        node = await find_by_code(conn, scope.code)
        assert node is not None
        return await verify_subtree(conn, node, hasher, **options)


async def tamper(conn: asyncpg.Connection, sql: str, *args: Any) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


def first(report: VerifyReport) -> tuple[int, str, str]:
    f = report.first_failure
    assert f is not None and not report.ok, report
    return f.seq, f.reason, f.detail


async def test_the_database_vouches_for_the_bytes_an_append_stores(own_pool: asyncpg.Pool):
    code = fresh_county_code()
    async with own_pool.acquire() as conn:
        assert await canonical_guard(conn)
        root = await write_county(conn, code, [PLAIN] * 3, stored=True)
        rows = await conn.fetch(
            "SELECT canonical, canonical_ok, hash, prev_hash, node_seq, position FROM events"
            " WHERE node_id = $1 ORDER BY node_seq",
            root,
        )
        fast = await verify_county(conn, code)
        slow = await verify_county(conn, code, recompute=True)
    assert all(r["canonical_ok"] for r in rows)
    for r in rows:  # the stored bytes are those the link covers
        digest = hasher.digest(r["canonical"])
        assert hasher.link(r["prev_hash"], r["node_seq"], r["position"], digest) == r["hash"]
    assert fast.ok and slow.ok and fast.events_checked == slow.events_checked == 3


async def test_tampered_stored_bytes_are_altered(own_pool: asyncpg.Pool):
    async with own_pool.acquire() as conn:
        # other bytes, the columns untouched: the flag goes false
        code = fresh_county_code()
        root = await write_county(conn, code, [PLAIN] * 3, stored=True)
        await tamper(
            conn,
            f"UPDATE events SET canonical = {RENAMED} WHERE node_id = $1 AND node_seq = 2",
            root,
        )
        seq, reason, detail = first(await verify_county(conn, code))
        assert (seq, reason) == (2, "altered") and "canonical bytes" in detail
        # bytes that are not an event at all
        code = fresh_county_code()
        root = await write_county(conn, code, [PLAIN] * 2, stored=True)
        await tamper(
            conn,
            "UPDATE events SET canonical = '\\x7b7d' WHERE node_id = $1 AND node_seq = 1",
            root,
        )
        assert first(await verify_county(conn, code))[:2] == (1, "altered")
        # the bytes and the data changed together, consistently: the flag holds, the hash
        # does not
        code = fresh_county_code()
        root = await write_county(conn, code, [PLAIN] * 3, stored=True)
        await tamper(
            conn,
            f"UPDATE events SET canonical = {RENAMED},"
            " data = jsonb_set(data, '{title}', '\"井盖完好\"') WHERE node_id = $1 AND node_seq = 3",
            root,
        )
        flag = await conn.fetchval(
            "SELECT canonical_ok FROM events WHERE node_id = $1 AND node_seq = 3", root
        )
        seq, reason, detail = first(await verify_county(conn, code))
    assert flag is True
    assert (seq, reason) == (3, "altered") and "stored hash" in detail


async def test_columns_changed_but_not_the_bytes_are_altered(own_pool: asyncpg.Pool):
    changes = [
        "data = jsonb_set(data, '{title}', '\"井盖完好\"')",
        # the same number spelled otherwise: equal as jsonb, not to a Python reader
        "data = jsonb_set(data, '{count}', '1.0')",
        "actor = 'user:2'",
        "type = 'IssueClosed'",
        "occurred_at = occurred_at + interval '1 microsecond'",
        "idempotency_key = NULL",
        "causation_id = gen_random_uuid()",
        "schema_version = 2",
    ]
    async with own_pool.acquire() as conn:
        for change in changes:
            code = fresh_county_code()
            root = await write_county(conn, code, [PLAIN] * 2, stored=True)
            await tamper(
                conn, f"UPDATE events SET {change} WHERE node_id = $1 AND node_seq = 2", root
            )
            fast = await verify_county(conn, code)
            slow = await verify_county(conn, code, recompute=True)
            assert first(fast)[:2] == (2, "altered"), change
            assert first(slow)[:2] == (2, "altered"), change


async def test_events_without_stored_bytes_verify_from_their_columns(own_pool: asyncpg.Pool):
    """Events appended before migration 0038 (no bytes) in the same chain as later ones."""
    code = fresh_county_code()
    async with own_pool.acquire() as conn:
        root = await write_county(conn, code, [PLAIN] * 4, stored=True)
        await tamper(
            conn, "UPDATE events SET canonical = NULL WHERE node_id = $1 AND node_seq <= 2", root
        )
        assert (await verify_county(conn, code)).ok
        await tamper(
            conn, "UPDATE events SET actor = 'user:2' WHERE node_id = $1 AND node_seq = 2", root
        )
        assert first(await verify_county(conn, code))[:2] == (2, "altered")


async def test_without_the_guard_every_event_is_proved_from_its_columns(server_url: str):
    """Whoever changes how canonical_ok is computed changes the catalog: verification then
    ignores the flag and re-encodes every event from its columns."""
    async with scratch_database(server_url) as url:
        conn = await asyncpg.connect(url)
        try:
            code = fresh_county_code()
            root = await write_county(conn, code, [PLAIN] * 3, stored=True)
            # a function that vouches for anything, then a forged row
            source = await conn.fetchval(
                "SELECT pg_get_functiondef('civic_canonical_matches'::regproc)"
            )
            await conn.execute(
                source.replace("IF p_canonical IS NULL THEN", "RETURN true;\n    IF true THEN")
            )
            assert not await canonical_guard(conn)
            await tamper(
                conn, "UPDATE events SET actor = 'user:2' WHERE node_id = $1 AND node_seq = 2", root
            )
            flag = await conn.fetchval(
                "SELECT canonical_ok FROM events WHERE node_id = $1 AND node_seq = 2", root
            )
            assert flag is True
            assert first(await verify_county(conn, code))[:2] == (2, "altered")
            # the original function back; the flag recomputed, but no longer generated
            await conn.execute(source)
            await tamper(conn, "UPDATE events SET actor = actor WHERE node_id = $1", root)
            assert await canonical_guard(conn)
            await conn.execute("ALTER TABLE events ALTER COLUMN canonical_ok DROP EXPRESSION")
            assert not await canonical_guard(conn)
            await tamper(
                conn,
                "UPDATE events SET canonical_ok = true, type = 'IssueClosed'"
                " WHERE node_id = $1 AND node_seq = 3",
                root,
            )
            seq, reason, _ = first(await verify_county(conn, code))
            assert (seq, reason) == (2, "altered")
        finally:
            await conn.close()


@pytest.mark.parametrize("chain", [Sha256Chain(), Sm3Chain()], ids=["sha256", "sm3"])
async def test_appends_store_the_bytes_their_digest_covers(own_pool: asyncpg.Pool, chain: Any):
    """Both profiles: civic_append (SQL links) and civic_append_linked (links in Python)."""
    code = fresh_county_code()
    store = EventStore(chain)
    events = [
        NewEvent(uuid4(), "IssueReported", 1, b'{"title":"\\u4e95\\u76d6","z":1,"a":[1.5]}', at)
        for at in (AT, AT.replace(microsecond=0))
    ]
    async with own_pool.acquire() as conn:
        root = await write_county(conn, code, [], stored=True)  # the node, its head at seq 0
        async with conn.transaction():
            await store.append(
                TxAppender(conn),
                root_id=root,
                node_id=root,
                stream_id=uuid4(),
                stream_type="issue",
                expected_version=0,
                events=events,
                context=AppendContext(actor="user:1", correlation_id=uuid4()),
            )
        rows = await conn.fetch(
            "SELECT canonical, canonical_ok, hash, prev_hash, node_seq, position FROM events"
            " WHERE node_id = $1 ORDER BY node_seq",
            root,
        )
        async with scoped_transaction(conn, code) as (_, scope):
            node = await find_by_code(conn, scope.code)
            assert node is not None
            report = await verify_subtree(conn, node, chain)
    assert [r["canonical_ok"] for r in rows] == [True, True]
    for r in rows:
        digest = chain.digest(r["canonical"])
        assert chain.link(r["prev_hash"], r["node_seq"], r["position"], digest) == r["hash"]
    assert report.ok and report.events_checked == 2
