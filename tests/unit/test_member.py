"""Member registration (双报到): given events, when a command, then events (or the refusal)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import hypothesis
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from domain.errors import Conflict, DomainError, IllegalTransition, InvalidValue
from domain.member import ACTIVE, DEREGISTERED, ERASED, Member, UnitRegistration
from domain.personal_data import PersonalData, personal_data
from domain.refs import NodeRef, business_date
from tests.domain_spec import given, history, replay

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
ROOT = UUID("00000000-0000-0000-0000-0000000000aa")
OTHER_ROOT = UUID("00000000-0000-0000-0000-0000000000bb")

COMMUNITY = NodeRef(id=uuid4(), code="330106001001", kind="community", root_id=ROOT)
COMMUNITY_2 = NodeRef(id=uuid4(), code="330106001002", kind="community", root_id=ROOT)
FOREIGN_COMMUNITY = NodeRef(id=uuid4(), code="330107001001", kind="community",
                            root_id=OTHER_ROOT)
STREET = NodeRef(id=uuid4(), code="330106001000", kind="street", root_id=ROOT)
UNIT = NodeRef(id=uuid4(), code="U330106-JYJ", kind="unit", root_id=ROOT)
FOREIGN_UNIT = NodeRef(id=uuid4(), code="U330107-X", kind="unit", root_id=OTHER_ROOT)
GRID = NodeRef(id=uuid4(), code="330106001001G01", kind="grid", root_id=ROOT, parent_id=COMMUNITY.id)
GRID_2 = NodeRef(id=uuid4(), code="330106001002G02", kind="grid", root_id=ROOT, parent_id=COMMUNITY_2.id)

PERSON = PersonalData(name="张三", phone="13812341234", id_number="11010519491231002X")


def register(**overrides: Any) -> Member:
    args: dict[str, Any] = dict(
        member_id=uuid4(), person=PERSON, community=COMMUNITY, home_unit=UNIT, grid=GRID, at=T0
    )
    args.update(overrides)
    return Member.register(**args)


def deregister(m: Member) -> None:
    m.deregister("调离本县", T0 + timedelta(days=1))


def erase(m: Member) -> None:
    m.erase(T0 + timedelta(days=2), reason="本人申请删除个人信息")


# -- unit registration ---------------------------------------------------------------------


def test_unit_registers_at_a_community() -> None:
    r = UnitRegistration.register(unit=UNIT, community=COMMUNITY, at=T0)
    [e] = r.collect_events()
    assert isinstance(e, UnitRegistration.Registered) and type(e).TOPIC == "UnitRegistered.v1"
    assert (e.unit_id, e.unit_code, e.community_id, e.community_code, e.root_id) == (
        UNIT.id, UNIT.code, COMMUNITY.id, COMMUNITY.code, ROOT)
    assert r.id == UnitRegistration.stream_id(UNIT.id, COMMUNITY.id)
    assert r.owner_node_id == COMMUNITY.id and r.root_id == ROOT
    assert replay([e]) == r


def test_unit_registration_refusals() -> None:
    with pytest.raises(Conflict):
        UnitRegistration.register(unit=UNIT, community=COMMUNITY, already_registered=True, at=T0)
    with pytest.raises(InvalidValue) as e:
        UnitRegistration.register(unit=COMMUNITY, community=COMMUNITY, at=T0)
    assert e.value.field == "unit_code"
    with pytest.raises(InvalidValue) as e:
        UnitRegistration.register(unit=UNIT, community=FOREIGN_COMMUNITY, at=T0)
    assert e.value.field == "community_code"
    assert UnitRegistration.stream_id(UNIT.id, COMMUNITY.id) != UnitRegistration.stream_id(
        UNIT.id, COMMUNITY_2.id)


# -- register ------------------------------------------------------------------------------


def test_register_keeps_personal_data_in_one_field() -> None:
    m = register(person=PersonalData(" 李小明 ", "+86 139-0000-1111", "330106198506120015"))
    [e] = m.collect_events()
    assert isinstance(e, Member.Registered) and type(e).TOPIC == "MemberRegistered.v1"
    assert e.person == PersonalData("李小明", "13900001111", "330106198506120015")
    assert (e.home_unit_id, e.community_id, e.grid_id, e.grid_code, e.root_id) == (
        UNIT.id, COMMUNITY.id, GRID.id, "330106001001G01", ROOT)
    assert m.owner_node_id == COMMUNITY.id and m.status == ACTIVE and m.points == 0
    # nothing personal outside ``person``
    other = {k: v for k, v in vars(e).items() if k != "person"}
    assert "李小明" not in repr(other) and "13900001111" not in repr(other)


def test_register_without_id_number_or_grid() -> None:
    m = register(person=personal_data("王五", "15000000000"), grid=None)
    assert m.person == PersonalData("王五", "15000000000", None) and m.grid_id is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(person=PersonalData("张三", "12345", None)), "phone"),
        (dict(person=PersonalData("张三", "13812341234", "110105194912310021")), "id_number"),
        (dict(person=PersonalData(" ", "13812341234", None)), "name"),
        (dict(community=STREET), "community_code"),
        (dict(home_unit=COMMUNITY_2), "home_unit_code"),
        (dict(home_unit=FOREIGN_UNIT), "home_unit_code"),
        (dict(grid=GRID_2), "grid_code"),
        (dict(grid=COMMUNITY_2), "grid_code"),
    ],
)
def test_register_refuses_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValue) as e:
        register(**overrides)
    assert e.value.field == field


def test_register_at_a_closed_community() -> None:
    closed = NodeRef(id=uuid4(), code="330106001099", kind="community", root_id=ROOT,
                     closed=True)
    with pytest.raises(Conflict, match="closed"):
        register(community=closed, grid=None)


def test_the_same_person_twice_in_a_community_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        register(person_already_registered=True)


# -- service and points --------------------------------------------------------------------


def test_record_service() -> None:
    events = history(register())
    [e] = given(events).when(lambda m: m.record_service(
        served_on=date(2024, 3, 1), hours=2.5, kind="环境整治志愿服务", at=T0)).then(Member.ServiceRecorded)
    assert isinstance(e, Member.ServiceRecorded) and type(e).TOPIC == "ServiceRecorded.v1"
    assert (e.served_on, e.hours, e.kind) == (date(2024, 3, 1), 2.5, "环境整治志愿服务")
    m = replay([*events, e])
    assert m.service_hours == 2.5 and m.service_count == 1


@pytest.mark.parametrize("hours", [24, 0.01, 1, 23.999])
def test_service_hours_up_to_24(hours: float) -> None:
    [e] = given(history(register())).when(lambda m: m.record_service(
        served_on=date(2024, 3, 1), hours=hours, kind="巡逻", at=T0)).then(Member.ServiceRecorded)
    assert 0 < e.hours <= 24 and isinstance(e.hours, float)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(hours=0), "hours"), (dict(hours=-1), "hours"), (dict(hours=24.01), "hours"),
        (dict(hours=0.001), "hours"), (dict(hours=float("nan")), "hours"),
        (dict(hours=float("inf")), "hours"), (dict(hours=True), "hours"),
        (dict(hours="2"), "hours"), (dict(served_on=date(2024, 3, 2)), "served_on"),
        (dict(kind=""), "kind"),
    ],
)
def test_record_service_refuses_bad_input(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = dict(served_on=date(2024, 3, 1), hours=2, kind="巡逻", at=T0)
    args.update(kwargs)
    e = given(history(register())).when(
        lambda m: m.record_service(**args)
    ).then_raises(InvalidValue)
    assert e.value.field == field


def test_service_day_is_the_china_calendar_day() -> None:
    at = datetime(2024, 3, 1, 16, 30, tzinfo=UTC)  # 2024-03-02 00:30 in Beijing
    [e] = given(history(register())).when(lambda m: m.record_service(
        served_on=date(2024, 3, 2), hours=1, kind="夜巡", at=at)).then(Member.ServiceRecorded)
    assert e.served_on == date(2024, 3, 2)


def test_points_awarded_and_deducted() -> None:
    events = history(register(), lambda m: m.adjust_points(10, "参加社区志愿服务", T0))
    assert isinstance(events[-1], Member.PointsAwarded) and events[-1].points == 10
    [e] = given(events).when(
        lambda m: m.adjust_points(-4, "未按时参加活动", T0)
    ).then(Member.PointsDeducted)
    assert type(e).TOPIC == "PointsDeducted.v1"
    assert (e.points, e.reason) == (4, "未按时参加活动")
    assert replay([*events, e]).points == 6


@pytest.mark.parametrize(
    ("delta", "reason", "field"),
    [(0, "无", "delta"), (-11, "扣分", "delta"), (True, "x", "delta"), (1.5, "x", "delta"),
     (10_001, "x", "delta"), (5, "  ", "reason")],
)
def test_points_refusals(delta: Any, reason: str, field: str) -> None:
    events = history(register(), lambda m: m.adjust_points(10, "奖励", T0))
    e = given(events).when(lambda m: m.adjust_points(delta, reason, T0)).then_raises(InvalidValue)
    assert e.value.field == field


def test_award_and_deduct_directly() -> None:
    events = history(register(), lambda m: m.award_points(3, "奖励", T0))
    [e] = given(events).when(lambda m: m.deduct_points(3, "扣减", T0)).then(Member.PointsDeducted)
    assert replay([*events, e]).points == 0
    err = given(events).when(lambda m: m.deduct_points(4, "扣减", T0)).then_raises(InvalidValue)
    assert err.value.field == "points"


# -- transfer ------------------------------------------------------------------------------


def test_transfer_moves_the_member_and_its_future_events() -> None:
    events = history(register(), lambda m: m.record_service(
        served_on=date(2024, 3, 1), hours=2, kind="巡逻", at=T0))
    [e] = given(events).when(
        lambda m: m.transfer(to_community=COMMUNITY_2, grid=GRID_2, at=T0)
    ).then(Member.Transferred)
    assert type(e).TOPIC == "MemberTransferred.v1"
    assert (e.from_community_id, e.to_community_id, e.to_grid_id) == (
        COMMUNITY.id, COMMUNITY_2.id, GRID_2.id)
    m = replay([*events, e])
    assert m.owner_node_id == COMMUNITY_2.id and m.community_code == COMMUNITY_2.code
    assert m.former_community_ids == (COMMUNITY.id,)
    assert m.service_hours == 2  # history stays with the member, events stay where recorded


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        (dict(to_community=COMMUNITY), InvalidValue, "to_community_code"),
        (dict(to_community=FOREIGN_COMMUNITY), InvalidValue, "to_community_code"),
        (dict(to_community=STREET), InvalidValue, "to_community_code"),
        (dict(to_community=COMMUNITY_2, grid=GRID), InvalidValue, "grid_code"),
    ],
)
def test_transfer_refusals(kwargs: dict[str, Any], error: type[InvalidValue], field: str) -> None:
    e = given(history(register())).when(lambda m: m.transfer(at=T0, **kwargs)).then_raises(error)
    assert e.value.field == field


def test_transfer_to_a_community_where_the_person_is_registered() -> None:
    given(history(register())).when(lambda m: m.transfer(
            to_community=COMMUNITY_2, person_already_registered=True, at=T0)).then_raises(Conflict)


# -- deregister, erase ---------------------------------------------------------------------


def test_deregister_then_erase() -> None:
    events = history(register(), deregister)
    assert isinstance(events[-1], Member.Deregistered) and events[-1].reason == "调离本县"
    assert replay(events).status == DEREGISTERED
    [e] = given(events).when(erase).then(Member.Erased)
    assert type(e).TOPIC == "MemberErased.v1"
    m = replay([*events, e])
    assert m.status == ERASED and m.erased and m.person is None


def test_replay_survives_a_shredded_person() -> None:
    """After crypto-shredding the privacy layer hands MemberRegistered back with person=None."""
    events = history(register(), erase)
    shredded = [dataclasses.replace(events[0], person=None), *events[1:]]
    m = replay(shredded)
    assert m.person is None and m.status == ERASED


COMMANDS: dict[str, tuple[Callable[[Member], None], type]] = {
    "record_service": (lambda m: m.record_service(served_on=date(2024, 3, 1), hours=1,
                                                  kind="巡逻", at=T0), Member.ServiceRecorded),
    "award": (lambda m: m.adjust_points(1, "奖励", T0), Member.PointsAwarded),
    "transfer": (lambda m: m.transfer(to_community=COMMUNITY_2, at=T0), Member.Transferred),
    "deregister": (lambda m: m.deregister("离开", T0), Member.Deregistered),
    "erase": (lambda m: m.erase(T0), Member.Erased),
}
STATES: dict[str, list[Callable[[Member], None]]] = {
    ACTIVE: [], DEREGISTERED: [deregister], ERASED: [erase],
}
ALLOWED = {
    ACTIVE: set(COMMANDS),
    DEREGISTERED: {"erase"},
    ERASED: set(),
}


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_transition_table(state: str, command: str) -> None:
    events = history(register(), *STATES[state])
    assert replay(events).status == state
    run, event_class = COMMANDS[command]
    if command in ALLOWED[state]:
        given(events).when(run).then(event_class)
    else:
        err = given(events).when(run).then_raises(IllegalTransition)
        assert err.value.current_state == state


def test_deduct_is_refused_when_not_active() -> None:
    events = history(register(), lambda m: m.adjust_points(5, "奖励", T0), deregister)
    given(events).when(lambda m: m.adjust_points(-1, "扣", T0)).then_raises(IllegalTransition)


# -- properties ----------------------------------------------------------------------------

good_texts = st.sampled_from(["参加垃圾分类宣传", "巡逻", "OK"])
texts = st.one_of(good_texts, good_texts, good_texts,
                  st.sampled_from(["", " ", "x" * 2001]), st.text(max_size=10))
commands = st.one_of(
    st.tuples(st.just("service"), st.integers(-60, 1),
              st.one_of(st.floats(-2, 30), st.integers(-1, 25)), texts),
    st.tuples(st.just("service"), st.integers(-60, 1), st.floats(0, 24), texts),
    st.tuples(st.just("points"), st.integers(-30, 30), texts),
    st.tuples(st.just("points"), st.integers(-30, 30), texts),
    st.tuples(st.just("transfer"), st.sampled_from([COMMUNITY, COMMUNITY_2, FOREIGN_COMMUNITY]),
              st.sampled_from([None, GRID, GRID_2]), st.booleans()),
    st.tuples(st.just("deregister"), texts),
    st.tuples(st.just("erase"), st.none() | texts),
)


def run_command(m: Member, cmd: tuple[Any, ...], at: datetime) -> None:
    name, *args = cmd
    if name == "service":
        served_on = business_date(at) + timedelta(days=args[0])
        m.record_service(served_on=served_on, hours=args[1], kind=args[2], at=at)
    elif name == "points":
        m.adjust_points(args[0], args[1], at)
    elif name == "transfer":
        m.transfer(to_community=args[0], grid=args[1], person_already_registered=args[2], at=at)
    elif name == "deregister":
        m.deregister(args[0], at)
    else:
        m.erase(at, reason=args[0])


def check_invariants(m: Member) -> None:
    assert m.status in (ACTIVE, DEREGISTERED, ERASED)
    assert m.points >= 0
    assert m.service_hours >= 0 and m.service_count >= 0
    assert (m.person is None) == (m.status == ERASED)
    assert m.community_id not in m.former_community_ids[-1:]
    assert m.grid_id is None or m.grid_id in (GRID.id, GRID_2.id)
    if m.grid_id == GRID.id:
        assert m.community_id == COMMUNITY.id
    if m.grid_id == GRID_2.id:
        assert m.community_id == COMMUNITY_2.id


@settings(max_examples=150, deadline=None)
@hypothesis.given(st.lists(st.tuples(commands, st.integers(0, 60 * 24 * 10)), max_size=25))
def test_random_command_sequences_stay_valid_and_replay(
    steps: list[tuple[tuple[Any, ...], int]],
) -> None:
    m = register()
    history = list(m.collect_events())
    at = T0
    for cmd, minutes in steps:
        at += timedelta(minutes=minutes)
        before = copy.deepcopy(m)
        try:
            run_command(m, cmd, at)
        except DomainError:
            assert m == before
        check_invariants(m)
        history.extend(m.collect_events())
    rebuilt = replay(history)
    assert rebuilt == m and rebuilt.version == len(history)
