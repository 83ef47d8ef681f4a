"""Projection "stats": indicators per node over its whole subtree, as cumulative daily figures.

What is counted (the README's "Roll-ups" section gives the formulas):

* pairings: ``active`` (signed, not terminated), ``commitments`` (promised by every pairing
  signed), ``fulfilled`` (CommitmentFulfilled);
* members: ``registered`` (active members: registered, not transferred away, deregistered or
  erased), ``service_hours`` and ``points`` (net of deductions) recorded while the member
  belonged to a community of the subtree (they stay where they were earned);
* issues: ``reported``, ``closed``, ``overdue`` (an IssueOverdue recorded for the deadline in
  force, not yet closed; a new assignment, a return or a reopen clears it, as in the
  domain), ``on_time`` (closed, and the final resolution came by the deadline in force),
  ``evaluated`` / ``satisfied`` / ``resolved`` (every callback counts);
* rectifications: ``total`` findings, ``verified`` (currently 销号), ``overdue``
  (RectificationOverdue recorded for the current due date, not verified).
* service_orders (五单): ``requested``, ``completed``, ``evaluated`` (ServiceRequested /
  ServiceCompleted / ServiceEvaluated) and the sum of the ratings (``average_rating`` when read);
* surveys (扫楼): household visits, flagged visits, visits flagged ``group_rental``, visits
  that raised an issue (all counted when HouseholdVisited is recorded).

Each aggregate counts under its owner node: a pairing and a member under their community
(a transfer moves the member), an issue under the node it was reported at, a finding under
its scope node, a service order under its community, a survey under the grid or community
it was recorded at.

Storage (migration 0014):

* ``rm_stats_daily``: for every node and every China-local day (UTC+8) on which its figures
  changed, the *cumulative* figures of its subtree at the end of that day. "Now" is a node's
  latest row, "as of D" its latest row on or before D, a daily series the rows of a range
  with the figures carried forward over days without a row: index look-ups whose cost does
  not grow with the number of events. An event adds its delta to its node and every
  ancestor, on its day and (rarely: only when business times arrive out of order) on the
  later rows of those nodes. Cumulative rows rather than per-day deltas summed by a window
  function when read: a read then touches one row per node however long the history, where
  a sum over delta rows grows with the number of days (a county's five years are ~1,800 rows
  per node); the price is paid only by backdated events, which must update later rows too.
* ``rm_stats_nodes`` / ``rm_stats_node_parents``: the tree as replayed by this projection
  (``tree``).
* ``rm_stats_aggregates``: per pairing, member, issue and finding the node it counts under,
  bit flags and the deadline in force, to turn the next event into deltas (``engine``).

Days are the China-local date of the event's ``occurred_at`` (business time; in live
operation it is within milliseconds of ``recorded_at``, and it is what deadlines and
as-of questions are about).

The modules, one job each: ``counters`` (the columns), ``engine`` (the batch engine shared
with "unit_stats"), ``rules`` (what each event counts), ``tree`` (the replayed tree),
``batch`` (load, roll up, write), ``projection`` (live and exclusive replay), ``reads``.
"""

from projections.stats.counters import ISSUES_REPORTED, NAME
from projections.stats.projection import StatsProjection
from projections.stats.reads import Figures, NodeFigures, daily_figures, node_figures, rate

__all__ = [
    "ISSUES_REPORTED",
    "NAME",
    "Figures",
    "NodeFigures",
    "StatsProjection",
    "daily_figures",
    "node_figures",
    "rate",
]
