//! How the Redis adapter reaches Redis: a small trait ([`RedisDriver`]) with the three
//! things the adapter needs — publish, `PUBSUB NUMSUB`, (p)subscribe — so the adapter's
//! logic is unit-tested on an in-memory bus ([`MemoryBus`]) and runs in production on
//! [`LiveDriver`] (the `redis` crate).
//!
//! [`LiveDriver`] keeps two dedicated connections per node, shared by every namespace:
//!
//! - a **publisher**: a queue drained by one task that pipelines the queued PUBLISHes.
//!   [`RedisDriver::publish`] never waits: when Redis is down the batch fails (counted,
//!   logged), the queue keeps accepting until it is full, then drops (counted) — a local
//!   emit never hangs or fails because Redis is away;
//! - a **subscriber** in pub/sub mode, which reconnects with exponential backoff (100 ms
//!   doubling to 5 s) and re-issues every PSUBSCRIBE / SUBSCRIBE after a reconnect. A
//!   PING every few seconds notices a silently dead connection.
//!
//! What an outage loses: everything published while the connection was down, in both
//! directions. Redis pub/sub stores nothing for absent subscribers; clients of this node
//! keep being served, and cluster traffic flows again once the subscriber is back.

use crate::redis_client::{RedisConn, RedisTarget};
use crate::server::BoxFuture;
use crate::sync::{MutexExt as _, RwLockExt as _};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Receives the messages of the channels and patterns it subscribed.
pub trait MessageSink: Send + Sync + 'static {
    fn on_message(&self, channel: &str, payload: &[u8]);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis did not answer in time")]
    Timeout,
}

/// The adapter's view of Redis. See the module docs.
pub trait RedisDriver: Send + Sync + 'static {
    /// Queues a PUBLISH. Never waits; a message that cannot be sent is counted and lost.
    fn publish(&self, channel: String, payload: Vec<u8>);

    /// `PUBSUB NUMSUB channel`: how many connections (nodes) listen on `channel`.
    fn num_sub(&self, channel: String) -> BoxFuture<Result<usize, DriverError>>;

    /// PSUBSCRIBEs `patterns` and SUBSCRIBEs `channels` (again after every reconnect);
    /// their messages go to `sink` while it lives.
    fn subscribe(&self, patterns: Vec<String>, channels: Vec<String>, sink: Weak<dyn MessageSink>);

    /// Counters for logs and metrics.
    fn stats(&self) -> DriverStats {
        DriverStats::default()
    }
}

/// What a driver did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    pub published: u64,
    /// Messages lost because Redis refused or did not answer.
    pub publish_failures: u64,
    /// Messages dropped because the publish queue was full (Redis away for long).
    pub dropped: u64,
    pub received: u64,
    /// Successful re-subscriptions after a lost subscriber connection.
    pub reconnects: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) published: AtomicU64,
    pub(super) publish_failures: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) reconnects: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> DriverStats {
        DriverStats {
            published: self.published.load(Ordering::Relaxed),
            publish_failures: self.publish_failures.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// Which sink gets which pattern / channel.
#[derive(Default)]
struct Routes {
    patterns: HashMap<String, Weak<dyn MessageSink>>,
    channels: HashMap<String, Weak<dyn MessageSink>>,
}

/// The publish queue's capacity: about a second of heavy traffic.
pub(super) const PUBLISH_QUEUE: usize = 65_536;
/// The most PUBLISHes sent in one pipeline.
const PUBLISH_BATCH: usize = 512;
pub(super) const PING_EVERY: Duration = Duration::from_secs(5);
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A message on its way to the publisher, with its metric label (`broadcast`,
/// `request`, `response`).
pub(super) struct Outgoing {
    pub(super) channel: String,
    pub(super) payload: Vec<u8>,
    pub(super) kind: &'static str,
}

/// Queues `message` for the publisher without waiting; a full queue (Redis away for
/// long) drops it, counted, with a warning at each power of two.
pub(super) fn enqueue(tx: &mpsc::Sender<Outgoing>, counters: &Counters, message: Outgoing) {
    if tx.try_send(message).is_err() {
        let n = counters.dropped.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n + 1,
                "cluster publish queue full (is Redis down?): dropping messages"
            );
        }
    }
}

/// The production driver: dedicated publisher and subscriber connections. See the
/// module docs.
pub struct LiveDriver {
    publish_tx: mpsc::Sender<Outgoing>,
    subscribe_tx: mpsc::UnboundedSender<()>,
    routes: Arc<RwLock<Routes>>,
    commands: RedisConn,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl LiveDriver {
    /// [`LiveDriver::connect_to`] a plain URL (no custom CA); for tools and tests.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Arc<Self>, redis::RedisError> {
        Self::connect_to(
            RedisTarget::Single(Box::new(redis::Client::open(url)?)),
            timeout,
        )
        .await
    }

    /// Connects the command connection (fails when Redis is unreachable at startup, like
    /// the rest of the server's Redis setup) and starts the publisher and subscriber.
    /// Every connection, the subscriber's reconnects included, is made from `target`:
    /// the server passes [`crate::redis_client::RedisArgs::target`], so TLS and the CA
    /// file apply to pub/sub exactly as to commands, and behind Sentinel a reconnect
    /// goes to the current master.
    pub async fn connect_to(
        target: RedisTarget,
        timeout: Duration,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let commands = RedisConn::connect(target.clone(), config).await?;
        let counters = Arc::new(Counters::default());
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(
            "PUBLISH",
            publish_rx,
            commands.clone(),
            counters.clone(),
        ));
        let routes = Arc::new(RwLock::new(Routes::default()));
        let (subscribe_tx, subscribe_rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriber(
            target,
            timeout,
            routes.clone(),
            subscribe_rx,
            counters.clone(),
        ));
        Ok(Arc::new(LiveDriver {
            publish_tx,
            subscribe_tx,
            routes,
            commands,
            timeout,
            counters,
        }))
    }
}

impl RedisDriver for LiveDriver {
    fn publish(&self, channel: String, payload: Vec<u8>) {
        let kind = crate::metrics::cluster_message_type(&channel);
        let message = Outgoing {
            channel,
            payload,
            kind,
        };
        enqueue(&self.publish_tx, &self.counters, message);
    }

    fn num_sub(&self, channel: String) -> BoxFuture<Result<usize, DriverError>> {
        let mut conn = self.commands.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("NUMSUB").arg(&channel);
            let query = cmd.query_async::<(String, usize)>(&mut conn);
            match tokio::time::timeout(timeout, query).await {
                Ok(Ok((_, n))) => Ok(n),
                Ok(Err(e)) => {
                    crate::metrics::redis_error("adapter");
                    Err(DriverError::Unavailable(e.to_string()))
                }
                Err(_) => {
                    crate::metrics::redis_error("adapter");
                    Err(DriverError::Timeout)
                }
            }
        })
    }

    fn subscribe(&self, patterns: Vec<String>, channels: Vec<String>, sink: Weak<dyn MessageSink>) {
        {
            let mut routes = self.routes.write_unpoisoned();
            for p in patterns {
                routes.patterns.insert(p, sink.clone());
            }
            for c in channels {
                routes.channels.insert(c, sink.clone());
            }
        }
        let _ = self.subscribe_tx.send(());
    }

    fn stats(&self) -> DriverStats {
        self.counters.snapshot()
    }
}

/// Drains the publish queue, pipelining whatever is queued as `command`s (`PUBLISH`,
/// or `SPUBLISH` for the sharded adapter). On a Redis Cluster, which refuses a pipeline
/// across slots, a batch is one pipeline per channel slot, sent together.
pub(super) async fn publisher(
    command: &'static str,
    mut rx: mpsc::Receiver<Outgoing>,
    conn: RedisConn,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut failing = false;
    let cluster = conn.is_cluster();
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let sends = by_slot(&batch, cluster).into_iter().map(|group| {
            let mut conn = conn.clone();
            let mut pipe = redis::pipe();
            for m in &group {
                pipe.cmd(command).arg(&m.channel).arg(&m.payload).ignore();
            }
            let kinds = count_kinds(&group);
            async move { (pipe.query_async::<()>(&mut conn).await, kinds) }
        });
        let results = futures_util::future::join_all(sends).await;
        batch.clear();
        for (result, kinds) in results {
            let n: u64 = kinds.iter().map(|(_, n)| n).sum();
            match result {
                Ok(()) => {
                    counters.published.fetch_add(n, Ordering::Relaxed);
                    let metrics = crate::metrics::cluster();
                    for (kind, n) in kinds {
                        metrics.published(kind, n);
                    }
                    if failing {
                        failing = false;
                        tracing::info!("cluster publishing to Redis works again");
                    }
                }
                Err(e) => {
                    counters.publish_failures.fetch_add(n, Ordering::Relaxed);
                    crate::metrics::redis_error("adapter");
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, lost = n, "cluster publish to Redis failed; other nodes miss these messages until Redis is back");
                    }
                }
            }
        }
    }
}

/// The batch in groups one pipeline may carry: all of it on one server, one group per
/// channel slot on a Redis Cluster (in queue order within each).
fn by_slot(batch: &[Outgoing], cluster: bool) -> Vec<Vec<&Outgoing>> {
    if !cluster {
        return vec![batch.iter().collect()];
    }
    let mut groups: Vec<(u16, Vec<&Outgoing>)> = Vec::new();
    for m in batch {
        let slot = crate::redis_client::key_slot(&m.channel);
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(m),
            None => groups.push((slot, vec![m])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// Messages per metric label, in first-seen order.
fn count_kinds(group: &[&Outgoing]) -> Vec<(&'static str, u64)> {
    let mut by_kind: Vec<(&'static str, u64)> = Vec::with_capacity(3);
    for m in group {
        match by_kind.iter_mut().find(|(k, _)| *k == m.kind) {
            Some((_, n)) => *n += 1,
            None => by_kind.push((m.kind, 1)),
        }
    }
    by_kind
}

/// Keeps a pub/sub connection subscribed to every route, reconnecting with backoff.
async fn subscriber(
    target: RedisTarget,
    timeout: Duration,
    routes: Arc<RwLock<Routes>>,
    mut wake: mpsc::UnboundedReceiver<()>,
    counters: Arc<Counters>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut lost = false;
    loop {
        if wake.is_closed() {
            return;
        }
        let connect = async { target.client().await?.get_async_pubsub().await };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut stream) = pubsub.split();
                let mut subscribed: (Vec<String>, Vec<String>) = Default::default();
                let ok = resubscribe(&mut sink, &routes, &mut subscribed, timeout).await;
                if ok {
                    if lost {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                        crate::metrics::cluster().redis_reconnects.inc();
                        tracing::info!("cluster subscriber reconnected to Redis and resubscribed");
                    }
                    lost = false;
                    backoff = BACKOFF_MIN;
                    let mut ping = tokio::time::interval(PING_EVERY);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => {
                                    counters.received.fetch_add(1, Ordering::Relaxed);
                                    crate::metrics::cluster().received(msg.get_channel_name());
                                    route(&routes, &msg);
                                }
                                None => break,
                            },
                            w = wake.recv() => match w {
                                Some(()) => {
                                    if !resubscribe(&mut sink, &routes, &mut subscribed, timeout).await {
                                        break;
                                    }
                                }
                                None => return,
                            },
                            _ = ping.tick() => {
                                let alive = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                }
                if !lost {
                    tracing::warn!("cluster subscriber lost its Redis connection; reconnecting");
                }
                crate::metrics::redis_error("adapter");
                lost = true;
            }
            Ok(Err(e)) => {
                if !lost {
                    tracing::warn!(error = %e, "cluster subscriber cannot reach Redis; retrying");
                }
                crate::metrics::redis_error("adapter");
                lost = true;
            }
            Err(_) => {
                if !lost {
                    tracing::warn!("cluster subscriber: Redis connect timed out; retrying");
                }
                crate::metrics::redis_error("adapter");
                lost = true;
            }
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % 50);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Subscribes whatever `routes` has that this connection does not yet.
async fn resubscribe(
    sink: &mut redis::aio::PubSubSink,
    routes: &RwLock<Routes>,
    done: &mut (Vec<String>, Vec<String>),
    timeout: Duration,
) -> bool {
    let (patterns, channels): (Vec<String>, Vec<String>) = {
        let r = routes.read_unpoisoned();
        (
            r.patterns
                .keys()
                .filter(|p| !done.0.contains(p))
                .cloned()
                .collect(),
            r.channels
                .keys()
                .filter(|c| !done.1.contains(c))
                .cloned()
                .collect(),
        )
    };
    if !patterns.is_empty() {
        match tokio::time::timeout(timeout, sink.psubscribe(&patterns)).await {
            Ok(Ok(())) => done.0.extend(patterns),
            _ => return false,
        }
    }
    if !channels.is_empty() {
        match tokio::time::timeout(timeout, sink.subscribe(&channels)).await {
            Ok(Ok(())) => done.1.extend(channels),
            _ => return false,
        }
    }
    true
}

fn route(routes: &RwLock<Routes>, msg: &redis::Msg) {
    let channel = msg.get_channel_name();
    let sink = {
        let r = routes.read_unpoisoned();
        if msg.from_pattern() {
            msg.get_pattern::<String>()
                .ok()
                .and_then(|p| r.patterns.get(&p).cloned())
        } else {
            r.channels.get(channel).cloned()
        }
    };
    if let Some(sink) = sink.and_then(|s| s.upgrade()) {
        sink.on_message(channel, msg.get_payload_bytes());
    }
}

/// An in-memory stand-in for Redis pub/sub, for tests: several [`MemoryDriver`]s on one
/// bus behave like nodes on one Redis. Patterns must be `prefix*` (all the adapter uses).
/// Sharded channels (the [`ShardedDriver`](super::sharded_driver::ShardedDriver) side)
/// are a namespace of their own, as in Redis.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    subs: Mutex<Vec<BusSub>>,
    /// (channel, payload, sharded)
    tx: mpsc::UnboundedSender<(String, Vec<u8>, bool)>,
    next_id: AtomicU64,
    /// While false, publishes are lost (a simulated outage).
    up: std::sync::atomic::AtomicBool,
}

struct BusSub {
    driver: u64,
    /// SSUBSCRIBEd (sharded) rather than (P)SUBSCRIBEd.
    shard: bool,
    patterns: Vec<String>,
    channels: Vec<String>,
    sink: Weak<dyn MessageSink>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus whose deliveries run on a task of the current tokio runtime, in publish
    /// order (as one Redis delivers them).
    pub fn new() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>, bool)>();
        let inner = Arc::new(BusInner {
            subs: Mutex::default(),
            tx,
            next_id: AtomicU64::new(1),
            up: std::sync::atomic::AtomicBool::new(true),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some((channel, payload, shard)) = rx.recv().await {
                let Some(bus) = weak.upgrade() else { return };
                let sinks: Vec<_> = bus
                    .subs
                    .lock_unpoisoned()
                    .iter()
                    .filter(|s| s.shard == shard)
                    .filter(|s| {
                        s.channels.contains(&channel)
                            || s.patterns
                                .iter()
                                .any(|p| channel.starts_with(p.trim_end_matches('*')))
                    })
                    .map(|s| s.sink.clone())
                    .collect();
                for sink in sinks.into_iter().filter_map(|s| s.upgrade()) {
                    sink.on_message(&channel, &payload);
                }
            }
        });
        MemoryBus { inner }
    }

    /// A new "connection" (node) on this bus.
    pub fn driver(&self) -> Arc<MemoryDriver> {
        Arc::new(MemoryDriver {
            bus: self.inner.clone(),
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            counters: Counters::default(),
        })
    }

    /// Simulates an outage (`false`): publishes are lost until it is `true` again.
    pub fn set_up(&self, up: bool) {
        self.inner.up.store(up, Ordering::Relaxed);
    }

    /// The sharded channels someone listens on, sorted (`PUBSUB SHARDCHANNELS`).
    pub fn shard_channels(&self) -> Vec<String> {
        let subs = self.inner.subs.lock_unpoisoned();
        let mut all: Vec<String> = subs
            .iter()
            .filter(|s| s.shard && s.sink.strong_count() > 0)
            .flat_map(|s| s.channels.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// One node's connection to a [`MemoryBus`].
pub struct MemoryDriver {
    bus: Arc<BusInner>,
    id: u64,
    counters: Counters,
}

impl MemoryDriver {
    /// PUBLISH (`shard` false) or SPUBLISH (true).
    pub(super) fn bus_publish(&self, channel: String, payload: Vec<u8>, shard: bool) {
        if !self.bus.up.load(Ordering::Relaxed) {
            self.counters
                .publish_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let _ = self.bus.tx.send((channel, payload, shard));
    }

    /// NUMSUB or SHARDNUMSUB: how many drivers (nodes) listen on `channel`.
    pub(super) fn bus_num_sub(
        &self,
        channel: String,
        shard: bool,
    ) -> BoxFuture<Result<usize, DriverError>> {
        let bus = self.bus.clone();
        Box::pin(async move {
            if !bus.up.load(Ordering::Relaxed) {
                return Err(DriverError::Unavailable("bus down".into()));
            }
            let subs = bus.subs.lock_unpoisoned();
            let mut drivers: Vec<u64> = subs
                .iter()
                .filter(|s| s.shard == shard && s.sink.strong_count() > 0)
                .filter(|s| s.channels.contains(&channel))
                .map(|s| s.driver)
                .collect();
            drivers.sort_unstable();
            drivers.dedup();
            Ok(drivers.len())
        })
    }

    pub(super) fn bus_subscribe(
        &self,
        patterns: Vec<String>,
        channels: Vec<String>,
        sink: Weak<dyn MessageSink>,
        shard: bool,
    ) {
        self.bus.subs.lock_unpoisoned().push(BusSub {
            driver: self.id,
            shard,
            patterns,
            channels,
            sink,
        });
    }

    /// SUNSUBSCRIBE: this driver stops listening on `channels` (sharded only).
    pub(super) fn bus_shard_unsubscribe(&self, channels: &[String]) {
        let mut subs = self.bus.subs.lock_unpoisoned();
        for sub in subs.iter_mut().filter(|s| s.driver == self.id && s.shard) {
            sub.channels.retain(|c| !channels.contains(c));
        }
        subs.retain(|s| !s.channels.is_empty() || !s.patterns.is_empty());
    }
}

impl RedisDriver for MemoryDriver {
    fn publish(&self, channel: String, payload: Vec<u8>) {
        self.bus_publish(channel, payload, false)
    }

    fn num_sub(&self, channel: String) -> BoxFuture<Result<usize, DriverError>> {
        self.bus_num_sub(channel, false)
    }

    fn subscribe(&self, patterns: Vec<String>, channels: Vec<String>, sink: Weak<dyn MessageSink>) {
        self.bus_subscribe(patterns, channels, sink, false)
    }

    fn stats(&self) -> DriverStats {
        self.counters.snapshot()
    }
}
