"""The one list of projections. Adding a read model: a migration, a module, a line here, a test."""

from __future__ import annotations

from projections.base import Projection
from projections.nodes import NodesProjection


def all_projections() -> list[Projection]:
    return [NodesProjection()]
