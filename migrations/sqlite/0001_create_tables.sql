-- The SQLite twin of migrations/postgres/0001 (the embedded default). Same tables, same
-- migration versions; SQLite types: ids are INTEGER PRIMARY KEY AUTOINCREMENT (never
-- reused, like a sequence), timestamps are fixed-width UTC text with milliseconds (so they
-- sort as text), JSON is text checked by json_valid. Text compares bytewise (BINARY), as
-- Rust orders `str`.

CREATE TABLE users (
    id    TEXT PRIMARY KEY NOT NULL,
    name  TEXT,
    email TEXT
);

CREATE TABLE chat_rooms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user1_id   TEXT NOT NULL,
    user2_id   TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT chat_rooms_pair_ordered CHECK (user1_id < user2_id)
);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    INTEGER NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    sender_id  TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL DEFAULT '',
    data       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
    status     TEXT NOT NULL DEFAULT 'unread'
               CONSTRAINT notifications_status_valid CHECK (status IN ('unread', 'read')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    read_at    TEXT
);
