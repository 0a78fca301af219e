-- Backups (restic snapshots) of databases and volumes, the restores made from them, and each
-- tenant's restic repository password.
CREATE TABLE backup_repos (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    target      TEXT NOT NULL CHECK (target IN ('local', 's3')),
    password    BLOB NOT NULL,              -- AES-256-GCM, per-tenant key, aad binds tenant and target
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, target)
);

CREATE TABLE backups (
    id              TEXT PRIMARY KEY,       -- bk_<hex>; also the restic snapshot tag
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    kind            TEXT NOT NULL CHECK (kind IN ('database', 'volume')),
    source_name     TEXT NOT NULL,
    source_id       TEXT,                   -- the database id; NULL for volumes
    engine          TEXT,
    target          TEXT NOT NULL CHECK (target IN ('local', 's3')),
    status          TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    snapshot_id     TEXT,
    size_bytes      INTEGER,
    error           TEXT,
    owner           TEXT,                   -- host:pid:start-time of the process doing the work
    paused_services TEXT NOT NULL DEFAULT '[]', -- JSON ids of services stopped for a consistent copy
    meta            TEXT NOT NULL DEFAULT '{}', -- JSON: what a restore into a new resource needs
    created_at      TEXT NOT NULL,
    finished_at     TEXT
);
CREATE INDEX backups_tenant ON backups(tenant_id, created_at);
CREATE INDEX backups_running ON backups(status);

CREATE TABLE restores (
    id              TEXT PRIMARY KEY,       -- rs_<hex>
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    backup_id       TEXT NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
    into_name       TEXT NOT NULL,
    into_id         TEXT,                   -- the database id; NULL for volumes
    created_new     INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    error           TEXT,
    owner           TEXT,
    paused_services TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL,
    finished_at     TEXT
);
CREATE INDEX restores_backup ON restores(backup_id, created_at);
CREATE INDEX restores_running ON restores(status);
