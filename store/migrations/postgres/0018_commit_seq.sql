-- The order commits became visible in (ADR 0009). Each ingest commit takes the next number here inside its
-- catalog transaction and writes it on its files; the counter row stays locked until that transaction ends,
-- so the numbers become visible in order, without gaps: a reader that sees number n has seen every
-- number below it, whichever process committed it. Ingest's analysers follow the lake by it (the
-- `analysed` mark is a commit number from here on). A merge's output carries none: its rows were
-- committed, and analysed, before. Files already in the catalog are numbered by their id, which is the
-- order one committer committed them in, so an `analysed` mark written before this step keeps its meaning.
ALTER TABLE lake_files ADD COLUMN commit_seq BIGINT;
UPDATE lake_files SET commit_seq = id;
CREATE INDEX lake_files_commit_seq ON lake_files (commit_seq);
CREATE TABLE commit_seqs (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    last_seq BIGINT  NOT NULL
);
INSERT INTO commit_seqs (one, last_seq)
SELECT 1, COALESCE(MAX(id), 0) FROM (SELECT id FROM lake_files UNION ALL SELECT id FROM retired_files) ids;
