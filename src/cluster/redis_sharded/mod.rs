//! The sharded Redis adapter: `createShardedAdapter` of `@socket.io/redis-adapter` 8.3
//! (`lib/sharded-adapter.ts`, on socket.io-adapter's `ClusterAdapter`), byte for byte,
//! so Rust and Node nodes share one cluster on Redis 7 sharded pub/sub.
//!
//! - every message is a `ClusterAdapter` message SPUBLISHed whole, JSON unless it
//!   carries binary ([`crate::protocol::cluster_adapter`]);
//! - a namespace listens on `<prefix>#<nsp>#` (requests, broadcasts) and
//!   `<prefix>#<nsp>#<uid>#` (answers to its requests); in the dynamic subscription modes
//!   also on `<prefix>#<nsp>#<room>#` for each room it has (`rooms`), where broadcasts
//!   to that one room go, so a room's traffic reaches only the nodes that have it
//!   ([`crate::protocol::cluster_sharded`]);
//! - the node count is `PUBSUB SHARDNUMSUB <prefix>#<nsp>#`; requests wait for that
//!   many answers minus one, until the requests timeout (`requests`).
//!
//! Local sockets are served from memory at once and the cluster copy is queued for the
//! driver's publisher, so a Redis outage never blocks or fails a local emit: the remote
//! copies are lost (counted and logged by the driver), and the subscriber resubscribes
//! every channel once Redis is back. During an outage the server count falls back to 1
//! (a broadcast with acks completes with this node's answers), and requests that wait
//! for other nodes (fetchSockets, serverSideEmit with acks) fail, naming Redis.
//!
//! Where this differs from the package, invisibly on the wire: `socketsJoin`,
//! `socketsLeave` and `disconnectSockets` act on local sockets even when the publish
//! fails (Node skips nothing either: it logs and goes on), and a room's channel is left
//! only if this node subscribed it (Node checks again at deletion).
//!
//! Connection state recovery, as with the classic adapter, stays on the node: sessions
//! and the replay log are this node's, so a client recovers when it reconnects to the
//! same node (Node's sharded adapter does not recover at all). In the dynamic modes a
//! node leaves a room's channel when the room's last local member goes, so a recovering
//! client gets what was broadcast meanwhile to the whole namespace and to rooms that kept
//! members here; `static` mode routes every broadcast to every node.

mod inbound;
mod outbound;
mod requests;
mod rooms;

use crate::cluster::driver::MessageSink;
use crate::cluster::sharded_driver::ShardedDriver;
use crate::protocol::cluster_adapter::{Body, Message};
use crate::protocol::cluster_sharded::{ShardedChannels, SubscriptionMode};
use crate::server::adapter::{
    AckSink, AdapterFactory, LocalAdapter, RecoveryLog, RecoveryOptions, SocketEmitter,
};
use requests::Requests;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The adapter's options (`ShardedRedisAdapterOptions`), same defaults.
#[derive(Debug, Clone)]
pub struct RedisShardedOptions {
    /// The channels' prefix (`channelPrefix`, `socket.io`).
    pub channel_prefix: String,
    /// `subscriptionMode` (`dynamic`).
    pub subscription_mode: SubscriptionMode,
    /// How long requests wait for every node's answer (`ClusterAdapter`'s 5 s).
    pub requests_timeout: Duration,
    /// Connection state recovery on this node, when on (see the module docs).
    pub recovery: Option<RecoveryOptions>,
}

impl Default for RedisShardedOptions {
    fn default() -> Self {
        RedisShardedOptions {
            channel_prefix: "socket.io".into(),
            subscription_mode: SubscriptionMode::Dynamic,
            requests_timeout: Duration::from_secs(5),
            recovery: None,
        }
    }
}

/// Creates one [`RedisShardedAdapter`] per namespace, all on one driver (one subscriber
/// connection per node, so SHARDNUMSUB counts nodes).
pub struct RedisShardedFactory {
    driver: Arc<dyn ShardedDriver>,
    options: RedisShardedOptions,
}

impl RedisShardedFactory {
    pub fn new(driver: Arc<dyn ShardedDriver>, options: RedisShardedOptions) -> Self {
        crate::metrics::cluster().init();
        RedisShardedFactory { driver, options }
    }
}

impl AdapterFactory for RedisShardedFactory {
    fn create(
        &self,
        sockets: Weak<dyn SocketEmitter>,
        nsp: &str,
    ) -> Arc<dyn crate::server::adapter::Adapter> {
        let adapter = RedisShardedAdapter::new(sockets, nsp, self.driver.clone(), &self.options);
        let sink: Weak<dyn MessageSink> = Arc::downgrade(&adapter) as Weak<dyn MessageSink>;
        // `SSUBSCRIBE <prefix>#<nsp>#` and `<prefix>#<nsp>#<uid>#`.
        self.driver.ssubscribe(
            vec![
                adapter.channels.main.clone(),
                adapter.channels.response.clone(),
            ],
            sink,
        );
        adapter
    }
}

/// One namespace's adapter on sharded pub/sub. See the module docs.
pub struct RedisShardedAdapter {
    local: LocalAdapter,
    nsp: String,
    /// This adapter's id on the wire: 16 hex characters, one per (node, namespace).
    pub uid: String,
    channels: ShardedChannels,
    driver: Arc<dyn ShardedDriver>,
    requests_timeout: Duration,
    /// The room channels this adapter subscribed (dynamic modes).
    room_channels: rooms::RoomChannels,
    /// Our requests waiting for answers (fetchSockets, serverSideEmit with acks).
    requests: Requests,
    /// Our broadcasts with acknowledgements, by request id.
    ack_requests: Arc<Mutex<HashMap<String, AckSink>>>,
}

/// A uid or request id as socket.io-adapter makes them: 8 random bytes in hex.
fn random_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisShardedAdapter {
    fn new(
        sockets: Weak<dyn SocketEmitter>,
        nsp: &str,
        driver: Arc<dyn ShardedDriver>,
        options: &RedisShardedOptions,
    ) -> Arc<Self> {
        let uid = random_id();
        let channels = ShardedChannels::new(
            &options.channel_prefix,
            nsp,
            &uid,
            options.subscription_mode,
        );
        Arc::new_cyclic(|me: &Weak<Self>| {
            let sink = me.clone() as Weak<dyn MessageSink>;
            let room_channels = rooms::RoomChannels::new(driver.clone(), channels.clone(), sink);
            let local = match options.subscription_mode {
                SubscriptionMode::Static => LocalAdapter::new(sockets.clone()),
                _ => LocalAdapter::with_room_listener(
                    sockets.clone(),
                    room_channels.listener(sockets),
                ),
            };
            let local = match options.recovery {
                Some(r) => local.with_recovery(RecoveryLog::new(r)),
                None => local,
            };
            RedisShardedAdapter {
                local,
                nsp: nsp.to_owned(),
                uid,
                channels,
                driver,
                requests_timeout: options.requests_timeout,
                room_channels,
                requests: Arc::default(),
                ack_requests: Arc::default(),
            }
        })
    }

    /// The channels of this namespace adapter.
    pub fn channels(&self) -> &ShardedChannels {
        &self.channels
    }

    /// A message of ours, for the wire.
    fn message(&self, body: Body, attachments: Vec<bytes::Bytes>) -> Message {
        Message {
            uid: self.uid.clone(),
            nsp: self.nsp.clone(),
            body,
            attachments,
        }
    }

    /// `doPublish`: to the channel `computeChannel` picks.
    fn publish(&self, message: &Message) {
        let kind = match message.body.request_id() {
            Some(_) => "request",
            None => "broadcast",
        };
        let channel = self.channels.for_message(message);
        self.driver
            .spublish(channel, message.encode_sharded(), kind);
    }
}

/// `doPublishResponse`: an answer to adapter `requester`, on its channel. A free
/// function so tasks that outlive a call (acknowledgements) can answer.
fn publish_response(
    driver: &dyn ShardedDriver,
    channels: &ShardedChannels,
    requester: &str,
    message: &Message,
) {
    driver.spublish(
        channels.response_to(requester),
        message.encode_sharded(),
        "response",
    );
}

impl MessageSink for RedisShardedAdapter {
    /// `onRawMessage`: answers on our response channel, anything else is a message.
    fn on_message(&self, channel: &str, payload: &[u8]) {
        match Message::decode_sharded(payload) {
            Ok(message) if channel == self.channels.response => self.on_response(message),
            Ok(message) => self.on_cluster_message(message),
            Err(e) => tracing::debug!(error = %e, channel, "ignoring malformed cluster message"),
        }
    }
}

#[cfg(test)]
mod tests;
