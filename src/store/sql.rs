//! Every statement the store runs, one constant each, shared by PostgreSQL and SQLite
//! unless a name says otherwise.
//!
//! Both drivers take `$N` placeholders (SQLite reads `$1` as parameter 1, and a repeated
//! `$1` is the same parameter), both support `RETURNING` (SQLite ≥ 3.35; sqlx bundles a
//! newer one), `ON CONFLICT … DO NOTHING / DO UPDATE` and `IS DISTINCT FROM`. Only
//! "these ids" differs: PostgreSQL binds an array, SQLite a JSON array.
//!
//! Public so tests can `EXPLAIN` exactly what runs.

/// Insert a user or refresh the name/email we know; `NULL` keeps what we had, and an
/// unchanged row is not rewritten (no new row version, no WAL, on every connect).
pub const UPSERT_USER: &str = "\
INSERT INTO users (id, name, email) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE
SET name = COALESCE(excluded.name, users.name),
    email = COALESCE(excluded.email, users.email)
WHERE users.name IS DISTINCT FROM COALESCE(excluded.name, users.name)
   OR users.email IS DISTINCT FROM COALESCE(excluded.email, users.email)";

/// The room lookup by ordered pair (`$1 < $2`): `idx_chat_rooms_users`.
pub const ROOM_BY_PAIR: &str = "\
SELECT id, user1_id, user2_id, created_at FROM chat_rooms
WHERE user1_id = $1 AND user2_id = $2";

/// Creates the room unless the pair exists; no row back when it did (someone else won a
/// race, or it was created meanwhile), and then [`ROOM_BY_PAIR`] finds it.
pub const INSERT_ROOM: &str = "\
INSERT INTO chat_rooms (user1_id, user2_id) VALUES ($1, $2)
ON CONFLICT (user1_id, user2_id) DO NOTHING
RETURNING id, user1_id, user2_id, created_at";

/// Everyone who shares a chat room with each user of `$1` (a `TEXT[]`): `(member, peer)`
/// pairs, each once — the peers told of those users' presence. The first half reads
/// `idx_chat_rooms_users`, the second `idx_chat_rooms_user2`.
pub const PEERS_OF_EACH_POSTGRES: &str = "\
SELECT user1_id AS member, user2_id AS peer FROM chat_rooms WHERE user1_id = ANY($1)
UNION
SELECT user2_id AS member, user1_id AS peer FROM chat_rooms WHERE user2_id = ANY($1)";

/// [`PEERS_OF_EACH_POSTGRES`] with `$1` a JSON array of user ids, as text.
pub const PEERS_OF_EACH_SQLITE: &str = "\
SELECT user1_id AS member, user2_id AS peer FROM chat_rooms
WHERE user1_id IN (SELECT value FROM json_each($1))
UNION
SELECT user2_id AS member, user1_id AS peer FROM chat_rooms
WHERE user2_id IN (SELECT value FROM json_each($1))";

pub const ROOM_BY_ID: &str = "\
SELECT id, user1_id, user2_id, created_at FROM chat_rooms WHERE id = $1";

pub const INSERT_MESSAGE: &str = "\
INSERT INTO messages (room_id, sender_id, body) VALUES ($1, $2, $3)
RETURNING id, room_id, sender_id, body, created_at";

/// `INSERT_MESSAGE` only when `$2` is a member of room `$1`: one round trip where a
/// membership check and an insert took two. No row: not a member, or no such room.
pub const INSERT_MEMBER_MESSAGE: &str = "\
INSERT INTO messages (room_id, sender_id, body)
SELECT id, $2, $3 FROM chat_rooms WHERE id = $1 AND (user1_id = $2 OR user2_id = $2)
RETURNING id, room_id, sender_id, body, created_at";

/// The bodies of the messages whose sender id starts with `$1` (a `LIKE` pattern
/// without wildcards but the trailing `%`): what a load test's users stored.
pub const MESSAGE_BODIES_FROM: &str = "\
SELECT body FROM messages WHERE sender_id LIKE $1";

/// The newest `$2` messages of room `$1`, newest first: `idx_messages_room_created`
/// gives them in order. `id` breaks ties between equal timestamps.
pub const HISTORY_LATEST: &str = "\
SELECT id, room_id, sender_id, body, created_at FROM messages
WHERE room_id = $1
ORDER BY created_at DESC, id DESC
LIMIT $2";

/// The page before message `$2` of room `$1`: keyset pagination on (created_at, id).
/// The cursor's timestamp is a scalar subquery, a constant to the planner, so even the
/// generic plan of the prepared statement reads the index from the cursor on
/// (`room_id = $1 AND created_at <= cursor`): a short range however deep the page. (A
/// join to the cursor row instead gets a generic plan that scans the room from its newest
/// message down, like OFFSET.) A cursor from another room, or none, gives an empty page.
pub const HISTORY_BEFORE: &str = "\
SELECT id, room_id, sender_id, body, created_at FROM messages
WHERE room_id = $1
  AND created_at <= (SELECT created_at FROM messages WHERE id = $2 AND room_id = $1)
  AND (created_at < (SELECT created_at FROM messages WHERE id = $2 AND room_id = $1)
       OR id < $2)
ORDER BY created_at DESC, id DESC
LIMIT $3";

pub const INSERT_NOTIFICATION: &str = "\
INSERT INTO notifications (user_id, type, title, body, data) VALUES ($1, $2, $3, $4, $5)
RETURNING id, user_id, type, title, body, data, status, created_at, read_at";

/// A user's notifications with id below `$2` (the cursor; `i64::MAX` for the first page),
/// newest first.
pub const LIST_NOTIFICATIONS: &str = "\
SELECT id, user_id, type, title, body, data, status, created_at, read_at FROM notifications
WHERE user_id = $1 AND id < $2
ORDER BY id DESC
LIMIT $3";

/// `idx_notifications_user_status`, an index-only scan once the table is vacuumed.
pub const UNREAD_COUNT: &str = "\
SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND status = 'unread'";

pub const MARK_ALL_READ: &str = "\
UPDATE notifications SET status = 'read', read_at = CURRENT_TIMESTAMP
WHERE user_id = $1 AND status = 'unread'";

/// `$2`: a `BIGINT[]`.
pub const MARK_READ_IDS_POSTGRES: &str = "\
UPDATE notifications SET status = 'read', read_at = CURRENT_TIMESTAMP
WHERE user_id = $1 AND status = 'unread' AND id = ANY($2)";

/// `$2`: a JSON array of ids, as text.
pub const MARK_READ_IDS_SQLITE: &str = "\
UPDATE notifications SET status = 'read', read_at = CURRENT_TIMESTAMP
WHERE user_id = $1 AND status = 'unread' AND id IN (SELECT value FROM json_each($2))";

pub const PING: &str = "SELECT 1";

#[cfg(test)]
mod tests {
    /// What `Notification`'s `FromRow` reads.
    const NOTIFICATION_COLUMNS: &str =
        "id, user_id, type, title, body, data, status, created_at, read_at";

    #[test]
    fn notification_queries_select_the_same_columns() {
        for q in [super::INSERT_NOTIFICATION, super::LIST_NOTIFICATIONS] {
            assert!(q.contains(NOTIFICATION_COLUMNS), "{q}");
        }
    }
}
