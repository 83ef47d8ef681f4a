"""The one list of projections. Adding a read model: a migration, a module, a line here, a test.

Every projection listed is checked when the list is built (the application's and a rebuild's
start-up): ``handles`` must name registered event types only (``projections.subscriptions``).
"""

from __future__ import annotations

from projections.base import Projection
from projections.findings import FindingsProjection
from projections.issues import IssuesProjection
from projections.members import MembersProjection
from projections.nodes import NodesProjection
from projections.pairings import PairingsProjection
from projections.service_orders import ServiceOrdersProjection
from projections.stats import StatsProjection
from projections.subscriptions import check_handles
from projections.surveys import SurveysProjection
from projections.unit_stats import UnitStatsProjection


def all_projections() -> list[Projection]:
    projections: list[Projection] = [
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
    for projection in projections:
        check_handles(projection)
    return projections
