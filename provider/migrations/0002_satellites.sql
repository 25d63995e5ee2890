-- perigee control plane schema, version 2: satellites, mesh keys, signing-key rotation.

-- Satellites: regional edges registered by token (only the SHA-256 of the token is stored).
CREATE TABLE satellites (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    region            TEXT NOT NULL,
    access_url        TEXT NOT NULL,
    devurl_host       TEXT,
    token_hash        TEXT NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    registered_at     INTEGER,            -- NULL until the satellite first registers
    last_heartbeat_at INTEGER,
    heartbeat_secs    INTEGER,            -- the interval the satellite announced
    version           TEXT,
    reported_error    TEXT,               -- problem the satellite reported in its last heartbeat
    mesh_rtt_ms       TEXT                -- JSON object: edge name -> round trip in ms
);

-- Keys that authenticate mesh links between edges. The newest unretired key is current;
-- retired keys stay accepted for a grace period.
CREATE TABLE mesh_keys (
    id          TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

ALTER TABLE signing_keys ADD COLUMN retired_at INTEGER;

-- The edge a workspace's agent links to (NULL: the primary edge). Set when the agent
-- authenticates at an edge.
ALTER TABLE workspaces ADD COLUMN home_edge TEXT;
