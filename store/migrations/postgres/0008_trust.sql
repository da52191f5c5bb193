-- Roles: every token carries one. Tokens made before roles existed could do everything their tenant
-- could, so they become admins (nothing that worked stops working); new tokens name their role.
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';

-- The audit chain: append-only, each row's hash covers its fields and the previous row's hash, so an
-- edited, deleted or reordered row breaks the chain (`cordon audit verify`). audit_head holds the
-- last (seq, hash), written in the same transaction, so losing the newest rows shows too.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    time      BIGINT NOT NULL,
    tenant    TEXT   NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    detail    TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT   NOT NULL
);
CREATE FUNCTION cordon_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION cordon_audit_append_only();

-- The newest dead letters per tenant (the full record is the JetStream stream CORDON_DLQ), for
-- GET /api/v1/dead-letters: what was refused, why, and which agent sent it.
CREATE TABLE dead_letters (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT   NOT NULL UNIQUE,
    tenant     TEXT   NOT NULL,
    agent_id   TEXT   NOT NULL,
    time       BIGINT NOT NULL,
    stream_seq BIGINT NOT NULL,
    line       BIGINT,
    reason     TEXT   NOT NULL,
    detail     TEXT   NOT NULL,
    raw        TEXT   NOT NULL,
    raw_bytes  BIGINT NOT NULL
);
CREATE INDEX dead_letters_tenant ON dead_letters (tenant, seq);
