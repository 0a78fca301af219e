-- The event log (orchestrator/events.py): what happened to a tenant's services, databases, builds, backups
-- and sandboxes. AUTOINCREMENT: an id is never reused, even after rows expire, so it serves as a cursor.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- service | database | build | backup | sandbox
    target_id   TEXT NOT NULL,
    target_name TEXT NOT NULL,
    type        TEXT NOT NULL,              -- deployed | crashed | breaker_opened | ... (models.EventType)
    cause       TEXT NOT NULL,
    exit_code   INTEGER
);
CREATE INDEX events_tenant_id ON events(tenant_id, id);
-- Rows expire (event_retention_days): the periodic pass deletes by time across tenants.
CREATE INDEX events_ts ON events(ts);
