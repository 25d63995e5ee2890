-- perigee control plane schema, version 5: provider settings, cordon, and the invariants'
-- guards.

-- Features and Kubernetes settings as one JSON object (see ProviderSettings).
ALTER TABLE providers ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
-- Cordoned: no new workspaces; NULL when not cordoned.
ALTER TABLE providers ADD COLUMN cordon_reason TEXT;
ALTER TABLE providers ADD COLUMN cordoned_at INTEGER;

-- Exactly one built-in and at most one default provider, whatever the replicas do.
CREATE UNIQUE INDEX providers_one_built_in ON providers (built_in) WHERE built_in = 1;
CREATE UNIQUE INDEX providers_one_default ON providers (is_default) WHERE is_default = 1;

-- Named rows that transactions update first to serialise a read-check-write (db::lock).
CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    n    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO locks (name, n) VALUES ('providers', 0);
INSERT INTO locks (name, n) VALUES ('keys', 0);

-- The public key an agent pins for end-to-end encrypted tunnels (base64 X25519), reported
-- when it authenticates.
ALTER TABLE workspaces ADD COLUMN agent_public_key TEXT;
