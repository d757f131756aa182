-- Auto-disable (store/webhooks.rs record_attempt) and re-enable with replay (enable_webhook).
-- failing_since: when the current run of failed attempts began (the first failed attempt after
-- a success); cleared by any successful attempt.
-- disabled_after_seq: the newest event when the webhook was disabled; re-enabling it queues
-- the model's events after it that the webhook was not sent while disabled.
ALTER TABLE webhooks ADD COLUMN failing_since BIGINT;
ALTER TABLE webhooks ADD COLUMN disabled_after_seq BIGINT;
-- Webhooks disabled before this migration: their last change is the best guess of when.
UPDATE webhooks SET disabled_after_seq = COALESCE(
    (SELECT MAX(e.seq) FROM events e WHERE e.occurred_at <= webhooks.updated_at), 0)
    WHERE enabled = 0;
