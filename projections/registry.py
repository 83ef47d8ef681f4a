"""The one list of projections. Adding a read model: a migration, a module, a line here, a test."""

from __future__ import annotations

from projections.base import Projection
from projections.findings import FindingsProjection
from projections.issues import IssuesProjection
from projections.members import MembersProjection
from projections.nodes import NodesProjection
from projections.pairings import PairingsProjection
from projections.service_orders import ServiceOrdersProjection
from projections.stats import StatsProjection
from projections.surveys import SurveysProjection
from projections.unit_stats import UnitStatsProjection


def all_projections() -> list[Projection]:
    return [
        NodesProjection(),
        FindingsProjection(),
        IssuesProjection(),
        PairingsProjection(),
        MembersProjection(),
        ServiceOrdersProjection(),
        SurveysProjection(),
        StatsProjection(),
        UnitStatsProjection(),
    ]
