-- How far ingest's analysers (the entity graph, correlations, login counts, the alerts they raise) have
-- read the lake: the highest lake file id whose rows were analysed with every alert recorded. Ingest acks
-- a batch once it is committed and analyses it after; after a crash, the files above this mark are
-- analysed again at start (each analyser ignores events it has counted, and alerts are idempotent per
-- evidence event).
CREATE TABLE analysed (
    name       TEXT   PRIMARY KEY,
    file_id    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
