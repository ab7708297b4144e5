-- no-transaction
-- SR-2: the room lookup by its ordered pair (`user1_id = $1 AND user2_id = $2`). UNIQUE:
-- this index is also what makes a pair stored once, and the arbiter of
-- `INSERT ... ON CONFLICT (user1_id, user2_id) DO NOTHING` in find_or_create_room.
-- Why CONCURRENTLY, outside a transaction, one statement per file: see 0002.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_chat_rooms_users
    ON chat_rooms (user1_id, user2_id);
