-- SSH keys of sandboxes (the SSH gateway's `<sandbox>.<tenant>` logins): a JSON list of public key lines.
ALTER TABLE sandboxes ADD COLUMN ssh_public_keys TEXT NOT NULL DEFAULT '[]';
