"""Chain verification: recompute every chain of a subtree and report the first failure of each.

Verification streams every chain of the subtree, node by node in path order and each in
``node_seq`` order, through one server-side cursor (memory stays bounded by the prefetch),
hashes each event's canonical bytes into its digest and its link from the previous hash,
and compares both with what is stored and with the node's chain head. The heads are read by
the same statement as the events (one snapshot), so a concurrent append is never mistaken
for an inserted or missing event.

The canonical bytes are those stored with the event at append (migration 0038) when the
database vouches that they are what the event's columns say (``canonical_ok``, see
``infra.audit.guard``); a row whose columns no longer match them is altered. Otherwise (an
event appended before that migration, the guard gone, or ``recompute=True``) they are
re-encoded from the columns, as ``canonical_event`` encodes them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Literal

import asyncpg
import msgspec

from infra.audit.event_rows import (
    CANONICAL_TEXT_COLUMNS,
    CANONICAL_TEXT_EXPRESSIONS,
    PREFETCH,
    batches,
)
from infra.audit.guard import canonical_guard
from infra.chain import GENESIS, CanonicalText, ChainHasher, encode_canonical
from infra.directory import DirectoryNode, subtree_nodes

MAX_LISTED_FAILURES = 100

_decoder = msgspec.json.Decoder()  # as event_codec.decode_json, bound once for the hot loop

Reason = Literal["altered", "missing", "inserted", "broken_link"]

# Every chain of a list of nodes, node by node (ord) and oldest first, each node's head on
# every row of it, and one row of NULL events for a node without events. One statement: one
# snapshot for all chains, and row-level security's scope subplans are built once, not once
# per node (which cost as much as verifying ~300 events). The plan is a nested loop over the
# nodes with an index scan per node and an incremental sort on node_seq within each node.
#
# {stored} is the stored bytes and their flag, {columns} the columns to re-encode from.
_SUBTREE_CHAINS = """
SELECT n.ord, h.seq, h.hash, e.node_seq, e.position, e.prev_hash, e.hash, {stored}, {columns}
FROM unnest($1::uuid[]) WITH ORDINALITY AS n(id, ord)
LEFT JOIN chain_heads h ON h.node_id = n.id
LEFT JOIN LATERAL (SELECT * FROM events WHERE events.node_id = n.id) e ON true
ORDER BY n.ord, e.node_seq
"""

# The stored bytes where the database vouches for them, the columns (rendered in SQL, which
# costs more than sending the bytes) only for the events without them.
SUBTREE_CHAINS = _SUBTREE_CHAINS.format(
    stored="e.canonical, e.canonical_ok",
    columns=", ".join(
        f"CASE WHEN e.canonical_ok IS NULL THEN {c} END" for c in CANONICAL_TEXT_EXPRESSIONS
    ),
)
# Every event from its columns.
SUBTREE_CHAINS_RECOMPUTED = _SUBTREE_CHAINS.format(
    stored="NULL::bytea, NULL::boolean", columns=CANONICAL_TEXT_COLUMNS
)


class Failure(msgspec.Struct):
    node: str  # the node's current code
    seq: int
    reason: Reason
    detail: str


class VerifyReport(msgspec.Struct):
    ok: bool
    nodes_checked: int
    events_checked: int
    first_failure: Failure | None
    #: the first failure of each failing node, in path order (at most 100).
    failures: list[Failure]
    elapsed_ms: int


async def verify_subtree(
    conn: asyncpg.Connection,
    node: DirectoryNode,
    hasher: ChainHasher,
    *,
    prefetch: int = PREFETCH,
    recompute: bool = False,
) -> VerifyReport:
    """Recompute every chain of ``node``'s subtree; report the first failure of each chain.

    ``recompute``: re-encode every event from its columns, even where the database vouches
    for its stored canonical bytes (for an auditor who does not trust the catalog).
    """
    started = time.perf_counter()
    nodes = await subtree_nodes(conn, node)
    trusted = not recompute and await canonical_guard(conn)
    query = SUBTREE_CHAINS if trusted else SUBTREE_CHAINS_RECOMPUTED
    failures: list[Failure] = []
    events = 0
    digest, link, decode = hasher.digest, hasher.link, _decoder.decode

    # The chain being checked, in plain locals: the loop below runs once per event of the
    # subtree, so no checker object and no closure (its cell variables are slower to read).
    current = 0  # its ord (1-based index in ``nodes``); 0 before the first row
    code = ""
    node_text = ""
    head: tuple[int, bytes] | None = None
    expected = 1  # the next seq the chain must have
    prev = GENESIS  # the stored hash of the event before
    before_prev: bytes | None = None
    checked = 0
    failure: Failure | None = None

    ids = [n["id"] for n in nodes]
    async with contextlib.aclosing(batches(conn, query, ids, prefetch=prefetch)) as it:
        async for rows in it:
            for (
                ord_,
                head_seq,
                head_hash,
                seq,
                position,
                prev_hash,
                stored,
                canonical,
                canonical_ok,
                actor,
                causation_id,
                correlation_id,
                data,
                event_id,
                idempotency_key,
                occurred_at,
                recorded_at,
                root_id,
                schema_version,
                stream_id,
                stream_type,
                type_,
                version,
            ) in rows:
                if ord_ != current:
                    if current:
                        events += checked
                        _close_chain(failures, failure, code, expected, prev, head)
                    current = ord_
                    code = nodes[ord_ - 1]["code"]
                    node_text = str(nodes[ord_ - 1]["id"])
                    head = None if head_seq is None else (head_seq, head_hash)
                    expected, prev, before_prev, checked, failure = 1, GENESIS, None, 0, None
                    if seq is None:  # a node without events
                        continue
                if failure is not None:  # only the first failure of a chain is reported
                    continue
                checked += 1
                if seq != expected:
                    failure = (
                        Failure(
                            code, expected, "missing", f"seq {expected} is absent; next is {seq}"
                        )
                        if seq > expected
                        else Failure(code, seq, "inserted", f"seq {seq} appears twice")
                    )
                elif head is None:
                    failure = Failure(
                        code, seq, "inserted", "events stored for a node without a chain head"
                    )
                elif seq > head[0]:
                    failure = Failure(
                        code, seq, "inserted", f"beyond the chain head (seq {head[0]})"
                    )
                elif prev_hash != prev:
                    failure = (
                        Failure(
                            code, seq, "inserted", "links to the predecessor of the event before it"
                        )
                        if prev_hash == before_prev
                        else Failure(
                            code,
                            seq,
                            "broken_link",
                            "prev_hash is not the hash of the event before it",
                        )
                    )
                else:
                    if canonical_ok is None:
                        canonical = encode_canonical(
                            CanonicalText(
                                actor,
                                causation_id,
                                correlation_id,
                                decode(data),
                                event_id,
                                idempotency_key,
                                node_text,
                                occurred_at,
                                recorded_at,
                                root_id,
                                schema_version,
                                stream_id,
                                stream_type,
                                type_,
                                version,
                            )
                        )
                    elif not canonical_ok:
                        failure = Failure(
                            code,
                            seq,
                            "altered",
                            "the columns no longer match the stored canonical bytes",
                        )
                        continue
                    if link(prev_hash, seq, position, digest(canonical)) != stored:
                        failure = Failure(
                            code, seq, "altered", "the content no longer matches the stored hash"
                        )
                    else:
                        before_prev, prev = prev, stored
                        expected += 1
    if current:
        events += checked
        _close_chain(failures, failure, code, expected, prev, head)
    return VerifyReport(
        ok=not failures,
        nodes_checked=len(nodes),
        events_checked=events,
        first_failure=failures[0] if failures else None,
        failures=failures,
        elapsed_ms=round((time.perf_counter() - started) * 1000),
    )


def _close_chain(
    failures: list[Failure],
    failure: Failure | None,
    code: str,
    expected: int,
    prev: bytes,
    head: tuple[int, bytes] | None,
) -> None:
    """List the chain's first failure, or the failure of its end against its head."""
    found = failure if failure is not None else _end_of_chain(code, expected, prev, head)
    if found is not None and len(failures) < MAX_LISTED_FAILURES:
        failures.append(found)


def _end_of_chain(
    code: str, expected: int, prev: bytes, head: tuple[int, bytes] | None
) -> Failure | None:
    """The check of a chain whose events all verified against its head."""
    last = expected - 1
    if head is None:  # no head and no events (events without a head fail at the first)
        head = (0, GENESIS)
    if last < head[0]:
        return Failure(
            code,
            last + 1,
            "missing",
            f"the chain head is at seq {head[0]}, the events end at {last}",
        )
    if head[1] != prev:
        return Failure(
            code, last, "broken_link", "the chain head's hash is not the last event's hash"
        )
    return None
