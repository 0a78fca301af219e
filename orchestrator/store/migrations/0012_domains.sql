-- Custom domains: one row per domain, so a domain belongs to one tenant (and one service) at a time.
CREATE TABLE domains (
    domain       TEXT PRIMARY KEY,          -- lowercase ASCII, internationalised labels in punycode
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    service_id   TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    token        TEXT NOT NULL,             -- the value of the TXT record _agenthost-challenge.<domain>
    status       TEXT NOT NULL CHECK (status IN ('pending', 'verified')),
    created_at   TEXT NOT NULL,
    verified_at  TEXT
);
CREATE INDEX domains_tenant ON domains(tenant_id);
CREATE INDEX domains_service ON domains(service_id);
