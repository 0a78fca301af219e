-- Audit rows expire (audit_retention_days): the periodic pass deletes by time across tenants.
CREATE INDEX audit_log_ts ON audit_log(ts);
