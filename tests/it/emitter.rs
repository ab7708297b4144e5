//! `cluster::emitter::Emitter`, the Rust twin of `@socket.io/redis-emitter`, against the
//! real thing (tests/interop, a real redis-server):
//!
//! - what it publishes reaches a Node socket.io 4.8 cluster: a Node server on
//!   @socket.io/redis-adapter 8.x with real socket.io-clients connected
//!   (tests/interop/emitter-peer.mjs) receives every event, room change, disconnect and
//!   server-side event exactly as addressed;
//! - it publishes what the npm emitter 5.1.0 publishes for the same calls
//!   (tests/interop/cluster-emit.mjs): on the same channels, the same bytes.
//!
//! One scenario drives both: [`scenario`] is the npm script's JSON, and [`apply`] makes
//! the same calls on our emitter.

use crate::cluster::wait_subscribed_to;
use crate::common::nodejs::NodeScript;
use crate::common::redis::RedisServer;
use realtime::cluster::driver::{LiveDriver, RedisDriver};
use realtime::cluster::emitter::Emitter;
use realtime::server::Payload;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The emitter calls, in the format of tests/interop/cluster-emit.mjs. The namespace is
/// `chat`, without its slash: both emitters must add it.
fn scenario() -> Vec<Value> {
    json!([
        {"to": ["room:1"], "event": "to-room", "args": [{"x": 1}]},
        {"to": ["room:1"], "except": ["muted"], "event": "except", "args": []},
        {"except": ["muted"], "event": "not-muted", "args": []},
        {"to": ["user:a"], "event": "bin", "args": ["hi", {"$binary": [1, 2, 3]}]},
        {"to": ["room:1", "user:c"], "event": "two-rooms", "args": [1.5, -7, null, "é"]},
        {"op": "socketsJoin", "to": ["room:1"], "rooms": ["joined"]},
        {"op": "socketsLeave", "to": ["user:a"], "rooms": ["room:1"]},
        {"to": ["joined"], "event": "via-joined", "args": []},
        {"to": ["room:1"], "event": "room-1-now", "args": []},
        {"op": "serverSideEmit", "event": "ping", "args": [1, "x"]},
        {"op": "disconnectSockets", "to": ["user:c"], "close": false},
        {"event": "everyone", "args": [true]}
    ])
    .as_array()
    .unwrap()
    .clone()
}

/// The namespace both emitters are given (normalized to `/chat`).
const NSP: &str = "chat";

/// Makes `step`'s call on `emitter` (see [`scenario`]).
fn apply(emitter: &Emitter, step: &Value) {
    let rooms = |key: &str| -> Vec<String> {
        step[key]
            .as_array()
            .map(|a| a.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut op = emitter.clone();
    for room in rooms("to") {
        op = op.to(&room);
    }
    for room in rooms("except") {
        op = op.except(&room);
    }
    let event = step["event"].as_str().unwrap_or_default();
    let args = step["args"].as_array().cloned().unwrap_or_default();
    let rooms = rooms("rooms");
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    match step["op"].as_str().unwrap_or("emit") {
        "emit" => op.emit(event, payload(args)),
        "socketsJoin" => op.sockets_join(&rooms),
        "socketsLeave" => op.sockets_leave(&rooms),
        "disconnectSockets" => op.disconnect_sockets(step["close"].as_bool().unwrap()),
        "serverSideEmit" => op.server_side_emit(event, args),
        other => panic!("unknown op {other}"),
    }
}

/// `args` with each `{"$binary": [bytes]}` made an attachment (a placeholder in place).
fn payload(args: Vec<Value>) -> Payload {
    let mut payload = Payload::default();
    for arg in args {
        match arg.get("$binary").and_then(Value::as_array) {
            Some(bytes) => {
                let bytes: Vec<u8> = bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect();
                payload
                    .args
                    .push(json!({"_placeholder": true, "num": payload.binary.len()}));
                payload.binary.push(bytes.into());
            }
            None => payload.args.push(arg),
        }
    }
    payload
}

async fn our_emitter(redis: &RedisServer) -> (std::sync::Arc<LiveDriver>, Emitter) {
    let driver = LiveDriver::connect(&redis.url(), Duration::from_millis(500))
        .await
        .expect("connect the emitter to redis");
    let emitter = Emitter::new(driver.clone(), "socket.io", NSP);
    (driver, emitter)
}

/// What the Node peer's clients and server saw, each in order: `[event, args]`, or
/// `["disconnect", reason]`.
#[derive(Default)]
struct Observed {
    clients: BTreeMap<String, Vec<Value>>,
    server: Vec<Value>,
}

impl Observed {
    /// Reads the peer's lines until the scenario's last observations arrived (everyone
    /// still connected got `everyone`, `c` was disconnected, the server got `ping`),
    /// then a little longer, so anything delivered that should not be is caught too.
    async fn collect(peer: &mut NodeScript) -> Observed {
        let mut seen = Observed::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !seen.complete() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(line) = peer.next_line(left).await else {
                panic!("the peer stopped reporting; so far: {:?}", seen.clients);
            };
            seen.record(&line);
        }
        while let Some(line) = peer.next_line(Duration::from_millis(300)).await {
            seen.record(&line);
        }
        seen
    }

    fn record(&mut self, line: &str) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        if let Some(client) = v["client"].as_str() {
            let what = match v.get("disconnect") {
                Some(reason) => json!(["disconnect", reason]),
                None => json!([v["event"], v["args"]]),
            };
            self.clients
                .entry(client.to_owned())
                .or_default()
                .push(what);
        } else if let Some(event) = v["server"].as_str() {
            self.server.push(json!([event, v["args"]]));
        } else {
            panic!("unexpected line from the peer: {line}");
        }
    }

    fn complete(&self) -> bool {
        let last = |c: &str, what: &str| {
            self.clients
                .get(c)
                .and_then(|seen| seen.last())
                .is_some_and(|l| l[0] == what)
        };
        last("a", "everyone")
            && last("b", "everyone")
            && last("c", "disconnect")
            && !self.server.is_empty()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_socket_io_cluster_receives_what_our_emitter_emits() {
    let redis = RedisServer::start();
    let mut peer = NodeScript::start(
        "emitter-peer.mjs",
        &[&redis.url(), "/chat"],
        r#"{"ready""#,
        &[
            "socket.io",
            "@socket.io/redis-adapter",
            "redis",
            "socket.io-client",
        ],
    )
    .await;
    let (driver, emitter) = our_emitter(&redis).await;
    wait_subscribed_to(&*driver, "/chat", 1).await;

    for step in scenario() {
        apply(&emitter, &step);
    }
    let seen = Observed::collect(&mut peer).await;
    let e = |event: &str, args: Value| json!([event, args]);
    assert_eq!(
        seen.clients["a"],
        [
            e("to-room", json!([{"x": 1}])),
            e("except", json!([])),
            e("not-muted", json!([])),
            // The attachment arrives as a Buffer (printed as its bytes).
            e("bin", json!(["hi", {"$binary": [1, 2, 3]}])),
            e("two-rooms", json!([1.5, -7, null, "é"])),
            e("via-joined", json!([])),
            e("everyone", json!([true])),
        ],
        "client a (in user:a, room:1, until it leaves room:1)"
    );
    assert_eq!(
        seen.clients["b"],
        [
            e("to-room", json!([{"x": 1}])),
            e("two-rooms", json!([1.5, -7, null, "é"])),
            e("via-joined", json!([])),
            e("room-1-now", json!([])),
            e("everyone", json!([true])),
        ],
        "client b (in user:b, room:1, muted)"
    );
    assert_eq!(
        seen.clients["c"],
        [
            e("not-muted", json!([])),
            e("two-rooms", json!([1.5, -7, null, "é"])),
            json!(["disconnect", "io server disconnect"]),
        ],
        "client c (in user:c, then disconnected)"
    );
    assert_eq!(
        seen.server,
        [e("ping", json!([1, "x"]))],
        "server-side events"
    );

    // The rooms the server holds: socketsJoin and socketsLeave took effect.
    peer.send_line(r#"{"cmd":"rooms"}"#).await;
    let line = peer.next_line(Duration::from_secs(5)).await.expect("rooms");
    let rooms: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        rooms,
        json!({"rooms": {
            "a": ["joined", "user:a"],
            "b": ["joined", "muted", "room:1", "user:b"],
        }})
    );
    assert_eq!(driver.stats().publish_failures, 0);
}

/// Every message published on the cluster's channels (`socket.io*`), as Redis relays it.
struct Published {
    messages: futures_util::stream::BoxStream<'static, redis::Msg>,
}

impl Published {
    async fn subscribe(redis: &RedisServer) -> Published {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.expect("subscribe to redis");
        pubsub.psubscribe("socket.io*").await.unwrap();
        Published {
            messages: Box::pin(pubsub.into_on_message()),
        }
    }

    /// The next `n` messages as (channel, payload); panics if they do not come.
    async fn next(&mut self, n: usize) -> Vec<(String, Vec<u8>)> {
        use futures_util::StreamExt as _;
        let mut out = Vec::new();
        while out.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.messages.next())
                .await
                .unwrap_or_else(|_| panic!("{} of {n} messages published", out.len()))
                .expect("the subscription ended");
            out.push((
                msg.get_channel_name().to_owned(),
                msg.get_payload_bytes().to_vec(),
            ));
        }
        out
    }

    async fn expect_no_more(&mut self) {
        use futures_util::StreamExt as _;
        let more = tokio::time::timeout(Duration::from_millis(300), self.messages.next()).await;
        if let Ok(Some(msg)) = more {
            panic!("unexpected message on {}", msg.get_channel_name());
        }
    }
}

/// A message as its receivers read it: JSON requests as JSON; msgpack broadcasts decoded
/// with map keys sorted (receivers look keys up by name) and `bin` as `{"$bin": bytes}`.
fn meaning(payload: &[u8]) -> Value {
    if payload.first() == Some(&b'{') {
        return serde_json::from_slice(payload).expect("a JSON request");
    }
    let v = rmpv::decode::read_value(&mut &payload[..]).expect("a msgpack broadcast");
    from_mp(&v)
}

fn from_mp(v: &rmpv::Value) -> Value {
    use rmpv::Value as Mp;
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => json!(b),
        Mp::Integer(i) => i.as_i64().map_or_else(|| json!(i.as_u64()), |i| json!(i)),
        Mp::F32(f) => json!(f),
        Mp::F64(f) => json!(f),
        Mp::String(s) => json!(s.as_str().expect("UTF-8")),
        Mp::Binary(b) => json!({ "$bin": b }),
        Mp::Array(items) => Value::Array(items.iter().map(from_mp).collect()),
        Mp::Map(entries) => {
            let sorted: BTreeMap<String, Value> = entries
                .iter()
                .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), from_mp(v)))
                .collect();
            Value::Object(sorted.into_iter().collect())
        }
        Mp::Ext(kind, _) => panic!("msgpack extension {kind}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_emitter_publishes_what_the_npm_emitter_publishes() {
    let redis = RedisServer::start();
    let mut published = Published::subscribe(&redis).await;
    let steps = scenario();

    let script_args = [
        redis.url(),
        NSP.to_owned(),
        Value::Array(steps.clone()).to_string(),
    ];
    let script_args: Vec<&str> = script_args.iter().map(String::as_str).collect();
    let _npm = NodeScript::start(
        "cluster-emit.mjs",
        &script_args,
        "emitted everyone",
        &["@socket.io/redis-emitter", "redis"],
    )
    .await;
    let theirs = published.next(steps.len()).await;

    let (driver, emitter) = our_emitter(&redis).await;
    for step in &steps {
        apply(&emitter, step);
    }
    let ours = published.next(steps.len()).await;
    published.expect_no_more().await;
    assert_eq!(driver.stats().publish_failures, 0);

    for ((step, (their_channel, their_bytes)), (our_channel, our_bytes)) in
        steps.iter().zip(&theirs).zip(&ours)
    {
        assert_eq!(our_channel, their_channel, "the channel of {step}");
        assert_eq!(
            meaning(our_bytes),
            meaning(their_bytes),
            "the message of {step}"
        );
        // JSON requests and msgpack broadcasts alike: the very same bytes (same keys in
        // the same order, `opts` of a broadcast in the emitter's {rooms, flags, except}).
        assert_eq!(our_bytes, their_bytes, "the bytes of {step}");
    }
}
