-- The chat and notification tables (issue 3). The indexes the queries rely on come in the
-- next migrations, one `CREATE INDEX CONCURRENTLY` per file (SR-2).
--
-- User ids come from the Next.js app's auth (the JWT `sub`); `users` is our copy of their
-- name and email, so the other tables do not reference it: a peer who never connected can
-- still be in a room or receive a notification.

CREATE TABLE users (
    id    TEXT PRIMARY KEY,
    name  TEXT,
    email TEXT
);

-- A 1:1 room is stored once per pair, ordered: user1_id < user2_id. The user ids compare
-- bytewise (COLLATE "C"), which is how Rust orders `str`, so the application and this
-- CHECK agree whatever the database's locale. Uniqueness of the pair is the unique index
-- `idx_chat_rooms_users` (migration 0004): a separate UNIQUE constraint would build a
-- second, identical B-tree that every insert maintains and the planner picks between.
CREATE TABLE chat_rooms (
    id         BIGSERIAL PRIMARY KEY,
    user1_id   TEXT COLLATE "C" NOT NULL,
    user2_id   TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT chat_rooms_pair_ordered CHECK (user1_id < user2_id)
);

CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    room_id    BIGINT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    sender_id  TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id         BIGSERIAL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL DEFAULT '',
    data       JSONB NOT NULL DEFAULT '{}',
    status     TEXT NOT NULL DEFAULT 'unread'
               CONSTRAINT notifications_status_valid CHECK (status IN ('unread', 'read')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_at    TIMESTAMPTZ
);
