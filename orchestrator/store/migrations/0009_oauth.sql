-- OAuth 2.1 for remote MCP clients: registered clients, pending consents, codes and tokens.
-- Secrets (pending ids, codes, tokens) are stored as SHA-256 hashes; a client's registration holds
-- its client secret, so it is stored encrypted. Times are epoch seconds.
CREATE TABLE oauth_clients (
    client_id   TEXT PRIMARY KEY,
    info        BLOB NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE oauth_pending (
    id_hash     BLOB PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    request     TEXT NOT NULL,              -- JSON: redirect_uri, code_challenge, state, scopes, resource
    expires_at  REAL NOT NULL
);

CREATE TABLE oauth_codes (
    code_hash   BLOB PRIMARY KEY,
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL REFERENCES api_keys(id),
    scope       TEXT NOT NULL CHECK (scope IN ('full', 'read')),
    request     TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    used_at     REAL
);
CREATE INDEX oauth_codes_key ON oauth_codes(key_id);

CREATE TABLE oauth_tokens (
    token_hash  BLOB PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL REFERENCES api_keys(id),
    scope       TEXT NOT NULL CHECK (scope IN ('full', 'read')),
    resource    TEXT,
    expires_at  REAL NOT NULL,
    rotated_at  REAL                        -- a refresh token already exchanged: using it again is a replay
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens(grant_id);
CREATE INDEX oauth_tokens_key ON oauth_tokens(key_id);
