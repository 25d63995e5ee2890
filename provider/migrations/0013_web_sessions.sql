-- perigee control plane schema, version 13: browser sessions on the control plane (the
-- admin pages). The cookie's secret is stored hashed; each session has its own CSRF token
-- that every form carries.
CREATE TABLE web_sessions (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
