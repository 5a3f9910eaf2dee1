-- What a step call logged (its log lines, stdout and stderr), kept with its
-- timeline entry as a JSON array of {level, message}, capped per call with
-- the oldest lines kept; NULL when it logged nothing.
ALTER TABLE step_events ADD COLUMN logs TEXT;
