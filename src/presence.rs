//! Who is online: users, their sockets and the nodes that hold them, cluster-wide.
//!
//! A user with three tabs is one user with three sockets. Each node tracks its own
//! sockets in memory and mirrors them into a [`PresenceStore`]: in-process on the
//! embedded default, Redis in a cluster. The Redis layout follows Centrifugo's presence
//! (a ZSET of expiry times beside a HASH of details), so nothing ever needs `KEYS`:
//!
//! | key                         | type | content                                    |
//! |-----------------------------|------|--------------------------------------------|
//! | `<p>:users`                 | ZSET | user → latest expiry (ms) of its sockets   |
//! | `<p>:names`                 | ZSET | user → 0: the same users, in name order    |
//! | `<p>:user:<user>`           | ZSET | socket id → expiry (ms)                    |
//! | `<p>:sockets`               | HASH | socket id → node id                        |
//! | `<p>:nodes`                 | ZSET | node id → expiry (ms)                      |
//! | `<p>:node:<id>`             | STR  | node JSON (id, address, version, …), TTL   |
//! | `<p>:rooms:<id>`            | HASH | namespace → `[[room, members], …]`, TTL    |
//!
//! Every entry carries an expiry of `now + 2 × heartbeat`, and every node refreshes its
//! own entries each heartbeat. A node that dies without a word (kill -9) stops
//! refreshing, so its users read as offline within 2 × heartbeat — reads compare scores
//! with the clock — and the next heartbeat of any node sweeps them away.
//!
//! `<p>:names` exists for paging: `<p>:users` is ordered by expiry, which every heartbeat
//! moves, so an offset into it skips or repeats users between two pages. Names with equal
//! scores sort lexicographically and do not move: a page starts after the last name of
//! the previous one (`ZRANGE … BYLEX`), and every user online during the whole walk is
//! listed exactly once.

use crate::server::{BoxFuture, Io, SocketRef};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("presence store unavailable: {0}")]
    Unavailable(String),
}

impl From<redis::RedisError> for PresenceError {
    fn from(e: redis::RedisError) -> Self {
        PresenceError::Unavailable(e.to_string())
    }
}

type Result<T> = std::result::Result<T, PresenceError>;

/// A live node, as it registers itself every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub address: String,
    pub version: String,
    pub connections: u64,
    /// Unix milliseconds.
    pub started_at: u64,
    /// Unix milliseconds of the heartbeat that wrote this entry.
    #[serde(default)]
    pub heartbeat_at: u64,
}

/// One socket of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketPresence {
    pub sid: String,
    pub node: String,
}

/// A page of online users in name order; pass `next_cursor` back for the next one
/// (`None`: done). The cursor is the last user of this page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsersPage {
    pub users: Vec<String>,
    pub next_cursor: Option<String>,
}

/// Rooms of one namespace with their member counts, per node.
pub type RoomCounts = Vec<(String, usize)>;

/// Where presence lives. See the module docs for the Redis layout.
pub trait PresenceStore: Send + Sync + 'static {
    /// Records socket `sid` of `user` on `node`; true if it is the user's first.
    fn add(&self, user: &str, sid: &str, node: &str) -> BoxFuture<Result<bool>>;
    /// Forgets socket `sid` of `user`; true if the user has no socket left.
    fn remove(&self, user: &str, sid: &str) -> BoxFuture<Result<bool>>;
    /// Refreshes this node's entries and registration, and sweeps expired ones. Returns
    /// the users the sweep found with no live socket left (their node died): each is
    /// returned to exactly one caller, cluster-wide.
    fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<Vec<String>>>;
    fn is_online(&self, user: &str) -> BoxFuture<Result<bool>>;
    fn sockets_of(&self, user: &str) -> BoxFuture<Result<Vec<SocketPresence>>>;
    /// Up to `limit` online users whose ids sort after `after` (from the start: `None`).
    fn online_users(&self, after: Option<&str>, limit: usize) -> BoxFuture<Result<UsersPage>>;
    fn online_count(&self) -> BoxFuture<Result<usize>>;
    fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>>;
    /// Rooms of `namespace` with members summed over the live nodes.
    fn rooms(&self, namespace: &str) -> BoxFuture<Result<RoomCounts>>;
    /// The namespaces the live nodes serve, sorted.
    fn namespaces(&self) -> BoxFuture<Result<Vec<String>>>;
}

/// Called with `(user, online)` when a user's first socket connected (`true`) or the
/// last one left (`false`) — including when a dead node's sockets are swept.
pub type ChangeListener = Arc<dyn Fn(String, bool) + Send + Sync>;

/// What a node sends every heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub node: NodeInfo,
    /// (user, socket id) of every local socket.
    pub sockets: Vec<(String, String)>,
    /// namespace → rooms and local member counts.
    pub rooms: Vec<(String, RoomCounts)>,
    /// Entries written now expire after this (2 × heartbeat).
    pub ttl: Duration,
}

/// `ZRANGE key (now +inf BYSCORE`: the members of an expiry-scored ZSET that have not
/// expired (presence scores every entry with its expiry time in ms).
fn alive(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(key)
        .arg(format!("({}", now_ms()))
        .arg("+inf")
        .arg("BYSCORE");
    cmd
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node's presence: its own sockets in memory, mirrored into a [`PresenceStore`].
pub struct Presence {
    store: Arc<dyn PresenceStore>,
    node_id: String,
    address: String,
    started_at: u64,
    heartbeat: Duration,
    local: Mutex<HashMap<String, HashSet<String>>>,
    io: OnceLock<Io>,
    on_change: OnceLock<ChangeListener>,
}

impl Presence {
    pub fn new(
        store: Arc<dyn PresenceStore>,
        node_id: &str,
        address: &str,
        heartbeat: Duration,
    ) -> Arc<Self> {
        Arc::new(Presence {
            store,
            node_id: node_id.to_owned(),
            address: address.to_owned(),
            started_at: now_ms(),
            heartbeat,
            local: Mutex::default(),
            io: OnceLock::new(),
            on_change: OnceLock::new(),
        })
    }

    /// The embedded default: one node, everything in memory.
    pub fn in_process(node_id: &str) -> Arc<Self> {
        let store = Arc::new(InProcessPresence::default());
        let p = Self::new(store.clone(), node_id, "", Duration::from_secs(10));
        store.set_presence(Arc::downgrade(&p));
        p
    }

    pub fn store(&self) -> &Arc<dyn PresenceStore> {
        &self.store
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Sets who hears of users coming online and going offline (once; later calls are
    /// ignored). The listener runs inline: it must not block (spawn or queue the work).
    pub fn on_change(&self, listener: ChangeListener) {
        let _ = self.on_change.set(listener);
    }

    fn changed(&self, user: &str, online: bool) {
        if let Some(listener) = self.on_change.get() {
            listener(user.to_owned(), online);
        }
    }

    /// Gives presence the server (for room counts and connection numbers) and starts
    /// the heartbeat. Call once, after the server is built.
    pub fn attach(self: &Arc<Self>, io: Io) {
        if self.io.set(io).is_err() {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = self.heartbeat;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                if let Err(e) = p.beat().await {
                    tracing::warn!(error = %e, "presence heartbeat failed");
                }
            }
        });
    }

    /// One heartbeat now (the timer calls this; tests may too).
    pub async fn beat(&self) -> Result<()> {
        let sockets: Vec<(String, String)> = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|(u, sids)| sids.iter().map(move |s| (u.clone(), s.clone())))
            .collect();
        let (connections, rooms) = match self.io.get() {
            Some(io) => (
                io.connection_count() as u64,
                io.namespaces()
                    .iter()
                    .map(|ns| {
                        let rooms = ns.rooms().into_iter().map(|(r, n)| (r.to_string(), n));
                        (ns.name.clone(), rooms.collect())
                    })
                    .collect(),
            ),
            None => (0, Vec::new()),
        };
        let gone = self
            .store
            .heartbeat(Heartbeat {
                node: NodeInfo {
                    id: self.node_id.clone(),
                    address: self.address.clone(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    connections,
                    started_at: self.started_at,
                    heartbeat_at: now_ms(),
                },
                sockets,
                rooms,
                ttl: self.heartbeat * 2,
            })
            .await
            .inspect_err(|_| crate::metrics::redis_error("presence"))?;
        for user in gone {
            self.changed(&user, false);
        }
        // Live nodes as this node sees them (itself included), for the cluster gauge.
        let nodes = self
            .store
            .nodes()
            .await
            .inspect_err(|_| crate::metrics::redis_error("presence"))?;
        crate::metrics::cluster().nodes.set(nodes.len() as i64);
        Ok(())
    }

    /// A socket of `user` connected here; true if the user just came online.
    pub async fn connected(&self, user: &str, sid: &str) -> Result<bool> {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user.to_owned())
            .or_default()
            .insert(sid.to_owned());
        let first = self
            .store
            .add(user, sid, &self.node_id)
            .await
            .inspect_err(|_| crate::metrics::redis_error("presence"))?;
        if first {
            self.changed(user, true);
        }
        Ok(first)
    }

    /// A socket of `user` left; true if the user just went offline.
    pub async fn disconnected(&self, user: &str, sid: &str) -> Result<bool> {
        {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(sids) = local.get_mut(user) {
                sids.remove(sid);
                if sids.is_empty() {
                    local.remove(user);
                }
            }
        }
        let last = self
            .store
            .remove(user, sid)
            .await
            .inspect_err(|_| crate::metrics::redis_error("presence"))?;
        if last {
            self.changed(user, false);
        }
        Ok(last)
    }

    /// Tracks the sockets of a namespace: call from `on_connect` / `on_disconnect`.
    /// Returns whether `socket`'s user just came online.
    pub async fn track(&self, socket: &SocketRef, user: &str) -> bool {
        self.connected(user, socket.id.as_str())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "presence: cannot record a connection");
                false
            })
    }

    pub async fn is_online(&self, user: &str) -> Result<bool> {
        self.store.is_online(user).await
    }

    pub async fn sockets_of(&self, user: &str) -> Result<Vec<SocketPresence>> {
        self.store.sockets_of(user).await
    }

    pub async fn online_users(&self, after: Option<&str>, limit: usize) -> Result<UsersPage> {
        self.store.online_users(after, limit).await
    }

    pub async fn online_count(&self) -> Result<usize> {
        self.store.online_count().await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.store.nodes().await
    }

    pub async fn rooms(&self, namespace: &str) -> Result<RoomCounts> {
        self.store.rooms(namespace).await
    }

    pub async fn namespaces(&self) -> Result<Vec<String>> {
        self.store.namespaces().await
    }
}

/// Presence of a single node, in memory.
#[derive(Default)]
pub struct InProcessPresence {
    users: Mutex<HashMap<String, Vec<SocketPresence>>>,
    presence: OnceLock<Weak<Presence>>,
}

impl InProcessPresence {
    fn set_presence(&self, p: Weak<Presence>) {
        let _ = self.presence.set(p);
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SocketPresence>>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ready<T: Send + 'static>(v: T) -> BoxFuture<Result<T>> {
        Box::pin(async move { Ok(v) })
    }
}

impl PresenceStore for InProcessPresence {
    fn add(&self, user: &str, sid: &str, node: &str) -> BoxFuture<Result<bool>> {
        let mut users = self.users();
        let sockets = users.entry(user.to_owned()).or_default();
        let first = sockets.is_empty();
        if !sockets.iter().any(|s| s.sid == sid) {
            sockets.push(SocketPresence {
                sid: sid.to_owned(),
                node: node.to_owned(),
            });
        }
        Self::ready(first)
    }

    fn remove(&self, user: &str, sid: &str) -> BoxFuture<Result<bool>> {
        let mut users = self.users();
        let last = match users.get_mut(user) {
            Some(sockets) => {
                sockets.retain(|s| s.sid != sid);
                sockets.is_empty()
            }
            None => false,
        };
        if last {
            users.remove(user);
        }
        Self::ready(last)
    }

    fn heartbeat(&self, _beat: Heartbeat) -> BoxFuture<Result<Vec<String>>> {
        Self::ready(Vec::new())
    }

    fn is_online(&self, user: &str) -> BoxFuture<Result<bool>> {
        Self::ready(self.users().contains_key(user))
    }

    fn sockets_of(&self, user: &str) -> BoxFuture<Result<Vec<SocketPresence>>> {
        Self::ready(self.users().get(user).cloned().unwrap_or_default())
    }

    fn online_users(&self, after: Option<&str>, limit: usize) -> BoxFuture<Result<UsersPage>> {
        let mut all: Vec<String> = self
            .users()
            .keys()
            .filter(|u| after.is_none_or(|a| u.as_str() > a))
            .cloned()
            .collect();
        all.sort();
        all.truncate(limit);
        let page = all;
        let next_cursor = (page.len() == limit && limit > 0)
            .then(|| page.last().cloned())
            .flatten();
        Self::ready(UsersPage {
            users: page,
            next_cursor,
        })
    }

    fn online_count(&self) -> BoxFuture<Result<usize>> {
        Self::ready(self.users().len())
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>> {
        let now = now_ms();
        let node = self
            .presence
            .get()
            .and_then(Weak::upgrade)
            .map(|p| NodeInfo {
                id: p.node_id.clone(),
                address: p.address.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                connections: p.io.get().map_or(0, |io| io.connection_count() as u64),
                started_at: p.started_at,
                heartbeat_at: now,
            });
        Self::ready(node.into_iter().collect())
    }

    fn rooms(&self, namespace: &str) -> BoxFuture<Result<RoomCounts>> {
        let rooms = self
            .presence
            .get()
            .and_then(Weak::upgrade)
            .and_then(|p| p.io.get().and_then(|io| io.of(namespace)))
            .map(|ns| {
                ns.rooms()
                    .into_iter()
                    .map(|(r, n)| (r.to_string(), n))
                    .collect()
            })
            .unwrap_or_default();
        Self::ready(rooms)
    }

    fn namespaces(&self) -> BoxFuture<Result<Vec<String>>> {
        let mut names: Vec<String> = self
            .presence
            .get()
            .and_then(Weak::upgrade)
            .and_then(|p| p.io.get().map(|io| io.namespaces()))
            .unwrap_or_default()
            .iter()
            .map(|ns| ns.name.clone())
            .collect();
        names.sort();
        Self::ready(names)
    }
}

/// Presence in Redis; see the module docs for the keys.
pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    /// Expiry of a new socket entry: 2 × heartbeat.
    ttl: Duration,
}

/// Adds a socket: returns 1 when the user had no live socket before.
const ADD: &str = r#"
local now = tonumber(ARGV[3])
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('ZADD', KEYS[1], 'GT', ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
if live == 0 then return 1 else return 0 end
"#;

/// Removes a socket: returns 1 when the user has no live socket left.
const REMOVE: &str = r#"
local now = tonumber(ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #top == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[2])
  return 1
end
redis.call('ZADD', KEYS[1], top[2], ARGV[1])
return 0
"#;

/// Sweeps up to ARGV[3] users whose every socket expired (a node died); returns the
/// users it removed (no live socket left). Atomic, so each is returned to one caller.
const SWEEP: &str = r#"
local now = tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local gone = {}
for _, u in ipairs(stale) do
  local k = ARGV[2] .. u
  local dead = redis.call('ZRANGEBYSCORE', k, '-inf', now)
  for _, s in ipairs(dead) do redis.call('HDEL', KEYS[2], s) end
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
  if #top == 0 then
    redis.call('ZREM', KEYS[1], u)
    redis.call('ZREM', KEYS[4], u)
    redis.call('DEL', k)
    table.insert(gone, u)
  else
    redis.call('ZADD', KEYS[1], top[2], u)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return gone
"#;

static ADD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADD));
static REMOVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REMOVE));
static SWEEP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SWEEP));

impl RedisPresence {
    /// Presence under key prefix `prefix` (e.g. `rt:presence`), for nodes beating
    /// every `heartbeat`.
    pub fn new(conn: ConnectionManager, prefix: &str, heartbeat: Duration) -> Self {
        RedisPresence {
            conn,
            prefix: prefix.to_owned(),
            ttl: heartbeat * 2,
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }
}

impl PresenceStore for RedisPresence {
    fn add(&self, user: &str, sid: &str, node: &str) -> BoxFuture<Result<bool>> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let mut inv = ADD_SCRIPT.prepare_invoke();
        inv.key(self.key("users"))
            .key(self.user_key(user))
            .key(self.key("sockets"))
            .key(self.key("names"))
            .arg(user)
            .arg(sid)
            .arg(now)
            .arg(now + self.ttl.as_millis() as u64)
            .arg(node);
        Box::pin(async move { Ok(inv.invoke_async::<i64>(&mut conn).await? == 1) })
    }

    fn remove(&self, user: &str, sid: &str) -> BoxFuture<Result<bool>> {
        let mut conn = self.conn.clone();
        let mut inv = REMOVE_SCRIPT.prepare_invoke();
        inv.key(self.key("users"))
            .key(self.user_key(user))
            .key(self.key("sockets"))
            .key(self.key("names"))
            .arg(user)
            .arg(sid)
            .arg(now_ms());
        Box::pin(async move { Ok(inv.invoke_async::<i64>(&mut conn).await? == 1) })
    }

    fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<Vec<String>>> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let expires = now + beat.ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (user, sid) in &beat.sockets {
            let k = self.user_key(user);
            pipe.cmd("ZADD").arg(&k).arg(expires).arg(sid).ignore();
            pipe.cmd("PEXPIREAT").arg(&k).arg(expires).ignore();
            pipe.cmd("HSET")
                .arg(self.key("sockets"))
                .arg(sid)
                .arg(&beat.node.id)
                .ignore();
            pipe.cmd("ZADD")
                .arg(self.key("users"))
                .arg("GT")
                .arg(expires)
                .arg(user)
                .ignore();
            // Back in the name index if a sweep took the user out (Redis was away).
            pipe.cmd("ZADD")
                .arg(self.key("names"))
                .arg(0)
                .arg(user)
                .ignore();
        }
        let node_key = self.key(&format!("node:{}", beat.node.id));
        let node_json = serde_json::to_string(&beat.node).unwrap_or_default();
        pipe.cmd("SET")
            .arg(&node_key)
            .arg(node_json)
            .arg("PX")
            .arg(beat.ttl.as_millis() as u64)
            .ignore();
        pipe.cmd("ZADD")
            .arg(self.key("nodes"))
            .arg(expires)
            .arg(&beat.node.id)
            .ignore();
        let rooms_key = self.key(&format!("rooms:{}", beat.node.id));
        // Each namespace's field is overwritten, never deleted first: a reader between
        // two commands of this (non-transactional) pipeline never sees a node without
        // rooms. A node's namespaces are fixed for its lifetime, so no field goes stale.
        for (nsp, rooms) in &beat.rooms {
            pipe.cmd("HSET")
                .arg(&rooms_key)
                .arg(nsp)
                .arg(serde_json::to_string(rooms).unwrap_or_default())
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&rooms_key)
            .arg(beat.ttl.as_millis() as u64)
            .ignore();
        let mut sweep = SWEEP_SCRIPT.prepare_invoke();
        sweep
            .key(self.key("users"))
            .key(self.key("sockets"))
            .key(self.key("nodes"))
            .key(self.key("names"))
            .arg(now)
            .arg(format!("{}:user:", self.prefix))
            .arg(1000);
        Box::pin(async move {
            pipe.query_async::<()>(&mut conn).await?;
            Ok(sweep.invoke_async::<Vec<String>>(&mut conn).await?)
        })
    }

    fn is_online(&self, user: &str) -> BoxFuture<Result<bool>> {
        let mut conn = self.conn.clone();
        let key = self.key("users");
        let user = user.to_owned();
        Box::pin(async move {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(key)
                .arg(user)
                .query_async(&mut conn)
                .await?;
            Ok(score.is_some_and(|s| s as u64 > now_ms()))
        })
    }

    fn sockets_of(&self, user: &str) -> BoxFuture<Result<Vec<SocketPresence>>> {
        let mut conn = self.conn.clone();
        let key = self.user_key(user);
        let sockets_key = self.key("sockets");
        Box::pin(async move {
            let sids: Vec<String> = alive(&key).query_async(&mut conn).await?;
            if sids.is_empty() {
                return Ok(Vec::new());
            }
            let nodes: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&sockets_key)
                .arg(&sids)
                .query_async(&mut conn)
                .await?;
            Ok(sids
                .into_iter()
                .zip(nodes)
                .map(|(sid, node)| SocketPresence {
                    sid,
                    node: node.unwrap_or_default(),
                })
                .collect())
        })
    }

    fn online_users(&self, after: Option<&str>, limit: usize) -> BoxFuture<Result<UsersPage>> {
        let mut conn = self.conn.clone();
        let names = self.key("names");
        let users = self.key("users");
        let mut from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        Box::pin(async move {
            let mut page: Vec<String> = Vec::new();
            let mut last_seen = None;
            let mut exhausted = false;
            // Names of users whose node died stay until a sweep: skip those (their
            // expiry passed) and read on, a bounded number of times.
            for _ in 0..8 {
                let want = limit - page.len();
                if want == 0 {
                    break;
                }
                let candidates: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&names)
                    .arg(&from)
                    .arg("+")
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(want)
                    .query_async(&mut conn)
                    .await?;
                let Some(last) = candidates.last() else {
                    exhausted = true;
                    break;
                };
                from = format!("({last}");
                last_seen = Some(last.clone());
                let expiries: Vec<Option<f64>> = redis::cmd("ZMSCORE")
                    .arg(&users)
                    .arg(&candidates)
                    .query_async(&mut conn)
                    .await?;
                let now = now_ms() as f64;
                exhausted = candidates.len() < want;
                page.extend(
                    candidates
                        .into_iter()
                        .zip(expiries)
                        .filter(|(_, e)| e.is_some_and(|e| e > now))
                        .map(|(u, _)| u),
                );
                if exhausted {
                    break;
                }
            }
            // More may follow unless the index ran out: go on after the last name read
            // (returned or skipped).
            let next_cursor = if exhausted { None } else { last_seen };
            Ok(UsersPage {
                users: page,
                next_cursor,
            })
        })
    }

    fn online_count(&self) -> BoxFuture<Result<usize>> {
        let mut conn = self.conn.clone();
        let key = self.key("users");
        Box::pin(async move {
            Ok(redis::cmd("ZCOUNT")
                .arg(&key)
                .arg(format!("({}", now_ms()))
                .arg("+inf")
                .query_async(&mut conn)
                .await?)
        })
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>> {
        let mut conn = self.conn.clone();
        let key = self.key("nodes");
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let ids: Vec<String> = alive(&key).query_async(&mut conn).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}:node:{id}")).collect();
            let infos: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            Ok(infos
                .into_iter()
                .flatten()
                .filter_map(|j| serde_json::from_str(&j).ok())
                .collect())
        })
    }

    fn rooms(&self, namespace: &str) -> BoxFuture<Result<RoomCounts>> {
        let nodes = self.nodes();
        let mut conn = self.conn.clone();
        let prefix = self.prefix.clone();
        let namespace = namespace.to_owned();
        Box::pin(async move {
            let mut totals: HashMap<String, usize> = HashMap::new();
            for node in nodes.await? {
                let json: Option<String> = redis::cmd("HGET")
                    .arg(format!("{prefix}:rooms:{}", node.id))
                    .arg(&namespace)
                    .query_async(&mut conn)
                    .await?;
                let rooms: RoomCounts = json
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default();
                for (room, n) in rooms {
                    *totals.entry(room).or_default() += n;
                }
            }
            let mut rooms: RoomCounts = totals.into_iter().collect();
            rooms.sort();
            Ok(rooms)
        })
    }

    fn namespaces(&self) -> BoxFuture<Result<Vec<String>>> {
        let nodes = self.nodes();
        let mut conn = self.conn.clone();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let mut names = std::collections::BTreeSet::new();
            for node in nodes.await? {
                let keys: Vec<String> = redis::cmd("HKEYS")
                    .arg(format!("{prefix}:rooms:{}", node.id))
                    .query_async(&mut conn)
                    .await?;
                names.extend(keys);
            }
            Ok(names.into_iter().collect())
        })
    }
}
