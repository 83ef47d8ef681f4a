-- No planner statistics for the counter columns of the cumulative daily tables.
--
-- Every read of rm_stats_daily and rm_unit_stats_daily selects rows by key (root_id,
-- node_id, day): the counters are only ever returned, never filtered, joined or sorted on,
-- so their statistics inform no plan. Gathering them was most of an ANALYZE of these
-- tables (24 bigint columns sorted for histograms and common values: ~85 of ~100 ms for
-- 22k rows), which a projection rebuild runs on its fresh tables before readers see them,
-- and autovacuum repeats as the tables grow. The key columns keep the default target.
-- A rebuild's scratch copies take each column's target from the live table.

ALTER TABLE rm_stats_daily
    ALTER COLUMN pairings_active SET STATISTICS 0,
    ALTER COLUMN commitments SET STATISTICS 0,
    ALTER COLUMN commitments_fulfilled SET STATISTICS 0,
    ALTER COLUMN members_registered SET STATISTICS 0,
    ALTER COLUMN service_hours_centi SET STATISTICS 0,
    ALTER COLUMN points SET STATISTICS 0,
    ALTER COLUMN issues_reported SET STATISTICS 0,
    ALTER COLUMN issues_closed SET STATISTICS 0,
    ALTER COLUMN issues_overdue SET STATISTICS 0,
    ALTER COLUMN issues_on_time SET STATISTICS 0,
    ALTER COLUMN issues_evaluated SET STATISTICS 0,
    ALTER COLUMN issues_satisfied SET STATISTICS 0,
    ALTER COLUMN issues_resolved SET STATISTICS 0,
    ALTER COLUMN findings_total SET STATISTICS 0,
    ALTER COLUMN findings_verified SET STATISTICS 0,
    ALTER COLUMN findings_overdue SET STATISTICS 0,
    ALTER COLUMN service_orders_requested SET STATISTICS 0,
    ALTER COLUMN service_orders_completed SET STATISTICS 0,
    ALTER COLUMN service_orders_evaluated SET STATISTICS 0,
    ALTER COLUMN service_rating_sum SET STATISTICS 0,
    ALTER COLUMN surveys_visited SET STATISTICS 0,
    ALTER COLUMN surveys_flagged SET STATISTICS 0,
    ALTER COLUMN surveys_group_rentals SET STATISTICS 0,
    ALTER COLUMN surveys_issues_raised SET STATISTICS 0;

ALTER TABLE rm_unit_stats_daily
    ALTER COLUMN pairings_active SET STATISTICS 0,
    ALTER COLUMN commitments SET STATISTICS 0,
    ALTER COLUMN commitments_fulfilled SET STATISTICS 0,
    ALTER COLUMN members_registered SET STATISTICS 0,
    ALTER COLUMN service_hours_centi SET STATISTICS 0,
    ALTER COLUMN points SET STATISTICS 0,
    ALTER COLUMN issues_assigned SET STATISTICS 0,
    ALTER COLUMN issues_open SET STATISTICS 0,
    ALTER COLUMN issues_closed SET STATISTICS 0,
    ALTER COLUMN issues_overdue SET STATISTICS 0,
    ALTER COLUMN issues_returned SET STATISTICS 0,
    ALTER COLUMN issues_on_time SET STATISTICS 0,
    ALTER COLUMN issues_evaluated SET STATISTICS 0,
    ALTER COLUMN issues_satisfied SET STATISTICS 0,
    ALTER COLUMN issues_resolved SET STATISTICS 0,
    ALTER COLUMN findings_total SET STATISTICS 0,
    ALTER COLUMN findings_verified SET STATISTICS 0,
    ALTER COLUMN findings_overdue SET STATISTICS 0;
