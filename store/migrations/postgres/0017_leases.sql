-- Work that one process among those sharing the catalog does (ADR 0009): the lease `name` is held by
-- `holder` until `expires_at` (microseconds), renewed while it works, taken over once it lapses.
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
