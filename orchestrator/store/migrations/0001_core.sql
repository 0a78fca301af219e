-- Tenants, keys, services, encrypted env, audit log, REST idempotency.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    quotas      TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    scope         TEXT NOT NULL CHECK (scope IN ('full', 'read')),
    secret_hash   BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE services (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    spec          TEXT NOT NULL,            -- JSON: image, port, command, limits, volumes, ...
    desired_state TEXT NOT NULL CHECK (desired_state IN ('running', 'stopped', 'deleted')),
    status        TEXT NOT NULL,
    last_error    TEXT,
    restarts      INTEGER NOT NULL DEFAULT 0,
    crash_times   TEXT NOT NULL DEFAULT '[]', -- JSON list of epoch seconds, for the circuit breaker
    breaker_open  INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE env_vars (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    service_id  TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,              -- AES-256-GCM, per-tenant key, aad binds service and key
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (service_id, key)
);
CREATE INDEX env_vars_tenant ON env_vars(tenant_id);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,              -- ok | error code
    detail      TEXT
);
CREATE INDEX audit_log_tenant_ts ON audit_log(tenant_id, ts);

CREATE TABLE idempotency (
    tenant_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    action      TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
