-- perigee control plane schema, version 3: organizations, members, provider allowlists.
-- Site roles live in users.role: admin | site-manager | member.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE org_members (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, user_id)
);

-- Which organizations may create workspaces on a provider.
CREATE TABLE provider_orgs (
    provider_id TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    PRIMARY KEY (provider_id, org_id)
);

-- The organization a workspace belongs to (set for older rows at start: the default org).
ALTER TABLE workspaces ADD COLUMN org_id TEXT REFERENCES orgs(id);
