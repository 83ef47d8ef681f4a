-- An issue raised from a household survey (扫楼, source 'survey') names the visit it came
-- from (IssueReported.survey_id); NULL for every other issue and for issues projected before
-- this migration (rebuild the "issues" projection to fill it for those).
ALTER TABLE rm_issues ADD COLUMN survey_id uuid;
