"""The one query builder of the read endpoints: WHERE clauses with numbered, typed parameters.

Reads are plain SQL on the ``rm_*`` tables (row-level security applies underneath); a list
endpoint adds one clause per filter, the subtree it reads, and a keyset cursor. Values are
always parameters (``$n::type``), never interpolated text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.paths import subtree_bounds


class Where:
    """WHERE clauses and their arguments; ``Where(now)`` makes ``$1`` the read time."""

    def __init__(self, *args: Any) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = list(args)

    def arg(self, value: Any, cast: str) -> str:
        """A parameter placeholder for ``value`` (``$n::cast``)."""
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def equals(self, column: str, value: Any, cast: str) -> None:
        """``column = value``, when a filter was given (``None``: no clause)."""
        if value is not None:
            self.add(f"{column} = {self.arg(value, cast)}")

    def subtree(self, path: str) -> tuple[str, str]:
        """Placeholders for the path range of ``path``'s subtree (``infra.paths``)."""
        lo, hi = subtree_bounds(path)
        return self.arg(lo, "text"), self.arg(hi, "text")

    def path_in_subtree(self, column: str, path: str) -> str:
        """The clause ``column`` (a materialised path) lies in ``path``'s subtree."""
        lo, hi = self.subtree(path)
        return f"({column} >= {lo} AND {column} < {hi})"

    def recorded_in_subtree(self, alias: str, path: str, *, parties: bool = False) -> None:
        """Rows of ``alias`` (with ``node_id``, ``id``, ``root_id``) recorded at a node of
        ``path``'s subtree; with ``parties`` also the streams a node of the subtree takes part
        in (``stream_parties``: what a unit principal sees of work that names it)."""
        lo, hi = self.subtree(path)
        nodes = f"SELECT id FROM nodes WHERE path >= {lo} AND path < {hi}"
        clause = f"{alias}.node_id IN ({nodes})"
        if parties:
            clause = (
                f"({clause} OR {alias}.id IN (SELECT p.stream_id FROM stream_parties p"
                f" WHERE p.root_id = {alias}.root_id AND p.node_id IN ({nodes})))"
            )
        self.add(clause)

    def before(self, columns: Sequence[str], values: Sequence[Any], casts: Sequence[str]) -> None:
        """Keyset paging, newest first: rows whose ``columns`` sort before the cursor's key."""
        marks = ", ".join(self.arg(v, c) for v, c in zip(values, casts, strict=True))
        self.add(f"({', '.join(columns)}) < ({marks})")

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "true"

    def page(self, select: str, order_by: str, limit: int) -> str:
        """``select`` filtered by these clauses, ordered, and one row more than ``limit``
        (``services.api.paging.page_of`` reads the extra row as "there is more")."""
        return f"{select} WHERE {self.sql()} ORDER BY {order_by} LIMIT {self.arg(limit + 1, 'int')}"
