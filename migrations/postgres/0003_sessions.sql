-- Browser sessions of the web UI. A session is bound to the API token it was opened with:
-- revoking the token ends the session. Only the SHA-256 of the session id is stored.
CREATE TABLE sessions (
    id_hash    TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_id   TEXT   NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
    csrf       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires_at);
