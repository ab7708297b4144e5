-- no-transaction
-- SR-2: a room's history, newest first (`room_id = $1 ORDER BY created_at DESC, id DESC`),
-- read straight off the index; it also serves the foreign key's cascade from chat_rooms.
-- Why CONCURRENTLY, outside a transaction, one statement per file: see 0002.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_room_created
    ON messages (room_id, created_at DESC);
