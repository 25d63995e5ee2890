-- perigee control plane schema, version 12: browser sign-in. Users may have a password
-- (PBKDF2-HMAC-SHA256, `pbkdf2-sha256$ITERATIONS$SALT$HASH`); one-time codes carry a
-- sign-in to one dev URL host (stored hashed, short-lived, redeemed once).
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE TABLE devurl_codes (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    host       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
