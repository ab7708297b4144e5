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
//! On a Redis Cluster the user keys and indexes are spread over 16 hash-tagged buckets
//! (`{<p>:b<n>}:users`, `{<p>:b<n>}:user:<user>`, …) and the node keys share the tag
//! `{<p>:nodes}`, so each script's keys are in one slot (`keys`).
//!
//! | `<p>:indexed`               | SET  | nodes that keep a socket index (below)     |
//! | `<p>:node-sockets:<id>`     | SET  | `<socket id> <user>` of every socket there |
//!
//! A heartbeat costs Redis the same at 10 sockets as at 100,000: a node registers itself
//! (`nodes`, expiry `now + 2 × heartbeat`), and its sockets' entries carry a long lease
//! (90 heartbeats) instead of being refreshed one by one. What makes a dead node's
//! sockets go away is its index: every heartbeat lists the indexed nodes whose
//! registration expired, and sweeps their sockets (a socket is removed only if the
//! sockets hash still names that node: a recovered session may live elsewhere now). A
//! node that dies without a word (kill -9) therefore has its users read as offline
//! within 2–3 heartbeats: its registration expires after two, and the next heartbeat
//! of any node sweeps it. Every 30 heartbeats — and at once when Redis lost the node's
//! entries (restarted empty, or swept it after a pause), after a write failed, or while
//! a node of an earlier version (which refreshes by expiry) is alive — a node rewrites
//! all its entries and its index, so nothing lost stays lost.
//!
//! Writes leave the connect path: a node records a change in memory at once and one
//! writer task per node (`writer`) applies changes in order, a batch per script call,
//! with each heartbeat's refresh queued behind the changes that preceded its snapshot.
//!
//! `<p>:names` exists for paging: `<p>:users` is ordered by expiry, which every heartbeat
//! moves, so an offset into it skips or repeats users between two pages. Names with equal
//! scores sort lexicographically and do not move: a page starts after the last name of
//! the previous one (`ZRANGE … BYLEX`), and every user online during the whole walk is
//! listed exactly once.

mod in_process;
mod keys;
mod redis_store;
mod writer;

pub use in_process::InProcessPresence;
pub use keys::{PresenceKeys, CLUSTER_BUCKETS};
pub use redis_store::RedisPresence;
pub use writer::{Change, ChangeKind};

use crate::server::{BoxFuture, Io};
use crate::sync::MutexExt as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

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
    /// The node keeps a socket index and leases its entries (see the module docs);
    /// false for nodes of earlier versions, which refresh every socket every heartbeat.
    #[serde(default)]
    pub indexed: bool,
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
    /// Applies `changes` of sockets on `node`, in order. For each: true if a connect
    /// was the user's first live socket, or a disconnect left the user with none.
    fn apply(&self, node: &str, changes: &[Change]) -> BoxFuture<Result<Vec<bool>>>;
    /// Renews this node's registration (and, when the beat carries them, rewrites its
    /// sockets), and sweeps dead nodes' sockets and expired entries.
    fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<BeatOutcome>>;
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
    /// (user, socket id) of every local socket, when the store is to rewrite them all;
    /// `None` on an ordinary beat (the store keeps them by lease and index).
    pub sockets: Option<Vec<(String, String)>>,
    /// namespace → rooms and local member counts, of the namespaces whose rooms changed
    /// since the last beat written (every namespace on a full beat).
    pub rooms: Vec<(String, RoomCounts)>,
    /// The node's registration expires after this (2 × heartbeat).
    pub ttl: Duration,
}

/// What a heartbeat found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BeatOutcome {
    /// Users the sweep found with no live socket left (their node died): each is
    /// returned to exactly one caller, cluster-wide.
    pub gone: Vec<String>,
    /// The store holds none of this node's sockets (Redis restarted empty, or swept
    /// the node after a pause): send them all now.
    pub wants_sockets: bool,
}

/// A node rewrites all its entries at least every this many heartbeats.
pub const FULL_REFRESH_EVERY: u32 = 30;

/// Heartbeats a socket entry lives without a rewrite: three full refreshes, so one or
/// two failed ones lose nothing.
pub const LEASE_BEATS: u32 = 3 * FULL_REFRESH_EVERY;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn queue_full() -> PresenceError {
    PresenceError::Unavailable("the presence queue is full: the store is not keeping up".into())
}

/// A node's presence: its own sockets in memory, mirrored into a [`PresenceStore`].
pub struct Presence {
    store: Arc<dyn PresenceStore>,
    node_id: String,
    address: String,
    started_at: u64,
    heartbeat: Duration,
    /// user → ids of its sockets here. A list, not a set: a user has a socket or a few,
    /// and a set of one costs ~120 bytes where a list of one costs 24.
    local: Mutex<HashMap<String, Vec<String>>>,
    io: OnceLock<Io>,
    on_change: OnceLock<ChangeListener>,
    /// To the writer task (see [`writer`]).
    queue: mpsc::Sender<writer::Job>,
    failures: Arc<writer::Failures>,
    /// Heartbeats since the last full rewrite of this node's entries.
    beats_since_full: AtomicU32,
    /// The next heartbeat rewrites every entry: a write failed or a change was dropped.
    needs_full: AtomicBool,
    /// A node of an earlier version is alive: rewrite every heartbeat (see the module
    /// docs), since it refreshes by expiry and shortens the keys our sockets share.
    legacy_peers: AtomicBool,
    /// namespace → rooms version of the snapshot the store has: an unchanged namespace
    /// is not listed and sent again (16,000 rooms a node are ~0.5 MB of JSON a beat).
    rooms_written: Mutex<HashMap<String, u64>>,
}

impl Presence {
    pub fn new(
        store: Arc<dyn PresenceStore>,
        node_id: &str,
        address: &str,
        heartbeat: Duration,
    ) -> Arc<Self> {
        let (queue, rx) = mpsc::channel(writer::QUEUE);
        let failures = Arc::new(writer::Failures::default());
        let p = Arc::new(Presence {
            store: store.clone(),
            node_id: node_id.to_owned(),
            address: address.to_owned(),
            started_at: now_ms(),
            heartbeat,
            local: Mutex::default(),
            io: OnceLock::new(),
            on_change: OnceLock::new(),
            queue,
            failures: failures.clone(),
            beats_since_full: AtomicU32::new(FULL_REFRESH_EVERY),
            needs_full: AtomicBool::new(false),
            legacy_peers: AtomicBool::new(false),
            rooms_written: Mutex::default(),
        });
        writer::spawn(Arc::downgrade(&p), store, node_id.to_owned(), failures, rx);
        p
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
        let full = self.full_refresh_due();
        let mut outcome = self.send_beat(full).await;
        if matches!(&outcome, Ok(o) if o.wants_sockets && !full) {
            let gone = outcome.map(|o| o.gone).unwrap_or_default();
            outcome = self.send_beat(true).await.map(|mut o| {
                o.gone.extend(gone);
                o
            });
        }
        let outcome = outcome.inspect_err(|_| {
            crate::metrics::redis_error("presence");
            self.needs_full.store(true, Ordering::Relaxed);
        })?;
        for user in outcome.gone {
            self.changed(&user, false);
        }
        // Live nodes as this node sees them (itself included), for the cluster gauge.
        let nodes = self
            .store
            .nodes()
            .await
            .inspect_err(|_| crate::metrics::redis_error("presence"))?;
        crate::metrics::cluster().nodes.set(nodes.len() as i64);
        let legacy = nodes.iter().any(|n| !n.indexed);
        self.legacy_peers.store(legacy, Ordering::Relaxed);
        Ok(())
    }

    /// Whether this heartbeat rewrites every entry (see the module docs).
    fn full_refresh_due(&self) -> bool {
        let periodic = self.beats_since_full.fetch_add(1, Ordering::Relaxed) + 1;
        self.needs_full.swap(false, Ordering::Relaxed)
            || self.legacy_peers.load(Ordering::Relaxed)
            || periodic >= FULL_REFRESH_EVERY
    }

    /// Queues a heartbeat behind the changes before it and waits for the store.
    async fn send_beat(&self, full: bool) -> Result<BeatOutcome> {
        let connections = self.io.get().map_or(0, |io| io.connection_count() as u64);
        let (rooms, versions) = self.changed_rooms(full);
        let (done, answer) = oneshot::channel();
        {
            // The snapshot and its place in the queue are taken together: every change
            // before it is in it, every change after it is queued after it.
            let local = self.local.lock_unpoisoned();
            let sockets = full.then(|| {
                local
                    .iter()
                    .flat_map(|(u, sids)| sids.iter().map(move |s| (u.clone(), s.clone())))
                    .collect()
            });
            let beat = Heartbeat {
                node: NodeInfo {
                    id: self.node_id.clone(),
                    address: self.address.clone(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    connections,
                    started_at: self.started_at,
                    heartbeat_at: now_ms(),
                    indexed: true,
                },
                sockets,
                rooms,
                ttl: self.heartbeat * 2,
            };
            self.queue
                .try_send(writer::Job::Beat(beat, done))
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => queue_full(),
                    mpsc::error::TrySendError::Closed(_) => writer::gone(),
                })?;
        }
        let outcome = answer.await.map_err(|_| writer::gone())??;
        if full {
            self.beats_since_full.store(0, Ordering::Relaxed);
        }
        self.rooms_written.lock_unpoisoned().extend(versions);
        Ok(outcome)
    }

    /// The rooms of every namespace whose rooms changed since the store last had them
    /// (all when `full`), and the versions they were listed at.
    #[allow(clippy::type_complexity)]
    fn changed_rooms(&self, full: bool) -> (Vec<(String, RoomCounts)>, Vec<(String, u64)>) {
        let Some(io) = self.io.get() else {
            return (Vec::new(), Vec::new());
        };
        let written = self.rooms_written.lock_unpoisoned();
        let mut rooms = Vec::new();
        let mut versions = Vec::new();
        for ns in io.namespaces().iter() {
            // Read before listing: a change in between is listed, and sent again next beat.
            let version = ns.rooms_version();
            if !full && written.get(&ns.name) == Some(&version) {
                continue;
            }
            let counts = ns.rooms().into_iter().map(|(r, n)| (r.to_string(), n));
            rooms.push((ns.name.clone(), counts.collect()));
            versions.push((ns.name.clone(), version));
        }
        (rooms, versions)
    }

    /// Records the change in this node's memory and queues it for the store, under one
    /// lock (see [`Presence::beat`]). False if the queue is full (the change is dropped
    /// for the store; the next heartbeat repairs a connect, expiry a disconnect).
    fn record(
        &self,
        kind: ChangeKind,
        user: &str,
        sid: &str,
        done: Option<oneshot::Sender<Result<bool>>>,
    ) -> bool {
        let mut local = self.local.lock_unpoisoned();
        match kind {
            ChangeKind::Connected => {
                let sids = local
                    .entry(user.to_owned())
                    .or_insert_with(|| Vec::with_capacity(1));
                if !sids.iter().any(|s| s == sid) {
                    sids.push(sid.to_owned());
                }
            }
            ChangeKind::Disconnected => {
                if let Some(sids) = local.get_mut(user) {
                    sids.retain(|s| s != sid);
                    if sids.is_empty() {
                        local.remove(user);
                    }
                }
            }
        }
        let change = Change {
            kind,
            user: user.to_owned(),
            sid: sid.to_owned(),
        };
        if self
            .queue
            .try_send(writer::Job::Change(change, done))
            .is_ok()
        {
            return true;
        }
        self.needs_full.store(true, Ordering::Relaxed);
        if self.failures.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                queued = writer::QUEUE,
                "presence: the store is not keeping up; changes are dropped until it does (the next heartbeat repairs them)"
            );
        }
        false
    }

    /// Records a change and waits until the store has it: true if the user just came
    /// online (connect) or went offline (disconnect).
    async fn record_and_wait(&self, kind: ChangeKind, user: &str, sid: &str) -> Result<bool> {
        let (done, answer) = oneshot::channel();
        if !self.record(kind, user, sid, Some(done)) {
            return Err(queue_full());
        }
        answer.await.map_err(|_| writer::gone())?
    }

    /// A socket of `user` connected here; waits for the store. True if the user just
    /// came online.
    pub async fn connected(&self, user: &str, sid: &str) -> Result<bool> {
        self.record_and_wait(ChangeKind::Connected, user, sid).await
    }

    /// A socket of `user` left; waits for the store. True if the user just went offline.
    pub async fn disconnected(&self, user: &str, sid: &str) -> Result<bool> {
        self.record_and_wait(ChangeKind::Disconnected, user, sid)
            .await
    }

    /// A socket of `user` left: recorded now, written in the background.
    pub fn untrack(&self, user: &str, sid: &str) {
        self.record(ChangeKind::Disconnected, user, sid, None);
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
