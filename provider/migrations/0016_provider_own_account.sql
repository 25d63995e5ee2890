-- perigee control plane schema, version 16: what each provider's own deployment reports
-- about itself with its heartbeat: the service account it runs as (the built-in provider's
-- is the control plane's), which no workspace may be given; and whether it runs workspaces
-- without isolation (a local provisioner not run as root), so only admins may create there.
ALTER TABLE providers ADD COLUMN own_service_account TEXT;
ALTER TABLE providers ADD COLUMN admins_only INTEGER NOT NULL DEFAULT 0;
