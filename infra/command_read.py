"""What a command decides on, read in one autocommit statement (migration 0053).

``civic_command_read`` enters the principal's scope as the runtime role, as
``EventStore.append_statement`` does, so row-level security decides what it returns; with
the one-statement append after it, a command on a stream the process has not cached costs two
round trips. The stream's rows are those of ``infra.snapshots.LOAD`` (``snapshots.rebuild``
turns them into the aggregate); the nodes are those the directory's look-ups would find.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from infra.database import Scope
from infra.directory import DirectoryNode

READ = "SELECT * FROM civic_command_read($1, $2, $3, $4, $5, $6, $7, $8, $9)"

#: where a row's node columns start (after the 24 columns of ``snapshots.LOAD``)
_NODE = 24


@dataclass(frozen=True, slots=True)
class CommandRead:
    #: the stream's rows, of ``snapshots.LOAD``'s shape (none when no stream was asked for
    #: or row-level security shows none of its events)
    rows: list[asyncpg.Record]
    #: the nodes found, each with the code it was asked by (None: asked by id, or a node of
    #: the stream's events, snapshot or parties)
    nodes: list[tuple[DirectoryNode, str | None]]


async def read(
    conn: asyncpg.Connection,
    scope: Scope,
    *,
    root_id: UUID,
    stream: tuple[UUID, str, int] | None,
    codes: Sequence[str] = (),
    node_ids: Sequence[UUID] = (),
) -> CommandRead:
    """One statement, ``conn`` not in a transaction: the ``stream`` (id, stream type,
    state version) of ``root_id`` as ``scope`` may see it, the nodes of its events and parties,
    and the nodes named by ``codes`` and ``node_ids``."""
    stream_id, stream_type, state_version = stream if stream is not None else (None, None, None)
    found = await conn.fetch(
        READ,
        scope.root_id,
        scope.path,
        scope.is_unit,
        root_id,
        stream_id,
        stream_type,
        state_version,
        list(codes),
        list(node_ids),
    )
    rows = [r for r in found if r["n_id"] is None]
    nodes = [(DirectoryNode(*r[_NODE : _NODE + 9]), r["n_asked"]) for r in found if r["n_id"]]
    return CommandRead(rows, nodes)
