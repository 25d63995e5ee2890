-- perigee control plane schema, version 11: dev URLs the owners shared (a port URL, or a
-- named one) and their access level. A port with no row is private to its owner.
CREATE TABLE dev_urls (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    port         INTEGER NOT NULL,
    https        INTEGER NOT NULL,
    name         TEXT,
    access       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX dev_urls_port ON dev_urls (workspace_id, port);
CREATE UNIQUE INDEX dev_urls_name ON dev_urls (owner_id, name);
