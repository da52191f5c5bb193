-- Lake files taken out of the table by compaction or retention. Ids are never reused (the next file id
-- is above every live and retired id), and the index deletes a retired file's documents until
-- `index_purged` says it has committed that deletion.
CREATE TABLE retired_files (
    id           BIGINT PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    date         TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    rows         BIGINT  NOT NULL,
    reason       TEXT    NOT NULL,
    retired_at   BIGINT  NOT NULL,
    index_purged BIGINT  NOT NULL DEFAULT 0
);
