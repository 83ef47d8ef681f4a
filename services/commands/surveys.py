"""Commands of household surveys (扫楼 / 入户走访): record a visit; erase its note.

A visit is recorded by an operator or admin whose scope holds the community or grid. With
``raise_issue`` and at least one flag, an IssueReported (source ``survey``, naming the
survey) is appended in the same transaction, so a 群租房 becomes a work order of the 12345
loop. The note is sealed under the survey stream's own data key (``person_keys``, created in
this transaction); erasing it deletes that key.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID, uuid4

import msgspec

from domain.issue import Issue
from domain.survey import Survey, issue_category
from infra import directory
from services.commands.issues import node_ref
from services.commands.lookup import node_in_scope
from services.commands.session import CommandSession
from services.problems import not_found


class SurveyChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    #: the issue raised from the visit (``raise_issue``), if any
    issue_id: UUID | None = None


async def visit(
    session: CommandSession,
    *,
    node_code: str,
    building: str,
    room: str,
    visited_on: date,
    residents: int | None,
    flags: list[str],
    note: str | None,
    raise_issue: bool,
) -> tuple[int, SurveyChanged]:
    node = await node_in_scope(session, node_code, f"node {node_code}")
    community = node
    if node.kind == "grid" and node.parent_id is not None:
        parent = await directory.find_by_id(session.conn, node.parent_id)
        if parent is not None:
            community = parent
    survey_id = uuid4()
    clean = Survey.clean_flags(flags)
    issue_id = uuid4() if raise_issue else None  # without a flag the domain refuses (422)
    survey = Survey.visit(
        survey_id=survey_id,
        node=node_ref(node),
        community=node_ref(community),
        building=building,
        room=room,
        visited_on=visited_on,
        residents=residents,
        flags=clean,
        note=note,
        issue_id=issue_id,
        at=session.now,
    )
    result = await session.save(survey)
    answer = SurveyChanged(survey.id, result.version, result.position)
    if issue_id is not None:
        issue = Issue.report(
            issue_id=issue_id,
            node=node_ref(node),
            title=survey.issue_title(),
            category=issue_category(clean),
            source="survey",
            survey_id=survey.id,
            at=session.now,
        )
        # the answer's position covers the issue too (a read waiting for it sees both)
        answer.position = (await session.save(issue, caused_by=result.event_ids[-1])).position
        answer.issue_id = issue_id
    return 201, answer


async def erase_note(
    session: CommandSession, *, survey_id: UUID, reason: str | None
) -> tuple[int, SurveyChanged]:
    """SurveyNoteErased (admin); the survey's data key is deleted in the same transaction."""
    survey = await session.load(Survey, survey_id)
    if survey is None:
        raise not_found(f"survey {survey_id}")
    session.check_if_match(survey)
    survey.erase_note(session.now, reason=reason)
    await session.shred_personal_data(survey.id)
    result = await session.save(survey)
    return 200, SurveyChanged(survey.id, result.version, result.position, survey.issue_id)
