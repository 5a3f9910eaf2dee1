-- How deep a run stands in a chain of runs staged by runs (0: started by a
-- caller). A step may not stage past its max_lineage_depth, so a run that
-- stages itself forever stops at a recorded error.
ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
