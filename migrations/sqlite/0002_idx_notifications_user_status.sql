-- SR-2 on SQLite: a plain index (SQLite builds indexes inside the migration's transaction).
CREATE INDEX IF NOT EXISTS idx_notifications_user_status ON notifications (user_id, status);
