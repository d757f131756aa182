-- Kept in step with migrations/postgres/0010_feed_order.sql, which gives PostgreSQL's events a
-- transaction id so its feed no longer needs a global lock. SQLite needs nothing: it has one
-- writer, so `seq` is commit order already.
SELECT 1;
