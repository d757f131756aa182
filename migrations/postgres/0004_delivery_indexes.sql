-- The worker claims per webhook (see store/webhooks.rs claim_deliveries): these let it find
-- a webhook's due deliveries and count its leases without scanning another webhook's backlog.
CREATE INDEX deliveries_webhook_due ON deliveries(webhook_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_webhook_leased ON deliveries(webhook_id, locked_until) WHERE state = 'pending';
