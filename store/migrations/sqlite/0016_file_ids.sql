-- Where lake file ids are handed out. Commits and merges take their ids here (in a short transaction of
-- their own, before their files are written), so processes sharing the catalog never take the same id
-- (ADR 0009); every insert into lake_files also lifts it past the inserted id. Ids are never reused: it
-- starts past every live and retired id.
CREATE TABLE file_ids (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    next_id BIGINT  NOT NULL
);
INSERT INTO file_ids (one, next_id)
SELECT 1, COALESCE(MAX(id), 0) + 1 FROM (SELECT id FROM lake_files UNION ALL SELECT id FROM retired_files) ids;
