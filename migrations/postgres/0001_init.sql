-- Registry core: users and tokens, workspaces and members, models, versions, status requests,
-- and the event outbox. Times are microseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username     TEXT    NOT NULL UNIQUE,
    server_admin BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   BIGINT  NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE workspaces (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT    COLLATE "C" NOT NULL UNIQUE,
    statuses   TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE memberships (
    workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         TEXT   NOT NULL CHECK (role IN ('admin', 'member')),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

CREATE TABLE models (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT    COLLATE "C" NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    CONSTRAINT models_workspace_name UNIQUE (workspace_id, name)
);

CREATE TABLE model_versions (
    id                    BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id              BIGINT  NOT NULL REFERENCES models(id),
    version               TEXT    NOT NULL,
    sort_key              TEXT    COLLATE "C" NOT NULL,
    tags                  TEXT    NOT NULL,
    status                TEXT,
    source_experiment_key TEXT,
    description           TEXT    NOT NULL DEFAULT '',
    created_by            TEXT    NOT NULL,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL,
    CONSTRAINT model_versions_model_version UNIQUE (model_id, version)
);
CREATE INDEX model_versions_order ON model_versions(model_id, sort_key, id);

CREATE TABLE status_requests (
    id            TEXT    COLLATE "C" PRIMARY KEY,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    version_id    BIGINT  NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    status        TEXT    NOT NULL,
    comment       TEXT,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    requested_by  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT
);
CREATE INDEX status_requests_version ON status_requests(version_id, id);
CREATE INDEX status_requests_workspace ON status_requests(workspace_id, state, id);

-- The outbox, read in commit order by `seq` (see store/events.rs for how PostgreSQL keeps
-- `seq` in commit order).
CREATE TABLE events (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    model_id      BIGINT  NOT NULL,
    event_trigger TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    occurred_at   BIGINT  NOT NULL
);
CREATE INDEX events_workspace ON events(workspace_id, seq);
