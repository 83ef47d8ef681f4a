"""Issues (工单, 吹哨报到): given events, when a command, then events (or the refusal)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import hypothesis
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from domain.errors import Conflict, DomainError, IllegalTransition, InvalidValue
from domain.issue import (
    ACCEPTED,
    ASSIGNED,
    CALLBACK_SOURCES,
    CLOSED,
    REPORTED,
    RESOLVED,
    SATISFACTIONS,
    SOURCES,
    STATUSES,
    TRANSITIONS,
    Issue,
)
from domain.refs import NodeRef
from tests.domain_spec import given, history, replay

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
H = timedelta(hours=1)
D = timedelta(days=1)
DUE = T0 + 3 * D
ROOT = UUID("00000000-0000-0000-0000-0000000000aa")
OTHER_ROOT = UUID("00000000-0000-0000-0000-0000000000bb")

GRID = NodeRef(id=uuid4(), code="330106001001G01", kind="grid", root_id=ROOT)
UNIT = NodeRef(id=uuid4(), code="U330106-CGJ", kind="unit", root_id=ROOT)  # 城管局
UNIT_2 = NodeRef(id=uuid4(), code="U330106-ZJJ", kind="unit", root_id=ROOT)  # 住建局
STREET = NodeRef(id=uuid4(), code="330106001000", kind="street", root_id=ROOT)
COUNTY = NodeRef(id=uuid4(), code="330106000000", kind="county", root_id=ROOT)
COMMUNITY = NodeRef(id=uuid4(), code="330106001001", kind="community", root_id=ROOT)
FOREIGN_UNIT = NodeRef(id=uuid4(), code="U110101-X", kind="unit", root_id=OTHER_ROOT)
FOREIGN_STREET = NodeRef(id=uuid4(), code="330107001000", kind="street", root_id=OTHER_ROOT)
CLOSED_UNIT = NodeRef(id=uuid4(), code="U330106-OLD", kind="unit", root_id=ROOT, closed=True)


def report(**overrides: Any) -> Issue:
    args: dict[str, Any] = dict(
        issue_id=uuid4(), node=GRID, title="楼道堆放杂物存在消防隐患", category="消防安全",
        source="grid", at=T0,
    )
    args.update(overrides)
    return Issue.report(**args)


def escalate(i: Issue) -> None:
    i.escalate(to=STREET, respond_within_minutes=30, at=T0 + timedelta(minutes=10))


def assign(i: Issue) -> None:
    i.assign(assignee=UNIT, due_at=DUE, at=T0 + H)


def accept(i: Issue) -> None:
    i.accept(T0 + 2 * H)


def resolve(i: Issue) -> None:
    i.resolve("已清理楼道堆物，张贴消防提示", T0 + D)


def evaluate_ok(i: Issue) -> None:
    i.evaluate(satisfaction="satisfied", resolved=True, at=T0 + D + H)


def evaluate_bad(i: Issue) -> None:
    i.evaluate(satisfaction="dissatisfied", resolved=False, comment="仍有堆物", at=T0 + D + H)


def close(i: Issue) -> None:
    i.close(T0 + D + 2 * H)


PATHS: dict[str, list[Callable[[Issue], None]]] = {
    REPORTED: [],
    ASSIGNED: [assign],
    ACCEPTED: [assign, accept],
    RESOLVED: [assign, accept, resolve],
    CLOSED: [assign, accept, resolve, evaluate_ok, close],
}

LATE = T0 + 30 * D
#: command → (how to run it, the event it records, whether the issue was escalated first)
COMMANDS: dict[str, tuple[Callable[[Issue], None], type, bool]] = {
    "assign": (lambda i: i.assign(assignee=UNIT_2, due_at=T0 + 10 * D, at=T0 + 2 * D),
               Issue.Assigned, False),
    "return_": (lambda i: i.return_("不属于本单位职责", T0 + D), Issue.Returned, False),
    "accept": (lambda i: i.accept(T0 + D), Issue.Accepted, False),
    "extend": (lambda i: i.extend(due_at=T0 + 5 * D, reason="需协调产权单位", at=T0 + D),
               Issue.Extended, False),
    "note_progress": (lambda i: i.note_progress("已联系物业", T0 + D), Issue.ProgressNoted, False),
    "escalate": (lambda i: i.escalate(to=STREET, respond_within_minutes=30, at=T0 + D),
                 Issue.Escalated, False),
    "answer_escalation": (lambda i: i.answer_escalation(responder=UNIT, note="已到场", at=T0 + D),
                          Issue.EscalationAnswered, True),
    "resolve": (lambda i: i.resolve("已办结", T0 + 2 * D), Issue.Resolved, False),
    "evaluate": (lambda i: i.evaluate(satisfaction="basically_satisfied", resolved=True,
                                      at=T0 + 2 * D), Issue.Evaluated, False),
    "close": (lambda i: i.close(T0 + 2 * D), Issue.Closed, False),
    "reopen": (lambda i: i.reopen("居民反映问题反弹", T0 + 2 * D), Issue.Reopened, False),
    "mark_overdue": (lambda i: i.mark_overdue(LATE), Issue.Overdue, False),
    "mark_escalation_overdue": (lambda i: i.mark_escalation_overdue(LATE),
                                Issue.EscalationOverdue, True),
}


def test_transition_table_covers_every_command() -> None:
    assert set(COMMANDS) == set(TRANSITIONS)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_transition_table(status: str, command: str) -> None:
    run, event_class, escalated = COMMANDS[command]
    events = history(report(), *([escalate] if escalated else []), *PATHS[status])
    assert replay(events).status == status
    if status in TRANSITIONS[command]:
        given(events).when(run).then(event_class)
    else:
        err = given(events).when(run).then_raises(IllegalTransition)
        assert err.value.current_state == status
        assert status in err.value.detail


# -- report --------------------------------------------------------------------------------


def test_report() -> None:
    issue = report(description="  3号楼2单元楼道  ", due_at=T0 + 7 * D, source="hotline")
    [e] = issue.collect_events()
    assert isinstance(e, Issue.Reported) and type(e).TOPIC == "IssueReported.v1"
    assert (e.node_id, e.node_code, e.root_id) == (GRID.id, "330106001001G01", ROOT)
    assert (e.title, e.category, e.source) == ("楼道堆放杂物存在消防隐患", "消防安全", "hotline")
    assert e.description == "3号楼2单元楼道" and e.due_at == T0 + 7 * D
    assert issue.status == REPORTED and issue.owner_node_id == GRID.id and not issue.overdue


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(source="wechat"), "source"),
        (dict(title="   "), "title"),
        (dict(title="题" * 201), "title"),
        (dict(category=""), "category"),
        (dict(description="述" * 2001), "description"),
        (dict(due_at=T0), "due_at"),
        (dict(due_at=T0 - H), "due_at"),
        (dict(due_at=datetime(2024, 3, 5, 9, 0)), "due_at"),
    ],
)
def test_report_refuses_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValue) as e:
        report(**overrides)
    assert e.value.field == field


def test_report_at_a_closed_node() -> None:
    with pytest.raises(Conflict, match="closed"):
        report(node=NodeRef(id=uuid4(), code="330106001001GX", kind="grid", root_id=ROOT, closed=True))


def test_report_keeps_the_platforms_work_order_number() -> None:
    issue = report(source="hotline", external_id="  12345-20240301-0007 ")
    events = list(issue.collect_events())
    assert isinstance(events[0], Issue.Reported)
    assert events[0].external_id == "12345-20240301-0007"
    assert issue.external_id == "12345-20240301-0007"
    assert replay(events).external_id == "12345-20240301-0007"
    assert report(external_id="  ").external_id is None
    with pytest.raises(InvalidValue) as e:
        report(external_id="号" * 201)
    assert e.value.field == "external_id"


def test_an_issue_reported_before_external_ids_still_replays() -> None:
    """IssueReported.v1 gained the optional ``external_id``; stored events without it load."""
    import msgspec

    from domain.registry import AGGREGATES, event_classes
    from infra.event_codec import EventCodec

    codec = EventCodec(event_classes(), AGGREGATES)
    issue = report()
    [event] = issue.collect_events()
    stored = msgspec.json.decode(codec.encode(event).data)
    del stored["external_id"]
    decoded = codec.decode(
        stream_type="issue", stream_id=issue.id, version=1, type_name="IssueReported",
        schema_version=1, data=msgspec.json.encode(stored), occurred_at=T0,
    )
    rebuilt = decoded.mutate(None)
    assert rebuilt.external_id is None and rebuilt.title == issue.title


# -- assign, return, accept ----------------------------------------------------------------


def test_assign() -> None:
    events = history(report())
    [e] = given(events).when(assign).then(Issue.Assigned)
    assert (e.assignee_id, e.assignee_code, e.due_at) == (UNIT.id, "U330106-CGJ", DUE)
    issue = replay([*events, e])
    assert issue.status == ASSIGNED and issue.due_at == DUE and issue.assigned_at == T0 + H


@pytest.mark.parametrize(
    ("assignee", "due_at", "error", "field"),
    [
        (STREET, DUE, InvalidValue, "assignee_code"),
        (FOREIGN_UNIT, DUE, InvalidValue, "assignee_code"),
        (UNIT, T0, InvalidValue, "due_at"),
        (UNIT, datetime(2024, 3, 9), InvalidValue, "due_at"),
    ],
)
def test_assign_refusals(assignee: NodeRef, due_at: datetime, error: type[InvalidValue], field: str) -> None:
    e = given(history(report())).when(
        lambda i: i.assign(assignee=assignee, due_at=due_at, at=T0 + H)
    ).then_raises(error)
    assert e.value.field == field


def test_assign_to_a_closed_unit() -> None:
    given(history(report())).when(
        lambda i: i.assign(assignee=CLOSED_UNIT, due_at=DUE, at=T0 + H)
    ).then_raises(Conflict, match="closed")


def test_return_goes_back_to_reported_with_the_reported_deadline() -> None:
    events = history(report(due_at=T0 + 7 * D), assign)
    [e] = given(events).when(
        lambda i: i.return_("  非本单位职责，建议派住建局 ", T0 + 2 * H)
    ).then(Issue.Returned)
    assert (e.assignee_id, e.reason) == (UNIT.id, "非本单位职责，建议派住建局")
    issue = replay([*events, e])
    assert issue.status == REPORTED and issue.assignee_id is None
    assert issue.due_at == T0 + 7 * D and issue.return_count == 1
    # and it can be dispatched again
    issue.assign(assignee=UNIT_2, due_at=T0 + 4 * D, at=T0 + 3 * H)
    assert issue.assignee_code == "U330106-ZJJ"


def test_return_needs_a_reason() -> None:
    e = given(history(report(), assign)).when(
        lambda i: i.return_("", T0 + 2 * H)
    ).then_raises(InvalidValue)
    assert e.value.field == "reason"


def test_accept() -> None:
    events = history(report(), assign)
    [e] = given(events).when(accept).then(Issue.Accepted)
    assert e.assignee_id == UNIT.id
    assert replay([*events, e]).accepted_at == T0 + 2 * H


# -- extend --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [[assign], [assign, accept]])
def test_extend_before_the_deadline(path: list[Callable[[Issue], None]]) -> None:
    events = history(report(), *path)
    [e] = given(events).when(
        lambda i: i.extend(due_at=DUE + D, reason="等待配件", at=DUE - H)
    ).then(Issue.Extended)
    assert (e.old_due_at, e.due_at, e.reason) == (DUE, DUE + D, "等待配件")
    issue = replay([*events, e])
    assert issue.due_at == DUE + D and issue.extension_count == 1
    assert issue.status == replay(events).status  # extension keeps the status


@pytest.mark.parametrize("at", [DUE, DUE + timedelta(seconds=1), DUE + D])
def test_extend_after_the_deadline_is_refused(at: datetime) -> None:
    e = given(history(report(), assign)).when(
        lambda i: i.extend(due_at=DUE + 2 * D, reason="晚了", at=at)
    ).then_raises(IllegalTransition)
    assert e.value.current_state == ASSIGNED
    assert "before" in e.value.detail


@pytest.mark.parametrize("new_due", [DUE, DUE - H])
def test_extend_must_move_the_deadline_later(new_due: datetime) -> None:
    e = given(history(report(), assign)).when(
        lambda i: i.extend(due_at=new_due, reason="x", at=T0 + D)
    ).then_raises(InvalidValue)
    assert e.value.field == "due_at"


def test_extend_needs_a_reason() -> None:
    e = given(history(report(), assign)).when(
        lambda i: i.extend(due_at=DUE + D, reason=" ", at=T0 + D)
    ).then_raises(InvalidValue)
    assert e.value.field == "reason"


def test_extend_twice() -> None:
    events = history(report(), assign, lambda i: i.extend(due_at=DUE + D, reason="一", at=T0 + D))
    [e] = given(events).when(
        lambda i: i.extend(due_at=DUE + 3 * D, reason="二", at=DUE + H)
    ).then(Issue.Extended)
    assert e.old_due_at == DUE + D


# -- progress ------------------------------------------------------------------------------


def test_progress_note_keeps_chinese() -> None:
    note = "已约谈物业公司负责人，限3日内清理；附：现场照片２张。"
    [e] = given(history(report(), assign, accept)).when(
        lambda i: i.note_progress(note, T0 + D)
    ).then(Issue.ProgressNoted)
    assert e.note == note


@pytest.mark.parametrize("note", ["", "  ", "记" * 2001, "含\x00"])
def test_progress_note_refusals(note: str) -> None:
    e = given(history(report(), assign)).when(
        lambda i: i.note_progress(note, T0 + D)
    ).then_raises(InvalidValue)
    assert e.value.field == "note"


# -- escalation (吹哨报到) -----------------------------------------------------------------


def test_escalate_keeps_the_status_and_records_level_and_limit() -> None:
    events = history(report(), assign, accept)
    at = T0 + D
    [e] = given(events).when(
        lambda i: i.escalate(to=STREET, respond_within_minutes=30, at=at)
    ).then(Issue.Escalated)
    assert type(e).TOPIC == "IssueEscalated.v1"
    assert (e.to_id, e.to_code, e.level, e.respond_within_minutes, e.respond_by) == (
        STREET.id, STREET.code, "street", 30, at + timedelta(minutes=30))
    issue = replay([*events, e])
    assert issue.status == ACCEPTED
    assert issue.escalation is not None and issue.escalation.level == "street"
    assert not issue.escalation.answered and issue.escalation_count == 1


@pytest.mark.parametrize(
    ("to", "minutes", "field"),
    [(COMMUNITY, 30, "to_code"), (UNIT, 30, "to_code"), (FOREIGN_STREET, 30, "to_code"),
     (STREET, 0, "respond_within_minutes"), (STREET, -5, "respond_within_minutes"),
     (STREET, 7 * 24 * 60 + 1, "respond_within_minutes")],
)
def test_escalate_refusals(to: NodeRef, minutes: int, field: str) -> None:
    e = given(history(report())).when(
        lambda i: i.escalate(to=to, respond_within_minutes=minutes, at=T0)
    ).then_raises(InvalidValue)
    assert e.value.field == field


def test_a_second_whistle_waits_for_the_first() -> None:
    events = history(report(), escalate)  # street must respond by T0+40min
    e = given(events).when(
        lambda i: i.escalate(to=COUNTY, respond_within_minutes=60, at=T0 + timedelta(minutes=40))
    ).then_raises(IllegalTransition)
    assert e.value.current_state == REPORTED
    # once the limit has passed unanswered, blow it to the county
    [e2] = given(events).when(lambda i: i.escalate(to=COUNTY, respond_within_minutes=60,
                                             at=T0 + timedelta(minutes=41))).then(Issue.Escalated)
    assert e2.level == "county"


def test_a_new_whistle_after_an_answer() -> None:
    events = history(report(), escalate, lambda i: i.answer_escalation(
        responder=UNIT, note="已报到", at=T0 + timedelta(minutes=20)))
    [e] = given(events).when(lambda i: i.escalate(to=COUNTY, respond_within_minutes=30,
                                            at=T0 + timedelta(minutes=25))).then(Issue.Escalated)
    assert replay([*events, e]).escalation_count == 2


def test_answer_escalation_records_who_and_when() -> None:
    events = history(report(), escalate)
    t1 = T0 + timedelta(minutes=25)
    [e] = given(events).when(
        lambda i: i.answer_escalation(responder=UNIT, note="城管局已到场", at=t1)
    ).then(Issue.EscalationAnswered)
    assert type(e).TOPIC == "IssueEscalationAnswered.v1"
    assert (e.responder_id, e.responder_code, e.note) == (UNIT.id, "U330106-CGJ", "城管局已到场")
    issue = replay([*events, e])
    assert issue.escalation.answered_at == t1 and issue.escalation.responders == ("U330106-CGJ",)
    # a second department reports too; the first answer time stays
    issue.answer_escalation(responder=UNIT_2, note="住建局已到场", at=t1 + H)
    issue.answer_escalation(responder=UNIT, note="补充", at=t1 + 2 * H)
    assert issue.escalation.answered_at == t1
    assert issue.escalation.responders == ("U330106-CGJ", "U330106-ZJJ")
    assert not issue.is_escalation_past_due(LATE)


def test_answer_needs_a_whistle() -> None:
    e = given(history(report(), assign)).when(lambda i: i.answer_escalation(
            responder=UNIT, note="x", at=T0 + D)).then_raises(IllegalTransition)
    assert e.value.current_state == ASSIGNED


def test_answer_refusals() -> None:
    events = history(report(), escalate)
    e = given(events).when(
        lambda i: i.answer_escalation(responder=FOREIGN_UNIT, note="x", at=T0)
    ).then_raises(InvalidValue)
    assert e.value.field == "responder_code"
    e = given(events).when(
        lambda i: i.answer_escalation(responder=UNIT, note=" ", at=T0)
    ).then_raises(InvalidValue)
    assert e.value.field == "note"
    given(events).when(
        lambda i: i.answer_escalation(responder=CLOSED_UNIT, note="x", at=T0)
    ).then_raises(Conflict, match="closed")


def test_escalation_overdue() -> None:
    events = history(report(), escalate)  # respond by T0+40min
    limit = T0 + timedelta(minutes=40)
    for early in (T0 + timedelta(minutes=39), limit):
        issue = replay(events)
        with pytest.raises(IllegalTransition):
            issue.mark_escalation_overdue(early)
    [e] = given(events).when(
        lambda i: i.mark_escalation_overdue(limit + timedelta(seconds=1))
    ).then(Issue.EscalationOverdue)
    assert type(e).TOPIC == "EscalationOverdue.v1"
    assert (e.to_id, e.respond_by) == (STREET.id, limit)
    issue = replay([*events, e])
    assert issue.escalation_overdue and not issue.overdue and issue.status == REPORTED
    with pytest.raises(IllegalTransition):
        issue.mark_escalation_overdue(LATE)  # once per whistle
    # a late report is still recorded
    issue.answer_escalation(responder=UNIT, note="迟到报到", at=LATE)
    assert issue.escalation.answered_at == LATE and issue.escalation.overdue


def test_an_answered_whistle_is_never_overdue() -> None:
    events = history(report(), escalate, lambda i: i.answer_escalation(
        responder=UNIT, note="到", at=T0 + timedelta(minutes=15)))
    given(events).when(lambda i: i.mark_escalation_overdue(LATE)).then_raises(IllegalTransition)


# -- resolve, evaluate, close --------------------------------------------------------------


def test_resolve() -> None:
    events = history(report(), assign, accept)
    [e] = given(events).when(resolve).then(Issue.Resolved)
    assert e.result == "已清理楼道堆物，张贴消防提示"
    issue = replay([*events, e])
    assert issue.status == RESOLVED and issue.resolved_at == T0 + D


def test_evaluate() -> None:
    events = history(report(), assign, accept, resolve)
    [e] = given(events).when(evaluate_bad).then(Issue.Evaluated)
    assert (e.satisfaction, e.resolved, e.comment) == ("dissatisfied", False, "仍有堆物")
    evaluation = replay([*events, e]).evaluation
    assert evaluation is not None and not evaluation.positive


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [(dict(satisfaction="满意"), "satisfaction"), (dict(resolved="yes"), "resolved"),
     (dict(resolved=1), "resolved"), (dict(comment="评" * 2001), "comment")],
)
def test_evaluate_refusals(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = dict(satisfaction="satisfied", resolved=True, at=T0 + 2 * D)
    args.update(kwargs)
    e = given(history(report(), assign, accept, resolve)).when(
        lambda i: i.evaluate(**args)
    ).then_raises(InvalidValue)
    assert e.value.field == field


def test_one_callback_per_resolution() -> None:
    e = given(history(report(), assign, accept, resolve, evaluate_ok)).when(
        evaluate_ok
    ).then_raises(IllegalTransition)
    assert e.value.current_state == RESOLVED


@pytest.mark.parametrize("source", sorted(CALLBACK_SOURCES))
def test_hotline_and_resident_issues_need_the_callback(source: str) -> None:
    events = history(report(source=source), assign, accept, resolve)
    e = given(events).when(close).then_raises(IllegalTransition)
    assert e.value.current_state == RESOLVED and "回访" in e.value.detail
    evaluated = given(events).when(evaluate_ok).then(Issue.Evaluated)
    [e2] = given(evaluated.all_events).when(close).then(Issue.Closed)
    assert e2.override_reason is None


@pytest.mark.parametrize("source", sorted(set(SOURCES) - CALLBACK_SOURCES))
def test_other_sources_close_without_callback(source: str) -> None:
    events = history(report(source=source), assign, accept, resolve)
    [e] = given(events).when(close).then(Issue.Closed)
    issue = replay([*events, e])
    assert issue.status == CLOSED and issue.closed_at == T0 + D + 2 * H


@pytest.mark.parametrize(
    ("satisfaction", "resolved"),
    [("dissatisfied", True), ("dissatisfied", False), ("satisfied", False),
     ("basically_satisfied", False)],
)
def test_a_negative_callback_needs_reopen_or_admin_override(
    satisfaction: str, resolved: bool,
) -> None:
    events = history(report(source="resident"), assign, accept, resolve, lambda i: i.evaluate(
        satisfaction=satisfaction, resolved=resolved, at=T0 + D + H))
    e = given(events).when(close).then_raises(IllegalTransition)
    assert e.value.current_state == RESOLVED
    # a reason alone is not enough
    given(events).when(
        lambda i: i.close(T0 + 2 * D, override_reason="领导同意")
    ).then_raises(IllegalTransition)
    # an admin must still say why
    e2 = given(events).when(
        lambda i: i.close(T0 + 2 * D, is_admin=True, override_reason="  ")
    ).then_raises(InvalidValue)
    assert e2.value.field == "override_reason"
    [closed] = given(events).when(lambda i: i.close(
        T0 + 2 * D, is_admin=True, override_reason="居民诉求超出政策范围，已解释说明")).then(Issue.Closed)
    assert closed.override_reason == "居民诉求超出政策范围，已解释说明"


def test_an_override_reason_is_not_recorded_when_not_needed() -> None:
    events = history(report(), assign, accept, resolve, evaluate_ok)
    [e] = given(events).when(
        lambda i: i.close(T0 + 2 * D, is_admin=True, override_reason="无需")
    ).then(Issue.Closed)
    assert e.override_reason is None


# -- reopen (重办) -------------------------------------------------------------------------


def test_reopen_goes_back_to_the_assignee_with_the_same_allowance() -> None:
    events = history(report(source="hotline"), assign, accept, resolve, evaluate_bad)
    at = T0 + 2 * D
    [e] = given(events).when(lambda i: i.reopen("回访不满意，重新办理", at)).then(Issue.Reopened)
    assert type(e).TOPIC == "IssueReopened.v1"
    assert e.due_at == at + (DUE - (T0 + H))  # the first assignment gave DUE - assigned_at
    issue = replay([*events, e])
    assert issue.status == ASSIGNED and issue.assignee_id == UNIT.id
    assert issue.evaluation is None and issue.result is None and issue.reopen_count == 1
    # the new round needs a new callback before close
    issue.accept(at + H)
    issue.resolve("二次处理完毕", at + 2 * H)
    with pytest.raises(IllegalTransition):
        issue.close(at + 3 * H)
    issue.evaluate(satisfaction="satisfied", resolved=True, at=at + 4 * H)
    issue.close(at + 5 * H)
    assert issue.status == CLOSED


def test_reopen_with_an_explicit_deadline() -> None:
    events = history(report(), assign, accept, resolve)
    [e] = given(events).when(
        lambda i: i.reopen("重办", T0 + 2 * D, due_at=T0 + 4 * D)
    ).then(Issue.Reopened)
    assert e.due_at == T0 + 4 * D
    err = given(events).when(
        lambda i: i.reopen("重办", T0 + 2 * D, due_at=T0 + D)
    ).then_raises(InvalidValue)
    assert err.value.field == "due_at"
    err = given(events).when(lambda i: i.reopen("", T0 + 2 * D)).then_raises(InvalidValue)
    assert err.value.field == "reason"


# -- overdue -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [[assign], [assign, accept]])
def test_overdue_after_the_deadline(path: list[Callable[[Issue], None]]) -> None:
    events = history(report(), *path)
    issue = replay(events)
    assert not issue.is_past_due(DUE) and issue.is_past_due(DUE + timedelta(seconds=1))
    given(events).when(lambda i: i.mark_overdue(DUE)).then_raises(IllegalTransition)
    [e] = given(events).when(
        lambda i: i.mark_overdue(DUE + timedelta(seconds=30))
    ).then(Issue.Overdue)
    assert e.due_at == DUE
    issue = replay([*events, e])
    assert issue.overdue
    with pytest.raises(IllegalTransition):  # once per deadline
        issue.mark_overdue(LATE)
    assert not issue.is_past_due(LATE)


def test_overdue_stays_after_a_late_resolution_and_resets_on_reopen() -> None:
    events = history(
        report(),
        assign,
        accept,
        lambda i: i.mark_overdue(DUE + H),
        lambda i: i.resolve("迟办结", DUE + 2 * H),
    )
    issue = replay(events)
    assert issue.overdue and issue.status == RESOLVED
    issue.reopen("重办", DUE + 3 * H)
    assert not issue.overdue


def test_a_reported_issue_with_a_requested_deadline_is_not_overdue() -> None:
    events = history(report(due_at=T0 + H))
    issue = replay(events)
    assert not issue.is_past_due(LATE)
    with pytest.raises(IllegalTransition):
        issue.mark_overdue(LATE)


def test_commands_need_aware_timestamps() -> None:
    issue = replay(history(report(), assign))
    with pytest.raises(ValueError):
        issue.accept(datetime(2024, 3, 1, 12, 0))


# -- properties ----------------------------------------------------------------------------

# Valid values are drawn more often than invalid ones so that sequences get deep into the
# workflow (close, reopen...) instead of stopping at the first refusal.
good_texts = st.sampled_from(["已处理完毕", "协调物业清理", "居民反映仍未解决", "OK"])
texts = st.one_of(good_texts, good_texts, good_texts,
                  st.sampled_from(["", " ", "x" * 2001]), st.text(max_size=10))
offsets = st.one_of(
    st.integers(1, 5 * 24 * 60), st.integers(1, 5 * 24 * 60), st.integers(-2 * 24 * 60, 0),
).map(lambda m: timedelta(minutes=m))
assignees = st.sampled_from([UNIT, UNIT, UNIT_2, STREET, FOREIGN_UNIT, CLOSED_UNIT])
targets = st.sampled_from([STREET, STREET, COUNTY, COMMUNITY, FOREIGN_STREET])
responders = st.sampled_from([UNIT, UNIT_2, UNIT, FOREIGN_UNIT, CLOSED_UNIT])
ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "assign": st.tuples(assignees, offsets),
    "return_": st.tuples(texts),
    "accept": st.tuples(),
    "extend": st.tuples(offsets, texts),
    "note_progress": st.tuples(texts),
    "escalate": st.tuples(targets, st.sampled_from([-1, 0, 1, 30, 30, 120, 20000])),
    "answer_escalation": st.tuples(responders, texts),
    "resolve": st.tuples(texts),
    "evaluate": st.tuples(st.sampled_from([*SATISFACTIONS, "x"]), st.booleans(),
                          st.none() | texts),
    "close": st.tuples(st.booleans(), st.none() | texts),
    "reopen": st.tuples(texts, st.none() | offsets),
    "mark_overdue": st.tuples(),
    "mark_escalation_overdue": st.tuples(),
}


def draw_command(data: st.DataObject, status: str) -> tuple[Any, ...]:
    """Mostly a command the status allows (so runs get deep), sometimes any command."""
    allowed = sorted(c for c, states in TRANSITIONS.items() if status in states)
    names = st.sampled_from(allowed) if allowed else st.nothing()
    name = data.draw(st.one_of(names, names, names, st.sampled_from(sorted(TRANSITIONS))))
    return (name, *data.draw(ARGS[name]))


def run_command(i: Issue, cmd: tuple[Any, ...], at: datetime) -> None:
    name, *args = cmd
    if name == "assign":
        i.assign(assignee=args[0], due_at=at + args[1], at=at)
    elif name == "return_":
        i.return_(args[0], at)
    elif name == "accept":
        i.accept(at)
    elif name == "extend":
        due = (i.due_at or at) + args[0]
        i.extend(due_at=due, reason=args[1], at=at)
    elif name == "note_progress":
        i.note_progress(args[0], at)
    elif name == "escalate":
        i.escalate(to=args[0], respond_within_minutes=args[1], at=at)
    elif name == "answer_escalation":
        i.answer_escalation(responder=args[0], note=args[1], at=at)
    elif name == "resolve":
        i.resolve(args[0], at)
    elif name == "evaluate":
        i.evaluate(satisfaction=args[0], resolved=args[1], comment=args[2], at=at)
    elif name == "close":
        i.close(at, is_admin=args[0], override_reason=args[1])
    elif name == "reopen":
        i.reopen(args[0], at, due_at=None if args[1] is None else at + args[1])
    elif name == "mark_overdue":
        i.mark_overdue(at)
    else:
        i.mark_escalation_overdue(at)


def check_invariants(i: Issue) -> None:
    assert i.status in STATUSES
    if i.status == REPORTED:
        assert i.assignee_id is None and i.accepted_at is None and i.overdue_for is None
    else:
        assert i.assignee_id in (UNIT.id, UNIT_2.id) and i.due_at is not None
        assert i.assigned_at is not None and i.assigned_due_at is not None
        assert i.assigned_due_at > i.assigned_at
    if i.status == ASSIGNED:
        assert i.accepted_at is None
    if i.status in (ACCEPTED, RESOLVED, CLOSED):
        assert i.accepted_at is not None
    if i.status in (RESOLVED, CLOSED):
        assert i.result and i.resolved_at is not None
    else:
        assert i.result is None and i.evaluation is None
    if i.status == CLOSED:
        if i.source in CALLBACK_SOURCES:
            assert i.evaluation is not None
        if i.evaluation is not None and not i.evaluation.positive:
            assert i.override_reason
    assert i.overdue_for is None or i.overdue_for == i.due_at
    esc = i.escalation
    assert (esc is None) == (i.escalation_count == 0)
    if esc is not None:
        assert esc.level in ("street", "county") and esc.respond_by > esc.escalated_at
        assert esc.answered_at is None or esc.answered_at >= esc.escalated_at
        if esc.overdue:
            assert esc.answered_at is None or esc.answered_at > esc.respond_by


@settings(max_examples=300, deadline=None)
@hypothesis.given(st.sampled_from(SOURCES), st.data())
def test_random_command_sequences_stay_valid_and_replay(source: str, data: st.DataObject) -> None:
    issue = report(source=source)
    history = list(issue.collect_events())
    at = T0
    for _ in range(data.draw(st.integers(0, 40), label="steps")):
        at += timedelta(minutes=data.draw(st.integers(0, 24 * 60)))
        cmd = draw_command(data, issue.status)
        before = copy.deepcopy(issue)
        try:
            run_command(issue, cmd, at)
        except DomainError as e:
            assert issue == before  # a refused command records nothing and changes nothing
            if isinstance(e, IllegalTransition):
                assert e.current_state == issue.status
        check_invariants(issue)
        history.extend(issue.collect_events())
    rebuilt = replay(history)
    assert rebuilt == issue and rebuilt.version == len(history)
