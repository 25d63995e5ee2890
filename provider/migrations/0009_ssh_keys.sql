-- perigee control plane schema, version 9: users' SSH public keys (uploaded by
-- `perigee config-ssh`), which workspace agents' SSH servers accept.
CREATE TABLE ssh_keys (
    user_id     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, fingerprint)
);
