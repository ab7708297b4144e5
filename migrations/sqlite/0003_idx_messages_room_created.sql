-- SR-2 on SQLite: a room's history, newest first.
CREATE INDEX IF NOT EXISTS idx_messages_room_created ON messages (room_id, created_at DESC);
