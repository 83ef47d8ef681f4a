"""The Node aggregate: one place in the tenant hierarchy (county, street, community, grid, unit).

Decisions (where a node may sit, whether codes collide) need the directory of other nodes;
the application looks those up and passes the facts in, so this module stays pure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.errors import IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind, check_placement, parse_kind, validate_code


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidValue("name", "must be 1-200 characters")
    return name


class Node(CivicAggregate):
    STREAM_TYPE = "node"

    class Registered(CivicAggregate.Created):
        TOPIC = "NodeRegistered.v1"
        code: str
        name: str
        kind: str
        parent_id: UUID | None
        root_id: UUID

        def apply(self, node: Any) -> None:
            pass

    class Renamed(CivicAggregate.Event):
        TOPIC = "NodeRenamed.v1"
        name: str

        def apply(self, node: Any) -> None:
            node.name = self.name

    class Moved(CivicAggregate.Event):
        TOPIC = "NodeMoved.v1"
        old_parent_id: UUID
        new_parent_id: UUID
        old_code: str
        new_code: str
        reason: str

        def apply(self, node: Any) -> None:
            node.parent_id = self.new_parent_id
            if self.new_code != node.code:
                node.former_codes = (*node.former_codes, node.code)
                node.code = self.new_code

    class Closed(CivicAggregate.Event):
        TOPIC = "NodeClosed.v1"
        reason: str

        def apply(self, node: Any) -> None:
            node.closed = True

    def __init__(
        self, code: str, name: str, kind: str, parent_id: UUID | None, root_id: UUID
    ) -> None:
        self.code = code
        self.name = name
        self.kind = NodeKind(kind)
        self.parent_id = parent_id
        self.root_id = root_id
        self.former_codes: tuple[str, ...] = ()
        self.closed = False

    @property
    def owner_node_id(self) -> UUID:
        return self.id

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        *,
        node_id: UUID,
        code: str,
        name: str,
        kind: str,
        parent: Node | None,
        at: datetime,
    ) -> Node:
        node_kind = parse_kind(kind)
        validate_code(code, node_kind)
        check_placement(parent.kind if parent else None, node_kind)
        if parent is not None and parent.closed:
            raise IllegalTransition("the parent node is closed", current_state="closed")
        return cls._create(
            cls.Registered,
            id=node_id,
            timestamp=at,
            code=code,
            name=_clean_name(name),
            kind=node_kind.value,
            parent_id=parent.id if parent else None,
            root_id=parent.root_id if parent else node_id,
        )

    def rename(self, name: str, at: datetime) -> None:
        self._refuse_if_closed()
        name = _clean_name(name)
        if name != self.name:
            self._record(self.Renamed, at, name=name)

    def move(
        self,
        *,
        new_parent: Node,
        new_code: str | None,
        reason: str,
        is_ancestor_of_new_parent: bool,
        at: datetime,
    ) -> None:
        """Re-parent under ``new_parent`` (same root tenant), optionally reissuing the code."""
        self._refuse_if_closed()
        if self.parent_id is None:
            raise IllegalTransition("a root tenant cannot be moved", current_state="root")
        if not reason.strip():
            raise InvalidValue("reason", "a move must say why (e.g. the reorganisation order)")
        if new_parent.root_id != self.root_id:
            raise InvalidValue("new_parent_code", "a node can only move within its root tenant")
        if new_parent.id == self.id or is_ancestor_of_new_parent:
            raise InvalidValue("new_parent_code", "a node cannot move under its own subtree")
        if new_parent.closed:
            raise IllegalTransition("the new parent is closed", current_state="closed")
        check_placement(new_parent.kind, self.kind)
        code = validate_code(new_code, self.kind, "new_code") if new_code else self.code
        if new_parent.id == self.parent_id and code == self.code:
            raise IllegalTransition(
                "the node already sits there with that code", current_state="unchanged"
            )
        assert self.parent_id is not None
        self._record(
            self.Moved,
            at,
            old_parent_id=self.parent_id,
            new_parent_id=new_parent.id,
            old_code=self.code,
            new_code=code,
            reason=reason.strip(),
        )

    def close(self, reason: str, at: datetime) -> None:
        self._refuse_if_closed()
        self._record(self.Closed, at, reason=reason.strip())

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise IllegalTransition("the node is closed", current_state="closed")
