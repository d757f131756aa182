-- Names that look the same may not coexist, nor two versions of one model with the same semver
-- precedence (README → Names). Rows that already collide are kept, marked, and reported at
-- every start (`Store::name_clashes`); the unique indexes hold for every other row, so a new
-- row can never join a clash.
--
-- Users, workspaces and models have ASCII names (letters, digits, '.', '_', '-'), so LOWER()
-- in the "C" collation (whatever the database's locale) is their whole case fold. Of rows whose names fold alike, the oldest keeps the name; the
-- others get `name_clash = 1`, which a rename clears.
ALTER TABLE users ADD COLUMN name_clash BIGINT NOT NULL DEFAULT 0;
UPDATE users SET name_clash = 1 WHERE EXISTS (
    SELECT 1 FROM users o WHERE LOWER(o.username COLLATE "C") = LOWER(users.username COLLATE "C")
    AND o.id < users.id);
CREATE UNIQUE INDEX users_username_folded ON users (LOWER(username COLLATE "C"))
    WHERE name_clash = 0;

ALTER TABLE workspaces ADD COLUMN name_clash BIGINT NOT NULL DEFAULT 0;
UPDATE workspaces SET name_clash = 1 WHERE EXISTS (
    SELECT 1 FROM workspaces o
    WHERE LOWER(o.name COLLATE "C") = LOWER(workspaces.name COLLATE "C") AND o.id < workspaces.id);
CREATE UNIQUE INDEX workspaces_name_folded ON workspaces (LOWER(name COLLATE "C"))
    WHERE name_clash = 0;

ALTER TABLE models ADD COLUMN name_clash BIGINT NOT NULL DEFAULT 0;
UPDATE models SET name_clash = 1 WHERE EXISTS (
    SELECT 1 FROM models o WHERE o.workspace_id = models.workspace_id
    AND LOWER(o.name COLLATE "C") = LOWER(models.name COLLATE "C") AND o.id < models.id);
CREATE UNIQUE INDEX models_name_folded ON models (workspace_id, LOWER(name COLLATE "C"))
    WHERE name_clash = 0;

-- Equal sort keys are equal precedence (build metadata is not in the key). Start-up then
-- recomputes the keys of pre-release numbers too big for 64 bits (`Store::check_names`),
-- which keeps equal keys equal and distinct keys distinct.
ALTER TABLE model_versions ADD COLUMN precedence_clash BIGINT NOT NULL DEFAULT 0;
UPDATE model_versions SET precedence_clash = 1 WHERE EXISTS (
    SELECT 1 FROM model_versions o WHERE o.model_id = model_versions.model_id
    AND o.sort_key = model_versions.sort_key AND o.id < model_versions.id);
CREATE UNIQUE INDEX model_versions_precedence ON model_versions (model_id, sort_key)
    WHERE precedence_clash = 0;

-- The start-up report reads the marked rows only: small indexes of (usually) nothing, so
-- it need not scan the tables.
CREATE INDEX models_name_clashes ON models (workspace_id) WHERE name_clash = 1;
CREATE INDEX model_versions_precedence_clashes ON model_versions (model_id)
    WHERE precedence_clash = 1;

-- Webhook names are Unicode: their key (NFC and case folding, `domain::name_key`) is computed
-- in Rust, on every insert and rename, and at start for the rows written before this
-- migration. A legacy row whose key is taken keeps NULL, which the index does not hold.
ALTER TABLE webhooks ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX webhooks_model_name_key ON webhooks (model_id, name_key);
