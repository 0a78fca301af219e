-- SSH host keys of services, sandboxes, and the warm pool of pre-started sandbox containers.
CREATE TABLE ssh_host_keys (
    service_id   TEXT PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    private_key  BLOB NOT NULL,             -- OpenSSH PEM, AES-256-GCM with the tenant key, aad binds service
    public_key   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,             -- SHA256:... as ssh-keygen -l prints it
    created_at   TEXT NOT NULL
);
CREATE INDEX ssh_host_keys_tenant ON ssh_host_keys(tenant_id);

CREATE TABLE sandboxes (
    id          TEXT PRIMARY KEY,           -- also the workload id
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    image       TEXT NOT NULL,
    network     TEXT NOT NULL CHECK (network IN ('none', 'egress')),
    memory_mb   INTEGER NOT NULL,
    cpus        REAL NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('creating', 'running', 'deleting')),
    from_pool   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX sandboxes_expires ON sandboxes(expires_at);

-- Platform-wide: pooled containers belong to no tenant until one claims them (and the row moves to sandboxes).
CREATE TABLE sandbox_pool (
    workload_id TEXT PRIMARY KEY,
    pool_key    TEXT NOT NULL,              -- image|network|memory_mb|cpus
    state       TEXT NOT NULL CHECK (state IN ('warming', 'ready')),
    created_at  TEXT NOT NULL
);
CREATE INDEX sandbox_pool_key ON sandbox_pool(pool_key, state, created_at);

-- When each pooled shape was last asked for: the pool warms on demand and drains when idle.
CREATE TABLE sandbox_pool_demand (
    pool_key        TEXT PRIMARY KEY,
    last_request_at TEXT NOT NULL
);
