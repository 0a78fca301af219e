-- The engine's superuser password, apart from the tenant's (the tenant's user is no superuser).
-- NULL in records made before: their tenant user is the superuser, and `password` is its password.
ALTER TABLE databases ADD COLUMN admin_password BLOB;  -- AES-256-GCM, aad binds database and field
