-- The lease count of a claim (x.locked_until > now, per webhook) needs only the leased
-- deliveries: at most the slots in flight, a page or two, where the index of 0004 held
-- every pending delivery (the whole backlog) and moved an entry at each lease and release.
DROP INDEX deliveries_webhook_leased;
CREATE INDEX deliveries_webhook_leased ON deliveries(webhook_id, locked_until)
    WHERE state = 'pending' AND locked_until IS NOT NULL;
