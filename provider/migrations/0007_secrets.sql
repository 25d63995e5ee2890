-- perigee control plane schema, version 7: deployment secrets shared with the edges (the TURN
-- credential secret), generated on first use.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
