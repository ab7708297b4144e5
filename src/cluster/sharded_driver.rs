//! How the sharded adapter reaches Redis: sharded pub/sub (Redis 7), in a small trait
//! ([`ShardedDriver`]) — SPUBLISH, `PUBSUB SHARDNUMSUB`, SSUBSCRIBE and SUNSUBSCRIBE —
//! so the adapter is unit-tested on the in-memory bus ([`MemoryDriver`]) and runs on
//! [`LiveShardedDriver`] (the `redis` crate).
//!
//! [`LiveShardedDriver`] keeps, per node and shared by every namespace:
//!
//! - a **publisher**: the classic driver's queue and pipelining task, sending SPUBLISH.
//!   [`ShardedDriver::spublish`] never waits; a failed batch is counted and logged, a
//!   full queue drops (counted);
//! - a **subscriber**: a RESP3 connection (the crate's dedicated pub/sub connection
//!   speaks RESP2 and has no SSUBSCRIBE; on RESP3, `smessage` arrives as a push). It
//!   keeps the set of channels Redis has confirmed and brings it to the set the adapters
//!   want — one SSUBSCRIBE / SUNSUBSCRIBE per channel, so each is answered by exactly one
//!   confirmation — whenever that set changes and after every reconnect (backoff 100 ms
//!   doubling to 5 s; a PING every few seconds notices a dead connection);
//! - a **command** connection for `PUBSUB SHARDNUMSUB`.
//!
//! On a Redis Cluster each channel lives on the shard that owns its slot: SPUBLISH goes
//! through the cluster connection (a batch split per slot, `driver::publisher`), the
//! subscriber is the crate's cluster connection (`sharded_conn`), which sends each
//! SSUBSCRIBE to the channel's master (a lost node connection starts the subscriber
//! over, which after a failover finds the new master), and
//! `PUBSUB SHARDNUMSUB` is summed over the nodes, as the npm package does with a cluster
//! client.

use super::driver::{
    enqueue, publisher, Counters, DriverError, DriverStats, MemoryDriver, MessageSink, Outgoing,
    BACKOFF_MAX, BACKOFF_MIN, PING_EVERY, PUBLISH_QUEUE,
};
use super::sharded_conn::SubConn;
use crate::redis_client::{RedisConn, RedisTarget};
use crate::server::BoxFuture;
use crate::sync::RwLockExt as _;
use redis::{PushInfo, PushKind};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// The sharded adapter's view of Redis. See the module docs.
pub trait ShardedDriver: Send + Sync + 'static {
    /// Queues an SPUBLISH. Never waits; a message that cannot be sent is counted and
    /// lost. `kind` is its metric label (`broadcast`, `request`, `response`): sharded
    /// channel names do not tell a request from a broadcast.
    fn spublish(&self, channel: String, payload: Vec<u8>, kind: &'static str);

    /// `PUBSUB SHARDNUMSUB channel`: how many connections (nodes) listen on `channel`.
    fn shard_num_sub(&self, channel: String) -> BoxFuture<Result<usize, DriverError>>;

    /// SSUBSCRIBEs `channels` (again after every reconnect); their messages go to `sink`
    /// while it lives. Returns at once: the subscription follows in the background.
    fn ssubscribe(&self, channels: Vec<String>, sink: Weak<dyn MessageSink>);

    /// SUNSUBSCRIBEs `channels`.
    fn sunsubscribe(&self, channels: Vec<String>);

    /// Counters for logs and metrics.
    fn stats(&self) -> DriverStats {
        DriverStats::default()
    }
}

/// Which sink gets which sharded channel: what the adapters want subscribed.
type Routes = Arc<RwLock<HashMap<String, Weak<dyn MessageSink>>>>;

/// The production driver. See the module docs.
pub struct LiveShardedDriver {
    publish_tx: mpsc::Sender<Outgoing>,
    wake: mpsc::UnboundedSender<()>,
    routes: Routes,
    commands: RedisConn,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl LiveShardedDriver {
    /// [`LiveShardedDriver::connect_to`] a plain URL; for tools and tests.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Arc<Self>, redis::RedisError> {
        let target = RedisTarget::Single(Box::new(redis::Client::open(url)?));
        Self::connect_to(target, timeout).await
    }

    /// Connects the command connection (fails when Redis is unreachable at startup) and
    /// starts the publisher and the subscriber. Every connection is made from `target`
    /// (the subscriber's switched to RESP3), so TLS settings apply to all and, behind
    /// Sentinel, a reconnect goes to the current master.
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
            "SPUBLISH",
            publish_rx,
            commands.clone(),
            counters.clone(),
        ));
        let routes = Routes::default();
        let (wake, wake_rx) = mpsc::unbounded_channel();
        let subscriber = Subscriber {
            target,
            timeout,
            routes: routes.clone(),
            counters: counters.clone(),
        };
        tokio::spawn(subscriber.run(wake_rx));
        Ok(Arc::new(LiveShardedDriver {
            publish_tx,
            wake,
            routes,
            commands,
            timeout,
            counters,
        }))
    }
}

impl ShardedDriver for LiveShardedDriver {
    fn spublish(&self, channel: String, payload: Vec<u8>, kind: &'static str) {
        let message = Outgoing {
            channel,
            payload,
            kind,
        };
        enqueue(&self.publish_tx, &self.counters, message);
    }

    fn shard_num_sub(&self, channel: String) -> BoxFuture<Result<usize, DriverError>> {
        let mut conn = self.commands.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("SHARDNUMSUB").arg(&channel);
            let query = cmd.query_async::<(String, usize)>(&mut conn);
            let failed = |e: DriverError| {
                crate::metrics::redis_error("adapter");
                Err(e)
            };
            match tokio::time::timeout(timeout, query).await {
                Ok(Ok((_, n))) => Ok(n),
                Ok(Err(e)) => failed(DriverError::Unavailable(e.to_string())),
                Err(_) => failed(DriverError::Timeout),
            }
        })
    }

    fn ssubscribe(&self, channels: Vec<String>, sink: Weak<dyn MessageSink>) {
        {
            let mut routes = self.routes.write_unpoisoned();
            for c in channels {
                routes.insert(c, sink.clone());
            }
        }
        let _ = self.wake.send(());
    }

    fn sunsubscribe(&self, channels: Vec<String>) {
        {
            let mut routes = self.routes.write_unpoisoned();
            for c in &channels {
                routes.remove(c);
            }
        }
        let _ = self.wake.send(());
    }

    fn stats(&self) -> DriverStats {
        self.counters.snapshot()
    }
}

/// The subscriber task's state. See the module docs.
struct Subscriber {
    target: RedisTarget,
    timeout: Duration,
    routes: Routes,
    counters: Arc<Counters>,
}

/// Why a subscriber connection ended.
enum Ended {
    /// The driver is gone: stop.
    Dropped,
    /// The connection failed or never came up: reconnect after the backoff.
    Lost(String),
}

impl Subscriber {
    /// Connects, subscribes, delivers; reconnects with backoff until the driver is gone.
    async fn run(self, mut wake: mpsc::UnboundedReceiver<()>) {
        let mut backoff = BACKOFF_MIN;
        let mut lost = false;
        loop {
            let why = match self.session(&mut wake, &mut lost, &mut backoff).await {
                Ended::Dropped => return,
                Ended::Lost(why) => why,
            };
            if !lost {
                tracing::warn!(error = %why, "cluster subscriber (sharded) lost Redis; reconnecting");
            }
            crate::metrics::redis_error("adapter");
            lost = true;
            let jitter = Duration::from_millis(rand::random::<u64>() % 50);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: subscribe everything wanted, then deliver messages and
    /// follow changes until the connection fails.
    async fn session(
        &self,
        wake: &mut mpsc::UnboundedReceiver<()>,
        lost: &mut bool,
        backoff: &mut Duration,
    ) -> Ended {
        if wake.is_closed() {
            return Ended::Dropped;
        }
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let mut conn = match SubConn::open(&self.target, self.timeout, push_tx).await {
            Ok(conn) => conn,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        let mut subscribed = HashSet::new();
        if let Err(e) = self.reconcile(&mut conn, &mut subscribed).await {
            return Ended::Lost(e);
        }
        *backoff = BACKOFF_MIN;
        if *lost {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            crate::metrics::cluster().redis_reconnects.inc();
            tracing::info!("cluster subscriber (sharded) reconnected to Redis and resubscribed");
            *lost = false;
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(p) if p.kind == PushKind::Disconnection => {
                        return Ended::Lost("connection closed".into())
                    }
                    Some(p) => self.deliver(p),
                    None => return Ended::Lost("connection closed".into()),
                },
                w = wake.recv() => match w {
                    Some(()) => {
                        if let Err(e) = self.reconcile(&mut conn, &mut subscribed).await {
                            return Ended::Lost(e);
                        }
                    }
                    None => return Ended::Dropped,
                },
                _ = ping.tick() => {
                    if !conn.alive(self.timeout).await {
                        return Ended::Lost("no answer to PING".into());
                    }
                }
            }
        }
    }

    /// Brings what Redis confirmed (`subscribed`) to what the adapters want: SUNSUBSCRIBE
    /// what is no longer wanted (or whose sink is gone), SSUBSCRIBE what is new.
    async fn reconcile(
        &self,
        conn: &mut SubConn,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), String> {
        let wanted: HashSet<String> = {
            let mut routes = self.routes.write_unpoisoned();
            routes.retain(|_, sink| sink.strong_count() > 0);
            routes.keys().cloned().collect()
        };
        let stale: Vec<String> = subscribed.difference(&wanted).cloned().collect();
        for channel in stale {
            conn.shard_subscription(false, &channel, self.timeout)
                .await?;
            subscribed.remove(&channel);
        }
        let new: Vec<String> = wanted.difference(subscribed).cloned().collect();
        for channel in new {
            conn.shard_subscription(true, &channel, self.timeout)
                .await?;
            subscribed.insert(channel);
        }
        Ok(())
    }

    /// An `smessage` push, to the sink of its channel; other pushes (confirmations
    /// copied here by the connection) are ignored.
    fn deliver(&self, push: PushInfo) {
        if push.kind != PushKind::SMessage {
            return;
        }
        let Some(msg) = redis::Msg::from_push_info(push) else {
            return;
        };
        let channel = msg.get_channel_name();
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let sink = self.routes.read_unpoisoned().get(channel).cloned();
        if let Some(sink) = sink.and_then(|s| s.upgrade()) {
            sink.on_message(channel, msg.get_payload_bytes());
        }
    }
}

/// The in-memory bus's sharded side: channels of their own, as in Redis.
impl ShardedDriver for MemoryDriver {
    fn spublish(&self, channel: String, payload: Vec<u8>, _kind: &'static str) {
        self.bus_publish(channel, payload, true)
    }

    fn shard_num_sub(&self, channel: String) -> BoxFuture<Result<usize, DriverError>> {
        self.bus_num_sub(channel, true)
    }

    fn ssubscribe(&self, channels: Vec<String>, sink: Weak<dyn MessageSink>) {
        self.bus_subscribe(Vec::new(), channels, sink, true)
    }

    fn sunsubscribe(&self, channels: Vec<String>) {
        self.bus_shard_unsubscribe(&channels)
    }

    fn stats(&self) -> DriverStats {
        <MemoryDriver as super::driver::RedisDriver>::stats(self)
    }
}
