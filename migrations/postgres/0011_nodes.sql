-- Node heartbeats: every node that runs the delivery worker has a row here while it runs,
-- and moves `last_beat_at` forward every `node_heartbeat_interval`. A row silent for
-- `node_dead_after` is deleted by another node, which releases that node's leases in the
-- same transaction. A node stopping cleanly deletes its own row.
CREATE TABLE nodes (
    name         TEXT   PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    last_beat_at BIGINT NOT NULL
);

-- Fencing: every claim of a delivery (a claim, or the lease chained after a success) adds
-- one, and an attempt is recorded only under the token its lease was taken with. A node
-- that was paused past its lease, and wakes after another claim took the delivery, cannot
-- record over the new owner's attempt.
ALTER TABLE deliveries ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
