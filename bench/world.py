"""A seeded world of governance work, for the roll-up tests and the benchmarks.

``WorldGenerator`` builds a tenant tree (county → streets → communities → grids, units) and
then does random work through the *domain aggregates* (pairings signed, fulfilled and
terminated; members registered, serving, earning points, transferring, leaving; issues
through the whole 12345 loop including overdue marks; findings through the rectification
ledger; communities and grids moved between parents), at a simulated, strictly increasing
business time. What it produces are ``Write`` records: one aggregate's new events, exactly as
the codec would store them, and the directory changes of node events.
``bench.world_writes`` puts them in a database; ``tests/stats_recount.py`` recounts them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.finding import CATEGORIES, Finding
from domain.issue import SATISFACTIONS, SOURCES, Issue
from domain.member import Member
from domain.node import Node
from domain.pairing import Commitment, Pairing
from domain.personal_data import personal_data
from domain.refs import CHINA_TZ, NodeRef
from domain.registry import AGGREGATES, event_classes
from domain.service import ServiceOrder
from domain.survey import FLAGS, Survey
from infra.event_codec import EventCodec, NewEvent

CODEC = EventCodec(event_classes(), AGGREGATES)
ACTOR = "test:stats-world"


def china_day(at: datetime) -> date:
    return at.astimezone(CHINA_TZ).date()


@dataclass
class Write:
    """One aggregate's new events (one append), plus the directory change of a node event."""

    root_id: UUID
    node_id: UUID
    stream_id: UUID
    stream_type: str
    expected_version: int
    events: list[NewEvent]
    directory: tuple[Any, ...] | None = None


@dataclass
class WorldShape:
    streets: int = 3
    communities: int = 3
    grids: int = 1  # per community, in every other community
    units: int = 3


@dataclass
class WorldGenerator:
    """Random but reproducible work in one tenant; see the module docstring."""

    seed: int
    county_code: str
    start: datetime
    shape: WorldShape = field(default_factory=WorldShape)
    ops_per_day: int = 80
    moves: bool = True
    #: relative weight of a node move / rename among ~130 for all the other work.
    move_weight: float = 1.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = self.start
        self.nodes: dict[UUID, Node] = {}
        self.streets: list[Node] = []
        self.communities: list[Node] = []
        self.grids: list[Node] = []
        self.units: list[Node] = []
        self.pairings: list[Pairing] = []
        self.active_pairs: set[tuple[UUID, UUID]] = set()
        self.members: list[Member] = []
        #: every member registered, by id: a completed order credits its member, and a scan
        #: of ``members`` per order made a year's world quadratic (1M events: 420 s)
        self.member_by_id: dict[UUID, Member] = {}
        self.issues: list[Issue] = []
        self.findings: list[Finding] = []
        self.orders: list[ServiceOrder] = []
        self.codes: set[str] = set()
        self.root: Node | None = None
        self._serial = 0

    # -- helpers -----------------------------------------------------------------------------
    def _uuid(self) -> UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _tick(self) -> datetime:
        minutes = self.rng.expovariate(self.ops_per_day / 1440.0)
        self.now += timedelta(minutes=minutes, microseconds=1)
        return self.now

    @property
    def today(self) -> date:
        return china_day(self.now)

    def _write(self, aggregate: CivicAggregate, dir_op: tuple[Any, ...] | None = None) -> Write:
        pending = aggregate.collect_events()
        assert self.root is not None
        return Write(
            root_id=self.root.id,
            node_id=aggregate.owner_node_id,
            stream_id=aggregate.id,
            stream_type=type(aggregate).STREAM_TYPE,
            expected_version=aggregate.version - len(pending),
            events=[CODEC.encode(e) for e in pending],
            directory=dir_op,
        )

    def _register(self, code: str, name: str, kind: str, parent: Node | None) -> Write:
        node = Node.register(
            node_id=self._uuid(), code=code, name=name, kind=kind, parent=parent, at=self._tick()
        )
        self.nodes[node.id] = node
        self.codes.add(code)
        if parent is None:
            self.root = node
        return self._write(node, ("insert", node.id, parent.id if parent else None))

    def _ref(self, node: Node) -> NodeRef:
        return NodeRef.of(node)

    # -- the tree ------------------------------------------------------------------------------
    def tree(self) -> list[Write]:
        c = self.county_code
        out = [self._register(c, "测试区", "county", None)]
        assert self.root is not None
        for s in range(1, self.shape.streets + 1):
            out.append(self._register(f"{c[:6]}{s:03d}000", f"第{s}街道", "street", self.root))
            street = self.nodes[out[-1].stream_id]
            self.streets.append(street)
            for k in range(1, self.shape.communities + 1):
                code = f"{c[:6]}{s:03d}{k:03d}"
                out.append(self._register(code, f"第{s}-{k}社区", "community", street))
                community = self.nodes[out[-1].stream_id]
                self.communities.append(community)
                if k % 2 == 1:
                    for g in range(1, self.shape.grids + 1):
                        out.append(self._register(f"G{code}-{g}", f"网格{g}", "grid", community))
                        self.grids.append(self.nodes[out[-1].stream_id])
        for u in range(1, self.shape.units + 1):
            parent = self.root if u % 3 or not self.streets else self.streets[0]
            out.append(self._register(f"U{c[:6]}{u:03d}", f"第{u}局", "unit", parent))
            self.units.append(self.nodes[out[-1].stream_id])
        return out

    # -- random work -----------------------------------------------------------------------
    def work(self, operations: int) -> Iterator[Write]:
        """``operations`` random commands (each one or two appends)."""
        ops = [
            (self._sign, 4),
            (self._fulfil, 5),
            (self._terminate, 1),
            (self._register_member, 8),
            (self._serve, 10),
            (self._points, 6),
            (self._transfer, 2),
            (self._leave, 1),
            (self._report, 12),
            (self._assign, 10),
            (self._return, 1),
            (self._accept, 9),
            (self._extend, 2),
            (self._resolve, 8),
            (self._evaluate, 6),
            (self._close, 7),
            (self._reopen, 2),
            (self._issue_overdue, 3),
            (self._record_finding, 4),
            (self._finding_progress, 3),
            (self._complete, 3),
            (self._verify, 3),
            (self._reopen_finding, 1),
            (self._finding_overdue, 2),
            (self._rename, self.move_weight),
            (self._request_service, 5),
            (self._dispatch_service, 5),
            (self._accept_service, 4),
            (self._complete_service, 4),
            (self._evaluate_service, 3),
            (self._cancel_service, 1),
            (self._service_overdue, 1),
            (self._survey, 6),
        ]
        if self.moves:
            ops.append((self._move, self.move_weight))
        functions = [f for f, _ in ops]
        weights = [w for _, w in ops]
        done = 0
        attempts = 0
        while done < operations and attempts < operations * 50:
            attempts += 1
            if attempts % 4096 == 0:  # keep the pools of candidates small
                self.issues = [i for i in self.issues if i.status != "closed"]
                self.pairings = [p for p in self.pairings if p.status == "active"]
                self.members = [m for m in self.members if m.status != "erased"]
                self.orders = [o for o in self.orders if o.status not in ("evaluated", "cancelled")]
            op = self.rng.choices(functions, weights)[0]
            writes = op()
            if writes:
                done += 1
                yield from writes

    def _pick(self, items: Sequence[Any], ok: Any = None) -> Any:
        if not items:
            return None
        for _ in range(8):
            item = self.rng.choice(items)
            if ok is None or ok(item):
                return item
        return None

    def _community(self) -> Node:
        return self.rng.choice(self.communities)

    def _unit(self) -> Node:
        return self.rng.choice(self.units)

    # pairings
    def _sign(self) -> list[Write]:
        unit, community = self._unit(), self._community()
        if (unit.id, community.id) in self.active_pairs:
            return []
        at = self._tick()
        starts = self.today - timedelta(days=self.rng.randint(0, 10))
        ends = starts + timedelta(days=365)
        commitments = [
            Commitment(title=f"承诺{i}", due_on=starts + timedelta(days=30 * (i + 1)))
            for i in range(self.rng.randint(0, 4))
        ]
        pairing = Pairing.sign(
            pairing_id=self._uuid(),
            unit=self._ref(unit),
            community=self._ref(community),
            starts_on=starts,
            ends_on=ends,
            commitments=commitments,
            at=at,
        )
        self.pairings.append(pairing)
        self.active_pairs.add((unit.id, community.id))
        return [self._write(pairing)]

    def _fulfil(self) -> list[Write]:
        p = self._pick(
            self.pairings, lambda p: p.status == "active" and p.fulfilled_count < len(p.commitments)
        )
        if p is None:
            return []
        index = self.rng.choice([i for i, c in enumerate(p.commitments) if not c.fulfilled])
        p.fulfil(index, "活动照片", self._tick())
        return [self._write(p)]

    def _terminate(self) -> list[Write]:
        p = self._pick(self.pairings, lambda p: p.status == "active")
        if p is None:
            return []
        p.terminate("调整结对", self._tick())
        self.active_pairs.discard((p.unit_id, p.community_id))
        return [self._write(p)]

    # members
    def _register_member(self) -> list[Write]:
        self._serial += 1
        person = personal_data(f"党员{self._serial}", f"13{self._serial % 10**9:09d}")
        member = Member.register(
            member_id=self._uuid(),
            person=person,
            community=self._ref(self._community()),
            home_unit=self._ref(self._unit()),
            at=self._tick(),
        )
        self.members.append(member)
        self.member_by_id[member.id] = member
        return [self._write(member)]

    def _active_member(self) -> Member | None:
        m: Member | None = self._pick(self.members, lambda m: m.status == "active")
        return m

    def _serve(self) -> list[Write]:
        m = self._active_member()
        if m is None:
            return []
        at = self._tick()
        hours = self.rng.choice([0.5, 1, 1.25, 2, 3.5, 4, 7.75])
        m.record_service(served_on=china_day(at), hours=hours, kind="志愿服务", at=at)
        return [self._write(m)]

    def _points(self) -> list[Write]:
        m = self._active_member()
        if m is None:
            return []
        delta = self.rng.randint(-10, 20) or 5
        if delta < 0 and m.points < -delta:
            delta = -delta
        m.adjust_points(delta, "积分调整", self._tick())
        return [self._write(m)]

    def _transfer(self) -> list[Write]:
        m = self._active_member()
        if m is None or len(self.communities) < 2:
            return []
        to = self._pick(self.communities, lambda c: c.id != m.community_id)
        if to is None:
            return []
        m.transfer(to_community=self._ref(to), at=self._tick())
        return [self._write(m)]

    def _leave(self) -> list[Write]:
        m = self._pick(self.members, lambda m: m.status != "erased")
        if m is None:
            return []
        if m.status == "active" and self.rng.random() < 0.7:
            m.deregister("调离", self._tick())
        else:
            m.erase(self._tick(), "本人申请")
        return [self._write(m)]

    # issues
    def _issue(self, *statuses: str) -> Issue | None:
        i: Issue | None = self._pick(self.issues, lambda i: i.status in statuses)
        return i

    def _report(self) -> list[Write]:
        where = self.rng.random()
        if where < 0.6:
            node = self._community()
        elif where < 0.85 and self.grids:
            node = self.rng.choice(self.grids)
        elif where < 0.97:
            node = self.rng.choice(self.streets)
        else:
            assert self.root is not None
            node = self.root
        at = self._tick()
        due = at + timedelta(hours=self.rng.randint(24, 240)) if self.rng.random() < 0.5 else None
        issue = Issue.report(
            issue_id=self._uuid(),
            node=self._ref(node),
            title="路灯不亮",
            category="市政",
            source=self.rng.choice(SOURCES),
            due_at=due,
            at=at,
        )
        self.issues.append(issue)
        return [self._write(issue)]

    def _deadline(self, at: datetime) -> datetime:
        return at + timedelta(hours=self.rng.randint(6, 120))

    def _assign(self) -> list[Write]:
        i = self._issue("reported")
        if i is None:
            return []
        at = self._tick()
        i.assign(assignee=self._ref(self._unit()), due_at=self._deadline(at), at=at)
        return [self._write(i)]

    def _return(self) -> list[Write]:
        i = self._issue("assigned")
        if i is None:
            return []
        i.return_("不属于本单位职责", self._tick())
        return [self._write(i)]

    def _accept(self) -> list[Write]:
        i = self._issue("assigned")
        if i is None:
            return []
        i.accept(self._tick())
        return [self._write(i)]

    def _extend(self) -> list[Write]:
        at = self._tick()
        i: Issue | None = self._pick(
            self.issues,
            lambda i: (
                i.status in ("assigned", "accepted") and i.due_at is not None and at < i.due_at
            ),
        )
        if i is None:
            return []
        assert i.due_at is not None
        i.extend(due_at=i.due_at + timedelta(hours=48), reason="需协调", at=at)
        return [self._write(i)]

    def _resolve(self) -> list[Write]:
        i = self._issue("accepted")
        if i is None:
            return []
        i.resolve("已修复", self._tick())
        return [self._write(i)]

    def _evaluate(self) -> list[Write]:
        i: Issue | None = self._pick(
            self.issues, lambda i: i.status == "resolved" and i.evaluation is None
        )
        if i is None:
            return []
        i.evaluate(
            satisfaction=self.rng.choice(SATISFACTIONS),
            resolved=self.rng.random() < 0.8,
            at=self._tick(),
        )
        return [self._write(i)]

    def _close(self) -> list[Write]:
        i: Issue | None = self._pick(
            self.issues,
            lambda i: (
                i.status == "resolved"
                and (i.evaluation is not None or i.source in ("grid", "survey", "inspection"))
            ),
        )
        if i is None:
            return []
        i.close(self._tick(), is_admin=True, override_reason="管理员核定")
        return [self._write(i)]

    def _reopen(self) -> list[Write]:
        i = self._issue("resolved")
        if i is None:
            return []
        i.reopen("居民不满意", self._tick())
        return [self._write(i)]

    def _issue_overdue(self) -> list[Write]:
        at = self._tick()
        i: Issue | None = self._pick(self.issues, lambda i: i.is_past_due(at))
        if i is None:
            return []
        i.mark_overdue(at)
        return [self._write(i)]

    # 五单 service orders (a member's hours and points are a second write, as the API does)
    def _order(self, *statuses: str) -> ServiceOrder | None:
        o: ServiceOrder | None = self._pick(self.orders, lambda o: o.status in statuses)
        return o

    def _request_service(self) -> list[Write]:
        order = ServiceOrder.request(
            order_id=self._uuid(),
            community=self._ref(self._community()),
            title="上门理发",
            description="独居老人",
            at=self._tick(),
        )
        self.orders.append(order)
        return [self._write(order)]

    def _dispatch_service(self) -> list[Write]:
        o = self._order("requested", "dispatched")
        if o is None:
            return []
        member = self._active_member() if self.rng.random() < 0.6 else None
        accept_within = timedelta(hours=self.rng.randint(1, 48))
        if member is not None:
            o.dispatch(member_id=member.id, accept_within=accept_within, at=self._tick())
        else:
            o.dispatch(unit=self._ref(self._unit()), accept_within=accept_within, at=self._tick())
        return [self._write(o)]

    def _accept_service(self) -> list[Write]:
        o = self._order("dispatched")
        if o is None:
            return []
        o.accept(self._tick())
        return [self._write(o)]

    def _order_member(self, o: ServiceOrder) -> Member | None:
        m = self.member_by_id.get(o.member_id) if o.member_id is not None else None
        return m if m is not None and m.status == "active" else None

    def _complete_service(self) -> list[Write]:
        o = self._order("accepted")
        if o is None:
            return []
        at = self._tick()
        hours = self.rng.choice([None, 0.5, 1, 2.25])
        o.complete(summary="已完成", hours=hours, at=at)
        writes = [self._write(o)]
        credited = o.hours_for_member()
        member = self._order_member(o)
        if credited is not None and member is not None:
            member.record_service(served_on=china_day(at), hours=credited, kind="五单", at=at)
            writes.append(self._write(member))
        return writes

    def _evaluate_service(self) -> list[Write]:
        o = self._order("completed")
        if o is None:
            return []
        at = self._tick()
        member = self._order_member(o)
        o.evaluate(
            rating=self.rng.randint(1, 5),
            points_rule={5: 10, 4: 3},
            member_active=member is not None,
            at=at,
        )
        writes = [self._write(o)]
        if member is not None and o.points_awarded:
            member.award_points(o.points_awarded, "五单评单", at)
            writes.append(self._write(member))
        return writes

    def _cancel_service(self) -> list[Write]:
        o = self._order("requested", "dispatched", "accepted")
        if o is None:
            return []
        o.cancel("居民取消", self._tick())
        return [self._write(o)]

    def _service_overdue(self) -> list[Write]:
        at = self._tick()
        o: ServiceOrder | None = self._pick(self.orders, lambda o: o.is_past_accept_deadline(at))
        if o is None:
            return []
        o.mark_overdue(at)
        return [self._write(o)]

    # 扫楼 household surveys (a flagged visit may raise an issue: a second write)
    def _survey(self) -> list[Write]:
        if self.grids and self.rng.random() < 0.7:
            node = self.rng.choice(self.grids)
            assert node.parent_id is not None
            community = self.nodes[node.parent_id]
        else:
            node = community = self._community()
        at = self._tick()
        flags = self.rng.sample(FLAGS, self.rng.choice([0, 0, 1, 1, 2]))
        issue_id = self._uuid() if flags and self.rng.random() < 0.5 else None
        survey = Survey.visit(
            survey_id=self._uuid(),
            node=self._ref(node),
            community=self._ref(community),
            building=f"{self.rng.randint(1, 9)}幢",
            room=f"{self.rng.randint(101, 120)}",
            visited_on=china_day(at),
            flags=flags,
            at=at,
        )
        writes = [self._write(survey)]
        if issue_id is not None:
            issue = Issue.report(
                issue_id=issue_id,
                node=self._ref(node),
                title=survey.issue_title(),
                category="群租房",
                source="survey",
                survey_id=survey.id,
                at=at,
            )
            self.issues.append(issue)
            writes.append(self._write(issue))
        return writes

    # findings
    def _finding(self, *statuses: str) -> Finding | None:
        f: Finding | None = self._pick(self.findings, lambda f: f.status in statuses)
        return f

    def _record_finding(self) -> list[Write]:
        scope = self._community() if self.rng.random() < 0.7 else self.rng.choice(self.streets)
        at = self._tick()
        finding = Finding.record(
            finding_id=self._uuid(),
            scope=self._ref(scope),
            source="县委第一巡察组",
            description="台账不规范",
            responsible_unit=self._ref(self._unit()),
            due_on=china_day(at) + timedelta(days=self.rng.randint(-2, 12)),
            measures=["建立台账"],
            category=self.rng.choice(CATEGORIES),
            at=at,
        )
        self.findings.append(finding)
        return [self._write(finding)]

    def _finding_progress(self) -> list[Write]:
        f = self._finding("assigned", "in_progress")
        if f is None:
            return []
        f.report_progress(note="正在整改", at=self._tick())
        return [self._write(f)]

    def _complete(self) -> list[Write]:
        f = self._finding("assigned", "in_progress")
        if f is None:
            return []
        f.complete("整改完成", self._tick())
        return [self._write(f)]

    def _verify(self) -> list[Write]:
        f = self._finding("completed")
        if f is None:
            return []
        accepted = self.rng.random() < 0.75
        f.verify(accepted=accepted, comment=None if accepted else "证据不足", at=self._tick())
        return [self._write(f)]

    def _reopen_finding(self) -> list[Write]:
        f = self._finding("verified")
        if f is None:
            return []
        f.reopen("回头看发现反弹", self._tick())
        return [self._write(f)]

    def _finding_overdue(self) -> list[Write]:
        at = self._tick()
        f: Finding | None = self._pick(self.findings, lambda f: f.is_past_due(at))
        if f is None:
            return []
        f.mark_overdue(at)
        return [self._write(f)]

    # nodes
    def _rename(self) -> list[Write]:
        node = self.rng.choice(self.communities + self.streets)
        self._serial += 1
        node.rename(f"{node.name.split('·')[0]}·{self._serial}", self._tick())
        return [self._write(node, ("rename", node.id))]

    def _move(self) -> list[Write]:
        if self.rng.random() < 0.5 and self.grids:
            node = self.rng.choice(self.grids)
            parents = [c for c in self.communities if c.id != node.parent_id]
            new_code = None
        else:
            node = self._community()
            parents = [s for s in self.streets if s.id != node.parent_id]
            new_code = None
        if not parents:
            return []
        parent = self.rng.choice(parents)
        if node.kind.value == "community" and self.rng.random() < 0.5:
            for n in range(101, 200):
                candidate = f"{parent.code[:9]}{n:03d}"
                if candidate not in self.codes:
                    new_code = candidate
                    break
        old_parent = node.parent_id
        node.move(
            new_parent=parent,
            new_code=new_code,
            reason="区划调整",
            is_ancestor_of_new_parent=False,
            at=self._tick(),
        )
        if new_code:
            self.codes.add(new_code)
        return [self._write(node, ("move", node.id, old_parent, parent.id))]
