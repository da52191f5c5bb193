-- Approver-set changes (issue 17): proposed from the registered keys, signed by the set agents
-- already pin, adopted once enough of it signed; agents take them with their orders.
CREATE TABLE approver_sets (
    tenant     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    adopted_at INTEGER,
    PRIMARY KEY (tenant, version)
);
CREATE TABLE approver_set_approvals (
    tenant     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    public_key TEXT    NOT NULL,
    sig        TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (tenant, version, public_key)
);
