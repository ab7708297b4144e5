//! The store against real databases, no mocks: a SQLite file (the embedded default) and
//! PostgreSQL 15, with a streaming read replica where routing matters. Every API method
//! runs on both backends through the same contract (`api_contract`).

use crate::common::postgres::{self, PgServer};
use realtime::store::{
    sql, ChatRoom, DatabaseUrl, NewNotification, NotificationStatus, Store, StoreArgs, StoreError,
};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// ---- helpers ----------------------------------------------------------------------------

/// A temp dir for a SQLite file, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rt-store-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}/realtime.db?mode=rwc", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(url: &str) -> StoreArgs {
    let mut args = StoreArgs::with_url(url);
    args.db_auto_migrate = Some(true);
    args
}

async fn open(url: &str) -> Store {
    Store::connect(&args(url))
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e:?}"))
}

/// One number from the database, through a connection of its own (not the store's).
async fn scalar(url: &str, query: &str) -> i64 {
    if url.starts_with("postgres") {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(query).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(query).fetch_one(&mut c).await.unwrap()
    }
}

async fn user_row(url: &str, id: &str) -> Option<(Option<String>, Option<String>)> {
    let q = "SELECT name, email FROM users WHERE id = $1";
    if url.starts_with("postgres") {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::query_as(q)
            .bind(id)
            .fetch_optional(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(q)
            .bind(id)
            .fetch_optional(&mut c)
            .await
            .unwrap()
    }
}

fn new_notification(user: &str, title: &str, data: Value) -> NewNotification {
    NewNotification {
        user_id: user.into(),
        kind: "message".into(),
        title: title.into(),
        body: format!("{title} body"),
        data,
    }
}

fn ids<T>(rows: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    rows.iter().map(id).collect()
}

fn assert_recent(at: chrono::DateTime<chrono::Utc>) {
    let age = chrono::Utc::now() - at;
    assert!(
        age < chrono::Duration::seconds(60) && age > chrono::Duration::seconds(-60),
        "timestamp {at} is not now"
    );
}

// ---- the contract, on both backends -----------------------------------------------------

/// Every API method, on an empty migrated store at `url`.
async fn api_contract(store: &Store, url: &str) {
    // Migrating again applies nothing.
    let again = store.migrate().await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.already_applied, 5);
    assert!(again.invalid_indexes.is_empty(), "{again:?}");
    assert!(!store.has_replica());

    // Users: insert, refresh, None keeps what we had.
    store
        .upsert_user("alice", Some("Alice"), Some("alice@example.com"))
        .await
        .unwrap();
    store.upsert_user("alice", None, None).await.unwrap();
    let alice = (
        Some("Alice".to_owned()),
        Some("alice@example.com".to_owned()),
    );
    assert_eq!(user_row(url, "alice").await, Some(alice));
    store
        .upsert_user("alice", Some("Alice B."), None)
        .await
        .unwrap();
    assert_eq!(
        user_row(url, "alice").await,
        Some((Some("Alice B.".into()), Some("alice@example.com".into())))
    );
    store.upsert_user("bob", None, None).await.unwrap();
    assert_eq!(user_row(url, "bob").await, Some((None, None)));
    let err = store.upsert_user("", None, None).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");

    // Rooms: one per pair, stored ordered, whichever way round it is asked for.
    let room = store.find_or_create_room("bob", "alice").await.unwrap();
    assert_eq!(
        (room.user1_id.as_str(), room.user2_id.as_str()),
        ("alice", "bob")
    );
    assert_recent(room.created_at);
    assert_eq!(
        store.find_or_create_room("alice", "bob").await.unwrap(),
        room
    );
    assert_eq!(
        store.find_or_create_room("bob", "alice").await.unwrap(),
        room
    );
    assert!(room.has_member("alice") && room.has_member("bob"));
    assert!(!room.has_member("carol"));
    assert_eq!(room.peer_of("alice"), Some("bob"));
    assert_eq!(store.room(room.id).await.unwrap(), Some(room.clone()));
    assert_eq!(store.room(i64::MAX).await.unwrap(), None);
    let err = store
        .find_or_create_room("alice", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let err = store.find_or_create_room("alice", "").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let other = store.find_or_create_room("carol", "alice").await.unwrap();
    assert_ne!(other.id, room.id);
    // Bytewise order ("Z" < "a"), as Rust compares, whatever the database locale.
    let upper = store.find_or_create_room("alice", "Zed").await.unwrap();
    assert_eq!(
        (upper.user1_id.as_str(), upper.user2_id.as_str()),
        ("Zed", "alice")
    );
    assert_eq!(scalar(url, "SELECT COUNT(*) FROM chat_rooms").await, 3);

    // Messages and history: newest first, keyset pages, rooms kept apart.
    let mut sent = Vec::new();
    for i in 0..5 {
        let sender = if i % 2 == 0 { "alice" } else { "bob" };
        let m = store
            .insert_message(room.id, sender, &format!("hello {i} — привет 👋"))
            .await
            .unwrap();
        assert_eq!((m.room_id, m.sender_id.as_str()), (room.id, sender));
        assert_eq!(m.body, format!("hello {i} — привет 👋"));
        assert_recent(m.created_at);
        sent.push(m);
    }
    assert!(sent.windows(2).all(|w| w[0].id < w[1].id));
    let elsewhere = store
        .insert_message(other.id, "carol", "elsewhere")
        .await
        .unwrap();
    let s: Vec<i64> = ids(&sent, |m| m.id);

    let page1 = store.history(room.id, None, 3).await.unwrap();
    assert_eq!(ids(&page1, |m| m.id), vec![s[4], s[3], s[2]]);
    assert_eq!(page1[0], sent[4]);
    let page2 = store.history(room.id, Some(s[2]), 3).await.unwrap();
    assert_eq!(ids(&page2, |m| m.id), vec![s[1], s[0]]);
    assert!(store
        .history(room.id, Some(s[0]), 3)
        .await
        .unwrap()
        .is_empty());
    let all = store.history(room.id, None, 100).await.unwrap();
    assert_eq!(
        ids(&all, |m| m.id),
        s.iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    // A cursor from another room gives nothing, not that room's messages.
    assert!(store
        .history(room.id, Some(elsewhere.id), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.history(room.id, None, 0).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.history(other.id, None, 10).await.unwrap(), |m| m.id),
        vec![elsewhere.id]
    );
    let err = store
        .insert_message(i64::MAX, "alice", "to nowhere")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(err.code(), "not_found");

    // A member's message in one statement; a stranger's, or one to no room, stores nothing.
    let stored = scalar(url, "SELECT COUNT(*) FROM messages").await;
    let m = store
        .insert_member_message(room.id, "bob", "as a member")
        .await
        .unwrap()
        .expect("bob is a member of the room");
    assert_eq!(
        (m.room_id, m.sender_id.as_str(), m.body.as_str()),
        (room.id, "bob", "as a member")
    );
    assert_eq!(store.history(room.id, None, 1).await.unwrap(), vec![m]);
    for (room_id, sender) in [(room.id, "carol"), (i64::MAX, "alice")] {
        let refused = store.insert_member_message(room_id, sender, "no").await;
        assert_eq!(refused.unwrap(), None, "{sender} in room {room_id}");
    }
    assert_eq!(
        scalar(url, "SELECT COUNT(*) FROM messages").await,
        stored + 1
    );

    // Notifications.
    let data = json!({ "roomId": room.id, "nested": { "list": [1, 2.5, "x", null] }, "ü": "✓" });
    let n1 = store
        .insert_notification(new_notification("alice", "first", data.clone()))
        .await
        .unwrap();
    assert_eq!(n1.user_id, "alice");
    assert_eq!(n1.kind, "message");
    assert_eq!(
        (n1.title.as_str(), n1.body.as_str()),
        ("first", "first body")
    );
    assert_eq!(n1.data, data);
    assert_eq!(n1.status, NotificationStatus::Unread);
    assert_eq!(n1.read_at, None);
    assert_recent(n1.created_at);
    let n2 = store
        .insert_notification(new_notification("alice", "second", Value::Null))
        .await
        .unwrap();
    assert_eq!(n2.data, Value::Null);
    let n3 = store
        .insert_notification(new_notification("alice", "third", json!([1, 2, 3])))
        .await
        .unwrap();
    let b1 = store
        .insert_notification(new_notification("bob", "for bob", json!({})))
        .await
        .unwrap();
    assert_eq!(store.unread_count("alice").await.unwrap(), 3);
    assert_eq!(store.unread_count("bob").await.unwrap(), 1);
    assert_eq!(store.unread_count("nobody").await.unwrap(), 0);

    let list = store.list_notifications("alice", None, 2).await.unwrap();
    assert_eq!(ids(&list, |n| n.id), vec![n3.id, n2.id]);
    assert_eq!(list[0], n3);
    let list = store
        .list_notifications("alice", Some(n2.id), 2)
        .await
        .unwrap();
    assert_eq!(ids(&list, |n| n.id), vec![n1.id]);
    let list = store.list_notifications("bob", None, 50).await.unwrap();
    assert_eq!(ids(&list, |n| n.id), vec![b1.id]);
    assert!(store
        .list_notifications("nobody", None, 50)
        .await
        .unwrap()
        .is_empty());

    // mark_read: only the user's own, only unread ones.
    assert_eq!(
        store
            .mark_read("alice", Some(&[n1.id, b1.id, i64::MAX]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.unread_count("alice").await.unwrap(), 2);
    assert_eq!(store.unread_count("bob").await.unwrap(), 1);
    assert_eq!(store.mark_read("alice", Some(&[])).await.unwrap(), 0);
    assert_eq!(store.mark_read("alice", Some(&[n1.id])).await.unwrap(), 0);
    let list = store.list_notifications("alice", None, 10).await.unwrap();
    let first = list.iter().find(|n| n.id == n1.id).unwrap();
    assert_eq!(first.status, NotificationStatus::Read);
    assert_recent(first.read_at.expect("read_at set"));
    let second = list.iter().find(|n| n.id == n2.id).unwrap();
    assert_eq!(
        (second.status, second.read_at),
        (NotificationStatus::Unread, None)
    );
    assert_eq!(store.mark_read("alice", None).await.unwrap(), 2);
    assert_eq!(store.unread_count("alice").await.unwrap(), 0);
    assert_eq!(store.mark_read("alice", None).await.unwrap(), 0);
    assert_eq!(store.unread_count("bob").await.unwrap(), 1);

    // Health and metrics.
    let latency = store.ping_primary(Duration::from_secs(2)).await.unwrap();
    assert!(latency < Duration::from_secs(2));
    assert_eq!(
        store.ping_replica(Duration::from_secs(2)).await.unwrap(),
        None
    );
    let stats = store.pool_stats();
    assert_eq!(stats.primary.max, 20);
    assert!(
        stats.primary.size >= 1 && stats.primary.size <= 20,
        "{stats:?}"
    );
    assert!(stats.primary.idle <= stats.primary.size as usize);
    assert_eq!(stats.replica, None);
}

/// Many concurrent opens of one new room, both ways round: one row, one id for all.
async fn room_race(store: &Store, url: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..48 {
        let store = store.clone();
        tasks.spawn(async move {
            let (a, b) = if i % 2 == 0 {
                ("racer-a", "racer-b")
            } else {
                ("racer-b", "racer-a")
            };
            store.find_or_create_room(a, b).await
        });
    }
    let mut rooms: Vec<ChatRoom> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        rooms.push(joined.unwrap().unwrap());
    }
    assert_eq!(rooms.len(), 48);
    assert!(rooms.iter().all(|r| *r == rooms[0]), "{rooms:?}");
    let n = scalar(
        url,
        "SELECT COUNT(*) FROM chat_rooms WHERE user1_id = 'racer-a' AND user2_id = 'racer-b'",
    )
    .await;
    assert_eq!(n, 1);
}

// ---- SQLite (the embedded default) ------------------------------------------------------

#[tokio::test]
async fn sqlite_api() {
    let dir = TempDir::new();
    let url = dir.sqlite_url();
    let store = open(&url).await;
    assert_eq!(store.backend(), "sqlite");
    api_contract(&store, &url).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_find_or_create_room_race() {
    let dir = TempDir::new();
    let url = dir.sqlite_url();
    let store = open(&url).await;
    room_race(&store, &url).await;
}

#[tokio::test]
async fn sqlite_file_is_wal_and_reopens() {
    let dir = TempDir::new();
    let url = dir.sqlite_url();
    let store = open(&url).await;
    let room = store.find_or_create_room("a", "b").await.unwrap();
    store.insert_message(room.id, "a", "kept").await.unwrap();
    store.close().await;
    let mut c = SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    drop(c);

    // The replica URL is ignored for SQLite; a reopen keeps the data and migrates nothing.
    let mut with_replica = args(&url);
    with_replica.database_read_replica_url = Some(DatabaseUrl::new("postgres://ignored/db"));
    let store = Store::connect(&with_replica).await.unwrap();
    assert!(!store.has_replica());
    assert!(store.migrate().await.unwrap().applied.is_empty());
    let history = store.history(room.id, None, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].body, "kept");
}

#[tokio::test]
async fn sqlite_in_memory_keeps_one_database() {
    // No auto-migrate setting: SQLite, the embedded default, migrates at connect.
    let store = Store::connect(&StoreArgs::with_url("sqlite::memory:"))
        .await
        .unwrap();
    let room = store.find_or_create_room("a", "b").await.unwrap();
    store.insert_message(room.id, "a", "hi").await.unwrap();
    assert_eq!(store.history(room.id, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.pool_stats().primary.max, 1);
}

#[test]
fn rtctl_migrate_sqlite() {
    let dir = TempDir::new();
    let url = dir.sqlite_url();
    let out = rtctl_migrate(&[&url]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied 5 migrations"), "{stdout}");
    for name in [
        "create tables",
        "idx notifications user status",
        "idx messages room created",
        "idx chat rooms users",
        "idx chat rooms user2",
    ] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
    let out = rtctl_migrate(&[&url]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
}

// ---- PostgreSQL -------------------------------------------------------------------------

#[tokio::test]
async fn postgres_api() {
    let url = postgres::fresh_database().await;
    let store = open(&url).await;
    assert_eq!(store.backend(), "postgres");
    api_contract(&store, &url).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_find_or_create_room_race() {
    let url = postgres::fresh_database().await;
    let store = open(&url).await;
    room_race(&store, &url).await;
}

/// The schema as migrated: the three SR-2 indexes exist, are valid (built CONCURRENTLY,
/// outside a transaction: inside one PostgreSQL refuses), and `rtctl migrate` reports
/// what it did, then that there is nothing to do.
#[tokio::test]
async fn postgres_rtctl_migrate_builds_valid_indexes() {
    let url = postgres::fresh_database().await;
    // No auto-migrate setting: PostgreSQL does not migrate at connect.
    let store = Store::connect(&StoreArgs::with_url(&url)).await.unwrap();
    assert_eq!(
        scalar(
            &url,
            "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'chat_rooms'"
        )
        .await,
        0
    );
    store.close().await;
    let out = rtctl_migrate(&[&url]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied 5 migrations"), "{stdout}");
    assert!(stdout.contains("idx chat rooms users"), "{stdout}");

    let mut c = PgConnection::connect(&url).await.unwrap();
    let indexes: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, i.indisvalid, i.indisunique FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'idx_%' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        vec![
            ("idx_chat_rooms_user2".into(), true, false),
            ("idx_chat_rooms_users".into(), true, true),
            ("idx_messages_room_created".into(), true, false),
            ("idx_notifications_user_status".into(), true, false),
        ]
    );
    let def: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_messages_room_created'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(def.contains("(room_id, created_at DESC)"), "{def}");
    // No second B-tree duplicating idx_chat_rooms_users.
    let on_rooms: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'chat_rooms'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(
        on_rooms, 3,
        "the primary key, idx_chat_rooms_users and idx_chat_rooms_user2"
    );
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(recorded, 5);

    let out = rtctl_migrate(&[&url, "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backend"], "postgres");
    assert_eq!(report["applied"], json!([]));
    assert_eq!(report["already_applied"], 5);
}

/// A connection failure is one line naming the host, never the password, exit code 2.
#[test]
fn rtctl_migrate_connection_failure_exits_2_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/app");
    let started = Instant::now();
    let out = rtctl_migrate(&[&url, "--db-acquire-timeout", "500"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("refused"), "the cause is named: {stderr}");
}

/// The plans of the three hot queries use their SR-2 index on 100k seeded rows, with
/// the SQL the store runs, under both custom and generic (prepared statement) plans.
#[tokio::test]
async fn postgres_hot_queries_use_their_indexes() {
    let url = postgres::fresh_database().await;
    let store = open(&url).await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    let seeded = Instant::now();
    c.execute(
        "INSERT INTO chat_rooms (user1_id, user2_id, created_at)
           SELECT 'a' || lpad(g::text, 6, '0'), 'b' || lpad(g::text, 6, '0'),
                  now() - g * interval '1 minute'
           FROM generate_series(1, 100000) AS g;
         INSERT INTO messages (room_id, sender_id, body, created_at)
           SELECT g % 1000 + 1, 'a' || lpad((g % 1000 + 1)::text, 6, '0'), 'message ' || g,
                  now() - g * interval '1 second'
           FROM generate_series(1, 100000) AS g;
         INSERT INTO notifications (user_id, type, title, body, data, status, created_at)
           SELECT 'u' || g % 1000, 'message', 'title ' || g, 'body', '{}'::jsonb,
                  CASE WHEN g % 10 = 0 THEN 'unread' ELSE 'read' END,
                  now() - g * interval '1 second'
           FROM generate_series(1, 100000) AS g;",
    )
    .await
    .unwrap();
    c.execute("VACUUM ANALYZE chat_rooms, messages, notifications")
        .await
        .unwrap();
    eprintln!("seeded 3 x 100k rows in {:?}", seeded.elapsed());

    let cursor: i64 = sqlx::query_scalar(
        "SELECT id FROM messages WHERE room_id = 42 ORDER BY created_at DESC, id DESC OFFSET 60 LIMIT 1",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    // The store's answers on the seeded data, to be sure the queries explained do work.
    assert_eq!(store.history(42, None, 50).await.unwrap().len(), 50);
    assert_eq!(store.history(42, Some(cursor), 50).await.unwrap().len(), 39);
    assert_eq!(store.unread_count("u7").await.unwrap(), 0);
    assert_eq!(store.unread_count("u10").await.unwrap(), 100);
    let room = store.room(42).await.unwrap().unwrap();
    assert_eq!(
        store
            .find_or_create_room(&room.user2_id, &room.user1_id)
            .await
            .unwrap(),
        room
    );

    // The store runs named prepared statements: PostgreSQL plans the first executions with
    // the values (custom plans) and may then switch to one generic plan for all values.
    // PREPARE + EXPLAIN EXECUTE under each forced mode shows both.
    let queries = [
        (
            "history",
            sql::HISTORY_LATEST,
            "bigint, bigint",
            "42, 50".to_owned(),
            "idx_messages_room_created",
        ),
        (
            "history page",
            sql::HISTORY_BEFORE,
            "bigint, bigint, bigint",
            format!("42, {cursor}, 50"),
            "idx_messages_room_created",
        ),
        (
            "unread count",
            sql::UNREAD_COUNT,
            "text",
            "'u10'".to_owned(),
            "idx_notifications_user_status",
        ),
        (
            "room lookup",
            sql::ROOM_BY_PAIR,
            "text, text",
            "'a000042', 'b000042'".to_owned(),
            "idx_chat_rooms_users|idx_chat_rooms_user2",
        ),
        (
            "peers of users (user2 half)",
            sql::PEERS_OF_EACH_POSTGRES,
            "text[]",
            "ARRAY['b000042', 'b000043']".to_owned(),
            "idx_chat_rooms_user2",
        ),
    ];
    for mode in ["force_custom_plan", "force_generic_plan"] {
        c.execute(format!("SET plan_cache_mode = {mode}").as_str())
            .await
            .unwrap();
        for (what, query, types, values, index) in &queries {
            c.execute(format!("PREPARE hot({types}) AS {query}").as_str())
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE hot({values})"))
                .fetch_all(&mut c)
                .await
                .unwrap();
            c.execute("DEALLOCATE hot").await.unwrap();
            let plan = plan.join("\n");
            if mode == "force_generic_plan" {
                assert!(plan.contains("$1"), "{what}: not a generic plan:\n{plan}");
            }
            assert_uses(&plan, index, &format!("{what}, {mode}"));
            if *what == "history page" {
                // The cursor bounds the index range; the page is not found by scanning.
                assert!(
                    plan.lines()
                        .any(|l| l.contains("Index Cond") && l.contains("created_at <=")),
                    "{what}, {mode}: the cursor is not an index condition:\n{plan}"
                );
            }
        }
    }
}

/// `index` names the index the plan must scan; `a|b` accepts either (the pair lookup
/// `user1_id = $1 AND user2_id = $2` is fully served by both chat_rooms indexes).
fn assert_uses(plan: &str, index: &str, mode: &str) {
    let scans: Vec<String> = index
        .split('|')
        .flat_map(|index| {
            [
                format!("Index Scan using {index} "),
                format!("Index Scan Backward using {index} "),
                format!("Index Only Scan using {index} "),
                format!("Bitmap Index Scan on {index}"),
            ]
        })
        .collect();
    assert!(
        scans.iter().any(|s| plan.contains(s.as_str())),
        "{mode}: expected an index scan on {index}:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan"),
        "{mode}: sequential scan:\n{plan}"
    );
}

/// A statement past DB_STATEMENT_TIMEOUT is cancelled by the server (set per connection)
/// and reported as `Timeout`, not a hang.
#[tokio::test]
async fn postgres_statement_timeout_applies() {
    let url = postgres::fresh_database().await;
    let mut args = args(&url);
    args.db_statement_timeout = 300;
    let store = Store::connect(&args).await.unwrap();
    let mut locker = PgConnection::connect(&url).await.unwrap();
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let err = store.unread_count("someone").await.unwrap_err();
    assert!(matches!(err, StoreError::Timeout(_)), "{err:?}");
    assert_eq!(err.code(), "db_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    locker.execute("ROLLBACK").await.unwrap();
    assert_eq!(store.unread_count("someone").await.unwrap(), 0);
}

/// Reads that may be stale come from the replica, writes and read-your-writes from the
/// primary: with WAL replay paused on the replica, history and lists miss a new write
/// while the room lookup and the unread count see theirs; resumed, everything shows.
#[tokio::test]
async fn postgres_replica_routing() {
    let primary = PgServer::start();
    let replica = primary.start_replica();
    let db = primary.create_database().await;
    // The replica must have replayed CREATE DATABASE before anyone connects to it there.
    primary.wait_replica_caught_up(&replica);
    let mut args = args(&primary.url_for(&db));
    args.database_read_replica_url = Some(DatabaseUrl::new(replica.url_for(&db)));
    let store = Store::connect(&args).await.unwrap();
    assert!(store.has_replica());
    assert!(store
        .ping_replica(Duration::from_secs(2))
        .await
        .unwrap()
        .is_some());
    assert!(store.pool_stats().replica.is_some());

    let room = store.find_or_create_room("alice", "bob").await.unwrap();
    let m1 = store.insert_message(room.id, "alice", "one").await.unwrap();
    primary.wait_replica_caught_up(&replica);
    assert_eq!(
        ids(&store.history(room.id, None, 10).await.unwrap(), |m| m.id),
        vec![m1.id]
    );

    replica.psql(&db, "SELECT pg_wal_replay_pause()");
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.psql(&db, "SELECT pg_get_wal_replay_pause_state()") != "paused" {
        assert!(Instant::now() < deadline, "replay did not pause");
        std::thread::sleep(Duration::from_millis(20));
    }

    let m2 = store.insert_message(room.id, "bob", "two").await.unwrap();
    let n = store
        .insert_notification(new_notification("alice", "hello", json!({})))
        .await
        .unwrap();
    let new_room = store.find_or_create_room("alice", "carol").await.unwrap();
    // Primary: read-your-writes.
    assert_eq!(store.unread_count("alice").await.unwrap(), 1);
    assert_eq!(
        store.room(new_room.id).await.unwrap(),
        Some(new_room.clone())
    );
    assert_eq!(
        store.find_or_create_room("carol", "alice").await.unwrap(),
        new_room
    );
    assert!(store
        .room(new_room.id)
        .await
        .unwrap()
        .unwrap()
        .has_member("carol"));
    // Replica: stale while paused, so these reads provably do not touch the primary.
    assert_eq!(
        ids(&store.history(room.id, None, 10).await.unwrap(), |m| m.id),
        vec![m1.id]
    );
    assert!(store
        .list_notifications("alice", None, 10)
        .await
        .unwrap()
        .is_empty());

    replica.psql(&db, "SELECT pg_wal_replay_resume()");
    primary.wait_replica_caught_up(&replica);
    assert_eq!(
        ids(&store.history(room.id, None, 10).await.unwrap(), |m| m.id),
        vec![m2.id, m1.id]
    );
    assert_eq!(
        ids(
            &store.list_notifications("alice", None, 10).await.unwrap(),
            |n| n.id
        ),
        vec![n.id]
    );
    store.close().await;
}

/// Stop PostgreSQL: every call fails with `Unavailable` within the acquire timeout (no
/// hang, no panic), health pings say so; start it again: calls work, data intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_and_recovery() {
    let server = PgServer::start();
    let db = server.create_database().await;
    let mut args = args(&server.url_for(&db));
    args.db_acquire_timeout = 1_000;
    let store = Store::connect(&args).await.unwrap();
    let room = store.find_or_create_room("alice", "bob").await.unwrap();
    let before = store
        .insert_message(room.id, "alice", "before")
        .await
        .unwrap();
    // Several idle connections in the pool, all about to break.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.unread_count("alice").await })
        })
        .collect();
    for w in warm {
        w.await.unwrap().unwrap();
    }

    server.stop();
    let bound = args.acquire_timeout() + Duration::from_millis(1_500);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..12 {
        let s = store.clone();
        calls.spawn(async move {
            let started = Instant::now();
            let result = match i % 4 {
                0 => s.unread_count("alice").await.map(drop),
                1 => s.insert_message(room.id, "bob", "during").await.map(drop),
                2 => s.history(room.id, None, 10).await.map(drop),
                _ => s.find_or_create_room("alice", "dave").await.map(drop),
            };
            (result, started.elapsed())
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (result, took) = joined.expect("no panic");
        let err = result.expect_err("the database is down");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert_eq!(err.code(), "db_unavailable");
        assert!(took <= bound, "took {took:?}, bound {bound:?}");
    }
    let err = store
        .ping_primary(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    server.restart();
    assert_eq!(store.unread_count("alice").await.unwrap(), 0);
    store.ping_primary(Duration::from_secs(2)).await.unwrap();
    let after = store.insert_message(room.id, "bob", "after").await.unwrap();
    assert_eq!(
        ids(&store.history(room.id, None, 10).await.unwrap(), |m| m.id),
        vec![after.id, before.id]
    );
}

/// `Store::connect` to a closed port: `Unavailable` within the acquire timeout.
#[tokio::test]
async fn postgres_connect_failure_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = StoreArgs::with_url(format!("postgres://app:pw@127.0.0.1:{port}/app"));
    args.db_acquire_timeout = 500;
    let started = Instant::now();
    let err = Store::connect(&args).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(Some(_))), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

// ---- rtctl ------------------------------------------------------------------------------

fn rtctl_migrate(extra: &[&str]) -> std::process::Output {
    let (url, rest) = extra.split_first().expect("a URL");
    Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["migrate", "--database-url", url])
        .args(rest)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_READ_REPLICA_URL")
        .env_remove("DB_AUTO_MIGRATE")
        .env_remove("DB_ACQUIRE_TIMEOUT")
        .output()
        .expect("run rtctl")
}
