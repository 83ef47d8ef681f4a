"""The snapshot encoding (infra/snapshots.py), without a database: every kind of value
aggregate state holds comes back equal, personal attributes only sealed, anything else is
refused or ignored; and each aggregate's state shape is pinned to its STATE_VERSION."""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from domain.base import CivicAggregate
from domain.hierarchy import NodeKind
from domain.issue import Escalation, Evaluation
from domain.member import Member
from domain.node import Node
from domain.pairing import CommitmentState
from domain.personal_data import personal_data
from domain.refs import NodeRef
from domain.registry import AGGREGATES
from domain.survey import Survey
from infra import snapshots
from infra.pii_crypto import PersonKeyring, is_sealed, new_data_key

AT = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)

#: every aggregate's state attributes (assigned in ``__init__`` and in its events'
#: ``apply``) at its STATE_VERSION. Changed the attributes? Raise the aggregate's
#: STATE_VERSION (old snapshots are then ignored) and write the new shape here.
SHAPES: dict[str, tuple[int, set[str]]] = {
    "node": (1, {"closed", "code", "former_codes", "kind", "name", "parent_id", "root_id"}),
    "pairing": (
        1,
        {"activity_count", "commitments", "community_code", "community_id", "ends_on",
         "last_activity_on", "participant_total", "rating", "review_count", "root_id",
         "starts_on", "status", "terminated_at", "termination_reason", "unit_code", "unit_id"},
    ),
    "unit_registration": (
        1, {"community_code", "community_id", "root_id", "unit_code", "unit_id"}
    ),
    "member": (
        1,
        {"community_code", "community_id", "former_community_ids", "grid_code", "grid_id",
         "home_unit_code", "home_unit_id", "person", "points", "root_id", "service_count",
         "service_hours", "status"},
    ),
    "issue": (
        1,
        {"accepted_at", "assigned_at", "assigned_due_at", "assignee_code", "assignee_id",
         "category", "closed_at", "description", "due_at", "escalation", "escalation_count",
         "evaluation", "extension_count", "external_id", "node_code", "node_id", "overdue_for",
         "override_reason", "progress_count", "reopen_count", "requested_due_at",
         "resolved_at", "result", "return_count", "root_id", "source", "status", "survey_id",
         "title"},
    ),
    "finding": (
        1,
        {"category", "completed_at", "description", "due_on", "last_rejection_reason",
         "measures", "overdue_for", "progress_count", "rejection_count", "reopen_count",
         "responsible_unit_code", "responsible_unit_id", "root_id", "round", "scope_code",
         "scope_id", "source", "status", "summary", "verified_at"},
    ),
    "service_offer": (
        1,
        {"category", "community_code", "community_id", "member_id", "provider_code",
         "provider_id", "root_id", "title"},
    ),
    "service_order": (
        1,
        {"accept_by", "community_code", "community_id", "description", "dispatch_count",
         "due_on", "hours", "member_id", "offer_id", "overdue", "points_awarded", "rating",
         "root_id", "status", "title", "unit_code", "unit_id"},
    ),
    "survey": (
        1,
        {"building", "community_id", "flags", "issue_id", "node_code", "node_id", "note",
         "residents", "room", "root_id", "status", "visited_on"},
    ),
}  # fmt: skip


def assigned_attributes(cls: type[CivicAggregate]) -> set[str]:
    """The attributes ``cls.__init__`` sets on ``self`` and its events' ``apply`` on the
    aggregate they are given."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    names: set[str] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        args = [a.arg for a in fn.args.args]
        owners = {"self"} if fn.name == "__init__" else set(args[1:2] if fn.name == "apply" else [])
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            names |= {
                t.attr
                for t in targets
                if isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id in owners
            }
    return names


@pytest.mark.parametrize("cls", AGGREGATES, ids=lambda c: c.STREAM_TYPE)
def test_each_state_shape_is_pinned_to_its_state_version(cls: type[CivicAggregate]):
    version, shape = SHAPES[cls.STREAM_TYPE]
    assert assigned_attributes(cls) == shape, (
        f"{cls.__name__}'s state attributes changed: raise {cls.__name__}.STATE_VERSION and "
        "update SHAPES"
    )
    assert version == cls.STATE_VERSION, f"update SHAPES for {cls.__name__}.STATE_VERSION"


def test_personal_attributes_are_the_personal_event_fields_kept_under_their_names():
    assert snapshots.personal_attributes(Member) == ("person",)
    assert snapshots.personal_attributes(Survey) == ("note",)
    for cls in AGGREGATES:
        for name in snapshots.personal_attributes(cls):
            assert name in SHAPES[cls.STREAM_TYPE][1], (cls.__name__, name)


def ring_for(*stream_ids: uuid.UUID) -> PersonKeyring:
    ring = PersonKeyring(os.urandom(32))
    for stream_id in stream_ids:
        ring._keys[stream_id] = new_data_key()
    return ring


def ref(kind: str, root: uuid.UUID, parent: uuid.UUID | None = None) -> NodeRef:
    return NodeRef(uuid.uuid4(), f"{uuid.uuid4().int % 10**12:012d}", kind, root, parent)


def member() -> Member:
    root = uuid.uuid4()
    community = ref("community", root)
    m = Member.register(
        member_id=uuid.uuid4(),
        person=personal_data("张三丰", "13812341234", None),
        community=community,
        home_unit=ref("unit", root),
        at=AT,
    )
    m.record_service(served_on=date(2026, 2, 1), hours=1.1, kind="志愿服务", at=AT)
    m.collect_events()
    m.former_community_ids = (uuid.uuid4(),)
    return m


def state(aggregate: CivicAggregate) -> dict[str, Any]:
    kept = dict(vars(aggregate))
    kept.pop("_pending_events")
    return kept


def test_every_kind_of_state_value_comes_back_equal():
    m = member()
    ring = ring_for(m.id)
    # what the other aggregates hold, put on one object so one round trip covers them all
    values: dict[str, Any] = {
        "kind": NodeKind.COMMUNITY,
        "evaluation": Evaluation("satisfied", True, None, AT),
        "escalation": Escalation(uuid.uuid4(), "110101000000", "street", AT, AT, None, ("a",)),
        "commitments": (CommitmentState("共建", date(2026, 5, 1), AT + timedelta(days=1), "照片"),),
        "flags": ["vacant", "other"],
        "counts": {uuid.uuid4(): 1.5, "x": [1, (2, 3)]},
        "nothing": None,
        "deadline": datetime(2026, 3, 1, 16, 30, tzinfo=UTC).astimezone(),
    }
    vars(m).update(values)
    data = snapshots.encode_state(m, ring)
    assert data is not None
    back = snapshots.decode_state(Member, m.id, data, ring)
    assert type(back) is Member and state(back) == state(m)
    assert back.collect_events() == []
    assert type(vars(back)["kind"]) is NodeKind and type(vars(back)["commitments"]) is tuple


def test_personal_attributes_are_sealed_and_open_only_with_the_key():
    m = member()
    ring = ring_for(m.id)
    data = snapshots.encode_state(m, ring)
    assert data is not None
    assert b"13812341234" not in data and "张三丰".encode() not in data
    assert is_sealed(msgspec.json.decode(data)["person"])
    assert snapshots.decode_state(Member, m.id, data, ring).person == m.person
    # the key shredded (or never loaded): the person decodes as None, as in the events
    assert snapshots.decode_state(Member, m.id, data, ring_for()).person is None
    # no key to seal with: no snapshot at all, never one in clear
    assert snapshots.encode_state(m, ring_for()) is None
    assert snapshots.encode_state(m, None) is None
    erased = member()
    erased.person = None
    assert snapshots.encode_state(erased, None) is not None


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2]",
        b'{"points": 1}',
        b'{"_id": {"$u": "x"}, "_version": 1, "_created_on": 1, "_modified_on": 1}',
        b'{"_id": 1, "_version": 1, "_created_on": 1, "_modified_on": 1, "x": {"$c": "Nope",'
        b' "f": {}}}',
        b'{"_id": 1, "_version": 1, "_created_on": 1, "_modified_on": 1, "x": {"$q": 1}}',
    ],
)
def test_what_does_not_decode_is_unusable(data: bytes):
    with pytest.raises(snapshots.SnapshotUnusable):
        snapshots.decode_state(Member, uuid.uuid4(), data, None)


def test_a_snapshot_of_another_stream_or_with_personal_data_in_clear_is_unusable():
    m = member()
    ring = ring_for(m.id)
    data = snapshots.encode_state(m, ring)
    assert data is not None
    with pytest.raises(snapshots.SnapshotUnusable):
        snapshots.decode_state(Member, uuid.uuid4(), data, ring)
    raw = msgspec.json.decode(data)
    raw["person"] = {"name": "张三丰", "phone": "13812341234", "id_number": None}
    with pytest.raises(snapshots.SnapshotUnusable):
        snapshots.decode_state(Member, m.id, msgspec.json.encode(raw), ring)


def test_a_value_snapshots_cannot_hold_means_no_snapshot():
    node = Node.__new__(Node)
    vars(node).update(state(member()) | {"_pending_events": [], "odd": object()})
    assert snapshots.encode_state(node, None) is None
