-- Managed databases (Postgres, Redis) and the services they are linked to.
CREATE TABLE databases (
    id            TEXT PRIMARY KEY,         -- db_<hex>; also the id of its workload
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    engine        TEXT NOT NULL CHECK (engine IN ('postgres', 'redis')),
    spec          TEXT NOT NULL,            -- JSON: image, runtime, limits, volume, user and database names
    password      BLOB NOT NULL,            -- AES-256-GCM, per-tenant key, aad binds database and field
    desired_state TEXT NOT NULL CHECK (desired_state IN ('running', 'deleted')),
    status        TEXT NOT NULL,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE database_links (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    database_id  TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    service_id   TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    env_var      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (database_id, service_id),
    UNIQUE (service_id, env_var)
);
CREATE INDEX database_links_tenant ON database_links(tenant_id);
