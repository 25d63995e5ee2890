-- perigee control plane schema, version 15: replicas of the control plane (several
-- `perigee server` processes on one PostgreSQL database) and which one holds each
-- workspace's agent link, so that a tunnel arriving at another replica is passed on.
CREATE TABLE replicas (
    name    TEXT PRIMARY KEY,
    url     TEXT NOT NULL,
    seen_at INTEGER NOT NULL
);
ALTER TABLE workspaces ADD COLUMN link_replica TEXT;
