//! The Redis adapter: `@socket.io/redis-adapter` 8.x (`RedisAdapter` in its
//! `lib/index.ts`), method for method, so Rust and Node nodes share one cluster.
//!
//! - [`outbound`]: what this node sends (the [`Adapter`] methods);
//! - [`inbound`]: what it does with other nodes' broadcasts, requests and responses;
//! - [`requests`]: requests that wait for every other node's answer.
//!
//! Where this differs from the Node source, on purpose and invisibly on the wire:
//! - `socketsJoin` / `socketsLeave` / `disconnectSockets` are applied to this node's
//!   sockets at once and the node ignores its own request when Redis echoes it back
//!   (Node applies them only when its own request comes back, so during an outage they
//!   do nothing even locally). Other nodes, Node ones included, see the same request.
//! - `serverCount()` falls back to 1 when Redis does not answer, so a broadcast with
//!   acknowledgements still completes with the local answers during an outage.
//! - Remote handlers run on the subscriber task, in arrival order, as in Node: keep
//!   server-side event handlers short (spawn anything slow).

mod inbound;
mod outbound;
mod requests;

use super::driver::{MessageSink, RedisDriver};
use crate::protocol::cluster::{uid2, Channels, Request};
use crate::server::adapter::{
    AckSink, Adapter, AdapterFactory, LocalAdapter, RecoveryLog, RecoveryOptions, SocketEmitter,
};
use requests::Requests;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The adapter's options (`RedisAdapterOptions`), same defaults.
#[derive(Debug, Clone)]
pub struct RedisAdapterOptions {
    /// Channel prefix (`key`, default `socket.io`).
    pub key: String,
    /// How long requests wait for every node's answer (`requestsTimeout`, 5 s).
    pub requests_timeout: Duration,
    /// Answer on `<key>-response#<nsp>#<uid>#` instead of the shared response channel
    /// (`publishOnSpecificResponseChannel`, default false). Every 8.x node listens on
    /// both, so either works in a mixed cluster.
    pub publish_on_specific_response_channel: bool,
    /// Connection state recovery, when on. Pub/sub keeps nothing, so sessions and the
    /// replay log stay on the node that kept them: a client recovers when it reconnects
    /// to the same node (sticky routing), and connects afresh elsewhere. Remote
    /// broadcasts are stamped by each node as it delivers them.
    pub recovery: Option<RecoveryOptions>,
}

impl Default for RedisAdapterOptions {
    fn default() -> Self {
        RedisAdapterOptions {
            key: "socket.io".into(),
            requests_timeout: Duration::from_secs(5),
            publish_on_specific_response_channel: false,
            recovery: None,
        }
    }
}

/// Creates one [`RedisAdapter`] per namespace, all on one driver (one pair of Redis
/// connections per node).
pub struct RedisAdapterFactory {
    driver: Arc<dyn RedisDriver>,
    options: RedisAdapterOptions,
}

impl RedisAdapterFactory {
    pub fn new(driver: Arc<dyn RedisDriver>, options: RedisAdapterOptions) -> Self {
        crate::metrics::cluster().init();
        RedisAdapterFactory { driver, options }
    }
}

impl AdapterFactory for RedisAdapterFactory {
    fn create(&self, sockets: Weak<dyn SocketEmitter>, nsp: &str) -> Arc<dyn Adapter> {
        let adapter = Arc::new(RedisAdapter::new(
            sockets,
            nsp,
            self.driver.clone(),
            self.options.clone(),
        ));
        let sink: Weak<dyn MessageSink> = Arc::downgrade(&adapter) as Weak<dyn MessageSink>;
        // `PSUBSCRIBE <key>#<nsp>#*` and `SUBSCRIBE request, response, specific response`.
        self.driver.subscribe(
            vec![adapter.channels.pattern()],
            vec![
                adapter.channels.request.clone(),
                adapter.channels.response.clone(),
                adapter.channels.specific_response(&adapter.uid),
            ],
            sink,
        );
        adapter
    }
}

/// One namespace's adapter on Redis. See the module docs.
pub struct RedisAdapter {
    local: LocalAdapter,
    nsp: String,
    /// This node's id in every message (`uid2(6)`), to skip our own echoes.
    pub uid: String,
    channels: Channels,
    driver: Arc<dyn RedisDriver>,
    options: RedisAdapterOptions,
    /// Our requests waiting for answers (fetchSockets, allRooms, serverSideEmit).
    requests: Requests,
    /// Our broadcasts with acknowledgements, by request id.
    ack_requests: Arc<Mutex<HashMap<String, AckSink>>>,
}

/// A fresh uid or request id, as Node makes them (`uid2(6)`).
fn random_id() -> String {
    uid2(6, |n| rand::random_range(0..n))
}

impl RedisAdapter {
    pub fn new(
        sockets: Weak<dyn SocketEmitter>,
        nsp: &str,
        driver: Arc<dyn RedisDriver>,
        options: RedisAdapterOptions,
    ) -> Self {
        let local = match options.recovery {
            Some(recovery) => LocalAdapter::new(sockets).with_recovery(RecoveryLog::new(recovery)),
            None => LocalAdapter::new(sockets),
        };
        RedisAdapter {
            local,
            nsp: nsp.to_owned(),
            uid: random_id(),
            channels: Channels::new(&options.key, nsp),
            driver,
            options,
            requests: Arc::default(),
            ack_requests: Arc::default(),
        }
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Sends `request` to the other nodes on the namespace's request channel.
    fn publish_request(&self, request: Request) {
        self.driver
            .publish(self.channels.request.clone(), request.encode());
    }

    /// `publishResponse`'s channel: the shared response channel, or the requester's own.
    fn response_channel(&self, requester: Option<&str>) -> String {
        match requester {
            Some(uid) if self.options.publish_on_specific_response_channel => {
                self.channels.specific_response(uid)
            }
            _ => self.channels.response.clone(),
        }
    }

    fn publish_response(&self, requester: Option<&str>, bytes: Vec<u8>) {
        self.driver.publish(self.response_channel(requester), bytes);
    }
}

impl MessageSink for RedisAdapter {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        if channel.starts_with(&self.channels.response) {
            self.on_response(payload)
        } else if channel.starts_with(&self.channels.request) {
            self.on_request(payload)
        } else if let Some(room) = self.channels.room_of(channel) {
            self.on_broadcast(room, payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::driver::{DriverError, MemoryBus};
    use crate::protocol::cluster::BroadcastMessage;
    use crate::server::adapter::AdapterError;
    use crate::server::{BoxFuture, Io, ServerOptions};
    use crate::sync::MutexExt as _;
    use serde_json::json;

    fn node(bus: &MemoryBus, timeout: Duration) -> Io {
        let factory = RedisAdapterFactory::new(
            bus.driver(),
            RedisAdapterOptions {
                requests_timeout: timeout,
                ..Default::default()
            },
        );
        Io::builder(ServerOptions::default())
            .adapter(Arc::new(factory))
            .namespace("/", |ns| {
                ns.on_server_event("ping", |args, ack| {
                    if let Some(ack) = ack {
                        ack(json!({ "pong": args }));
                    }
                });
            })
            .build()
    }

    #[tokio::test]
    async fn requests_reach_every_other_node_and_come_back() {
        let bus = MemoryBus::new();
        let (a, _b, _c) = (
            node(&bus, Duration::from_secs(2)),
            node(&bus, Duration::from_secs(2)),
            node(&bus, Duration::from_secs(2)),
        );
        let ns = a.of("/").unwrap();
        assert_eq!(ns.server_count().await, 3);
        let answers = ns
            .server_side_emit_with_ack("ping", vec![json!(1)])
            .await
            .unwrap();
        assert_eq!(answers, vec![json!({"pong": [1]}), json!({"pong": [1]})]);
        assert!(ns.fetch_sockets().await.unwrap().is_empty());
        assert!(ns.all_rooms().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_missing_answer_times_out_with_the_count() {
        let bus = MemoryBus::new();
        let a = node(&bus, Duration::from_millis(200));
        let b = Io::builder(ServerOptions::default())
            .adapter(Arc::new(RedisAdapterFactory::new(
                bus.driver(),
                RedisAdapterOptions::default(),
            )))
            .namespace("/", |_| {}) // no handler: never answers
            .build();
        let err = a
            .of("/")
            .unwrap()
            .server_side_emit_with_ack("ping", vec![])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AdapterError::Timeout {
                what: "serverSideEmit",
                received: 0,
                expected: 1
            }
        );
        drop(b);
    }

    /// Records what an adapter publishes.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

    impl RedisDriver for Recorder {
        fn publish(&self, channel: String, payload: Vec<u8>) {
            self.0.lock_unpoisoned().push((channel, payload));
        }
        fn num_sub(&self, _: String) -> BoxFuture<Result<usize, DriverError>> {
            Box::pin(async { Err(DriverError::Timeout) })
        }
        fn subscribe(&self, _: Vec<String>, _: Vec<String>, _: Weak<dyn MessageSink>) {}
    }

    #[tokio::test]
    async fn broadcasts_use_the_adapter_channels_and_format() {
        let rec = Arc::new(Recorder::default());
        let io = Io::builder(ServerOptions::default())
            .adapter(Arc::new(RedisAdapterFactory::new(
                rec.clone(),
                RedisAdapterOptions::default(),
            )))
            .namespace("/chat", |_| {})
            .build();
        let ns = io.of("/chat").unwrap();
        assert_eq!(ns.to("room:1").emit("m", json!({"a": 1})), 0);
        ns.to("a").to("b").except("c").emit("m", vec![]);
        ns.local().emit("only-here", vec![]);
        ns.to("r").sockets_join("x");
        ns.server_side_emit("hello", vec![json!("w")]);
        // Redis unreachable: the server count falls back to this node.
        assert_eq!(ns.server_count().await, 1);
        let published = rec.0.lock_unpoisoned().clone();
        let channels: Vec<&str> = published.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            channels,
            [
                "socket.io#/chat#room:1#",
                "socket.io#/chat#",
                "socket.io-request#/chat#",
                "socket.io-request#/chat#"
            ]
        );
        let first = BroadcastMessage::decode(&published[0].1).unwrap();
        assert_eq!(first.packet.data, json!(["m", {"a": 1}]));
        assert_eq!(first.packet.nsp, "/chat");
        assert_eq!(first.opts.rooms, vec!["room:1"]);
        let second = BroadcastMessage::decode(&published[1].1).unwrap();
        assert_eq!(second.opts.except, vec!["c"]);
        assert_eq!(
            String::from_utf8(published[3].1.clone()).unwrap(),
            format!(r#"{{"uid":"{}","type":6,"data":["hello","w"]}}"#, first.uid)
        );
    }
}
