"""扫楼 (Survey): given events, when a command, then events (or the refusal)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import IllegalTransition, InvalidValue
from domain.issue import Issue
from domain.refs import NodeRef
from domain.survey import ERASED, Survey, issue_category

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
ROOT = UUID("00000000-0000-0000-0000-0000000000aa")
COMMUNITY = NodeRef(id=uuid4(), code="330106001001", kind="community", root_id=ROOT)
OTHER = NodeRef(id=uuid4(), code="330106001002", kind="community", root_id=ROOT)
GRID = NodeRef(
    id=uuid4(), code="330106001001G01", kind="grid", root_id=ROOT, parent_id=COMMUNITY.id
)
STREET = NodeRef(id=uuid4(), code="330106001000", kind="street", root_id=ROOT)


def visit(**overrides: Any) -> Survey:
    args: dict[str, Any] = dict(
        survey_id=uuid4(),
        node=GRID,
        community=COMMUNITY,
        building="3幢",
        room="2单元301",
        visited_on=date(2024, 3, 1),
        flags=["group_rental"],
        residents=9,
        note="隔断出租, 住9人",
        at=T0,
    )
    args.update(overrides)
    return Survey.visit(**args)


def test_visited() -> None:
    (event,) = visit().collect_events()
    assert isinstance(event, Survey.Visited)
    assert (event.building, event.room, event.flags, event.residents, event.note) == (
        "3幢",
        "2单元301",
        ["group_rental"],
        9,
        "隔断出租, 住9人",
    )
    assert event.community_id == COMMUNITY.id


def test_flags_are_known_each_once_in_order() -> None:
    survey = visit(flags=["needs_help", "group_rental", "needs_help"])
    assert survey.flags == ["group_rental", "needs_help"]
    with pytest.raises(InvalidValue, match="flags"):
        visit(flags=["haunted"])


def test_visited_at_a_community_or_its_grid_only() -> None:
    visit(node=COMMUNITY)
    with pytest.raises(InvalidValue, match="node_code"):
        visit(node=STREET)
    with pytest.raises(InvalidValue, match="not a grid of"):
        visit(community=OTHER)


def test_not_in_the_future() -> None:
    with pytest.raises(InvalidValue, match="visited_on"):
        visit(visited_on=date(2024, 3, 2))


def test_residents_bounds() -> None:
    with pytest.raises(InvalidValue, match="residents"):
        visit(residents=-1)


def test_an_issue_needs_a_flag() -> None:
    with pytest.raises(InvalidValue, match="raise_issue"):
        visit(flags=[], issue_id=uuid4())
    issue_id = uuid4()
    assert visit(issue_id=issue_id).issue_id == issue_id


def test_the_raised_issue_names_the_survey_and_carries_no_note() -> None:
    survey = visit(flags=["safety_hazard", "group_rental"])
    issue = Issue.report(
        issue_id=uuid4(),
        node=GRID,
        title=survey.issue_title(),
        category=issue_category(survey.flags),
        source="survey",
        survey_id=survey.id,
        at=T0,
    )
    (event,) = issue.collect_events()
    assert isinstance(event, Issue.Reported)
    assert event.survey_id == survey.id and event.source == "survey"
    assert event.category == "群租房"
    assert "隔断" not in event.title and "3幢" in event.title
    with pytest.raises(InvalidValue, match="source"):
        Issue.report(
            issue_id=uuid4(),
            node=GRID,
            title="t",
            category="c",
            source="grid",
            survey_id=survey.id,
            at=T0,
        )


def test_note_erased_once() -> None:
    survey = visit()
    survey.collect_events()
    survey.erase_note(T0, reason="本人申请")
    (event,) = survey.collect_events()
    assert isinstance(event, Survey.NoteErased)
    assert survey.note is None and survey.status == ERASED
    with pytest.raises(IllegalTransition) as refused:
        survey.erase_note(T0)
    assert refused.value.current_state == ERASED
