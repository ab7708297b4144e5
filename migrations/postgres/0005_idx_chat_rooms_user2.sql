-- no-transaction
-- The other half of "every room of a user": `idx_chat_rooms_users` serves
-- `WHERE user1_id = $1`; this serves `WHERE user2_id = $1` (the peers told of a user's
-- presence, `PEERS_OF` in src/store/sql.rs, run on every first connect and last
-- disconnect of a /chat user). Without it that half scans chat_rooms. `user1_id` is in
-- the key so the peer is read from the index alone.
-- Why CONCURRENTLY, outside a transaction, one statement per file: see 0002.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_chat_rooms_user2
    ON chat_rooms (user2_id, user1_id);
