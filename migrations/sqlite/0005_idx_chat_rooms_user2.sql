-- A user's rooms where they are user2 (the peers told of their presence); the unique
-- pair index serves the user1 half.
CREATE INDEX IF NOT EXISTS idx_chat_rooms_user2 ON chat_rooms (user2_id, user1_id);
