"""The counters of "stats", in the column order of ``rm_stats_daily`` (migrations 0014, 0028)."""

from __future__ import annotations

from projections.daily_counters import DailyTable

NAME = "stats"

COUNTERS: tuple[str, ...] = (
    "pairings_active",
    "commitments",
    "commitments_fulfilled",
    "members_registered",
    "service_hours_centi",
    "points",
    "issues_reported",
    "issues_closed",
    "issues_overdue",
    "issues_on_time",
    "issues_evaluated",
    "issues_satisfied",
    "issues_resolved",
    "findings_total",
    "findings_verified",
    "findings_overdue",
    # 五单 and 扫楼 (migration 0028)
    "service_orders_requested",
    "service_orders_completed",
    "service_orders_evaluated",
    "service_rating_sum",
    "surveys_visited",
    "surveys_flagged",
    "surveys_group_rentals",
    "surveys_issues_raised",
)
N_COUNTERS = len(COUNTERS)
(
    PAIRINGS_ACTIVE,
    COMMITMENTS,
    FULFILLED,
    MEMBERS_REGISTERED,
    SERVICE_CENTI,
    POINTS,
    ISSUES_REPORTED,
    ISSUES_CLOSED,
    ISSUES_OVERDUE,
    ISSUES_ON_TIME,
    ISSUES_EVALUATED,
    ISSUES_SATISFIED,
    ISSUES_RESOLVED,
    FINDINGS_TOTAL,
    FINDINGS_VERIFIED,
    FINDINGS_OVERDUE,
    SERVICE_REQUESTED,
    SERVICE_COMPLETED,
    SERVICE_EVALUATED,
    SERVICE_RATING_SUM,
    SURVEYS_VISITED,
    SURVEYS_FLAGGED,
    SURVEYS_GROUP_RENTALS,
    SURVEYS_ISSUES_RAISED,
) = range(N_COUNTERS)

# The cumulative rows' statements (upsert, out-of-order carry-forward): projections/daily_counters.py.
DAYS = DailyTable("rm_stats_daily", COUNTERS)
