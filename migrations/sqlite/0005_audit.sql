-- The audit log: who created, changed, tested, rotated, disabled or deleted a webhook, who
-- changed a status or decided a request, and when. Each row is written in the transaction of
-- the change it records. Targets are stored by name, not by foreign key, so the record
-- outlives the model, version or webhook it names. No secret is ever written here.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    at           BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    model        TEXT,
    version      TEXT,
    webhook_id   TEXT,
    webhook_name TEXT,
    details      TEXT    NOT NULL
);
-- Newest first per workspace, optionally for one model.
CREATE INDEX audit_log_workspace ON audit_log(workspace_id, id);
CREATE INDEX audit_log_workspace_model ON audit_log(workspace_id, model, id);
