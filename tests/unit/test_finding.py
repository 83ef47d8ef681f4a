"""Inspection findings (巡视整改): given events, when a command, then events (or the refusal)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import hypothesis
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from domain.errors import Conflict, DomainError, IllegalTransition, InvalidValue
from domain.finding import (
    ASSIGNED,
    CATEGORIES,
    COMPLETED,
    IN_PROGRESS,
    RECORDED,
    REOPEN_DEFAULT_DAYS,
    STATUSES,
    TRANSITIONS,
    VERIFIED,
    Finding,
    warning,
)
from domain.refs import NodeRef, business_date
from tests.domain_spec import given, history, replay

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
TODAY = date(2024, 3, 1)
DUE = date(2024, 5, 31)
D = timedelta(days=1)
ROOT = UUID("00000000-0000-0000-0000-0000000000aa")
OTHER_ROOT = UUID("00000000-0000-0000-0000-0000000000bb")

COUNTY = NodeRef(id=uuid4(), code="330106000000", kind="county", root_id=ROOT)
UNIT = NodeRef(id=uuid4(), code="U330106-MZJ", kind="unit", root_id=ROOT)  # 民政局
STREET = NodeRef(id=uuid4(), code="330106001000", kind="street", root_id=ROOT)
FOREIGN_UNIT = NodeRef(id=uuid4(), code="U110101-X", kind="unit", root_id=OTHER_ROOT)

MEASURES = ("建立困难群众动态监测台账", "每季度开展一次走访核查")


def record(**overrides: Any) -> Finding:
    args: dict[str, Any] = dict(
        finding_id=uuid4(), scope=COUNTY, source="省委第三巡视组", round="2024年第一轮",
        description="低保动态管理不到位，存在应退未退情况", category="deadline",
        responsible_unit=UNIT, due_on=DUE, measures=MEASURES, at=T0,
    )
    args.update(overrides)
    return Finding.record(**args)


def progress(f: Finding) -> None:
    f.report_progress(note="已完成全县低保对象复核", evidence="doc://ledger/2024-031", at=T0 + D)


def complete(f: Finding) -> None:
    f.complete("应退未退对象已全部清退，建立长效机制", T0 + 10 * D)


def verify(f: Finding) -> None:
    f.verify(accepted=True, comment="材料齐全，同意销号", at=T0 + 12 * D)


def reject(f: Finding) -> None:
    f.verify(accepted=False, comment="缺少清退对象名单", at=T0 + 12 * D)


# -- record + assign -----------------------------------------------------------------------


def test_record_is_finding_recorded_then_rectification_assigned() -> None:
    f = record()
    recorded, assigned = f.collect_events()
    assert isinstance(recorded, Finding.Recorded) and type(recorded).TOPIC == "FindingRecorded.v1"
    assert (recorded.scope_id, recorded.scope_code, recorded.root_id) == (COUNTY.id,
                                                                          COUNTY.code, ROOT)
    assert (recorded.source, recorded.round, recorded.category) == (
        "省委第三巡视组", "2024年第一轮", "deadline")
    assert recorded.description == "低保动态管理不到位，存在应退未退情况"
    assert isinstance(assigned, Finding.Assigned)
    assert type(assigned).TOPIC == "RectificationAssigned.v1"
    assert (assigned.responsible_unit_id, assigned.responsible_unit_code) == (UNIT.id, "U330106-MZJ")
    assert (assigned.measures, assigned.due_on) == (MEASURES, DUE)
    assert (recorded.originator_version, assigned.originator_version) == (1, 2)
    assert f.status == ASSIGNED and f.owner_node_id == COUNTY.id and f.version == 2
    assert replay([recorded]).status == RECORDED


def test_record_defaults_and_cleaning() -> None:
    f = record(category=None, round=None, measures=["  整改措施一  "], source=" 县委巡察组 ")
    assert f.category == "deadline" and f.round is None
    assert f.measures == ("整改措施一",) and f.source == "县委巡察组"


@pytest.mark.parametrize("category", CATEGORIES)
def test_categories(category: str) -> None:
    assert record(category=category).category == category


def test_a_past_due_date_is_accepted_and_overdue_at_once() -> None:
    f = record(due_on=date(2023, 12, 31))
    assert f.warning_on(TODAY) == "red" and f.overdue_days(TODAY) == 61
    assert f.is_past_due(T0)
    f.mark_overdue(T0)
    assert f.overdue


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(category="立行立改"), "category"),
        (dict(measures=[]), "measures"),
        (dict(measures="一条措施"), "measures"),
        (dict(measures=["ok", " "]), "measures[1]"),
        (dict(measures=["m"] * 51), "measures"),
        (dict(description=" "), "description"),
        (dict(description="述" * 2001), "description"),
        (dict(source=""), "source"),
        (dict(round="轮" * 201), "round"),
        (dict(responsible_unit=STREET), "responsible_unit_code"),
        (dict(responsible_unit=FOREIGN_UNIT), "responsible_unit_code"),
        (dict(due_on=T0), "due_on"),
    ],
)
def test_record_refuses_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValue) as e:
        record(**overrides)
    assert e.value.field == field


def test_record_in_a_closed_scope() -> None:
    with pytest.raises(Conflict, match="closed"):
        record(scope=NodeRef(id=uuid4(), code="330106009000", kind="street", root_id=ROOT,
                             closed=True))


# -- the transition table ------------------------------------------------------------------

PATHS: dict[str, list[Callable[[Finding], None]]] = {
    ASSIGNED: [],
    IN_PROGRESS: [progress],
    COMPLETED: [progress, complete],
    VERIFIED: [progress, complete, verify],
}
LATE = datetime(2024, 6, 1, 9, 0, tzinfo=CST)  # the day after DUE
COMMANDS: dict[str, tuple[str, Callable[[Finding], None], type]] = {
    "report_progress": ("report_progress",
                        lambda f: f.report_progress(note="更新", at=T0 + 20 * D),
                        Finding.ProgressReported),
    "complete": ("complete", lambda f: f.complete("已完成", T0 + 20 * D), Finding.Completed),
    "verify": ("verify", lambda f: f.verify(accepted=True, at=T0 + 20 * D), Finding.Verified),
    "reject": ("verify", lambda f: f.verify(accepted=False, comment="不合格", at=T0 + 20 * D),
               Finding.Rejected),
    "reopen": ("reopen", lambda f: f.reopen("回头看发现问题反弹", T0 + 40 * D), Finding.Reopened),
    "mark_overdue": ("mark_overdue", lambda f: f.mark_overdue(LATE), Finding.Overdue),
}


def test_transition_table_covers_every_command() -> None:
    assert {entry[0] for entry in COMMANDS.values()} == set(TRANSITIONS)


@pytest.mark.parametrize("status", list(PATHS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_transition_table(status: str, command: str) -> None:
    events = history(record(), *PATHS[status])
    assert replay(events).status == status
    table_entry, run, event_class = COMMANDS[command]
    if status in TRANSITIONS[table_entry]:
        given(events).when(run).then(event_class)
    else:
        err = given(events).when(run).then_raises(IllegalTransition)
        assert err.value.current_state == status


# -- progress, complete, verify ------------------------------------------------------------


def test_progress() -> None:
    events = history(record())
    [e] = given(events).when(progress).then(Finding.ProgressReported)
    assert type(e).TOPIC == "RectificationProgressReported.v1"
    assert (e.note, e.evidence) == ("已完成全县低保对象复核", "doc://ledger/2024-031")
    f = replay([*events, e])
    assert f.status == IN_PROGRESS and f.progress_count == 1
    [e2] = given(events).when(
        lambda f: f.report_progress(note="继续推进", evidence="  ", at=T0)
    ).then(Finding.ProgressReported)
    assert e2.evidence is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [(dict(note=""), "note"), (dict(note="x" * 2001), "note"),
     (dict(note="ok", evidence="e" * 501), "evidence")],
)
def test_progress_refusals(kwargs: dict[str, Any], field: str) -> None:
    e = given(history(record())).when(
        lambda f: f.report_progress(at=T0, **kwargs)
    ).then_raises(InvalidValue)
    assert e.value.field == field


def test_complete_directly_from_assigned() -> None:
    events = history(record())
    [e] = given(events).when(complete).then(Finding.Completed)
    assert e.summary.startswith("应退未退")
    f = replay([*events, e])
    assert f.status == COMPLETED and f.completed_at == T0 + 10 * D


def test_verify_closes_the_entry() -> None:
    events = history(record(), progress, complete)
    [e] = given(events).when(verify).then(Finding.Verified)
    assert type(e).TOPIC == "RectificationVerified.v1" and e.comment == "材料齐全，同意销号"
    f = replay([*events, e])
    assert f.status == VERIFIED and f.verified_at == T0 + 12 * D
    assert f.warning_on(date(2030, 1, 1)) == "none" and f.overdue_days(date(2030, 1, 1)) == 0
    [e2] = given(events).when(lambda f: f.verify(accepted=True, at=T0)).then(Finding.Verified)
    assert e2.comment is None


def test_reject_sends_it_back_with_the_reason() -> None:
    events = history(record(), progress, complete)
    [e] = given(events).when(reject).then(Finding.Rejected)
    assert type(e).TOPIC == "RectificationRejected.v1"
    assert e.reason == "缺少清退对象名单"
    f = replay([*events, e])
    assert f.status == IN_PROGRESS and f.completed_at is None
    assert f.rejection_count == 1 and f.last_rejection_reason == "缺少清退对象名单"
    f.complete("补充名单后再次提交", T0 + 13 * D)
    f.verify(accepted=True, at=T0 + 14 * D)
    assert f.status == VERIFIED


@pytest.mark.parametrize("comment", [None, "", "  "])
def test_a_rejection_needs_a_reason(comment: str | None) -> None:
    e = given(history(record(), complete)).when(
        lambda f: f.verify(accepted=False, comment=comment, at=T0)
    ).then_raises(InvalidValue)
    assert e.value.field == "comment"


def test_verify_needs_a_boolean() -> None:
    e = given(history(record(), complete)).when(
        lambda f: f.verify(accepted="yes", at=T0)
    ).then_raises(InvalidValue)
    assert e.value.field == "accepted"


# -- reopen (回头看) -----------------------------------------------------------------------


def test_reopen_after_verification() -> None:
    events = history(
        record(),
        progress,
        lambda f: f.mark_overdue(LATE),
        lambda f: f.complete("逾期完成", LATE + D),
        lambda f: f.verify(accepted=True, at=LATE + 2 * D),
    )
    f0 = replay(events)
    assert f0.overdue and f0.status == VERIFIED  # verified late
    at = T0 + 200 * D
    [e] = given(events).when(lambda f: f.reopen("回头看发现部分对象重新纳入", at)).then(Finding.Reopened)
    assert type(e).TOPIC == "FindingReopened.v1"
    assert e.due_on == business_date(at) + timedelta(days=REOPEN_DEFAULT_DAYS)
    f = replay([*events, e])
    assert f.status == IN_PROGRESS and f.verified_at is None and not f.overdue
    assert f.reopen_count == 1 and f.due_on == e.due_on


def test_reopen_with_a_due_date() -> None:
    events = history(record(), progress, complete, verify)
    at = T0 + 100 * D
    [e] = given(events).when(
        lambda f: f.reopen("反弹", at, due_on=business_date(at))
    ).then(Finding.Reopened)
    assert e.due_on == business_date(at)
    err = given(events).when(
        lambda f: f.reopen("反弹", at, due_on=business_date(at) - D)
    ).then_raises(InvalidValue)
    assert err.value.field == "due_on"
    err = given(events).when(lambda f: f.reopen(" ", at)).then_raises(InvalidValue)
    assert err.value.field == "reason"


# -- overdue and warnings ------------------------------------------------------------------


def test_overdue_starts_the_day_after_the_due_date_in_china() -> None:
    events = history(record())
    on_due_day = datetime(2024, 5, 31, 23, 59, tzinfo=CST)
    next_day_in_china = datetime(2024, 5, 31, 16, 0, tzinfo=UTC)  # 2024-06-01 00:00 CST
    given(events).when(lambda f: f.mark_overdue(on_due_day)).then_raises(IllegalTransition)
    [e] = given(events).when(lambda f: f.mark_overdue(next_day_in_china)).then(Finding.Overdue)
    assert type(e).TOPIC == "RectificationOverdue.v1"
    assert e.due_on == DUE
    f = replay([*events, e])
    assert f.overdue
    with pytest.raises(IllegalTransition):  # once per due date
        f.mark_overdue(LATE + 10 * D)


def test_a_completed_but_unverified_finding_can_be_overdue() -> None:
    events = history(record(), complete)
    given(events).when(lambda f: f.mark_overdue(LATE)).then(Finding.Overdue)


@pytest.mark.parametrize(
    ("today", "status", "expected"),
    [
        (date(2024, 4, 30), ASSIGNED, "none"),  # 31 days left
        (date(2024, 5, 10), ASSIGNED, "none"),  # 21 days left
        (date(2024, 5, 11), IN_PROGRESS, "green"),  # 20 days left
        (date(2024, 5, 20), IN_PROGRESS, "green"),  # 11 days left
        (date(2024, 5, 21), IN_PROGRESS, "yellow"),  # 10 days left
        (date(2024, 5, 31), COMPLETED, "yellow"),  # due today
        (date(2024, 6, 1), COMPLETED, "red"),  # overdue
        (date(2025, 1, 1), ASSIGNED, "red"),
        (date(2024, 6, 1), VERIFIED, "none"),
        (date(2024, 5, 25), VERIFIED, "none"),
    ],
)
def test_warning(today: date, status: str, expected: str) -> None:
    assert warning(DUE, today, status) == expected


@hypothesis.given(st.dates(), st.dates(), st.sampled_from(STATUSES))
def test_warning_is_total_and_ordered(due_on: date, today: date, status: str) -> None:
    w = warning(due_on, today, status)
    assert w in ("none", "green", "yellow", "red")
    if status == VERIFIED:
        assert w == "none"
    elif today > due_on:
        assert w == "red"
    else:
        assert w != "red"


# -- properties ----------------------------------------------------------------------------

good_texts = st.sampled_from(["已完成整改", "缺少佐证材料", "OK"])
texts = st.one_of(good_texts, good_texts, good_texts,
                  st.sampled_from(["", " ", "x" * 2001]), st.text(max_size=10))
ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "report_progress": st.tuples(texts, st.none() | texts),
    "complete": st.tuples(texts),
    "verify": st.tuples(st.booleans(), st.none() | texts),
    "reopen": st.tuples(texts, st.none() | st.integers(-5, 90)),
    "mark_overdue": st.tuples(),
}


def run_command(f: Finding, name: str, args: tuple[Any, ...], at: datetime) -> None:
    if name == "report_progress":
        f.report_progress(note=args[0], evidence=args[1], at=at)
    elif name == "complete":
        f.complete(args[0], at)
    elif name == "verify":
        f.verify(accepted=args[0], comment=args[1], at=at)
    elif name == "reopen":
        due = None if args[1] is None else business_date(at) + timedelta(days=args[1])
        f.reopen(args[0], at, due_on=due)
    else:
        f.mark_overdue(at)


def check_invariants(f: Finding) -> None:
    assert f.status in STATUSES and f.status != RECORDED
    assert f.category in CATEGORIES and f.measures and f.due_on is not None
    assert f.responsible_unit_id == UNIT.id
    assert (f.status == COMPLETED) == (f.completed_at is not None and f.verified_at is None)
    assert (f.status == VERIFIED) == (f.verified_at is not None)
    assert f.overdue_for is None or f.overdue_for == f.due_on
    assert (f.summary is not None) == (f.status in (COMPLETED, VERIFIED))
    assert f.rejection_count >= 0 and f.reopen_count >= 0


@settings(max_examples=200, deadline=None)
@hypothesis.given(st.integers(-30, 120), st.data())
def test_random_command_sequences_stay_valid_and_replay(due_in: int, data: st.DataObject) -> None:
    f = record(due_on=TODAY + timedelta(days=due_in))
    history = list(f.collect_events())
    at = T0
    for _ in range(data.draw(st.integers(0, 30), label="steps")):
        at += timedelta(hours=data.draw(st.integers(0, 24 * 20)))
        allowed = sorted(c for c, states in TRANSITIONS.items() if f.status in states)
        name = data.draw(st.one_of(st.sampled_from(allowed), st.sampled_from(allowed),
                                   st.sampled_from(sorted(TRANSITIONS))))
        args = data.draw(ARGS[name])
        before = copy.deepcopy(f)
        try:
            run_command(f, name, args, at)
        except DomainError as e:
            assert f == before
            if isinstance(e, IllegalTransition):
                assert e.current_state == f.status
        check_invariants(f)
        history.extend(f.collect_events())
    rebuilt = replay(history)
    assert rebuilt == f and rebuilt.version == len(history)
