-- perigee control plane schema, version 16: the service account each provider's own
-- deployment runs as (reported with its heartbeat; the built-in provider's is the control
-- plane's), which no workspace may be given.
ALTER TABLE providers ADD COLUMN own_service_account TEXT;
