-- rm_unit_stats_aggregates keeps, per issue, finding, pairing and member, the unit it counts
-- for; its policy shows a row to whoever's scope holds that unit. For an issue assigned
-- across streets that shows the issue's id to the unit's street, which may not see the issue.
-- Only the projector (the owner role) reads the table: the API answers unit figures from
-- rm_unit_stats_daily. So the runtime role loses the privilege it never needed.
REVOKE SELECT ON rm_unit_stats_aggregates FROM civic_app;
