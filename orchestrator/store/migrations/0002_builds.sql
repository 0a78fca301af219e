-- Builds from git: one row per build, its queue state, outcome and what to clean up if it dies.
CREATE TABLE builds (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    name             TEXT NOT NULL,              -- image name, usually the service it is for
    git_url          TEXT NOT NULL,
    ref              TEXT,                       -- as asked; NULL = the default branch
    dockerfile       TEXT,                       -- as asked; NULL = detect
    timeout_s        REAL NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    commit_sha       TEXT,
    recipe           TEXT,
    recipe_detail    TEXT,
    image            TEXT,                       -- the tag, once built
    image_digest     TEXT,
    image_size       INTEGER,
    port             INTEGER,
    error            TEXT,
    error_hint       TEXT,
    owner            TEXT NOT NULL,              -- host:pid:start of the process running it
    heartbeat_at     TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    leftovers        TEXT NOT NULL DEFAULT '[]', -- JSON: image layers made so far, removed unless it succeeds
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
CREATE INDEX builds_tenant_created ON builds(tenant_id, created_at);
CREATE INDEX builds_status ON builds(status);
