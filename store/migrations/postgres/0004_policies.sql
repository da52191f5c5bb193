-- The per-ATT&CK-technique policy, versioned per tenant: every change is a new row with who and why.
CREATE TABLE policies (
    tenant TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    author TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, version)
);
