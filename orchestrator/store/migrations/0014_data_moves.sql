-- A database's data moving off a drained node (backups.moves): the row outlives a process that dies mid-move,
-- so the next reconcile pass gives the database its copy on that node back and starts it.
CREATE TABLE data_moves (
    database_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    node TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL
);
