//! Persistence for chat and notifications through sqlx: PostgreSQL (a primary and an
//! optional read replica) in a cluster, a SQLite file in the embedded default.
//!
//! Routing is the one rule of this module. Reads that may be a little stale go to the
//! replica when there is one: a room's message history and a user's notification list.
//! Everything else goes to the primary: writes, and reads that must see a write that just
//! happened (the room right after `room:open`, membership checks, unread counts). A
//! streaming replica lags by milliseconds, usually; "usually" is fine for scrolling back,
//! not for "the room you just created does not exist".
//!
//! Each query is written once, in [`sql`], and runs on either backend: `with_pool!`
//! expands the same generic sqlx code once per backend, so there are no copy-pasted
//! branches. The few statements that differ carry the backend in their name.
//!
//! Errors are [`StoreError`]: `Unavailable` for "the database cannot serve now" (pool
//! timeout, broken connection, server restarting), so a caller can answer
//! `db_unavailable` quickly instead of hanging or crashing.

/// Runs `$body` with `$pool` bound to the concrete pool and `$DB` to its database type,
/// once per backend. The body is written once; the compiler checks it for both.
macro_rules! with_pool {
    ($db:expr, $DB:ident, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Postgres($pool) => {
                #[allow(dead_code)]
                type $DB = sqlx::Postgres;
                $body
            }
            $crate::store::Db::Sqlite($pool) => {
                #[allow(dead_code)]
                type $DB = sqlx::Sqlite;
                $body
            }
        }
    };
}

mod config;
mod error;
mod migrate;
mod model;
pub mod sql;

pub use config::{Backend, DatabaseUrl, InvalidUrl, StoreArgs, DEFAULT_DATABASE_URL};
pub use error::StoreError;
pub use migrate::{AppliedMigration, MigrationReport};
pub use model::{
    ChatRoom, Message, NewNotification, Notification, NotificationStatus, PoolStat, PoolStats,
};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::types::Json;
use sqlx::Connection as _;
use std::cmp::Ordering;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A connection pool of either backend. Cloning clones a handle (an `Arc`).
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    fn stat(&self) -> PoolStat {
        with_pool!(self, DB, pool => PoolStat {
            size: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        })
    }
}

/// The store: a primary pool and, on PostgreSQL, an optional replica pool. Cheap to
/// clone; clones share the pools.
#[derive(Clone, Debug)]
pub struct Store {
    primary: Db,
    replica: Option<Db>,
}

/// Every operation the store times (`metrics::query`), for declaring their error
/// series at zero on the primary.
const OPERATIONS: [&str; 12] = [
    "upsert_user",
    "insert_room",
    "room_by_pair",
    "peers_of",
    "room",
    "insert_message",
    "message_bodies_from",
    "history",
    "insert_notification",
    "list_notifications",
    "unread_count",
    "mark_read",
];

/// The operations that read from the replica when there is one (`stale_pool`).
const REPLICA_OPERATIONS: [&str; 3] = ["peers_of", "history", "list_notifications"];

impl Store {
    /// Opens the pools, checks that the primary (and the replica) answer within the
    /// acquire timeout, and applies pending migrations when `args.auto_migrate()` (the
    /// default for SQLite; PostgreSQL migrates with `rtctl migrate` unless told to).
    pub async fn connect(args: &StoreArgs) -> Result<Store, StoreError> {
        let backend = args
            .database_url
            .backend()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = match backend {
            Backend::Postgres => {
                let primary = connect_postgres(&args.database_url, args).await?;
                let replica = match &args.database_read_replica_url {
                    None => None,
                    Some(url) if matches!(url.backend(), Ok(Backend::Postgres)) => {
                        Some(connect_postgres(url, args).await?)
                    }
                    Some(url) => {
                        return Err(StoreError::Config(format!(
                            "DATABASE_READ_REPLICA_URL must be a postgres:// URL (got {url})"
                        )))
                    }
                };
                Store {
                    primary: Db::Postgres(primary),
                    replica: replica.map(Db::Postgres),
                }
            }
            Backend::Sqlite => {
                if args.database_read_replica_url.is_some() {
                    tracing::warn!("DATABASE_READ_REPLICA_URL is ignored with a SQLite database");
                }
                Store {
                    primary: Db::Sqlite(connect_sqlite(&args.database_url, args).await?),
                    replica: None,
                }
            }
        };
        crate::metrics::declare_queries(&OPERATIONS, &["primary"]);
        if store.replica.is_some() {
            crate::metrics::declare_queries(&REPLICA_OPERATIONS, &["replica"]);
        }
        if args.auto_migrate() {
            let report = store.migrate().await?;
            for m in &report.applied {
                tracing::info!(version = m.version, description = %m.description, "applied migration");
            }
            if let Some(help) = report.invalid_index_help() {
                tracing::warn!("{help}");
            }
        }
        Ok(store)
    }

    /// Applies pending migrations to the primary (a replica follows by replication).
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        migrate::run(&self.primary).await
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.primary.backend().as_str()
    }

    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Closes the pools, waiting for borrowed connections to come back.
    pub async fn close(&self) {
        with_pool!(&self.primary, DB, pool => pool.close().await);
        if let Some(replica) = &self.replica {
            with_pool!(replica, DB, pool => pool.close().await);
        }
    }

    /// Where reads that may be stale go: the replica if any, else the primary.
    fn stale_reads(&self) -> &Db {
        self.replica.as_ref().unwrap_or(&self.primary)
    }

    /// The pool label of [`Store::stale_reads`] in metrics.
    fn stale_pool(&self) -> &'static str {
        if self.replica.is_some() {
            "replica"
        } else {
            "primary"
        }
    }

    // ---- users ----------------------------------------------------------------------

    /// Records a user, or refreshes the name and email we know (a `None` keeps the old
    /// value).
    pub async fn upsert_user(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), StoreError> {
        if id.is_empty() {
            return Err(StoreError::InvalidInput("empty user id"));
        }
        with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "upsert_user",
                "primary",
                sqlx::query::<DB>(sql::UPSERT_USER)
                    .bind(id)
                    .bind(name)
                    .bind(email)
                    .execute(pool),
            )
            .await?;
        });
        Ok(())
    }

    // ---- chat rooms -----------------------------------------------------------------

    /// The 1:1 room of `a` and `b`, created on first use. Safe under concurrency: the
    /// unique index on the ordered pair makes one insert win; the others find its row.
    pub async fn find_or_create_room(&self, a: &str, b: &str) -> Result<ChatRoom, StoreError> {
        if a.is_empty() || b.is_empty() {
            return Err(StoreError::InvalidInput("empty user id"));
        }
        let (user1, user2) = match a.cmp(b) {
            Ordering::Less => (a, b),
            Ordering::Greater => (b, a),
            Ordering::Equal => {
                return Err(StoreError::InvalidInput("a room needs two different users"))
            }
        };
        // Most opens find an existing room: try the plain read first, which writes nothing
        // and does not burn a sequence value.
        if let Some(room) = self.room_by_pair(user1, user2).await? {
            return Ok(room);
        }
        let created = with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "insert_room",
                "primary",
                sqlx::query_as::<DB, ChatRoom>(sql::INSERT_ROOM)
                    .bind(user1)
                    .bind(user2)
                    .fetch_optional(pool),
            )
            .await?
        });
        match created {
            Some(room) => Ok(room),
            // Lost a race: the winner's row is committed (ON CONFLICT waited for it).
            None => self
                .room_by_pair(user1, user2)
                .await?
                .ok_or(StoreError::NotFound),
        }
    }

    async fn room_by_pair(&self, user1: &str, user2: &str) -> Result<Option<ChatRoom>, StoreError> {
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "room_by_pair",
                "primary",
                sqlx::query_as::<DB, ChatRoom>(sql::ROOM_BY_PAIR)
                    .bind(user1)
                    .bind(user2)
                    .fetch_optional(pool),
            )
            .await?
        }))
    }

    /// Everyone who shares a chat room with each of `users`, as `(user, peer)` pairs, in
    /// one query (a reconnect storm of 100,000 users is a few hundred queries, not
    /// 100,000); from the replica when there is one (a room a few milliseconds old may be
    /// missing: presence is advisory).
    pub async fn peers_of_each(&self, users: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = match self.stale_reads() {
            Db::Postgres(pool) => {
                crate::metrics::query(
                    "peers_of",
                    self.stale_pool(),
                    sqlx::query_as(sql::PEERS_OF_EACH_POSTGRES)
                        .bind(users)
                        .fetch_all(pool),
                )
                .await?
            }
            Db::Sqlite(pool) => {
                crate::metrics::query(
                    "peers_of",
                    self.stale_pool(),
                    sqlx::query_as(sql::PEERS_OF_EACH_SQLITE)
                        .bind(Json(users))
                        .fetch_all(pool),
                )
                .await?
            }
        };
        Ok(pairs)
    }

    /// A room by id, from the primary (membership checks must see a room just created).
    pub async fn room(&self, id: i64) -> Result<Option<ChatRoom>, StoreError> {
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "room",
                "primary",
                sqlx::query_as::<DB, ChatRoom>(sql::ROOM_BY_ID)
                    .bind(id)
                    .fetch_optional(pool),
            )
            .await?
        }))
    }

    // ---- messages -------------------------------------------------------------------

    /// Stores a message; once this returns, the message is committed on the primary.
    /// An unknown room is `NotFound`. Validating the body is the caller's job.
    pub async fn insert_message(
        &self,
        room_id: i64,
        sender_id: &str,
        body: &str,
    ) -> Result<Message, StoreError> {
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "insert_message",
                "primary",
                sqlx::query_as::<DB, Message>(sql::INSERT_MESSAGE)
                    .bind(room_id)
                    .bind(sender_id)
                    .bind(body)
                    .fetch_one(pool),
            )
            .await?
        }))
    }

    /// Stores a message if `sender_id` is a member of the room, in one statement; `None`
    /// when it is not (or there is no such room) and nothing was stored. Committed on the
    /// primary once this returns.
    pub async fn insert_member_message(
        &self,
        room_id: i64,
        sender_id: &str,
        body: &str,
    ) -> Result<Option<Message>, StoreError> {
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "insert_message",
                "primary",
                sqlx::query_as::<DB, Message>(sql::INSERT_MEMBER_MESSAGE)
                    .bind(room_id)
                    .bind(sender_id)
                    .bind(body)
                    .fetch_optional(pool),
            )
            .await?
        }))
    }

    /// The bodies of every message sent by a user whose id starts with `prefix` (no
    /// `%` or `_` in it: those would match more). From the primary: `rtctl loadtest`
    /// checks that each acknowledged message was stored exactly once.
    pub async fn message_bodies_from(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        debug_assert!(!prefix.contains(['%', '_']), "{prefix}");
        let pattern = format!("{prefix}%");
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "message_bodies_from",
                "primary",
                sqlx::query_scalar::<DB, String>(sql::MESSAGE_BODIES_FROM)
                    .bind(pattern)
                    .fetch_all(pool),
            )
            .await?
        }))
    }

    /// Up to `limit` messages of a room, newest first, older than message `before` when
    /// given (pass the last id of the previous page). From the replica when there is one.
    pub async fn history(
        &self,
        room_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = i64::from(limit);
        Ok(with_pool!(self.stale_reads(), DB, pool => match before {
            None => {
                crate::metrics::query(
                    "history",
                    self.stale_pool(),
                    sqlx::query_as::<DB, Message>(sql::HISTORY_LATEST)
                        .bind(room_id)
                        .bind(limit)
                        .fetch_all(pool),
                )
                .await?
            }
            Some(before) => {
                crate::metrics::query(
                    "history",
                    self.stale_pool(),
                    sqlx::query_as::<DB, Message>(sql::HISTORY_BEFORE)
                        .bind(room_id)
                        .bind(before)
                        .bind(limit)
                        .fetch_all(pool),
                )
                .await?
            }
        }))
    }

    // ---- notifications --------------------------------------------------------------

    pub async fn insert_notification(
        &self,
        new: NewNotification,
    ) -> Result<Notification, StoreError> {
        if new.user_id.is_empty() {
            return Err(StoreError::InvalidInput("empty user id"));
        }
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "insert_notification",
                "primary",
                sqlx::query_as::<DB, Notification>(sql::INSERT_NOTIFICATION)
                    .bind(&new.user_id)
                    .bind(&new.kind)
                    .bind(&new.title)
                    .bind(&new.body)
                    .bind(Json(&new.data))
                    .fetch_one(pool),
            )
            .await?
        }))
    }

    /// Up to `limit` of a user's notifications, newest first, with id below `cursor` when
    /// given (pass the last id of the previous page). From the replica when there is one.
    pub async fn list_notifications(
        &self,
        user_id: &str,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        Ok(with_pool!(self.stale_reads(), DB, pool => {
            crate::metrics::query(
                "list_notifications",
                self.stale_pool(),
                sqlx::query_as::<DB, Notification>(sql::LIST_NOTIFICATIONS)
                    .bind(user_id)
                    .bind(cursor.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(pool),
            )
            .await?
        }))
    }

    /// How many of the user's notifications are unread, from the primary: it is shown
    /// right after a create or mark-read and must include it.
    pub async fn unread_count(&self, user_id: &str) -> Result<i64, StoreError> {
        Ok(with_pool!(&self.primary, DB, pool => {
            crate::metrics::query(
                "unread_count",
                "primary",
                sqlx::query_scalar::<DB, i64>(sql::UNREAD_COUNT)
                    .bind(user_id)
                    .fetch_one(pool),
            )
            .await?
        }))
    }

    /// Marks the user's unread notifications read: those in `ids`, or all of them with
    /// `None`. Ids of other users' notifications are ignored. Returns how many changed.
    pub async fn mark_read(&self, user_id: &str, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let done = match (ids, &self.primary) {
            (Some([]), _) => return Ok(0),
            (None, db) => with_pool!(db, DB, pool => {
                crate::metrics::query(
                    "mark_read",
                    "primary",
                    sqlx::query::<DB>(sql::MARK_ALL_READ)
                        .bind(user_id)
                        .execute(pool),
                )
                .await?
                    .rows_affected()
            }),
            (Some(ids), Db::Postgres(pool)) => crate::metrics::query(
                "mark_read",
                "primary",
                sqlx::query(sql::MARK_READ_IDS_POSTGRES)
                    .bind(user_id)
                    .bind(ids)
                    .execute(pool),
            )
            .await?
            .rows_affected(),
            (Some(ids), Db::Sqlite(pool)) => crate::metrics::query(
                "mark_read",
                "primary",
                sqlx::query(sql::MARK_READ_IDS_SQLITE)
                    .bind(user_id)
                    .bind(Json(ids))
                    .execute(pool),
            )
            .await?
            .rows_affected(),
        };
        Ok(done)
    }

    // ---- health and metrics ---------------------------------------------------------

    /// `SELECT 1` on the primary; the round trip (pool wait included), or `Unavailable`
    /// when it takes longer than `timeout`.
    pub async fn ping_primary(&self, timeout: Duration) -> Result<Duration, StoreError> {
        ping(&self.primary, timeout).await
    }

    /// `SELECT 1` on the replica; `None` when there is no replica.
    pub async fn ping_replica(&self, timeout: Duration) -> Result<Option<Duration>, StoreError> {
        match &self.replica {
            Some(replica) => ping(replica, timeout).await.map(Some),
            None => Ok(None),
        }
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            primary: self.primary.stat(),
            replica: self.replica.as_ref().map(Db::stat),
        }
    }
}

async fn ping(db: &Db, timeout: Duration) -> Result<Duration, StoreError> {
    let started = Instant::now();
    let attempt = async {
        with_pool!(db, DB, pool => sqlx::query::<DB>(sql::PING).execute(pool).await.map(drop))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(err)) => Err(err.into()),
        Err(_elapsed) => Err(StoreError::Unavailable(None)),
    }
}

/// Any failure to get a first connection means the database is unavailable, whatever the
/// driver called it (refused, bad password, no such database): the source says which.
fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(Some(err))
}

async fn connect_postgres(url: &DatabaseUrl, args: &StoreArgs) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|e| StoreError::Config(format!("{url}: {e}")))?
        .application_name("realtime");
    probe_postgres(&options, args.acquire_timeout()).await?;
    let statement_timeout = args.db_statement_timeout.to_string();
    PgPoolOptions::new()
        .max_connections(args.db_pool_size)
        .acquire_timeout(args.acquire_timeout())
        // A session setting rather than a startup option: PgBouncer refuses unknown
        // startup parameters.
        .after_connect(move |conn, _meta| {
            let statement_timeout = statement_timeout.clone();
            Box::pin(async move {
                sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                    .bind(statement_timeout)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(unavailable)
}

/// One direct connection, retried while refused (a server starting up) until `timeout`,
/// so that a failure at start carries its cause; the pool would report "timed out".
async fn probe_postgres(options: &PgConnectOptions, timeout: Duration) -> Result<(), StoreError> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, PgConnection::connect_with(options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(sqlx::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && deadline.saturating_duration_since(Instant::now())
                        > Duration::from_millis(100) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(err)) if is_tls_failure(&err) => {
                return Err(StoreError::Config(format!(
                    "TLS with PostgreSQL failed ({err}): check sslmode= and sslrootcert= in \
                     the URL; sslrootcert must name the PEM file of the CA that signed the \
                     server's certificate, and verify-full also checks the host name"
                )))
            }
            Ok(Err(err)) => return Err(unavailable(err)),
            Err(_elapsed) => return Err(unavailable(sqlx::Error::PoolTimedOut)),
        }
    }
}

/// A refused TLS upgrade or handshake: sqlx's own TLS errors, and rustls's (a rejected
/// certificate), which reach us as `InvalidData` I/O errors.
fn is_tls_failure(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(e) => {
            e.kind() == std::io::ErrorKind::InvalidData && e.to_string().contains("certificate")
        }
        _ => false,
    }
}

async fn connect_sqlite(url: &DatabaseUrl, args: &StoreArgs) -> Result<SqlitePool, StoreError> {
    let mut options = SqliteConnectOptions::from_str(url.expose())
        .map_err(|e| StoreError::Config(format!("{url}: {e}")))?
        .create_if_missing(true)
        .foreign_keys(true)
        // How long a write waits for another connection's write lock.
        .busy_timeout(args.statement_timeout());
    let mut pool = SqlitePoolOptions::new()
        .max_connections(args.db_pool_size)
        .acquire_timeout(args.acquire_timeout());
    if url.is_sqlite_memory() {
        // Each connection to `:memory:` is its own empty database: keep exactly one open.
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    } else {
        // Readers do not block the writer, nor the writer readers.
        options = options.journal_mode(SqliteJournalMode::Wal);
    }
    pool.connect_with(options).await.map_err(unavailable)
}

#[cfg(test)]
mod declared_operations {
    /// Every operation this file times is declared (its error series starts at 0).
    #[test]
    fn every_timed_operation_is_declared() {
        let marker = concat!("crate::metrics::", "query(");
        let timed: Vec<&str> = include_str!("mod.rs")
            .split(marker)
            .skip(1)
            .filter_map(|call| call.split('"').nth(1))
            .collect();
        assert!(timed.len() >= super::OPERATIONS.len(), "{timed:?}");
        for op in timed.iter().chain(&super::REPLICA_OPERATIONS) {
            assert!(super::OPERATIONS.contains(op), "{op} is not in OPERATIONS");
        }
        for op in super::OPERATIONS {
            assert!(timed.contains(&op), "{op} is declared but never timed");
        }
    }
}
