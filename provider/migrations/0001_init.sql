-- perigee control plane schema, version 1.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    username    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,              -- admin | member
    created_at  INTEGER NOT NULL
);

-- API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE providers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    built_in    INTEGER NOT NULL DEFAULT 0,
    is_default  INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,              -- pending | ready | error
    created_at  INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    owner_id         TEXT NOT NULL REFERENCES users(id),
    provider_id      TEXT NOT NULL REFERENCES providers(id),
    status           TEXT NOT NULL,         -- running | stopped
    agent_token_hash TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    UNIQUE (owner_id, name)
);

-- Ed25519 keys that sign connection tickets (PKCS#8).
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    pkcs8       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
