"""Household surveys (扫楼 / 入户走访): a grid worker records one visit to one household.

One ``Survey`` stream per visit (HouseholdVisited). What was found travels as ``flags``
(群租房, safety hazard, needs help, vacant, other); ``note`` is free text about the household
and is personal information under PIPL: it is sealed per survey stream in the stored event
(see docs/privacy.md), like a member's name and phone.

With ``raise_issue`` and at least one flag, the application also reports an issue (source
``survey``) in the same transaction; the visit records that issue's id.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.clock import require_aware
from domain.errors import IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind
from domain.personal_data import PERSONAL
from domain.refs import (
    MAX_TITLE,
    NodeRef,
    business_date,
    clean_optional_text,
    clean_text,
    require_date,
    require_int,
    require_node,
)

GROUP_RENTAL = "group_rental"
FLAGS = (GROUP_RENTAL, "safety_hazard", "needs_help", "vacant", "other")
MAX_RESIDENTS = 200
#: what an issue raised from a visit is filed under, by the first flag (the category text).
ISSUE_CATEGORIES = {
    GROUP_RENTAL: "群租房",
    "safety_hazard": "安全隐患",
    "needs_help": "困难帮扶",
    "vacant": "空置房屋",
    "other": "入户走访",
}
RECORDED = "recorded"
ERASED = "erased"


class Survey(CivicAggregate):
    STREAM_TYPE = "survey"

    class Visited(CivicAggregate.Created):
        TOPIC = "HouseholdVisited.v1"
        node_id: UUID
        node_code: str
        #: the grid's community when visited at a grid (coverage and roll-ups per community)
        community_id: UUID
        root_id: UUID
        building: str
        room: str
        visited_on: date
        residents: int | None
        flags: list[str]
        #: personal information (sealed per survey stream); None once erased
        note: Annotated[str | None, PERSONAL]
        issue_id: UUID | None

        def apply(self, survey: Any) -> None:
            pass

    class NoteErased(CivicAggregate.Event):
        TOPIC = "SurveyNoteErased.v1"
        reason: str | None

        def apply(self, survey: Any) -> None:
            survey.note = None
            survey.status = ERASED

    def __init__(
        self,
        node_id: UUID,
        node_code: str,
        community_id: UUID,
        root_id: UUID,
        building: str,
        room: str,
        visited_on: date,
        residents: int | None,
        flags: list[str],
        note: str | None,
        issue_id: UUID | None,
    ) -> None:
        self.node_id = node_id
        self.node_code = node_code
        self.community_id = community_id
        self.root_id = root_id
        self.building = building
        self.room = room
        self.visited_on = visited_on
        self.residents = residents
        self.flags = list(flags)
        self.note = note
        self.issue_id = issue_id
        self.status = RECORDED

    @property
    def owner_node_id(self) -> UUID:
        return self.node_id

    @staticmethod
    def clean_flags(flags: object) -> list[str]:
        """Known flags, each once, in the order of ``FLAGS``."""
        if not isinstance(flags, list | tuple):
            raise InvalidValue("flags", "must be a list")
        unknown = [f for f in flags if f not in FLAGS]
        if unknown:
            raise InvalidValue("flags", f"unknown flag; use {', '.join(FLAGS)}")
        return [f for f in FLAGS if f in flags]

    @classmethod
    def visit(
        cls,
        *,
        survey_id: UUID,
        node: NodeRef,
        community: NodeRef,
        building: str,
        room: str,
        visited_on: date,
        flags: list[str],
        residents: int | None = None,
        note: str | None = None,
        issue_id: UUID | None = None,
        at: datetime,
    ) -> Survey:
        """HouseholdVisited at a community or one of its grids, on a day not in the future."""
        require_node("node_code", node, kinds={NodeKind.COMMUNITY, NodeKind.GRID})
        if node.kind == NodeKind.GRID.value and node.parent_id != community.id:
            raise InvalidValue("node_code", f"{node.code} is not a grid of {community.code}")
        visited_on = require_date("visited_on", visited_on)
        if visited_on > business_date(require_aware(at)):
            raise InvalidValue("visited_on", "a visit cannot be recorded for a future day")
        clean = cls.clean_flags(flags)
        if issue_id is not None and not clean:
            raise InvalidValue("raise_issue", "an issue is raised only for a visit with a flag")
        return cls._create(
            cls.Visited,
            id=survey_id,
            timestamp=at,
            node_id=node.id,
            node_code=node.code,
            community_id=community.id,
            root_id=node.root_id,
            building=clean_text("building", building, max_len=MAX_TITLE),
            room=clean_text("room", room, max_len=MAX_TITLE),
            visited_on=visited_on,
            residents=None
            if residents is None
            else require_int("residents", residents, low=0, high=MAX_RESIDENTS),
            flags=clean,
            note=clean_optional_text("note", note),
            issue_id=issue_id,
        )

    def issue_title(self) -> str:
        """The title of the issue a flagged visit raises (no personal data: no note)."""
        labels = "、".join(ISSUE_CATEGORIES[f] for f in self.flags)
        return f"入户走访发现: {labels} ({self.building} {self.room})"[:MAX_TITLE]

    def erase_note(self, at: datetime, reason: str | None = None) -> None:
        """SurveyNoteErased: the privacy layer deletes the survey's key (crypto-shredding)."""
        if self.status == ERASED:
            raise IllegalTransition("the survey's note is already erased", current_state=ERASED)
        self._record(self.NoteErased, at, reason=clean_optional_text("reason", reason))


def issue_category(flags: list[str]) -> str:
    return ISSUE_CATEGORIES[flags[0]] if flags else ISSUE_CATEGORIES["other"]
