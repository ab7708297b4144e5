-- no-transaction
-- SR-2: unread counts (`user_id = $1 AND status = 'unread'`, an index-only scan) and a
-- user's notification list.
--
-- CONCURRENTLY builds the index without blocking writes to a live table, and PostgreSQL
-- refuses it inside a transaction: the first line above makes sqlx run this file outside
-- one. Keep ONE statement per file: several statements sent together form an implicit
-- transaction, where CONCURRENTLY is refused as well.
--
-- An interrupted concurrent build leaves an INVALID index that `IF NOT EXISTS` would then
-- skip; `rtctl migrate` checks for invalid indexes after migrating and says how to fix one.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_notifications_user_status
    ON notifications (user_id, status);
