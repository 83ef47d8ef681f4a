"""The evidence bundle: a zip an inspector carries away and checks with ``civic-verify``.

Members (format ``civic-evidence/v1``; ``civic_verify.bundle`` is the reader):

* ``events.ndjson`` — the root's tree, leaf by leaf up to the checkpoint's tree size. An
  event of the subtree is one line::

      {"hash":…,"leaf":i,"node":code,"node_id":…,"position":…,"prev_hash":…,"seq":…,"event":CANONICAL}

  where CANONICAL are the exact bytes its digest covers (``infra.chain``), written
  verbatim as the last value of the line. A run of leaves outside the subtree (other
  streets of the root) is one line ``{"skip":[from,to],"subtrees":[[level,hash],…]}``: the
  hashes of the complete subtrees covering it, so the root can be recomputed without their
  content.
* ``checkpoint.json`` — the signed checkpoint (spine and C2SP note) the bundle ends at.
* ``consistency.json`` — when a stored checkpoint precedes it: the proof that this tree
  extends that one.
* ``public-key.json`` — the signing key (compare it with the one you trust).
* ``manifest.json`` — written last: node, origin, algorithms, tree size, and per node of the
  subtree the last seq and hash the bundle holds.

The bundle streams: rows come through a server-side cursor and each zip chunk is handed on
as soon as it is compressed, so memory stays bounded whatever the subtree's size.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import AsyncIterator
from typing import IO, Any, cast
from uuid import UUID

import asyncpg
import msgspec

from civic_verify.hashing import by_name
from civic_verify.tlog import RunBuilder
from infra.audit.checkpoints import Checkpoint
from infra.audit.event_rows import CANONICAL_TEXT_COLUMNS, batches
from infra.chain import CanonicalText, encode_canonical
from infra.directory import DirectoryNode, subtree_nodes

FORMAT = "civic-evidence/v1"
_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()

# Every leaf of the root's tree below the size, with the event's columns when the event
# belongs to the subtree (row-level security also limits events to the caller's scope).
BUNDLE_LEAVES = f"""
SELECT l.idx, l.hash AS leaf, e.node_id, e.node_seq, e.position, e.prev_hash, e.hash,
       {CANONICAL_TEXT_COLUMNS}
FROM audit_tree_leaves l
LEFT JOIN events e ON e.position = l.position AND e.node_id = ANY($3::uuid[])
WHERE l.root_id = $1 AND l.idx < $2
ORDER BY l.idx
"""


class _Sink:
    """A write-only file for ZipFile: collects what it writes until taken."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


async def bundle_chunks(
    conn: asyncpg.Connection,
    node: DirectoryNode,
    checkpoint: Checkpoint,
    public_key: dict[str, Any],
    consistency: dict[str, Any] | None,
    *,
    tree_algorithm: str,
    chunk_bytes: int = 1 << 16,
) -> AsyncIterator[bytes]:
    """The zip, chunk by chunk (run inside the caller's read-only scoped transaction)."""
    sink = _Sink()
    zf = zipfile.ZipFile(cast(IO[bytes], sink), "w", zipfile.ZIP_DEFLATED)
    nodes = await subtree_nodes(conn, node)
    codes: dict[UUID, str] = {r["id"]: r["code"] for r in nodes}
    last: dict[UUID, tuple[int, bytes]] = {}
    size = checkpoint.tree_size or 0
    h = by_name(tree_algorithm)
    events = 0
    with zf.open("events.ndjson", "w", force_zip64=True) as out:
        run: RunBuilder | None = None
        rows = batches(conn, BUNDLE_LEAVES, node.root_id, size, list(codes))
        async with contextlib.aclosing(rows) as leaf_batches:
            async for batch in leaf_batches:
                for r in batch:
                    node_id = r[2]
                    if node_id is None:
                        if run is None:
                            run = RunBuilder(h, r[0])
                        run.add(bytes(r[1]))
                        continue
                    if run is not None:
                        out.write(_skip_line(run))
                        run = None
                    out.write(_event_line(r, codes[node_id]))
                    last[node_id] = (r[3], bytes(r[6]))
                    events += 1
                if len(sink.buffer) >= chunk_bytes:
                    yield sink.take()
        if run is not None:
            out.write(_skip_line(run))
    zf.writestr("checkpoint.json", _encoder.encode(checkpoint))
    zf.writestr("public-key.json", _encoder.encode(public_key))
    if consistency is not None:
        zf.writestr("consistency.json", _encoder.encode(consistency))
    manifest = {
        "format": FORMAT,
        "node": node.code,
        "origin": checkpoint.origin,
        "tree_size": size,
        "tree_hash_algorithm": tree_algorithm,
        "chain_hash_algorithm": checkpoint.hash_algorithm,
        "events": events,
        "nodes": [
            {
                "node_id": str(r["id"]),
                "code": r["code"],
                "seq": last.get(r["id"], (0, b""))[0],
                "hash": last.get(r["id"], (0, bytes(32)))[1].hex(),
            }
            for r in nodes
        ],
    }
    zf.writestr("manifest.json", _encoder.encode(manifest))
    zf.close()
    yield sink.take()


def _skip_line(run: RunBuilder) -> bytes:
    return (
        _encoder.encode(
            {
                "skip": [run.start, run.end],
                "subtrees": [[lvl, v.hex()] for lvl, v in run.subtrees()],
            }
        )
        + b"\n"
    )


def _event_line(r: asyncpg.Record, code: str) -> bytes:
    meta = _encoder.encode(
        {
            "hash": bytes(r[6]).hex(),
            "leaf": r[0],
            "node": code,
            "node_id": str(r[2]),
            "position": r[4],
            "prev_hash": bytes(r[5]).hex(),
            "seq": r[3],
        }
    )
    (
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
    ) = r[7:]
    canonical = encode_canonical(
        CanonicalText(
            actor,
            causation_id,
            correlation_id,
            _decoder.decode(data),
            event_id,
            idempotency_key,
            str(r[2]),
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
    return meta[:-1] + b',"event":' + canonical + b"}\n"
