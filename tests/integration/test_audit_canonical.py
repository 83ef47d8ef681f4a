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

from infra.audit.verify import verify_subtree
from infra.chain import GENESIS, Sha256Chain, canonical_event
from infra.database import create_pool, scoped_transaction
from infra.directory import find_by_code
from infra.event_codec import decode_json
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
                    recorded_at, actor, correlation_id, causation_id, idempotency_key)
VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14, $15, $16,
        $17, $18)
"""


async def write_county(conn: asyncpg.Connection, code: str, items: list[dict[str, Any]]) -> None:
    """A county node whose own chain holds ``items``, linked as civic_append links."""
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
            digest = hasher.digest(
                canonical_event(
                    root_id=root,
                    node_id=root,
                    stream_id=stream_id,
                    version=seq,
                    event_id=event_id,
                    **{**e, "data": decode_json(stored_data)},
                )
            )
            link = hasher.link(prev, seq, position, digest)
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
            )
            prev = link
        await conn.execute(
            "INSERT INTO chain_heads (node_id, root_id, seq, hash) VALUES ($1, $1, $2, $3)",
            root,
            len(items),
            prev,
        )


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example writes a county
    suppress_health_check=list(HealthCheck),
)
@given(items=st.lists(events, min_size=1, max_size=8), zone=zones)
async def test_stored_events_verify_whatever_their_values(
    own_pool: asyncpg.Pool, items: list[dict[str, Any]], zone: str
):
    code = fresh_county_code()
    async with own_pool.acquire() as conn:
        await write_county(conn, code, items)
        await conn.execute(f"SET TIME ZONE '{zone}'")
        try:
            async with scoped_transaction(conn, code) as (_, scope):
                node = await find_by_code(conn, scope.code)
                assert node is not None
                report = await verify_subtree(conn, node, hasher)
        finally:
            await conn.execute("RESET TIME ZONE")
    assert report.ok, (report.first_failure, items)
    assert report.events_checked == len(items)


async def test_an_instant_changed_by_one_microsecond_is_altered(own_pool: asyncpg.Pool):
    """The rendering keeps every microsecond: a shifted instant no longer matches its hash."""
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
        await write_county(conn, code, [item, item])
        root: UUID = await conn.fetchval("SELECT id FROM nodes WHERE code = $1", code)
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
