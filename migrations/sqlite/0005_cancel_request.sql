-- An operator's request to cancel a run that is inside a step: the worker
-- holding its lease cancels it at the next step boundary (or at once when
-- the step fails and would be retried). NULL when nobody asked.
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
