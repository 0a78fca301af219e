-- Idempotency-Key answers belong to the API key that sent them (not to its whole tenant), are reserved
-- before the call runs, never hold a secret, and expire. The old rows were a replay cache only: dropped.
DROP TABLE idempotency;
CREATE TABLE idempotency (
    tenant_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    key          TEXT NOT NULL,
    action       TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'done', 'secret')),
    body         TEXT,                      -- the answer when state is 'done'; never a secret
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key_id, key)
);
CREATE INDEX idempotency_expiry ON idempotency(expires_at);
