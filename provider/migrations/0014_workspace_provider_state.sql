-- perigee control plane schema, version 14: what a workspace's provider last reported about
-- it (`starting`, `running`, `stopped`, `failed`, `missing`) and why (an image that cannot
-- be pulled, a pod no node can take).
ALTER TABLE workspaces ADD COLUMN provider_state TEXT;
ALTER TABLE workspaces ADD COLUMN provider_message TEXT;
