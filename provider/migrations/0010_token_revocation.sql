-- perigee control plane schema, version 10: API tokens are revoked by marking them, so the
-- control plane can tell edges which tokens' tickets to refuse until those tickets expire.
ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;
