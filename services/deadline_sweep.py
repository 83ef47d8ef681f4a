"""What a workflow implements to have deadlines: a ``DeadlineSweep`` finds what is past due
and records it. The clock that runs the sweeps is ``services.deadlines``; the list of sweeps
is ``services.app.deadline_sweeps``, so a workflow's commands import only this module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

import asyncpg

from services.commands.session import CommandSession


@dataclass(frozen=True)
class DueItem:
    root_code: str
    stream_id: UUID


class DeadlineSweep(Protocol):
    #: what it records, e.g. "IssueOverdue"; also the clock's audit "path".
    name: str

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueItem]:
        """Past-due items not yet recorded (read as the system, across tenants).

        Leave out items in a closed subtree (``civic_subtree_closed(node_id)``): their
        appends are refused, and items that can never fire would fill every batch."""
        ...

    async def fire(self, session: CommandSession, stream_id: UUID) -> bool:
        """Record the fact if it still holds; False when there is nothing to record."""
        ...
