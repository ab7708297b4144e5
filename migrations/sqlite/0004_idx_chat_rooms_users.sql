-- SR-2 on SQLite: the room lookup by ordered pair; UNIQUE, as on PostgreSQL, so a pair is
-- stored once and `ON CONFLICT (user1_id, user2_id)` has its arbiter.
CREATE UNIQUE INDEX IF NOT EXISTS idx_chat_rooms_users ON chat_rooms (user1_id, user2_id);
