//! The Redis Streams adapter: `@socket.io/redis-streams-adapter` 0.3.x (`lib/adapter.ts`
//! on socket.io-adapter's `ClusterAdapter`), byte for byte, so Rust and Node nodes share
//! one cluster — and a client that drops recovers its session on any node of either.
//!
//! - broadcasts (without acknowledgements), `socketsJoin`, `socketsLeave` and
//!   `disconnectSockets` are entries of the namespace's stream (`outbox`); every node
//!   reads the streams with one blocking XREAD loop each (`reader`) and applies the
//!   entries of others (`inbound`). A broadcast's entry id is its recovery offset;
//! - requests that wait for answers (fetchSockets, serverSideEmit, broadcasts with acks)
//!   and all answers go over pub/sub (`requests`), on the classic adapter's
//!   [`RedisDriver`]; the node count is `PUBSUB NUMSUB <prefix>#<nsp>#`;
//! - disconnected sessions are keys `<sessionKeyPrefix><pid>` and a restore replays the
//!   stream after the client's offset (`session`).
//!
//! Order: with connection state recovery on, a node's broadcasts, joins, leaves and
//! disconnects reach its own sockets in stream order, each broadcast carrying its entry
//! id: the reader applies them where it reads them, among the other nodes' entries
//! (`own_order`), so every socket's recovery offset only grows and a replay after it is
//! exact. (Node applies its own as each XADD returns, ahead of other nodes' earlier
//! entries.) With recovery off they act on local sockets at once and the XADD follows
//! in the background: the same order, one Redis round trip less.
//!
//! Restores read the replay in pages (`XRANGE … COUNT <readCount>`, as the package) on a
//! connection of their own, at most 16 at once per node, so a whole node's clients
//! coming back at once cannot make the writes time out.
//!
//! A Redis outage never blocks or fails a local emit: the emit only queues, and local
//! sockets are served from memory either way. With recovery on, a failed XADD delivers
//! the packet without an offset — after at most one command timeout (`REDIS_TIMEOUT`)
//! when Redis hangs rather than refuses — and while Redis stays down the outbox does not
//! wait for it. The refused entries are held and written, in order, once Redis is back
//! (retried after 100 ms doubling to 1 s, for up to 30 s: `held`), and the readers
//! resume from the last entry they saw, so the other nodes get what was broadcast during
//! a restart or failover — late, not lost (a restart measured by `rtctl loadtest
//! --restart-redis-at` loses no acknowledged message on this adapter). What is lost:
//! writes held longer than 30 s; broadcasts without an entry cannot be replayed to a
//! recovering client; sessions persisted during the outage are not kept; a restore
//! fails (a fresh socket).
//!
//! Where this differs from the package, invisibly on the wire:
//! - a reader starts at the stream's last entry id (read once at start) instead of at
//!   `$`: the package's `$` misses entries written between two XREADs until the first
//!   entry arrives;
//! - `serverCount()` falls back to 1 when Redis does not answer (as our classic adapter).
//!
//! Not supported: sharded pub/sub (`useShardedPubSub`), Redis Cluster, `onlyPlaintext`.

mod held;
mod inbound;
pub mod live;
mod outbound;
mod outbox;
mod own_order;
mod reader;
mod requests;
mod restoring;
mod session;
pub mod store;

use crate::cluster::driver::{MessageSink, RedisDriver};
use crate::protocol::cluster_streams::{
    private_channel, public_channel, reader_streams, stream_name, Message,
};
use crate::server::adapter::{AckSink, Adapter, AdapterFactory, LocalAdapter, SocketEmitter};
use crate::sync::{InFlight, MutexExt as _, RwLockExt as _};
use outbox::Outbox;
use requests::Requests;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use store::StreamStore;

/// The adapter's options, with the package's defaults (`createAdapter(client, opts)`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisStreamsOptions {
    /// The stream key (`streamName`, `socket.io`), or the prefix of `<name>-<i>`.
    pub stream_name: String,
    /// How many streams (`streamCount`, 1); a namespace always uses one of them.
    pub stream_count: u32,
    /// The prefix of the pub/sub channels (`channelPrefix`, `socket.io`).
    pub channel_prefix: String,
    /// `XADD … MAXLEN ~ <maxLen>` (`maxLen`, 10000): how many entries a stream keeps,
    /// which bounds how far back a client can recover.
    pub max_len: u64,
    /// `XREAD COUNT` (`readCount`, 100).
    pub read_count: usize,
    /// `XREAD BLOCK` (`blockTimeInMs`, 5 s).
    pub block_time: Duration,
    /// Where sessions are kept: `<prefix><pid>` (`sessionKeyPrefix`, `sio:session:`).
    pub session_key_prefix: String,
    /// How long requests wait for every node's answer (the adapter's 5 s).
    pub requests_timeout: Duration,
    /// Connection state recovery: `Some(maxDisconnectionDuration)` when on.
    pub recovery: Option<Duration>,
}

impl Default for RedisStreamsOptions {
    fn default() -> Self {
        RedisStreamsOptions {
            stream_name: "socket.io".into(),
            stream_count: 1,
            channel_prefix: "socket.io".into(),
            max_len: 10_000,
            read_count: 100,
            block_time: Duration::from_millis(5_000),
            session_key_prefix: "sio:session:".into(),
            requests_timeout: Duration::from_millis(5_000),
            recovery: None,
        }
    }
}

/// What every namespace adapter of a node shares: the connections, the options, and
/// which adapter gets a stream entry of which namespace. The readers hold it weakly:
/// they stop once every adapter is gone.
pub(crate) struct Shared {
    pubsub: Arc<dyn RedisDriver>,
    store: Arc<dyn StreamStore>,
    options: RedisStreamsOptions,
    routes: RwLock<HashMap<String, Weak<RedisStreamsAdapter>>>,
    /// Where each stream's reader started (the last entry id then): it never applies
    /// older entries, which a restore must know (`restoring`).
    reader_from: Mutex<HashMap<String, String>>,
    /// Restores under way at once on this node ([`RESTORES_AT_ONCE`]).
    restores: tokio::sync::Semaphore,
}

/// How many restores read the stream at once on one node: a stopped node's clients all
/// come back within a second or two, each reading its replay from Redis; unbounded,
/// those reads crowd out the other commands (measured: at 1,000 clients a rolling
/// restart made XADDs time out).
const RESTORES_AT_ONCE: usize = 16;

impl Shared {
    fn reader_from(&self, stream: &str) -> Option<String> {
        self.reader_from.lock_unpoisoned().get(stream).cloned()
    }

    /// The adapter of namespace `nsp` on this node, if it has one.
    fn route(&self, nsp: &str) -> Option<Arc<RedisStreamsAdapter>> {
        self.routes.read_unpoisoned().get(nsp)?.upgrade()
    }
}

/// Creates one [`RedisStreamsAdapter`] per namespace, all on one pub/sub driver (one
/// subscriber connection, so NUMSUB counts this node once) and one stream store (one
/// reader connection per stream, started with the factory as the package does).
pub struct RedisStreamsFactory {
    shared: Arc<Shared>,
}

impl RedisStreamsFactory {
    /// Starts the stream readers: call within a tokio runtime.
    pub fn new(
        pubsub: Arc<dyn RedisDriver>,
        store: Arc<dyn StreamStore>,
        options: RedisStreamsOptions,
    ) -> Self {
        crate::metrics::cluster().init();
        let shared = Arc::new(Shared {
            pubsub,
            store,
            options,
            routes: RwLock::default(),
            reader_from: Mutex::default(),
            restores: tokio::sync::Semaphore::new(RESTORES_AT_ONCE),
        });
        for stream in reader_streams(&shared.options.stream_name, shared.options.stream_count) {
            tokio::spawn(reader::read_loop(Arc::downgrade(&shared), stream));
        }
        RedisStreamsFactory { shared }
    }
}

impl AdapterFactory for RedisStreamsFactory {
    fn create(&self, sockets: Weak<dyn SocketEmitter>, nsp: &str) -> Arc<dyn Adapter> {
        let adapter = RedisStreamsAdapter::new(sockets, nsp, self.shared.clone());
        self.shared
            .routes
            .write_unpoisoned()
            .insert(nsp.to_owned(), Arc::downgrade(&adapter));
        let sink: Weak<dyn MessageSink> = Arc::downgrade(&adapter) as Weak<dyn MessageSink>;
        // `SUBSCRIBE <prefix>#<nsp>#` `<prefix>#<nsp>#<uid>#` on the shared subscriber.
        self.shared.pubsub.subscribe(
            vec![],
            vec![adapter.public.clone(), adapter.private.clone()],
            sink,
        );
        adapter
    }
}

/// One namespace's adapter on Redis streams. See the module docs.
pub struct RedisStreamsAdapter {
    local: LocalAdapter,
    nsp: String,
    /// This adapter's id on the wire: 16 hex characters, one per (node, namespace).
    pub uid: String,
    /// The stream this namespace writes to and restores from.
    stream: String,
    /// `<prefix>#<nsp>#`: requests, and what NUMSUB counts.
    public: String,
    /// `<prefix>#<nsp>#<uid>#`: answers to this adapter's requests.
    private: String,
    shared: Arc<Shared>,
    outbox: Outbox,
    /// Our requests waiting for answers (fetchSockets, serverSideEmit with acks).
    requests: Requests,
    /// Our broadcasts with acknowledgements, by request id.
    ack_requests: Arc<Mutex<HashMap<String, AckSink>>>,
    /// Queued stream writes and sessions on their way to Redis: what a stopping node
    /// waits for ([`Adapter::flush`](crate::server::adapter::Adapter::flush)).
    in_flight: Arc<InFlight>,
    /// Held shared by a stamped broadcast from before it is counted in `delivery`
    /// until it is delivered, and alone by a restored socket's attach: each broadcast
    /// is wholly before or after an attach, so a restore is exact (`restoring`).
    restore_gate: RwLock<()>,
    /// What restores need to know of the broadcasts applied here.
    delivery: Arc<Mutex<restoring::Delivery>>,
    /// With recovery on: own writes waiting for the reader to reach them.
    own_order: own_order::OwnOrder,
}

/// A uid or request id as socket.io-adapter makes them: 8 random bytes in hex.
fn random_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisStreamsAdapter {
    fn new(sockets: Weak<dyn SocketEmitter>, nsp: &str, shared: Arc<Shared>) -> Arc<Self> {
        let o = &shared.options;
        let uid = random_id();
        let stream = stream_name(&o.stream_name, o.stream_count, nsp);
        let public = public_channel(&o.channel_prefix, nsp);
        let private = private_channel(&o.channel_prefix, nsp, &uid);
        let (store, max_len) = (shared.store.clone(), o.max_len);
        let in_flight = Arc::new(InFlight::default());
        Arc::new_cyclic(|me| RedisStreamsAdapter {
            // Without a recovery log of its own: offsets are entry ids, stamped here.
            local: LocalAdapter::new(sockets),
            nsp: nsp.to_owned(),
            public,
            private,
            outbox: Outbox::start(
                store,
                stream.clone(),
                max_len,
                me.clone(),
                in_flight.clone(),
            ),
            in_flight,
            stream,
            uid,
            requests: Arc::default(),
            ack_requests: Arc::default(),
            restore_gate: RwLock::default(),
            delivery: Arc::default(),
            own_order: own_order::OwnOrder::default(),
            shared,
        })
    }

    fn options(&self) -> &RedisStreamsOptions {
        &self.shared.options
    }

    /// Whether connection state recovery is on.
    fn recovering(&self) -> bool {
        self.options().recovery.is_some()
    }

    /// A message of ours, for the wire.
    fn message(
        &self,
        body: crate::protocol::cluster_streams::Body,
        attachments: Vec<bytes::Bytes>,
    ) -> Message {
        Message {
            uid: self.uid.clone(),
            nsp: self.nsp.clone(),
            body,
            attachments,
        }
    }

    /// A request on the public channel (or a response on a requester's private one).
    fn publish(&self, channel: String, message: &Message) {
        self.shared
            .pubsub
            .publish(channel, message.encode_msgpack());
    }
}

impl MessageSink for RedisStreamsAdapter {
    fn on_message(&self, _channel: &str, payload: &[u8]) {
        match Message::decode_msgpack(payload) {
            Ok(message) => self.handle(message, None),
            Err(e) => tracing::debug!(error = %e, "ignoring malformed cluster message"),
        }
    }
}

#[cfg(test)]
mod tests;
