-- The event feed without a global lock (store/events.rs; ARCHITECTURE.md, "PostgreSQL: events
-- in commit order"). Writers no longer take turns, so `seq` is no longer commit order.
--
-- tx_id: the top-level transaction id of the transaction that wrote the event (the same inside
-- a savepoint). The feed shows an event only once every transaction of this database with a
-- smaller id has finished, and orders by (tx_id, seq), so no event can later appear below a
-- position a reader has passed. Rows written before this migration all get this migration's
-- transaction id: among them, (tx_id, seq) order is their old seq order, which was commit
-- order under the lock.
ALTER TABLE events ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_feed ON events (workspace_id, tx_id, seq);
-- The feed no longer pages by seq alone; enable_webhook's fallback for webhooks disabled
-- before this migration finds events by the primary key.
DROP INDEX events_workspace;
-- disabled_after_xid: the feed horizon when the webhook was disabled. Every event whose
-- fan-out may have seen the webhook disabled has a tx_id at or above it, whatever its seq;
-- enable_webhook queues those that have no delivery for the webhook. NULL for webhooks
-- disabled before this migration: for them enable_webhook still uses disabled_after_seq
-- (written while seq was commit order).
ALTER TABLE webhooks ADD COLUMN disabled_after_xid xid8;
