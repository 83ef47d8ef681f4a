"""Pairing (结对共建): given events, when a command, then events (or the refusal)."""

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
from domain.pairing import ACTIVE, RATINGS, TERMINATED, Commitment, Pairing, Term
from domain.refs import NodeRef, business_date
from tests.domain_spec import given, history, replay

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
ROOT = UUID("00000000-0000-0000-0000-0000000000aa")
OTHER_ROOT = UUID("00000000-0000-0000-0000-0000000000bb")

UNIT = NodeRef(id=uuid4(), code="U330106-GAJ", kind="unit", root_id=ROOT)
COMMUNITY = NodeRef(id=uuid4(), code="330106001001", kind="community", root_id=ROOT)
STREET = NodeRef(id=uuid4(), code="330106001000", kind="street", root_id=ROOT)
FOREIGN_COMMUNITY = NodeRef(id=uuid4(), code="330106001002", kind="community",
                            root_id=OTHER_ROOT)

COMMITMENTS = (
    Commitment("为社区捐建便民服务站", date(2024, 6, 30)),
    Commitment("每季度开展一次联合党日活动", date(2024, 12, 31)),
)


def sign(**overrides: Any) -> Pairing:
    args: dict[str, Any] = dict(
        pairing_id=uuid4(), unit=UNIT, community=COMMUNITY, starts_on=date(2024, 1, 1),
        ends_on=date(2025, 12, 31), commitments=COMMITMENTS, at=T0,
    )
    args.update(overrides)
    return Pairing.sign(**args)


def terminate(p: Pairing) -> None:
    p.terminate("单位机构改革撤并", T0 + timedelta(days=30))


# -- sign ----------------------------------------------------------------------------------


def test_sign_records_pairing_signed_with_chinese_text_intact() -> None:
    p = sign()
    [signed] = p.collect_events()
    assert isinstance(signed, Pairing.Signed)
    assert type(signed).TOPIC == "PairingSigned.v1"
    assert signed.unit_id == UNIT.id and signed.unit_code == "U330106-GAJ"
    assert signed.community_id == COMMUNITY.id and signed.root_id == ROOT
    assert signed.commitments == COMMITMENTS
    assert signed.timestamp == T0
    assert p.status == ACTIVE and p.owner_node_id == COMMUNITY.id and p.root_id == ROOT
    assert p.commitments[0].title == "为社区捐建便民服务站"
    assert p.fulfilled_count == 0 and p.term == Term(date(2024, 1, 1), date(2025, 12, 31))


def test_commitment_titles_are_stripped() -> None:
    p = sign(commitments=[Commitment("  结对帮扶困难党员  ", date(2024, 5, 1))])
    assert p.commitments[0].title == "结对帮扶困难党员"


def test_a_pairing_may_have_no_commitments() -> None:
    assert sign(commitments=()).commitments == ()


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        (dict(unit=COMMUNITY), InvalidValue, "unit_code"),
        (dict(community=STREET), InvalidValue, "community_code"),
        (dict(community=UNIT), InvalidValue, "community_code"),
        (dict(community=FOREIGN_COMMUNITY), InvalidValue, "community_code"),
        (dict(ends_on=date(2024, 1, 1)), InvalidValue, "ends_on"),
        (dict(ends_on=date(2023, 12, 31)), InvalidValue, "ends_on"),
        (dict(starts_on=datetime(2024, 1, 1, tzinfo=CST)), InvalidValue, "starts_on"),
        (dict(commitments=[Commitment("  ", date(2024, 5, 1))]), InvalidValue,
         "commitments[0].title"),
        (dict(commitments=[Commitment("承" * 201, date(2024, 5, 1))]), InvalidValue,
         "commitments[0].title"),
        (dict(commitments=[COMMITMENTS[0], Commitment("晚了", date(2026, 1, 1))]), InvalidValue,
         "commitments[1].due_on"),
        (dict(commitments=[Commitment("早了", date(2023, 12, 31))]), InvalidValue,
         "commitments[0].due_on"),
        (dict(commitments=[Commitment("含\x00控制符", date(2024, 5, 1))]), InvalidValue,
         "commitments[0].title"),
    ],
)
def test_sign_refuses_bad_input(overrides: dict[str, Any], error: type[InvalidValue], field: str) -> None:
    with pytest.raises(error) as e:
        sign(**overrides)
    assert e.value.field == field


def test_sign_refuses_closed_nodes() -> None:
    closed = NodeRef(id=uuid4(), code="U330106-OLD", kind="unit", root_id=ROOT, closed=True)
    with pytest.raises(Conflict, match="U330106-OLD is closed"):
        sign(unit=closed)


def test_sign_needs_an_aware_timestamp() -> None:
    with pytest.raises(ValueError):
        sign(at=datetime(2024, 3, 1, 9, 0))


@pytest.mark.parametrize(
    "other",
    [Term(date(2023, 1, 1), date(2024, 1, 1)),  # ends on our first day
     Term(date(2025, 12, 31), date(2027, 1, 1)),  # starts on our last day
     Term(date(2024, 6, 1), date(2024, 7, 1)),  # inside
     Term(date(2020, 1, 1), date(2030, 1, 1))],  # around
)
def test_overlapping_active_term_is_a_conflict(other: Term) -> None:
    with pytest.raises(Conflict) as e:
        sign(other_active_terms=[other])
    assert "overlapping" in e.value.detail


def test_adjacent_terms_do_not_overlap() -> None:
    p = sign(other_active_terms=[Term(date(2022, 1, 1), date(2023, 12, 31)),
                                 Term(date(2026, 1, 1), date(2027, 12, 31))])
    assert p.status == ACTIVE


# -- fulfil --------------------------------------------------------------------------------


def test_fulfil_records_commitment_fulfilled() -> None:
    events = history(sign())
    at = T0 + timedelta(days=10)
    [e] = given(events).when(
        lambda p: p.fulfil(1, "  已开展第一季度联合党日，附照片 ", at)
    ).then(Pairing.CommitmentFulfilled)
    assert (e.index, e.title) == (1, "每季度开展一次联合党日活动")
    assert e.evidence == "已开展第一季度联合党日，附照片"
    p = replay([*events, e])
    assert p.commitments[1].fulfilled_at == at and p.fulfilled_count == 1
    assert not p.commitments[0].fulfilled


def test_a_commitment_is_fulfilled_once() -> None:
    events = history(sign(), lambda p: p.fulfil(0, "已建成", T0))
    e = given(events).when(lambda p: p.fulfil(0, "再次", T0)).then_raises(IllegalTransition)
    assert e.value.current_state == "fulfilled"


@pytest.mark.parametrize("index", [-1, 2, 99, True, "0"])
def test_fulfil_refuses_unknown_index(index: Any) -> None:
    e = given(history(sign())).when(lambda p: p.fulfil(index, "证据", T0)).then_raises(InvalidValue)
    assert e.value.field == "index"


def test_fulfil_without_commitments() -> None:
    p = sign(commitments=())
    with pytest.raises(InvalidValue):
        p.fulfil(0, "证据", T0)


@pytest.mark.parametrize("evidence", ["", "   ", "证" * 2001])
def test_fulfil_needs_evidence(evidence: str) -> None:
    e = given(history(sign())).when(lambda p: p.fulfil(0, evidence, T0)).then_raises(InvalidValue)
    assert e.value.field == "evidence"


def test_evidence_of_2000_characters_is_fine() -> None:
    [e] = given(history(sign())).when(
        lambda p: p.fulfil(0, "证" * 2000, T0)
    ).then(Pairing.CommitmentFulfilled)
    assert len(e.evidence) == 2000


# -- activities and reviews ----------------------------------------------------------------


def test_hold_activity() -> None:
    [e] = given(history(sign())).when(lambda p: p.hold_activity(
        held_on=date(2024, 3, 1), title="主题党日：共建文明社区", participants=35, at=T0,
    )).then(Pairing.ActivityHeld)
    assert type(e).TOPIC == "PairingActivityHeld.v1"
    assert (e.held_on, e.title, e.participants) == (date(2024, 3, 1), "主题党日：共建文明社区", 35)


def test_activity_counts_accumulate() -> None:
    events = history(
        sign(),
        lambda p: p.hold_activity(held_on=date(2024, 2, 1), title="A", participants=10, at=T0),
        lambda p: p.hold_activity(held_on=date(2024, 1, 5), title="B", participants=5, at=T0),
    )
    p = replay(events)
    assert (p.activity_count, p.participant_total, p.last_activity_on) == (2, 15,
                                                                           date(2024, 2, 1))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(held_on=date(2024, 3, 2)), "held_on"),  # tomorrow in China
        (dict(held_on=date(2023, 12, 31)), "held_on"),  # before the term
        (dict(participants=0), "participants"),
        (dict(participants=True), "participants"),
        (dict(participants=100_001), "participants"),
        (dict(title=" "), "title"),
    ],
)
def test_hold_activity_refuses_bad_input(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = dict(held_on=date(2024, 3, 1), title="活动", participants=3, at=T0)
    args.update(kwargs)
    e = given(history(sign())).when(lambda p: p.hold_activity(**args)).then_raises(InvalidValue)
    assert e.value.field == field


def test_activity_day_is_the_china_calendar_day() -> None:
    # 2024-03-01 17:00 UTC is already 2024-03-02 01:00 in Beijing.
    at = datetime(2024, 3, 1, 17, 0, tzinfo=UTC)
    [e] = given(history(sign())).when(lambda p: p.hold_activity(
        held_on=date(2024, 3, 2), title="夜间巡逻", participants=4, at=at)).then(Pairing.ActivityHeld)
    assert e.held_on == date(2024, 3, 2)


def test_review() -> None:
    [e] = given(history(sign())).when(
        lambda p: p.review(rating="excellent", comment="成效明显", at=T0)
    ).then(Pairing.Reviewed)
    assert (e.rating, e.comment) == ("excellent", "成效明显")
    [e] = given(history(sign())).when(
        lambda p: p.review(rating="fair", at=T0)
    ).then(Pairing.Reviewed)
    assert e.comment is None
    err = given(history(sign())).when(
        lambda p: p.review(rating="优秀", at=T0)
    ).then_raises(InvalidValue)
    assert err.value.field == "rating"


# -- terminate and the transition table ----------------------------------------------------


def test_terminate() -> None:
    events = history(sign())
    [e] = given(events).when(terminate).then(Pairing.Terminated)
    assert e.reason == "单位机构改革撤并"
    p = replay([*events, e])
    assert p.status == TERMINATED and p.terminated_at == T0 + timedelta(days=30)
    assert not p.in_force_on(date(2024, 6, 1))


def test_terminate_needs_a_reason() -> None:
    given(history(sign())).when(lambda p: p.terminate("  ", T0)).then_raises(InvalidValue)


COMMANDS: dict[str, tuple[Callable[[Pairing], None], type]] = {
    "fulfil": (lambda p: p.fulfil(0, "证据", T0), Pairing.CommitmentFulfilled),
    "hold_activity": (lambda p: p.hold_activity(held_on=date(2024, 2, 1), title="活动",
                                                participants=3, at=T0), Pairing.ActivityHeld),
    "review": (lambda p: p.review(rating="good", at=T0), Pairing.Reviewed),
    "terminate": (lambda p: p.terminate("到期前终止", T0), Pairing.Terminated),
}
STATES: dict[str, list[Callable[[Pairing], None]]] = {ACTIVE: [], TERMINATED: [terminate]}


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_transition_table(state: str, command: str) -> None:
    events = history(sign(), *STATES[state])
    assert replay(events).status == state
    run, event_class = COMMANDS[command]
    if state == ACTIVE:
        given(events).when(run).then(event_class)
    else:
        err = given(events).when(run).then_raises(IllegalTransition)
        assert err.value.current_state == TERMINATED


# -- properties ----------------------------------------------------------------------------

good_texts = st.sampled_from(["捐赠图书200册", "联合开展义诊", "OK"])
texts = st.one_of(good_texts, good_texts, good_texts,
                  st.sampled_from(["", "  ", "x" * 2001]), st.text(max_size=12))
#: activity days relative to "today" in China (a few are in the future, some before the term).
day_offsets = st.integers(-120, 2)
commands = st.one_of(
    st.tuples(st.just("fulfil"), st.integers(-1, 3), texts),
    st.tuples(st.just("hold_activity"), day_offsets, texts, st.integers(-1, 50)),
    st.tuples(st.just("hold_activity"), day_offsets, texts, st.integers(-1, 50)),
    st.tuples(st.just("review"), st.sampled_from([*RATINGS, "bad"]), st.none() | texts),
    st.tuples(st.just("terminate"), texts),
)


def run_command(p: Pairing, cmd: tuple[Any, ...], at: datetime) -> None:
    name, *args = cmd
    if name == "fulfil":
        p.fulfil(args[0], args[1], at)
    elif name == "hold_activity":
        held_on = business_date(at) + timedelta(days=args[0])
        p.hold_activity(held_on=held_on, title=args[1], participants=args[2], at=at)
    elif name == "review":
        p.review(rating=args[0], comment=args[1], at=at)
    else:
        p.terminate(args[0], at)


def check_invariants(p: Pairing) -> None:
    assert p.status in (ACTIVE, TERMINATED)
    assert p.starts_on < p.ends_on
    assert (p.status == TERMINATED) == (p.terminated_at is not None)
    assert 0 <= p.fulfilled_count <= len(p.commitments)
    for c in p.commitments:
        assert (c.fulfilled_at is None) == (c.evidence is None)
        assert c.evidence is None or 1 <= len(c.evidence) <= 2000
        assert p.starts_on <= c.due_on <= p.ends_on
    assert p.activity_count >= 0 and p.participant_total >= p.activity_count
    assert p.rating in (None, *RATINGS)


@settings(max_examples=150, deadline=None)
@hypothesis.given(st.lists(st.tuples(commands, st.integers(0, 60 * 24 * 20)), max_size=25))
def test_random_command_sequences_stay_valid_and_replay(
    steps: list[tuple[tuple[Any, ...], int]],
) -> None:
    p = sign()
    history = list(p.collect_events())
    at = T0
    for cmd, minutes in steps:
        at += timedelta(minutes=minutes)
        before = copy.deepcopy(p)
        try:
            run_command(p, cmd, at)
        except DomainError:
            assert p == before  # a refused command changes nothing
        check_invariants(p)
        history.extend(p.collect_events())
    rebuilt = replay(history)
    assert rebuilt == p
    assert rebuilt.version == len(history)
