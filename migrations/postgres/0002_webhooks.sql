-- Webhooks, their deliveries (the outbox fan-out: one row per webhook per event) and every
-- delivery attempt. Secrets are AES-256-GCM ciphertexts, never clear text.

CREATE TABLE webhooks (
    id                      TEXT    PRIMARY KEY,
    workspace_id            BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    model_id                BIGINT  NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    name                    TEXT    NOT NULL,
    url                     TEXT    NOT NULL,
    secret_enc              TEXT,
    triggers                TEXT    NOT NULL,
    headers                 TEXT    NOT NULL,
    github_actions          BIGINT  NOT NULL DEFAULT 0,
    enabled                 BIGINT  NOT NULL DEFAULT 1,
    disabled_reason         TEXT,
    signing_key_enc         TEXT    NOT NULL,
    old_signing_key_enc     TEXT,
    old_signing_expires_at  BIGINT,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL,
    CONSTRAINT webhooks_model_name UNIQUE (model_id, name)
);

CREATE TABLE deliveries (
    id               TEXT    COLLATE "C" PRIMARY KEY,
    webhook_id       TEXT    NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_seq        BIGINT  NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    event_id         TEXT    NOT NULL,
    event_trigger    TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempt_count    BIGINT  NOT NULL DEFAULT 0,
    schedule_offset  BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    locked_until     BIGINT,
    locked_by        TEXT,
    last_status_code BIGINT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_webhook ON deliveries(webhook_id, id);

CREATE TABLE delivery_attempts (
    id               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      TEXT    NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt          BIGINT  NOT NULL,
    started_at       BIGINT  NOT NULL,
    duration_ms      BIGINT  NOT NULL,
    status_code      BIGINT,
    error_class      TEXT,
    error            TEXT,
    request_url      TEXT    NOT NULL,
    request_headers  TEXT    NOT NULL,
    response_headers TEXT,
    response_body    TEXT,
    node             TEXT    NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id, id);
CREATE INDEX delivery_attempts_started ON delivery_attempts(started_at);

-- Server-wide values, such as a check that the secret key is the one the data was written with.
CREATE TABLE server_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
