-- perigee control plane schema, version 4: remote workspace providers.
ALTER TABLE providers ADD COLUMN hostname TEXT;            -- URL the provider's edge serves
ALTER TABLE providers ADD COLUMN cluster_address TEXT;     -- Kubernetes API server URL
ALTER TABLE providers ADD COLUMN namespace TEXT;
ALTER TABLE providers ADD COLUMN token_hash TEXT;          -- REMOTE token, SHA-256 only
ALTER TABLE providers ADD COLUMN status_message TEXT;
ALTER TABLE providers ADD COLUMN last_heartbeat_at INTEGER;
ALTER TABLE providers ADD COLUMN heartbeat_secs INTEGER;
ALTER TABLE providers ADD COLUMN version TEXT;
CREATE UNIQUE INDEX providers_token_hash ON providers (token_hash);
