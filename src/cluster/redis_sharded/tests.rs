//! The adapter's logic on the in-memory bus's sharded side ([`MemoryBus`]) and on a
//! recording driver. Real Redis and real Node peers are in tests/it/sharded.rs.

use super::*;
use crate::cluster::driver::{DriverError, MemoryBus};
use crate::server::adapter::{
    AckFuture, Adapter, AdapterError, BroadcastOptions, BroadcastPacket, RemoteSocket, ServerAck,
};
use crate::server::{BoxFuture, Io, Payload, Room, ServerOptions};
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use crate::transport::Frame;
use serde_json::{json, Value};
use std::collections::HashSet;

fn io(driver: Arc<dyn ShardedDriver>, timeout: Duration) -> Io {
    let options = RedisShardedOptions {
        requests_timeout: timeout,
        ..Default::default()
    };
    Io::builder(ServerOptions::default())
        .adapter(Arc::new(RedisShardedFactory::new(driver, options)))
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
    let timeout = Duration::from_secs(2);
    let (a, _b, _c) = (
        io(bus.driver(), timeout),
        io(bus.driver(), timeout),
        io(bus.driver(), timeout),
    );
    let ns = a.of("/").unwrap();
    assert_eq!(ns.server_count().await, 3);
    let answers = ns
        .server_side_emit_with_ack("ping", vec![json!(1)])
        .await
        .unwrap();
    assert_eq!(answers, vec![json!({"pong": [1]}), json!({"pong": [1]})]);
    assert!(ns.fetch_sockets().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_answer_times_out_with_the_count() {
    let bus = MemoryBus::new();
    let a = io(bus.driver(), Duration::from_millis(200));
    let options = RedisShardedOptions::default();
    let silent = Io::builder(ServerOptions::default())
        .adapter(Arc::new(RedisShardedFactory::new(bus.driver(), options)))
        .namespace("/", |_| {}) // no handler: never answers
        .build();
    let err = a
        .of("/")
        .unwrap()
        .server_side_emit_with_ack("ping", vec![])
        .await
        .unwrap_err();
    let expected = AdapterError::Timeout {
        what: "serverSideEmit",
        received: 0,
        expected: 1,
    };
    assert_eq!(err, expected);
    drop(silent);
}

/// A namespace stand-in with fixed sockets: records the text frames they receive.
struct Sockets {
    ids: Vec<Sid>,
    received: Mutex<Vec<String>>,
}

impl Sockets {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Sockets {
            ids: (0..n).map(|_| Sid::new()).collect(),
            received: Mutex::default(),
        })
    }
}

impl SocketEmitter for Sockets {
    fn nsp(&self) -> &str {
        "/"
    }
    fn has_socket(&self, sid: &Sid) -> bool {
        self.ids.contains(sid)
    }
    fn socket_ids(&self) -> Vec<Sid> {
        self.ids.clone()
    }
    fn send_many(&self, sids: &HashSet<Sid>, frames: &[Frame]) -> usize {
        let mut received = self.received.lock_unpoisoned();
        for f in frames {
            if let Frame::Text(t) = f {
                received.push(t.to_string());
            }
        }
        sids.len()
    }
    fn send_many_with_ack(
        &self,
        _: &HashSet<Sid>,
        _: &BroadcastPacket,
        _: Duration,
    ) -> Vec<AckFuture> {
        Vec::new()
    }
    fn join_many(&self, _: &HashSet<Sid>, _: &[Room]) {}
    fn leave_many(&self, _: &HashSet<Sid>, _: &[Room]) {}
    fn disconnect_many(&self, _: &HashSet<Sid>, _: bool) {}
    fn remote_sockets(&self, _: &HashSet<Sid>) -> Vec<RemoteSocket> {
        Vec::new()
    }
    fn server_event(&self, _: Vec<Value>, _: Option<ServerAck>) {}
}

/// One node: its adapter of `/` on `driver`, over two stand-in sockets.
fn node(
    driver: Arc<dyn ShardedDriver>,
    mode: SubscriptionMode,
) -> (Arc<dyn Adapter>, Arc<Sockets>) {
    let options = RedisShardedOptions {
        subscription_mode: mode,
        ..Default::default()
    };
    let factory = RedisShardedFactory::new(driver, options);
    let sockets = Sockets::new(2);
    let weak: Weak<dyn SocketEmitter> = Arc::downgrade(&sockets) as _;
    (factory.create(weak, "/"), sockets)
}

/// The room channels on the bus (namespace and response channels left out).
fn room_channels(bus: &MemoryBus) -> Vec<String> {
    bus.shard_channels()
        .into_iter()
        .filter(|c| c != "socket.io#/#" && c.len() != "socket.io#/#".len() + 17)
        .collect()
}

#[tokio::test]
async fn dynamic_mode_listens_on_public_rooms_while_they_exist() {
    let bus = MemoryBus::new();
    let (adapter, sockets) = node(bus.driver(), SubscriptionMode::Dynamic);
    let [s0, s1] = [sockets.ids[0], sockets.ids[1]];
    adapter.add_all(s0, &["room1".into()]);
    adapter.add_all(s1, &["room1".into(), Room::from(s0.as_str())]);
    adapter.own_room(s0, true);
    // A socket's own id (joined or not) is private: no channel in dynamic mode.
    assert_eq!(room_channels(&bus), ["socket.io#/#room1#"]);
    adapter.del(s0, "room1");
    assert_eq!(room_channels(&bus), ["socket.io#/#room1#"]);
    adapter.del(s1, "room1");
    assert!(room_channels(&bus).is_empty());
    adapter.add_all(s0, &["room2".into()]);
    adapter.close();
    assert!(
        bus.shard_channels().is_empty(),
        "{:?}",
        bus.shard_channels()
    );
}

#[tokio::test]
async fn dynamic_private_mode_also_listens_on_own_id_rooms_and_static_on_none() {
    let bus = MemoryBus::new();
    let (adapter, sockets) = node(bus.driver(), SubscriptionMode::DynamicPrivate);
    let s0 = sockets.ids[0];
    adapter.own_room(s0, true);
    adapter.add_all(s0, &["room1".into()]);
    let mut want = vec![format!("socket.io#/#{s0}#"), "socket.io#/#room1#".into()];
    want.sort();
    assert_eq!(room_channels(&bus), want);
    adapter.own_room(s0, false);
    assert_eq!(room_channels(&bus), ["socket.io#/#room1#"]);

    let bus = MemoryBus::new();
    let (adapter, sockets) = node(bus.driver(), SubscriptionMode::Static);
    adapter.own_room(sockets.ids[0], true);
    adapter.add_all(sockets.ids[0], &["room1".into()]);
    assert!(room_channels(&bus).is_empty());
    assert_eq!(bus.shard_channels().len(), 2);
}

#[tokio::test]
async fn a_room_broadcast_reaches_the_nodes_that_have_the_room() {
    let bus = MemoryBus::new();
    let (a, _) = node(bus.driver(), SubscriptionMode::Dynamic);
    let (b, b_sockets) = node(bus.driver(), SubscriptionMode::Dynamic);
    let (c, c_sockets) = node(bus.driver(), SubscriptionMode::Static);
    b.add_all(b_sockets.ids[0], &["room1".into()]);
    c.add_all(c_sockets.ids[0], &["room1".into()]);
    let packet = BroadcastPacket::event("hi", Payload::new(vec![json!(1)]));
    a.broadcast(packet.clone(), &BroadcastOptions::room("room1"));
    a.broadcast(packet, &BroadcastOptions::default());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = |s: &Sockets| s.received.lock_unpoisoned().clone();
    // B listens on room1's channel; C (static) on the namespace channel only, so it
    // misses what a dynamic node sends to the room: modes must agree in a cluster.
    assert_eq!(got(&b_sockets), [r#"42["hi",1]"#, r#"42["hi",1]"#]);
    assert_eq!(got(&c_sockets), [r#"42["hi",1]"#]);
}

/// Records what an adapter publishes; Redis is away for everything else.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Vec<u8>, &'static str)>>);

impl ShardedDriver for Recorder {
    fn spublish(&self, channel: String, payload: Vec<u8>, kind: &'static str) {
        self.0.lock_unpoisoned().push((channel, payload, kind));
    }
    fn shard_num_sub(&self, _: String) -> BoxFuture<Result<usize, DriverError>> {
        Box::pin(async { Err(DriverError::Timeout) })
    }
    fn ssubscribe(&self, _: Vec<String>, _: Weak<dyn MessageSink>) {}
    fn sunsubscribe(&self, _: Vec<String>) {}
}

#[tokio::test]
async fn messages_use_the_adapter_channels_and_format() {
    let rec = Arc::new(Recorder::default());
    let io = Io::builder(ServerOptions::default())
        .adapter(Arc::new(RedisShardedFactory::new(
            rec.clone(),
            RedisShardedOptions::default(),
        )))
        .namespace("/chat", |_| {})
        .build();
    let ns = io.of("/chat").unwrap();
    ns.to("room:1").emit("m", json!({"a": 1}));
    ns.to("a").to("b").except("c").emit("m", vec![]);
    let bin = Payload::new(vec![]).with_binary(bytes::Bytes::from_static(&[1, 2]));
    ns.emit("b", bin);
    ns.local().emit("only-here", vec![]);
    ns.to("r").sockets_join("x");
    ns.server_side_emit("hello", vec![json!("w")]);
    // Redis unreachable: the server count falls back to this node, requests fail.
    assert_eq!(ns.server_count().await, 1);
    assert!(ns.fetch_sockets().await.is_err());
    let published = rec.0.lock_unpoisoned().clone();
    let channels: Vec<(&str, &str)> = published.iter().map(|(c, _, k)| (c.as_str(), *k)).collect();
    assert_eq!(
        channels,
        [
            ("socket.io#/chat#room:1#", "broadcast"),
            ("socket.io#/chat#", "broadcast"),
            ("socket.io#/chat#", "broadcast"),
            ("socket.io#/chat#", "broadcast"),
            ("socket.io#/chat#", "broadcast"),
        ]
    );
    let first = Message::decode_sharded(&published[0].1).unwrap();
    let text = String::from_utf8(published[0].1.clone()).unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"type":3,"data":{{"packet":{{"type":2,"data":["m",{{"a":1}}]}},"opts":{{"rooms":["room:1"],"except":[],"flags":{{}}}}}},"uid":"{}","nsp":"/chat"}}"#,
            first.uid
        )
    );
    // Binary: msgpack of the whole message, the bytes in place.
    assert_eq!(published[2].1[0], 0x84);
    let binary = Message::decode_sharded(&published[2].1).unwrap();
    assert_eq!(binary.attachments, [bytes::Bytes::from_static(&[1, 2])]);
    assert!(String::from_utf8_lossy(&published[4].1).contains(r#""type":9"#));
}
