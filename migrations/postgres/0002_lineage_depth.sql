-- How deep a run stands in a chain of runs staged by runs (0: started by a
-- caller), in step with migrations/sqlite/0002_lineage_depth.sql.
ALTER TABLE runs ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
