-- Roll-ups of the 五单 loop and of household surveys (projection "stats", see
-- projections/stats.py): cumulative counters like the others, 0 for days before they
-- existed. Rebuild the projection to count events recorded before this migration.
ALTER TABLE rm_stats_daily
    ADD COLUMN service_orders_requested  bigint NOT NULL DEFAULT 0,
    ADD COLUMN service_orders_completed  bigint NOT NULL DEFAULT 0,
    ADD COLUMN service_orders_evaluated  bigint NOT NULL DEFAULT 0,
    ADD COLUMN service_rating_sum        bigint NOT NULL DEFAULT 0,
    ADD COLUMN surveys_visited           bigint NOT NULL DEFAULT 0,
    ADD COLUMN surveys_flagged           bigint NOT NULL DEFAULT 0,
    ADD COLUMN surveys_group_rentals     bigint NOT NULL DEFAULT 0,
    ADD COLUMN surveys_issues_raised     bigint NOT NULL DEFAULT 0;
