-- Postgres leaves room in the runs table's pages for updates in place
-- (its migration 6); SQLite rewrites a row where it stands and has no such
-- setting. Nothing changes here: the number keeps both schemas in step.
SELECT 1;
