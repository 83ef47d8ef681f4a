"""Projections name the events they read by the domain's classes; a name that is not a
registered event fails at import or start-up, never silently at run time."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from domain.base import CivicAggregate
from domain.issue import Issue
from domain.member import Member
from domain.pairing import Pairing
from infra.event_schemas import stored_fields
from projections.payloads import UnknownField, payload_type
from projections.registry import all_projections
from projections.subscriptions import (
    PerEvent,
    Subscriber,
    UnknownEvent,
    check_handles,
    contract_name,
    on,
    registered_type_names,
)


def test_handles_come_from_the_subscriptions() -> None:
    class Probe(PerEvent):
        name = "probe"
        tables = ()

        @on(Pairing.Signed)
        async def signed(self, conn: Any, e: Any, data: Any) -> None: ...

        @on(Pairing.Terminated, Member.Erased, fields=())
        async def gone(self, conn: Any, e: Any, data: Any) -> None: ...

    assert Probe.handles == {"PairingSigned", "PairingTerminated", "MemberErased"}
    assert contract_name(Issue.Assigned) == "IssueAssigned"


def test_a_misspelt_event_name_in_handles_fails_at_start_up() -> None:
    class Typo:
        name = "typo"
        handles = frozenset({"PairingSigned", "PairingSignd"})
        tables = ()

    with pytest.raises(UnknownEvent, match="PairingSignd"):
        check_handles(Typo())  # type: ignore[arg-type]


def test_a_subscription_to_something_not_a_registered_event_fails_at_import() -> None:
    class Stray(CivicAggregate.Event):  # an event of no registered aggregate
        TOPIC = "PairingSignd.v1"

    with pytest.raises(UnknownEvent):
        on(Stray)
    with pytest.raises(UnknownEvent):
        on(dict)
    with pytest.raises(UnknownField, match="evidance"):
        on(Pairing.CommitmentFulfilled, fields=("index", "evidance"))
    with pytest.raises(UnknownEvent, match="twice"):

        class Twice(Subscriber):
            @on(Pairing.Signed)
            def a(self) -> None: ...

            @on(Pairing.Signed)
            def b(self) -> None: ...


def test_every_registered_projection_reads_registered_events_only() -> None:
    for projection in all_projections():  # runs check_handles on each
        assert projection.handles <= registered_type_names(), projection.name


def test_payloads_are_derived_from_the_event_declaration() -> None:
    signed = payload_type(Pairing.Signed)
    declared = [f[0] for f in stored_fields(Pairing.Signed, msgspec.Raw)]
    assert [f.name for f in msgspec.structs.fields(signed)] == declared
    # a personal-data field stays sealed (opaque), an optional one may be absent
    registered: Any = msgspec.json.decode(
        b'{"person": {"alg": "x"}, "home_unit_id": "6f1c4a56-7e51-4b57-9d2a-1a3e7c1f2b10",'
        b' "home_unit_code": "U", "community_id": "6f1c4a56-7e51-4b57-9d2a-1a3e7c1f2b11",'
        b' "community_code": "C", "root_id": "6f1c4a56-7e51-4b57-9d2a-1a3e7c1f2b12"}',
        type=payload_type(Member.Registered),
    )
    assert bytes(registered.person) == b'{"alg": "x"}'
    assert registered.grid_id is None
    text = payload_type(Issue.Reported, ("node_id",), text_ids=True)
    decoded: Any = msgspec.json.decode(b'{"node_id": "abc", "title": "skipped"}', type=text)
    assert decoded.node_id == "abc"
