"""The registry of aggregates and event topics, and that every event encodes and replays."""

from __future__ import annotations

import dataclasses
import typing
from datetime import date, datetime, timedelta, timezone
from functools import reduce
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

from domain.base import CivicAggregate, event_type_name
from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member, UnitRegistration
from domain.node import Node
from domain.pairing import Commitment, Pairing
from domain.personal_data import personal_data
from domain.refs import NodeRef
from domain.registry import (
    AGGREGATES,
    RegistryError,
    aggregate_classes,
    aggregate_events,
    aggregate_of,
    event_classes,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
D = timedelta(days=1)

#: the contract names DESIGN.md lists (plus the whistle answer the workflows add).
CONTRACT = {
    "NodeRegistered", "NodeRenamed", "NodeMoved", "NodeClosed",
    "PairingSigned", "CommitmentFulfilled", "PairingActivityHeld", "PairingReviewed",
    "PairingTerminated",
    "UnitRegistered", "MemberRegistered", "ServiceRecorded", "PointsAwarded", "PointsDeducted",
    "MemberTransferred", "MemberDeregistered", "MemberErased",
    "IssueReported", "IssueAssigned", "IssueReturned", "IssueAccepted", "IssueExtended",
    "IssueProgressNoted", "IssueEscalated", "IssueEscalationAnswered", "IssueResolved",
    "IssueEvaluated", "IssueClosed", "IssueReopened", "IssueOverdue", "EscalationOverdue",
    "FindingRecorded", "RectificationAssigned", "RectificationProgressReported",
    "RectificationCompleted", "RectificationVerified", "RectificationRejected",
    "FindingReopened", "RectificationOverdue",
}


def test_every_contract_event_is_registered_once_at_v1() -> None:
    topics = event_classes()
    assert set(topics) == {f"{name}.v1" for name in CONTRACT}
    for topic, cls in topics.items():
        assert topic == cls.TOPIC
        assert event_type_name(cls) == topic.removesuffix(".v1")
        assert aggregate_of(cls) in AGGREGATES


def test_stream_types() -> None:
    assert aggregate_classes() == {
        "node": Node, "pairing": Pairing, "unit_registration": UnitRegistration,
        "member": Member, "issue": Issue, "finding": Finding,
    }


def test_each_aggregate_has_exactly_one_creation_event() -> None:
    for aggregate in AGGREGATES:
        created = [e for e in aggregate_events(aggregate) if issubclass(e, CivicAggregate.Created)]
        assert len(created) == 1, aggregate


def test_event_field_types_resolve_and_are_plain() -> None:
    plain = (str, int, float, bool, UUID, date, datetime, type(None))
    for cls in event_classes().values():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            assert field.name in hints
            _assert_plain(hints[field.name], plain, f"{cls.__qualname__}.{field.name}")


def _assert_plain(tp: Any, plain: tuple[type, ...], where: str) -> None:
    if isinstance(tp, typing.TypeVar):  # the library's originator id
        return
    args = typing.get_args(tp)
    if args:
        for arg in args:
            if arg is not Ellipsis:
                _assert_plain(arg, plain, where)
        return
    if dataclasses.is_dataclass(tp):
        assert tp.__dataclass_params__.frozen, where  # type: ignore[union-attr]
        for f in dataclasses.fields(tp):
            _assert_plain(typing.get_type_hints(tp)[f.name], plain, where)
        return
    assert tp in plain, f"{where}: {tp!r}"


# -- a sample story that records every event type ------------------------------------------

ROOT = uuid4()


def _node(kind: str, code: str, parent: UUID | None = None) -> NodeRef:
    return NodeRef(id=uuid4(), code=code, kind=kind, root_id=ROOT, parent_id=parent)


def story() -> list[tuple[CivicAggregate, list[Any]]]:
    """Every aggregate through every event, with Chinese text."""
    county = Node.register(node_id=ROOT, code="330106000000", name="西湖区", kind="county",
                           parent=None, at=T0)
    street = Node.register(node_id=uuid4(), code="330106001000", name="北山街道",
                           kind="street", parent=county, at=T0)
    street_2 = Node.register(node_id=uuid4(), code="330106002000", name="西溪街道",
                             kind="street", parent=county, at=T0)
    street.rename("北山街道办事处", T0)
    street.move(new_parent=county, new_code="330106003000", reason="区划调整",
                is_ancestor_of_new_parent=False, at=T0)
    street_2.close("撤并", T0)

    community = _node("community", "330106001001")
    community_2 = _node("community", "330106001002")
    grid = _node("grid", "330106001001G01", parent=community.id)
    unit = _node("unit", "U330106-GAJ")
    unit_2 = _node("unit", "U330106-ZJJ")
    street_ref = _node("street", "330106001000")

    pairing = Pairing.sign(
        pairing_id=uuid4(), unit=unit, community=community, starts_on=date(2024, 1, 1),
        ends_on=date(2025, 12, 31), commitments=[Commitment("捐建图书角", date(2024, 6, 1))],
        at=T0)
    pairing.fulfil(0, "图书角已建成，照片见附件", T0)
    pairing.hold_activity(held_on=date(2024, 2, 1), title="共建主题党日", participants=30, at=T0)
    pairing.review(rating="excellent", comment="成效显著", at=T0)
    pairing.terminate("机构改革", T0)

    registration = UnitRegistration.register(unit=unit, community=community, at=T0)

    member = Member.register(member_id=uuid4(), person=personal_data(
        "张三", "13812341234", "11010519491231002X"), community=community, home_unit=unit,
        grid=grid, at=T0)
    member.record_service(served_on=date(2024, 2, 29), hours=1.5, kind="垃圾分类督导", at=T0)
    member.adjust_points(10, "志愿服务", T0)
    member.adjust_points(-2, "缺席活动", T0)
    member.transfer(to_community=community_2, at=T0)
    member.deregister("退休", T0)
    member.erase(T0, reason="本人申请")

    issue = Issue.report(issue_id=uuid4(), node=grid, title="路灯不亮", category="市政设施",
                         source="hotline", due_at=T0 + 7 * D, description="3号楼前", at=T0)
    issue.assign(assignee=unit, due_at=T0 + 2 * D, at=T0)
    issue.return_("非本单位职责", T0)
    issue.assign(assignee=unit_2, due_at=T0 + 2 * D, at=T0)
    issue.accept(T0)
    issue.extend(due_at=T0 + 3 * D, reason="等待配件", at=T0 + D)
    issue.note_progress("已报修", T0 + D)
    issue.escalate(to=street_ref, respond_within_minutes=30, at=T0 + D)
    issue.mark_escalation_overdue(T0 + D + timedelta(minutes=31))
    issue.answer_escalation(responder=unit, note="已到场", at=T0 + D + timedelta(minutes=40))
    issue.mark_overdue(T0 + 4 * D)
    issue.resolve("已更换灯具", T0 + 4 * D)
    issue.evaluate(satisfaction="dissatisfied", resolved=False, comment="仍不亮", at=T0 + 4 * D)
    issue.reopen("回访不满意", T0 + 5 * D)
    issue.accept(T0 + 5 * D)
    issue.resolve("已更换线路", T0 + 5 * D)
    issue.evaluate(satisfaction="satisfied", resolved=True, at=T0 + 5 * D)
    issue.close(T0 + 6 * D)

    finding = Finding.record(
        finding_id=uuid4(), scope=community, source="区委第二巡察组", round="2024年第一轮",
        description="党员发展程序不规范", category="immediate", responsible_unit=unit,
        due_on=date(2024, 3, 31), measures=["逐一核查发展档案", "补齐手续"], at=T0)
    finding.report_progress(note="已核查", evidence="doc://1", at=T0)
    finding.complete("已整改", T0)
    finding.verify(accepted=False, comment="材料不全", at=T0)
    finding.complete("已补齐", T0)
    finding.verify(accepted=True, comment="同意销号", at=T0)
    finding.reopen("回头看发现反弹", T0 + 10 * D)
    finding.mark_overdue(T0 + 60 * D)

    return [(agg, list(agg.collect_events())) for agg in
            (county, street, street_2, pairing, registration, member, issue, finding)]


def test_the_story_records_every_event_type() -> None:
    recorded = {type(e).TOPIC for _, events in story() for e in events}
    assert recorded == set(event_classes())


_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def _roundtrip(event: Any, topics: dict[str, type[Any]]) -> Any:
    """What the store does: encode the event's own fields as JSON, decode into its class."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
              if f.name not in _ENVELOPE}
    data = msgspec.json.decode(msgspec.json.encode(fields))
    data.update(originator_id=event.originator_id, originator_version=event.originator_version,
                timestamp=event.timestamp)
    if hasattr(event, "originator_topic"):
        data["originator_topic"] = event.originator_topic
    return msgspec.convert(data, topics[type(event).TOPIC], strict=False)


def test_every_event_survives_json_and_replays_to_the_same_aggregate() -> None:
    topics = event_classes()
    for aggregate, events in story():
        decoded = [_roundtrip(e, topics) for e in events]
        assert decoded == events
        assert reduce(lambda a, e: e.mutate(a), decoded, None) == aggregate
        assert "张三" not in str(msgspec.json.encode(
            {k: v for k, v in vars(events[0]).items() if k != "person"}))


def test_chinese_text_is_stored_as_utf8_unchanged() -> None:
    issue = Issue.report(issue_id=uuid4(), node=_node("grid", "G-9"), title="井盖缺失「急」",
                         category="市政", source="grid", at=T0)
    [event] = issue.collect_events()
    assert isinstance(event, Issue.Reported)
    encoded = msgspec.json.encode({"title": event.title})
    assert "井盖缺失「急」".encode() in encoded


def test_owner_node_and_root_of_every_aggregate() -> None:
    for aggregate, _ in story():
        assert isinstance(aggregate.owner_node_id, UUID)
        assert getattr(aggregate, "root_id") == ROOT  # noqa: B009 - not on the base class


# -- the registry refuses broken contracts -------------------------------------------------


class _NoTopic(CivicAggregate):
    STREAM_TYPE = "no_topic"

    class Made(CivicAggregate.Created):
        TOPIC = "Made.v1"

    class Forgot(CivicAggregate.Event):
        pass


class _Inherits(CivicAggregate):
    STREAM_TYPE = "inherits"

    class Made(CivicAggregate.Created):
        TOPIC = "InheritsMade.v1"

    class Changed(CivicAggregate.Event):
        TOPIC = "Changed.v1"

    class ChangedAgain(Changed):  # inherits Changed's TOPIC: a bug
        pass


class _BadFormat(CivicAggregate):
    STREAM_TYPE = "bad_format"

    class Made(CivicAggregate.Created):
        TOPIC = "bad_format.made"


class _Duplicate(CivicAggregate):
    STREAM_TYPE = "pairing"

    class Made(CivicAggregate.Created):
        TOPIC = "PairingSigned.v1"


class _NoStreamType(CivicAggregate):
    class Made(CivicAggregate.Created):
        TOPIC = "NoStreamTypeMade.v1"


@pytest.mark.parametrize(
    ("aggregates", "message"),
    [
        ((_NoTopic,), "no TOPIC"),
        ((_Inherits,), "no TOPIC"),
        ((_BadFormat,), "ContractName"),
        ((Pairing, _Duplicate), "used by both"),
    ],
)
def test_event_classes_refuses(aggregates: tuple[type[CivicAggregate], ...], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        event_classes(aggregates)


def test_aggregate_classes_refuses_missing_or_duplicate_stream_types() -> None:
    with pytest.raises(RegistryError, match="no STREAM_TYPE"):
        aggregate_classes((_NoStreamType,))
    with pytest.raises(RegistryError, match="used by both"):
        aggregate_classes((Pairing, _Duplicate))


def test_aggregate_of_an_unknown_event() -> None:
    with pytest.raises(RegistryError):
        aggregate_of(_NoTopic.Made)
