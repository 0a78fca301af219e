-- Service revisions: one per deploy, update, env change and rollback, newest `number` highest per service.
CREATE TABLE service_revisions (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    service_id   TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    number       INTEGER NOT NULL,          -- 1, 2, ... per service, never reused
    created_at   TEXT NOT NULL,
    cause        TEXT NOT NULL,             -- deploy | update | set_env | unset_env | rollback of N | existing
    spec         TEXT NOT NULL,             -- JSON ServiceSpec as deployed (image reference, build_id, limits, ...)
    image_digest TEXT,                      -- what the reference named then, where the engine or the build says
    env          BLOB NOT NULL,             -- AES-256-GCM JSON {key: value}, per-tenant key, aad binds service and number
    env_keys     TEXT NOT NULL,             -- JSON list of the names, shown by list_revisions
    env_version  TEXT NOT NULL,             -- keyed hash of the env: equal envs, equal versions; reveals no value
    live         INTEGER NOT NULL DEFAULT 0, -- the revision the service record holds now (one per service)
    failed       INTEGER NOT NULL DEFAULT 0, -- the change did not come up and was undone
    PRIMARY KEY (service_id, number)
);
CREATE INDEX service_revisions_tenant ON service_revisions(tenant_id);
