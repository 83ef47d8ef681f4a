"""Commands of household surveys (扫楼 / 入户走访): record a visit; erase its note.

A visit is recorded by an operator or admin whose scope holds the community or grid. With
``raise_issue`` and at least one flag, an IssueReported (source ``survey``, naming the
survey) is appended in the same transaction, so a 群租房 becomes a work order of the 12345
loop. The note is sealed under the survey stream's own data key (``person_keys``, created in
this transaction); erasing it deletes that key.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal
from uuid import UUID, uuid4

import msgspec

from domain.issue import Issue
from domain.survey import FLAGS, MAX_RESIDENTS, Survey, issue_category
from services.commands.lookup import node_in_scope
from services.commands.session import CommandSession, Saved
from services.fields import NodeCode, Text, Title

Flag = Literal["group_rental", "safety_hazard", "needs_help", "vacant", "other"]


# -- the commands (request bodies, passed through as they were decoded) ----------------------


class SurveyCreate(msgspec.Struct, forbid_unknown_fields=True):
    node_code: Annotated[NodeCode, msgspec.Meta(description="a community or one of its grids")]
    building: Annotated[Title, msgspec.Meta(description="e.g. 3幢")]
    room: Annotated[Title, msgspec.Meta(description="e.g. 2单元301")]
    visited_on: Annotated[date, msgspec.Meta(description="not in the future (China date)")]
    flags: Annotated[list[Flag], msgspec.Meta(max_length=len(FLAGS))] = msgspec.field(
        default_factory=list
    )
    residents: Annotated[int, msgspec.Meta(ge=0, le=MAX_RESIDENTS)] | None = None
    note: (
        Annotated[Text, msgspec.Meta(description="personal data: sealed, masked for non-admins")]
        | None
    ) = None
    raise_issue: Annotated[
        bool, msgspec.Meta(description="with at least one flag: also report an issue (survey)")
    ] = False


class SurveyErase(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text | None = None


# -- the answer ------------------------------------------------------------------------------


class SurveyChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    #: the issue raised from the visit (``raise_issue``), if any
    issue_id: UUID | None = None

    @classmethod
    def of(cls, saved: Saved[Survey]) -> SurveyChanged:
        survey = saved.aggregate
        return cls(survey.id, saved.version, saved.position, survey.issue_id)


# -- commands --------------------------------------------------------------------------------


async def visit(session: CommandSession, command: SurveyCreate) -> tuple[int, SurveyChanged]:
    node = await node_in_scope(session, command.node_code, f"node {command.node_code}")
    community = node
    if node.kind == "grid":
        community = await session.node(node.parent_id) or node
    clean = Survey.clean_flags(list(command.flags))
    issue_id = uuid4() if command.raise_issue else None  # without a flag the domain refuses (422)
    survey = Survey.visit(
        survey_id=uuid4(),
        node=node.ref(),
        community=community.ref(),
        building=command.building,
        room=command.room,
        visited_on=command.visited_on,
        residents=command.residents,
        flags=clean,
        note=command.note,
        issue_id=issue_id,
        at=session.now,
    )
    saved = await session.create(survey)
    answer = SurveyChanged.of(saved)
    if issue_id is not None:
        issue = Issue.report(
            issue_id=issue_id,
            node=node.ref(),
            title=survey.issue_title(),
            category=issue_category(clean),
            source="survey",
            survey_id=survey.id,
            at=session.now,
        )
        # the answer's position covers the issue too (a read waiting for it sees both)
        answer.position = (await session.save(issue, caused_by=saved.result.event_ids[-1])).position
    return 201, answer


async def erase_note(
    session: CommandSession, survey_id: UUID, command: SurveyErase | None
) -> tuple[int, SurveyChanged]:
    """SurveyNoteErased (admin); the survey's data key is deleted in the same transaction."""
    saved = await session.update(
        Survey,
        survey_id,
        lambda s: s.erase_note(session.now, reason=command.reason if command else None),
        what="survey",
    )
    await session.shred_personal_data(survey_id)
    return 200, SurveyChanged.of(saved)
