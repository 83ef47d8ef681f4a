"""What the survey reads answer: a visit, and the coverage of a subtree's grids."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import msgspec


class SurveyView(msgspec.Struct):
    id: UUID
    node_code: str
    building: str
    room: str
    visited_on: date
    residents: int | None
    flags: list[str]
    note: str | None
    #: the note is masked (the caller is not an admin)
    note_masked: bool
    issue_id: UUID | None
    status: str
    visited_at: datetime
    version: int


class CoverageItem(msgspec.Struct):
    code: str
    name: str
    kind: str
    #: distinct households (building + room) visited in the period
    households: int
    visits: int
    flagged: int
    group_rentals: int
    issues_raised: int
    last_visited_on: date | None


class Coverage(msgspec.Struct):
    code: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    items: list[CoverageItem] = msgspec.field(default_factory=list)
