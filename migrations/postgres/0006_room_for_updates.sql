-- A run's row is updated at every step. Pages left 30% free let Postgres
-- update it in place (a HOT update: no new index entries) while no indexed
-- column changes, which is every step but the last; full pages made every
-- update a new row version with an entry in each of the table's indexes.
-- Pages written from now on keep the room; older ones fill as runs finish.
ALTER TABLE runs SET (fillfactor = 70);
