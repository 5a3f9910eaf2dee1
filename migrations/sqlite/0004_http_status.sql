-- The HTTP status of a run's answer, as its steps set it (WIT 0.3.0
-- `set-http-status`): the last one set by a committed step, for a run that
-- finishes; the one its failing step set, for a run that fails for good.
ALTER TABLE runs ADD COLUMN http_status INTEGER;
ALTER TABLE runs ADD COLUMN failure_http_status INTEGER;
