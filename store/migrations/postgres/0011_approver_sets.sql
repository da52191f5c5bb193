-- Approver-set changes (issue 17): proposed from the registered keys, signed by the set agents
-- already pin, adopted once enough of it signed; agents take them with their orders.
CREATE TABLE approver_sets (
    tenant     TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    adopted_at BIGINT,
    PRIMARY KEY (tenant, version)
);
CREATE TABLE approver_set_approvals (
    tenant     TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    public_key TEXT    NOT NULL,
    sig        TEXT    NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (tenant, version, public_key)
);
