"""五单 (ServiceOffer, ServiceOrder): given events, when a command, then events (or the refusal)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import IllegalTransition, InvalidValue
from domain.refs import NodeRef
from domain.service import (
    ACCEPTED,
    CANCELLED,
    COMPLETED,
    DISPATCHED,
    EVALUATED,
    REQUESTED,
    STATUSES,
    TRANSITIONS,
    ServiceOffer,
    ServiceOrder,
    accept_window,
    parse_points_rule,
)
from tests.domain_spec import given, history, replay

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
H = timedelta(hours=1)
D = timedelta(days=1)
ROOT = UUID("00000000-0000-0000-0000-0000000000aa")
OTHER_ROOT = UUID("00000000-0000-0000-0000-0000000000bb")
COMMUNITY = NodeRef(id=uuid4(), code="330106001001", kind="community", root_id=ROOT)
COMMUNITY_2 = NodeRef(id=uuid4(), code="330106001002", kind="community", root_id=ROOT)
UNIT = NodeRef(id=uuid4(), code="U330106001", kind="unit", root_id=ROOT)
FOREIGN_UNIT = NodeRef(id=uuid4(), code="U330107001", kind="unit", root_id=OTHER_ROOT)
GRID = NodeRef(id=uuid4(), code="330106001001G01", kind="grid", root_id=ROOT)
MEMBER = uuid4()
RULE = {5: 10, 4: 3}


def request(**overrides: Any) -> ServiceOrder:
    args: dict[str, Any] = dict(
        order_id=uuid4(), community=COMMUNITY, title="上门理发", description="独居老人", at=T0
    )
    args.update(overrides)
    return ServiceOrder.request(**args)


def to_member(o: ServiceOrder) -> None:
    o.dispatch(member_id=MEMBER, accept_within=2 * H, at=T0 + H)


def to_unit(o: ServiceOrder) -> None:
    o.dispatch(unit=UNIT, accept_within=2 * H, at=T0 + H)


def accept(o: ServiceOrder) -> None:
    o.accept(T0 + 2 * H)


def complete(o: ServiceOrder) -> None:
    o.complete(summary="已理发", hours=1.5, at=T0 + 3 * H)


def evaluate(o: ServiceOrder) -> None:
    o.evaluate(rating=5, comment="满意", points_rule=RULE, at=T0 + 4 * H)


def cancel(o: ServiceOrder) -> None:
    o.cancel("居民取消", T0 + 4 * H)


def overdue(o: ServiceOrder) -> None:
    o.mark_overdue(T0 + 4 * H)


#: a way to reach every status
PATHS: dict[str, tuple[Callable[[ServiceOrder], None], ...]] = {
    REQUESTED: (),
    DISPATCHED: (to_member,),
    ACCEPTED: (to_member, accept),
    COMPLETED: (to_member, accept, complete),
    EVALUATED: (to_member, accept, complete, evaluate),
    CANCELLED: (cancel,),
}
COMMANDS: dict[str, Callable[[ServiceOrder], None]] = {
    "dispatch": to_unit,
    "accept": accept,
    "complete": complete,
    "evaluate": evaluate,
    "cancel": cancel,
    "mark_overdue": overdue,
}


def test_requested() -> None:
    (event,) = request(due_on=date(2024, 3, 5)).collect_events()
    assert isinstance(event, ServiceOrder.Requested)
    assert (event.community_code, event.title, event.due_on) == (
        "330106001001",
        "上门理发",
        date(2024, 3, 5),
    )


def test_requested_for_an_offer_of_the_same_community_only() -> None:
    offer = ServiceOffer.offer(
        offer_id=uuid4(),
        community=COMMUNITY,
        provider=UNIT,
        title="义务理发",
        category="生活",
        at=T0,
    )
    assert request(offer=offer).offer_id == offer.id
    other = ServiceOffer.offer(
        offer_id=uuid4(),
        community=COMMUNITY_2,
        member_id=MEMBER,
        title="维修",
        category="家电",
        at=T0,
    )
    with pytest.raises(InvalidValue, match="offer_id"):
        request(offer=other)


def test_requested_only_at_a_community() -> None:
    with pytest.raises(InvalidValue, match="community_code"):
        request(community=GRID)


def test_dispatched_to_a_member_sets_the_accept_deadline() -> None:
    (event,) = given(history(request())).when(to_member).then(ServiceOrder.Dispatched)
    assert isinstance(event, ServiceOrder.Dispatched)
    assert (event.member_id, event.unit_id, event.accept_by) == (MEMBER, None, T0 + 3 * H)


def test_dispatched_to_a_unit() -> None:
    (event,) = given(history(request())).when(to_unit).then(ServiceOrder.Dispatched)
    assert (event.unit_id, event.unit_code, event.member_id) == (UNIT.id, UNIT.code, None)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"member_id": MEMBER, "unit": UNIT}],
    ids=["neither", "both"],
)
def test_dispatched_to_exactly_one(kwargs: dict[str, Any]) -> None:
    order = replay(history(request()))
    with pytest.raises(InvalidValue, match="exactly one"):
        order.dispatch(accept_within=H, at=T0, **kwargs)


def test_dispatch_refuses_a_foreign_or_non_unit_node() -> None:
    order = replay(history(request()))
    with pytest.raises(InvalidValue, match="another root tenant"):
        order.dispatch(unit=FOREIGN_UNIT, accept_within=H, at=T0)
    with pytest.raises(InvalidValue, match="unit node"):
        order.dispatch(unit=GRID, accept_within=H, at=T0)


def test_redispatch_clears_the_overdue_flag() -> None:
    events = history(request(), to_member, overdue)
    order = replay(events)
    assert order.overdue
    order.dispatch(unit=UNIT, accept_within=H, at=T0 + 5 * H)
    assert not order.overdue and order.dispatch_count == 2


def test_accepted() -> None:
    (event,) = given(history(request(), to_member)).when(accept).then(ServiceOrder.Accepted)
    assert isinstance(event, ServiceOrder.Accepted)


def test_completed_credits_the_member_hours() -> None:
    events = history(request(), to_member, accept)
    order = replay(events)
    complete(order)
    assert order.hours_for_member() == 1.5
    (event,) = order.collect_events()
    assert (event.summary, event.hours) == ("已理发", 1.5)


def test_completed_by_a_unit_credits_no_member() -> None:
    order = replay(history(request(), to_unit, accept))
    complete(order)
    assert order.hours_for_member() is None


@pytest.mark.parametrize("hours", [0, -1, 24.5, float("nan")])
def test_completed_hours_bounds(hours: float) -> None:
    order = replay(history(request(), to_member, accept))
    with pytest.raises(InvalidValue, match="hours"):
        order.complete(summary="done", hours=hours, at=T0)


def test_evaluated_awards_points_by_the_rule() -> None:
    (event,) = given(history(request(), to_member, accept, complete)).when(
        evaluate
    ).then(ServiceOrder.Evaluated)
    assert isinstance(event, ServiceOrder.Evaluated)
    assert (event.rating, event.points) == (5, 10)


@pytest.mark.parametrize(("rating", "points"), [(4, 3), (3, 0), (1, 0)])
def test_evaluated_below_the_rule_earns_what_it_says(rating: int, points: int) -> None:
    order = replay(history(request(), to_member, accept, complete))
    order.evaluate(rating=rating, points_rule=RULE, at=T0)
    assert order.points_awarded == points


def test_evaluated_earns_no_points_for_a_unit_or_an_inactive_member() -> None:
    unit_order = replay(history(request(), to_unit, accept, complete))
    unit_order.evaluate(rating=5, points_rule=RULE, at=T0)
    assert unit_order.points_awarded == 0
    gone = replay(history(request(), to_member, accept, complete))
    gone.evaluate(rating=5, points_rule=RULE, member_active=False, at=T0)
    assert gone.points_awarded == 0


@pytest.mark.parametrize("rating", [0, 6, True])
def test_evaluated_rating_bounds(rating: int) -> None:
    order = replay(history(request(), to_member, accept, complete))
    with pytest.raises(InvalidValue, match="rating"):
        order.evaluate(rating=rating, points_rule=RULE, at=T0)


@pytest.mark.parametrize("status", [REQUESTED, DISPATCHED, ACCEPTED])
def test_cancelled_before_completion(status: str) -> None:
    (event,) = given(history(request(), *PATHS[status])).when(cancel).then(ServiceOrder.Cancelled)
    assert isinstance(event, ServiceOrder.Cancelled)
    assert event.from_status == status


def test_overdue_only_after_the_accept_deadline_and_once() -> None:
    order = replay(history(request(), to_member))
    assert not order.is_past_accept_deadline(T0 + 3 * H)
    with pytest.raises(IllegalTransition):
        order.mark_overdue(T0 + 2 * H)
    order.mark_overdue(T0 + 3 * H + timedelta(seconds=1))
    (event,) = order.collect_events()
    assert isinstance(event, ServiceOrder.Overdue) and event.accept_by == T0 + 3 * H
    assert not order.is_past_accept_deadline(T0 + 9 * H)
    with pytest.raises(IllegalTransition):
        order.mark_overdue(T0 + 9 * H)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_transition_table(status: str, command: str) -> None:
    """Every command in every status: allowed ones record, others are 409 with the state."""
    order = replay(history(request(), *PATHS[status]))
    assert order.status == status
    if status in TRANSITIONS[command]:
        COMMANDS[command](order)
        assert order.collect_events()
    else:
        with pytest.raises(IllegalTransition) as refused:
            COMMANDS[command](order)
        assert refused.value.current_state == status


def test_offer_needs_exactly_one_provider() -> None:
    with pytest.raises(InvalidValue, match="exactly one"):
        ServiceOffer.offer(offer_id=uuid4(), community=COMMUNITY, title="a", category="b", at=T0)
    with pytest.raises(InvalidValue, match="exactly one"):
        ServiceOffer.offer(
            offer_id=uuid4(),
            community=COMMUNITY,
            provider=UNIT,
            member_id=MEMBER,
            title="a",
            category="b",
            at=T0,
        )
    with pytest.raises(InvalidValue, match="another root tenant"):
        ServiceOffer.offer(
            offer_id=uuid4(),
            community=COMMUNITY,
            provider=FOREIGN_UNIT,
            title="a",
            category="b",
            at=T0,
        )


def test_points_rule() -> None:
    assert parse_points_rule("5:10, 4:5") == {5: 10, 4: 5}
    assert parse_points_rule("") == {}
    for bad in ("5", "6:1", "5:-1", "x:1"):
        with pytest.raises(ValueError):
            parse_points_rule(bad)


def test_accept_window() -> None:
    assert accept_window(90) == timedelta(minutes=90)
    for bad in (0, -5, 30 * 24 * 60 + 1):
        with pytest.raises(ValueError):
            accept_window(bad)
