//! `--adapter redis-streams` against real components: a real `redis-server`, our nodes
//! (in-process servers, each with its own Redis connections), and a real Node socket.io
//! 4.8 server on `@socket.io/redis-streams-adapter` 0.3.1 (tests/interop/streams-node.mjs):
//!
//! - two of our nodes are one server (broadcasts, binary, requests, room operations);
//! - ours and Node's are one cluster, every operation both ways;
//! - what our adapter XADDs and PUBLISHes for a call is what the npm package wrote for the
//!   same call (tests/interop/fixtures, made by tests/interop/streams-fixtures.mjs);
//! - recovery sessions cross runtimes: one a Node node persisted restores on ours (with
//!   what it missed from both), one ours persisted restores on Node's.

use crate::cluster::{ph, Client};
use crate::common::free_port;
use crate::common::nodejs::NodeScript;
use crate::common::raw::{quiet_options, wait_until, QUICK};
use crate::common::redis::RedisServer;
use crate::common::{test_namespace, TestServer};
use realtime::cluster::driver::{LiveDriver, RedisDriver};
use realtime::cluster::redis_streams::live::LiveStreams;
use realtime::cluster::redis_streams::store::StreamStore;
use realtime::cluster::redis_streams::{RedisStreamsFactory, RedisStreamsOptions};
use realtime::protocol::cluster_streams::StreamEntry;
use realtime::server::adapter::{BroadcastOptions, BroadcastPacket, PersistedSession};
use realtime::server::{Io, Payload, RecoveryOptions, Room, ServerOptions};
use realtime::sid::Sid;
use realtime::transport::Frame;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// What tests/interop/streams-node.mjs imports.
const STREAMS_NODE_PACKAGES: [&str; 4] = [
    "socket.io",
    "socket.io-client",
    "@socket.io/redis-streams-adapter",
    "redis",
];

/// One of our nodes: `/` and `/chat` with the shared test handlers, on the streams
/// adapter.
pub(crate) struct Node {
    pub(crate) server: TestServer,
    pub(crate) driver: Arc<LiveDriver>,
    pub(crate) streams: Arc<LiveStreams>,
}

pub(crate) async fn rust_node(redis: &str, recovery: Option<Duration>) -> Node {
    let driver = LiveDriver::connect(redis, Duration::from_millis(500))
        .await
        .expect("connect the adapter's pub/sub to redis");
    let streams = LiveStreams::connect(redis, Duration::from_millis(500))
        .await
        .expect("connect the adapter's streams to redis");
    let factory = RedisStreamsFactory::new(
        driver.clone(),
        streams.clone(),
        RedisStreamsOptions {
            requests_timeout: Duration::from_secs(3),
            recovery,
            ..Default::default()
        },
    );
    // The server's recovery (pid, offsets, persisting) and the adapter's (where
    // sessions live, for how long) come from one setting in the app.
    let options = ServerOptions {
        recovery: recovery.map(|max_disconnection| RecoveryOptions {
            max_disconnection,
            ..RecoveryOptions::default()
        }),
        ..quiet_options()
    };
    let io = Io::builder(options)
        .adapter(Arc::new(factory))
        .namespace("/", |ns| {
            test_namespace(ns);
            ns.on_server_event("ping", |args, ack| {
                if let Some(ack) = ack {
                    ack(json!({ "from": "rust", "args": args }));
                }
            });
        })
        .namespace("/chat", test_namespace)
        .build();
    let server = TestServer::start_io(io, "127.0.0.1:0".parse().unwrap()).await;
    Node {
        server,
        driver,
        streams,
    }
}

/// Until `nodes` servers subscribed to the public channel of `/` (what the server count
/// counts), and our readers found where the stream ends.
pub(crate) async fn wait_cluster(driver: &dyn RedisDriver, nodes: usize) {
    for _ in 0..300 {
        if driver.num_sub("socket.io#/#".into()).await.unwrap_or(0) >= nodes {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{nodes} nodes never subscribed");
}

pub(crate) async fn node_peer(
    redis: &RedisServer,
    recovery_ms: Option<u64>,
) -> (NodeScript, Client, std::net::SocketAddr) {
    let port = free_port();
    let mut args = vec![port.to_string(), redis.url()];
    args.extend(recovery_ms.map(|ms| ms.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let script = NodeScript::start(
        "streams-node.mjs",
        &args,
        "listening",
        &STREAMS_NODE_PACKAGES,
    )
    .await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (script, Client::connect(addr).await, addr)
}

/// Runs an `admin` command on the Node peer and checks it went well.
pub(crate) async fn admin(client: &mut Client, args: Value) -> Value {
    let answer = client.call("admin", args.as_array().unwrap().clone()).await;
    assert_eq!(answer[0]["ok"], json!(true), "{args} -> {answer:?}");
    answer[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_our_nodes_are_one_server_on_streams() {
    let redis = RedisServer::start();
    let a = rust_node(&redis.url(), None).await;
    let b = rust_node(&redis.url(), None).await;
    wait_cluster(&*a.driver, 2).await;
    let (ns_a, ns_b) = (a.server.io.of("/").unwrap(), b.server.io.of("/").unwrap());
    assert_eq!(ns_a.server_count().await, 2);

    let mut on_a = Client::connect(a.server.addr).await;
    let mut on_b = Client::connect(b.server.addr).await;
    assert_eq!(on_a.call("join", vec![json!("R")]).await, vec![json!(true)]);

    // A broadcast from B's client reaches A's, text and binary.
    on_b.call("to-room", vec![json!("R"), json!("hello"), json!({"n": 1})])
        .await;
    assert_eq!(on_a.event("hello").await.0, vec![json!({"n": 1})]);
    on_b.ws
        .send_text(&format!(r#"451-1["to-room","R","bin",{}]"#, ph(0)))
        .await;
    on_b.ws.send_binary(&[0xde, 0xad]).await;
    let (args, bins) = on_a.binary_event("bin", 1).await;
    assert_eq!((args, bins), (vec![ph(0)], vec![vec![0xde, 0xad]]));

    // Requests: fetch_sockets and server_side_emit with acks from A; a broadcast with
    // acks from B answered by A's client.
    let mut ids: Vec<String> = ns_a
        .fetch_sockets()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    let mut want = vec![on_a.sid.clone(), on_b.sid.clone()];
    want.sort();
    assert_eq!(ids, want);
    let answers = ns_a
        .server_side_emit_with_ack("ping", vec![json!("x")])
        .await
        .unwrap();
    assert_eq!(answers, vec![json!({"from": "rust", "args": ["x"]})]);
    let ask = tokio::spawn({
        let ns_b = ns_b.clone();
        async move {
            ns_b.to("R")
                .timeout(Duration::from_secs(3))
                .emit_with_ack("question", json!(42))
                .await
        }
    });
    let (args, id) = on_a.event("question").await;
    assert_eq!(args, vec![json!(42)]);
    on_a.ws
        .send_text(&format!(r#"43{}["answer"]"#, id.unwrap()))
        .await;
    assert_eq!(
        ask.await.unwrap().unwrap(),
        vec![Payload::new(vec![json!("answer")])]
    );

    // Room operations from A reach B's socket: join, leave, disconnect.
    let sid_b = Sid::parse(&on_b.sid).unwrap();
    let has_room = |room: &'static str| {
        let ns_b = ns_b.clone();
        move || {
            ns_b.get_socket(&sid_b)
                .is_some_and(|s| s.rooms().iter().any(|r| &**r == room))
        }
    };
    ns_a.to(on_b.sid.clone()).sockets_join("J");
    wait_until(QUICK, "remote join", has_room("J")).await;
    ns_a.to("J").sockets_leave("J");
    let joined = has_room("J");
    wait_until(QUICK, "remote leave", move || !joined()).await;
    ns_a.to(on_b.sid.clone()).disconnect_sockets(false);
    on_b.next_text(|t| t == "41").await;

    // All of it went through one stream.
    let entries = a.streams.xrange("socket.io", "-", "+", None).await.unwrap();
    let types: Vec<&str> = entries.iter().filter_map(|e| e.field("type")).collect();
    assert_eq!(types, ["3", "3", "4", "5", "6"], "{entries:?}");
    for node in [a, b] {
        node.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_streams_server_and_ours_are_one_cluster() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url(), None).await;
    let (_peer, mut n, node_addr) = node_peer(&redis, None).await;
    wait_cluster(&*ours.driver, 2).await;
    let ns = ours.server.io.of("/").unwrap();
    let mut r = Client::connect(ours.server.addr).await;
    for room in ["R", "RR"] {
        assert_eq!(r.call("join", vec![json!(room)]).await, vec![json!(true)]);
    }
    for room in ["R", "NN"] {
        assert_eq!(n.call("join", vec![json!(room)]).await, vec![json!(true)]);
    }
    assert_eq!(ns.server_count().await, 2);
    assert_eq!(admin(&mut n, json!(["serverCount"])).await["count"], 2);

    // Broadcasts both ways, text and binary.
    n.call(
        "to-room",
        vec![json!("R"), json!("from-node"), json!({"a": [1, "x"]})],
    )
    .await;
    assert_eq!(r.event("from-node").await.0, vec![json!({"a": [1, "x"]})]);
    r.call("to-room", vec![json!("R"), json!("from-rust"), json!("hi")])
        .await;
    assert_eq!(n.event("from-rust").await.0, vec![json!("hi")]);
    r.ws.send_text(&format!(r#"451-9["to-room","R","bin",{}]"#, ph(0)))
        .await;
    r.ws.send_binary(b"\x00\x01").await;
    let (args, bins) = n.binary_event("bin", 1).await;
    assert_eq!((args, bins), (vec![ph(0)], vec![b"\x00\x01".to_vec()]));
    admin(
        &mut n,
        json!(["emitToRoom", "R", "bin-node", {"$binary": [7, 8, 9]}, "t"]),
    )
    .await;
    let (args, bins) = r.binary_event("bin-node", 1).await;
    assert_eq!((args, bins), (vec![ph(0), json!("t")], vec![vec![7, 8, 9]]));

    // socketsJoin / socketsLeave both ways.
    let n_sid = n.sid.clone();
    let node_rooms = |answer: Value| answer["rooms"].as_array().unwrap().clone();
    ns.to(n.sid.clone()).sockets_join("J");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rooms = node_rooms(admin(&mut n, json!(["rooms", n_sid])).await);
    assert!(rooms.contains(&json!("J")), "{rooms:?}");
    ns.to(n.sid.clone()).sockets_leave("J");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rooms = node_rooms(admin(&mut n, json!(["rooms", n_sid])).await);
    assert!(!rooms.contains(&json!("J")), "{rooms:?}");
    let sid_r = Sid::parse(&r.sid).unwrap();
    let in_room = |room: &'static str| {
        let ns = ns.clone();
        move || {
            ns.get_socket(&sid_r)
                .is_some_and(|s| s.rooms().iter().any(|x| &**x == room))
        }
    };
    admin(&mut n, json!(["socketsJoin", "K", r.sid])).await;
    wait_until(QUICK, "join requested by node", in_room("K")).await;
    admin(&mut n, json!(["socketsLeave", "K", r.sid])).await;
    let joined = in_room("K");
    wait_until(QUICK, "leave requested by node", move || !joined()).await;

    // fetchSockets both ways.
    let fetched = admin(&mut n, json!(["fetchSockets"])).await;
    let ids: Vec<&str> = fetched["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&r.sid.as_str()) && ids.contains(&n.sid.as_str()),
        "{fetched}"
    );
    let ours_view = ns.fetch_sockets().await.unwrap();
    let remote = ours_view
        .iter()
        .find(|s| s.id == n.sid)
        .expect("node's socket");
    assert_eq!(remote.data, json!({"runtime": "node"}));
    assert!(remote.rooms.iter().any(|r| &**r == "NN"));

    // serverSideEmit with acks both ways.
    let answers = ns
        .server_side_emit_with_ack("ping", vec![json!("q")])
        .await
        .unwrap();
    assert_eq!(answers, vec![json!({"from": "node", "args": ["q"]})]);
    let from_node = admin(&mut n, json!(["serverSideEmit", "ping", 7])).await;
    assert_eq!(
        from_node["responses"],
        json!([{"from": "rust", "args": [7]}])
    );

    // Broadcasts with acks across: ours asks Node's client, Node asks ours.
    let ask = tokio::spawn({
        let ns = ns.clone();
        async move {
            ns.to("NN")
                .timeout(Duration::from_secs(3))
                .emit_with_ack("question", json!(1))
                .await
        }
    });
    let (args, id) = n.event("question").await;
    assert_eq!(args, vec![json!(1)]);
    n.ws.send_text(&format!(r#"43{}["from-node-client"]"#, id.unwrap()))
        .await;
    assert_eq!(
        ask.await.unwrap().unwrap(),
        vec![Payload::new(vec![json!("from-node-client")])]
    );
    let mut n2 = Client::connect(node_addr).await;
    let asked =
        tokio::spawn(async move { admin(&mut n2, json!(["emitWithAck", "RR", "q2", 5])).await });
    let (args, id) = r.event("q2").await;
    assert_eq!(args, vec![json!(5)]);
    r.ws.send_text(&format!(r#"43{}["from-rust-client"]"#, id.unwrap()))
        .await;
    assert_eq!(
        asked.await.unwrap()["responses"],
        json!(["from-rust-client"])
    );

    // disconnectSockets both ways.
    assert_eq!(r.call("join", vec![json!("dR")]).await, vec![json!(true)]);
    assert_eq!(n.call("join", vec![json!("dN")]).await, vec![json!(true)]);
    admin(&mut n, json!(["disconnectSockets", "dR"])).await;
    r.next_text(|t| t == "41").await;
    ns.to("dN").disconnect_sockets(false);
    n.next_text(|t| t == "41").await;
    ours.server.stop().await;
}

/// The fixture the npm package's bytes were captured in (see the module docs).
fn fixture() -> Value {
    let path = crate::common::nodejs::interop_dir().join("fixtures/redis-streams-0.3.1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `v` with each `{"$binary": [bytes]}` made a placeholder, its bytes an attachment.
fn with_placeholders(v: &Value, out: &mut Vec<bytes::Bytes>) -> Value {
    match v {
        Value::Object(m) if m.contains_key("$binary") => {
            let bytes: Vec<u8> = m["$binary"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect();
            out.push(bytes.into());
            json!({"_placeholder": true, "num": out.len() - 1})
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), with_placeholders(v, out)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| with_placeholders(v, out)).collect()),
        other => other.clone(),
    }
}

fn rooms(call: &Value, key: &str) -> Vec<Room> {
    call[key]
        .as_array()
        .map(|a| a.iter().map(|r| Room::from(r.as_str().unwrap())).collect())
        .unwrap_or_default()
}

/// Makes a fixture step's call on our adapter of `/`.
fn replay(ns: &realtime::server::Namespace, call: &Value) {
    let adapter = ns.adapter();
    let mut opts = BroadcastOptions {
        rooms: rooms(
            call,
            if call.get("op").is_some() {
                "in"
            } else {
                "rooms"
            },
        ),
        except: rooms(call, "except"),
        ..Default::default()
    };
    opts.flags.volatile = call["flags"]["volatile"] == json!(true);
    match call["op"].as_str() {
        None => {
            let mut data = vec![call["event"].clone()];
            data.extend(call["args"].as_array().unwrap().iter().cloned());
            let mut binary = Vec::new();
            let data = with_placeholders(&Value::Array(data), &mut binary);
            adapter.broadcast(BroadcastPacket { data, binary }, &opts);
        }
        Some("socketsJoin") => adapter.add_sockets(&opts, &rooms(call, "rooms")),
        Some("socketsLeave") => adapter.del_sockets(&opts, &rooms(call, "rooms")),
        Some("disconnectSockets") => {
            adapter.disconnect_sockets(&opts, call["close"].as_bool().unwrap())
        }
        Some("serverSideEmit") => {
            let mut data = vec![call["event"].clone()];
            data.extend(call["args"].as_array().unwrap().iter().cloned());
            adapter.server_side_emit(data);
        }
        Some(other) => panic!("not replayed: {other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_adapter_writes_what_the_npm_package_writes() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url(), None).await;
    wait_cluster(&*ours.driver, 1).await;
    // A spy on every pub/sub channel, as the fixture generator had.
    let spy = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = spy.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("*").await.unwrap();
    let mut messages = pubsub.into_on_message();

    let f = fixture();
    let theirs = f["uids"]["A"].as_str().unwrap();
    let ns = ours.server.io.of("/").unwrap();
    let steps = [
        "plain",
        "binary",
        "nested-binary",
        "json-text",
        "volatile",
        "sockets-join",
        "sockets-leave",
        "disconnect-sockets",
        "server-side-emit",
    ];
    let mut entries_seen = 0;
    for name in steps {
        let step = f["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        replay(&ns, &step["call"]);
        for want in step["entries"].as_array().unwrap() {
            let entry: StreamEntry = loop {
                let all = ours
                    .streams
                    .xrange("socket.io", "-", "+", None)
                    .await
                    .unwrap();
                if let Some(e) = all.get(entries_seen) {
                    break e.clone();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            entries_seen += 1;
            let uid = entry.field("uid").unwrap().to_owned();
            let expected: Vec<(String, String)> = ["uid", "nsp", "type", "data"]
                .iter()
                .map(|k| (k.to_string(), want[k].as_str().unwrap().to_owned()))
                .map(|(k, v)| if k == "uid" { (k, uid.clone()) } else { (k, v) })
                .collect();
            assert_eq!(entry.fields, expected, "step {name}");
            assert_eq!(want["uid"], theirs);
        }
        for want in step["pubsub"].as_array().unwrap() {
            use futures_util::StreamExt as _;
            let msg = tokio::time::timeout(QUICK, messages.next())
                .await
                .expect("a pub/sub message")
                .unwrap();
            assert_eq!(msg.get_channel_name(), want["channel"].as_str().unwrap());
            // The uid is a 16-character string inside the msgpack: same length, so the
            // bytes match once it is swapped for ours.
            let ours_hex = hex(msg.get_payload_bytes());
            let uid_hex = |u: &str| hex(u.as_bytes());
            let entries = ours
                .streams
                .xrange("socket.io", "-", "+", None)
                .await
                .unwrap();
            let our_uid = entries[0].field("uid").unwrap();
            let expected = want["hex"]
                .as_str()
                .unwrap()
                .replace(&uid_hex(theirs), &uid_hex(our_uid));
            assert_eq!(ours_hex, expected, "step {name}");
        }
    }
    ours.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_sessions_cross_between_node_and_ours() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url(), Some(Duration::from_secs(60))).await;
    let (_peer, mut n, _) = node_peer(&redis, Some(60_000)).await;
    wait_cluster(&*ours.driver, 2).await;
    let ns = ours.server.io.of("/").unwrap();

    // A client of the Node node drops: Node persists its session.
    let dropped = admin(&mut n, json!(["dropSession"])).await;
    let (sid, pid, offset) = (
        dropped["sid"].as_str().unwrap().to_owned(),
        dropped["pid"].as_str().unwrap().to_owned(),
        dropped["offset"].as_str().unwrap().to_owned(),
    );
    let key = format!("sio:session:{pid}");
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 50_000, "kept with PX maxDisconnectionDuration: {ttl}");

    // Meanwhile both runtimes broadcast; some of it is for the dropped socket.
    admin(&mut n, json!(["emitToRoom", "room1", "from-node", 1])).await;
    // (Node's emit returns before its XADD: wait for it, to know the order.)
    while ours
        .streams
        .xrange("socket.io", "-", "+", None)
        .await
        .unwrap()
        .len()
        < 2
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ns.to("room1").emit("from-rust", json!(2));
    ns.to("room2").emit("not-for-it", json!(3));
    ns.except(sid.clone()).emit("not-for-it-either", json!(4));
    ns.emit("everyone", json!(5));
    let entries = loop {
        let all = ours
            .streams
            .xrange("socket.io", "-", "+", None)
            .await
            .unwrap();
        if all.len() >= 6 {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Our node restores it: id, rooms, data, and what it missed, each with its entry id.
    let found = ns
        .adapter()
        .restore_session(&pid, &offset)
        .await
        .unwrap()
        .expect("the session Node persisted");
    assert_eq!(found.session.sid.as_str(), sid);
    assert_eq!(found.session.pid.as_str(), pid);
    let mut rooms: Vec<String> = found.session.rooms.iter().map(|r| r.to_string()).collect();
    rooms.sort();
    let mut want_rooms = vec![sid.clone(), "room1".to_owned()];
    want_rooms.sort();
    assert_eq!(rooms, want_rooms);
    assert_eq!(found.session.data, json!({"user": "alice"}));
    let id = |event: &str| {
        entries
            .iter()
            .find(|e| e.field("data").is_some_and(|d| d.contains(event)))
            .unwrap()
            .id
            .clone()
    };
    let missed: Vec<Value> = found.missed.iter().map(|f| event_of(f)).collect();
    assert_eq!(
        missed,
        vec![
            json!(["from-node", 1, id("from-node")]),
            json!(["from-rust", 2, id("from-rust")]),
            json!(["everyone", 5, id("everyone")]),
        ]
    );
    // Taken, as the package's MULTI GET DEL does.
    assert_eq!(ns.adapter().restore_session(&pid, &offset).await, Ok(None));
    let gone: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(gone, None);

    // The other way: a session our node persisted restores on the Node node.
    let since = ours.streams.last_id("socket.io").await.unwrap();
    let ours_sid = Sid::new();
    let ours_pid = Sid::new();
    ns.adapter().persist_session(PersistedSession {
        sid: ours_sid,
        pid: ours_pid,
        rooms: vec![Room::from(ours_sid.as_str()), Room::from("room9")],
        data: json!({"user": "bob", "n": 1.0}),
        expires_at: None,
    });
    ns.to("room9").emit("missed9", json!(9));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restored = admin(&mut n, json!(["restoreSession", ours_pid.as_str(), since])).await;
    let last = ours.streams.last_id("socket.io").await.unwrap();
    assert_eq!(restored["recovered"], json!(true), "{restored}");
    assert_eq!(restored["id"], json!(ours_sid.as_str()));
    assert!(restored["rooms"]
        .as_array()
        .unwrap()
        .contains(&json!("room9")));
    assert_eq!(restored["data"], json!({"user": "bob", "n": 1}));
    assert_eq!(restored["events"], json!([["missed9", 9, last]]));
    ours.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_never_holds_back_local_delivery() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let recovery = Some(Duration::from_secs(60));
    let a = rust_node(&redis.url(), recovery).await;
    let b = rust_node(&redis.url(), recovery).await;
    wait_cluster(&*a.driver, 2).await;
    let mut on_a = Client::connect(a.server.addr).await;
    let mut on_a2 = Client::connect(a.server.addr).await;
    let mut on_b = Client::connect(b.server.addr).await;
    for c in [&mut on_a, &mut on_a2, &mut on_b] {
        assert_eq!(c.call("join", vec![json!("R")]).await, vec![json!(true)]);
    }
    // With recovery on, local delivery follows the XADD, stamped with its id.
    on_a.call("to-room", vec![json!("R"), json!("before"), json!(0)])
        .await;
    let (args, _) = on_a2.event("before").await;
    assert_eq!(args[0], json!(0));
    assert!(
        args[1].as_str().is_some_and(|o| o.contains('-')),
        "{args:?}"
    );
    assert_eq!(on_b.event("before").await.0, args);

    redis.stop();
    // Redis is gone: this node's clients still get every broadcast, at once, in order,
    // without an offset (nothing could be stored for them).
    let started = std::time::Instant::now();
    for i in 1..=3 {
        on_a.call("to-room", vec![json!("R"), json!("during"), json!(i)])
            .await;
    }
    for i in 1..=3 {
        assert_eq!(on_a2.event("during").await.0, vec![json!(i)]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let _redis = RedisServer::start_on(port);
    wait_cluster(&*a.driver, 2).await;
    // Writes and reads flow again once both nodes are back on Redis.
    let mut n = 0;
    loop {
        n += 1;
        on_a.call("to-room", vec![json!("R"), json!("after"), json!(n)])
            .await;
        let got = tokio::time::timeout(Duration::from_millis(500), on_b.event("after")).await;
        if let Ok((args, _)) = got {
            assert!(
                args[1].as_str().is_some_and(|o| o.contains('-')),
                "{args:?}"
            );
            break;
        }
        assert!(n < 40, "broadcasts never flowed again after the restart");
    }
    for node in [a, b] {
        node.server.stop().await;
    }
}

/// Two real `realtime-server` processes started with `--adapter redis-streams`: what a
/// client of one publishes reaches a client of the other, through the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_processes_run_on_redis_streams_when_asked() {
    use crate::common::app::{random, TempDir};
    use crate::common::node::NodeProcess;
    use crate::common::sio::SioClient;
    let redis = RedisServer::start();
    let secret = random("secret");
    let redis_url = redis.url();
    let mut nodes = Vec::new();
    let mut dbs = Vec::new();
    for id in ["streams-a", "streams-b"] {
        let db = TempDir::new(id);
        let database = db.sqlite_url();
        let args = [
            "--redis-url",
            redis_url.as_str(),
            "--adapter",
            "redis-streams",
            "--redis-streams-name",
            "rt-streams",
            "--database-url",
            database.as_str(),
            "--loadtest-namespace",
            "--log-level",
            "warn",
        ];
        nodes.push(NodeProcess::start(id, &args, &[("NEXTAUTH_SECRET", secret.as_str())]).await);
        dbs.push(db);
    }
    let watcher = LiveDriver::connect(&redis_url, Duration::from_millis(500))
        .await
        .unwrap();
    for _ in 0..300 {
        if watcher
            .num_sub("socket.io#/bench#".into())
            .await
            .unwrap_or(0)
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut on_a = SioClient::connect(nodes[0].addr, &secret, "user-a", "/bench").await;
    let mut on_b = SioClient::connect(nodes[1].addr, &secret, "user-b", "/bench").await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(
            client.call("join", json!({"room": "R"})).await,
            json!({"ok": true})
        );
    }
    let sent = json!({"room": "R", "seq": 1});
    assert_eq!(
        on_a.call("publish", sent.clone()).await,
        json!({"ok": true})
    );
    assert_eq!(on_b.event("message").await, sent);
    let streams = LiveStreams::connect(&redis_url, Duration::from_millis(500))
        .await
        .unwrap();
    let entries = streams.xrange("rt-streams", "-", "+", None).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.field("nsp") == Some("/bench") && e.field("type") == Some("3")),
        "{entries:?}"
    );
}

/// The `[event, ...args]` of a missed packet, as the client will read it (one text
/// frame: `42` + JSON on the main namespace).
fn event_of(frames: &[Frame]) -> Value {
    match frames {
        [Frame::Text(t)] => {
            serde_json::from_str(t.strip_prefix("42").expect("an EVENT on /")).unwrap()
        }
        other => panic!("not one text EVENT frame: {other:?}"),
    }
}
