//! `--adapter redis-sharded` against real components: a real `redis-server` (7.x,
//! sharded pub/sub), our nodes (in-process servers, each with its own Redis
//! connections), and a real Node socket.io 4.8 server on `createShardedAdapter` of
//! `@socket.io/redis-adapter` 8.3.0 (tests/interop/sharded-node.mjs):
//!
//! - two of our nodes are one server; in dynamic mode a node listens on a room's channel
//!   exactly while it has the room (`PUBSUB SHARDCHANNELS`);
//! - ours and Node's are one cluster, every operation both ways;
//! - what our adapter SPUBLISHes for a call is what the npm package published for the
//!   same call (tests/interop/fixtures, made by tests/interop/sharded-fixtures.mjs);
//! - a Redis restart: local delivery goes on, the subscriber resubscribes.

use crate::cluster::{ph, Client};
use crate::common::free_port;
use crate::common::nodejs::NodeScript;
use crate::common::raw::{quiet_options, wait_until, QUICK};
use crate::common::redis::RedisServer;
use crate::common::{test_namespace, TestServer};
use realtime::cluster::redis_sharded::{RedisShardedFactory, RedisShardedOptions};
use realtime::cluster::sharded_driver::{LiveShardedDriver, ShardedDriver};
use realtime::protocol::cluster_sharded::SubscriptionMode;
use realtime::redis_client::RedisTarget;
use realtime::server::{Io, Payload};
use realtime::sid::Sid;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// What tests/interop/sharded-node.mjs imports.
const SHARDED_NODE_PACKAGES: [&str; 3] = ["socket.io", "@socket.io/redis-adapter", "redis"];

/// One of our nodes: `/` and `/chat` with the shared test handlers, on the sharded
/// adapter.
pub(crate) struct Node {
    pub(crate) server: TestServer,
    pub(crate) driver: Arc<LiveShardedDriver>,
}

async fn rust_node(redis: &str, mode: SubscriptionMode) -> Node {
    let target = RedisTarget::Single(Box::new(redis::Client::open(redis).unwrap()));
    rust_node_on(target, mode).await
}

/// One of our nodes on the Redis `target` (one server or a cluster).
pub(crate) async fn rust_node_on(target: RedisTarget, mode: SubscriptionMode) -> Node {
    let driver = LiveShardedDriver::connect_to(target, Duration::from_millis(500))
        .await
        .expect("connect the sharded adapter to redis");
    let options = RedisShardedOptions {
        subscription_mode: mode,
        requests_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let io = Io::builder(quiet_options())
        .adapter(Arc::new(RedisShardedFactory::new(driver.clone(), options)))
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
    Node { server, driver }
}

/// Until `nodes` servers listen on the channel of `/` (what the server count counts).
async fn wait_cluster(driver: &dyn ShardedDriver, nodes: usize) {
    for _ in 0..300 {
        if driver
            .shard_num_sub("socket.io#/#".into())
            .await
            .unwrap_or(0)
            >= nodes
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{nodes} nodes never subscribed");
}

/// `PUBSUB SHARDCHANNELS <pattern>`, sorted.
async fn shard_channels(redis: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut all: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    all.sort();
    all
}

/// Until `PUBSUB SHARDCHANNELS <pattern>` is `want`.
async fn wait_channels(redis: &str, pattern: &str, want: &[&str]) {
    for _ in 0..150 {
        if shard_channels(redis, pattern).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shard_channels(redis, pattern).await, want);
}

async fn node_peer(redis: &RedisServer, mode: &str) -> (NodeScript, Client, std::net::SocketAddr) {
    node_peer_at(&redis.url(), mode).await
}

/// The Node peer on `redis` (a URL, or `cluster:host:port,…`).
pub(crate) async fn node_peer_at(
    redis: &str,
    mode: &str,
) -> (NodeScript, Client, std::net::SocketAddr) {
    let port = free_port();
    let args = [port.to_string(), redis.to_owned(), mode.to_owned()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let script = NodeScript::start(
        "sharded-node.mjs",
        &args,
        "listening",
        &SHARDED_NODE_PACKAGES,
    )
    .await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (script, Client::connect(addr).await, addr)
}

/// Runs an `admin` command on the Node peer and checks it went well.
async fn admin(client: &mut Client, args: Value) -> Value {
    let answer = client.call("admin", args.as_array().unwrap().clone()).await;
    assert_eq!(answer[0]["ok"], json!(true), "{args} -> {answer:?}");
    answer[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_our_nodes_are_one_server_on_sharded_pubsub() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = rust_node(&url, SubscriptionMode::Dynamic).await;
    let b = rust_node(&url, SubscriptionMode::Dynamic).await;
    wait_cluster(&*a.driver, 2).await;
    let (ns_a, ns_b) = (a.server.io.of("/").unwrap(), b.server.io.of("/").unwrap());
    assert_eq!(ns_a.server_count().await, 2);

    let mut on_a = Client::connect(a.server.addr).await;
    let mut on_b = Client::connect(b.server.addr).await;
    // Dynamic mode: A listens on R's channel while its client is in R; no channel for
    // the sockets' own ids.
    assert_eq!(on_a.call("join", vec![json!("R")]).await, vec![json!(true)]);
    wait_channels(&url, "socket.io#/#R#", &["socket.io#/#R#"]).await;
    assert!(shard_channels(&url, &format!("*{}*", on_a.sid))
        .await
        .is_empty());

    // A room broadcast from B's client reaches A's (on R's channel), text and binary.
    on_b.call("to-room", vec![json!("R"), json!("hello"), json!({"n": 1})])
        .await;
    assert_eq!(on_a.event("hello").await.0, vec![json!({"n": 1})]);
    on_b.ws
        .send_text(&format!(r#"451-1["to-room","R","bin",{}]"#, ph(0)))
        .await;
    on_b.ws.send_binary(&[0xde, 0xad]).await;
    let (args, bins) = on_a.binary_event("bin", 1).await;
    assert_eq!((args, bins), (vec![ph(0)], vec![vec![0xde, 0xad]]));
    // Namespace-wide, on the namespace channel.
    ns_b.emit("all", json!("x"));
    assert_eq!(on_a.event("all").await.0, vec![json!("x")]);

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

    // Room operations from A reach B's socket; B then listens on J's channel.
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
    wait_channels(&url, "socket.io#/#J#", &["socket.io#/#J#"]).await;
    ns_a.to("J").sockets_leave("J");
    let joined = has_room("J");
    wait_until(QUICK, "remote leave", move || !joined()).await;
    wait_channels(&url, "socket.io#/#J#", &[]).await;

    // The room's channel goes with its last member.
    assert_eq!(
        on_a.call("leave", vec![json!("R")]).await,
        vec![json!(true)]
    );
    wait_channels(&url, "socket.io#/#R#", &[]).await;
    ns_a.to(on_b.sid.clone()).disconnect_sockets(false);
    on_b.next_text(|t| t == "41").await;
    for node in [a, b] {
        node.server.stop().await;
    }
    // Stopped nodes leave every channel.
    wait_channels(&url, "socket.io#*", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_sharded_server_and_ours_are_one_cluster() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url(), SubscriptionMode::Dynamic).await;
    let (_peer, mut n, node_addr) = node_peer(&redis, "dynamic").await;
    one_cluster_both_ways(&ours, &mut n, node_addr).await;
    ours.server.stop().await;
}

/// Our node and the Node peer (whose client is `n`) are one cluster: broadcasts, room
/// operations, fetchSockets, serverSideEmit and broadcasts with acks, both ways.
pub(crate) async fn one_cluster_both_ways(
    ours: &Node,
    n: &mut Client,
    node_addr: std::net::SocketAddr,
) {
    wait_cluster(&*ours.driver, 2).await;
    let ns = ours.server.io.of("/").unwrap();
    let mut r = Client::connect(ours.server.addr).await;
    for room in ["R", "RR"] {
        assert_eq!(r.call("join", vec![json!(room)]).await, vec![json!(true)]);
    }
    for room in ["R", "NN"] {
        assert_eq!(n.call("join", vec![json!(room)]).await, vec![json!(true)]);
    }
    // Both runtimes listen on R's channel: Node's subscription is not awaited.
    for _ in 0..100 {
        if ours.driver.shard_num_sub("socket.io#/#R#".into()).await == Ok(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ns.server_count().await, 2);
    assert_eq!(admin(n, json!(["serverCount"])).await["count"], 2);

    // Broadcasts both ways: to a room, to the namespace, text and binary.
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
        n,
        json!(["emitToRoom", "R", "bin-node", {"$binary": [7, 8, 9]}, "t"]),
    )
    .await;
    let (args, bins) = r.binary_event("bin-node", 1).await;
    assert_eq!((args, bins), (vec![ph(0), json!("t")], vec![vec![7, 8, 9]]));
    admin(n, json!(["emit", "node-all", {"$binary": [1]}])).await;
    let (args, bins) = r.binary_event("node-all", 1).await;
    assert_eq!((args, bins), (vec![ph(0)], vec![vec![1]]));
    ns.emit("rust-all", json!(3));
    assert_eq!(n.event("rust-all").await.0, vec![json!(3)]);

    // socketsJoin / socketsLeave both ways.
    let n_sid = n.sid.clone();
    let node_rooms = |answer: Value| answer["rooms"].as_array().unwrap().clone();
    ns.to(n.sid.clone()).sockets_join("J");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rooms = node_rooms(admin(n, json!(["rooms", n_sid])).await);
    assert!(rooms.contains(&json!("J")), "{rooms:?}");
    ns.to(n.sid.clone()).sockets_leave("J");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rooms = node_rooms(admin(n, json!(["rooms", n_sid])).await);
    assert!(!rooms.contains(&json!("J")), "{rooms:?}");
    let sid_r = Sid::parse(&r.sid).unwrap();
    let in_room = |room: &'static str| {
        let ns = ns.clone();
        move || {
            ns.get_socket(&sid_r)
                .is_some_and(|s| s.rooms().iter().any(|x| &**x == room))
        }
    };
    admin(n, json!(["socketsJoin", "K", r.sid])).await;
    wait_until(QUICK, "join requested by node", in_room("K")).await;
    admin(n, json!(["socketsLeave", "K", r.sid])).await;
    let joined = in_room("K");
    wait_until(QUICK, "leave requested by node", move || !joined()).await;

    // fetchSockets both ways.
    let fetched = admin(n, json!(["fetchSockets"])).await;
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
    let from_node = admin(n, json!(["serverSideEmit", "ping", 7])).await;
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
    admin(n, json!(["disconnectSockets", "dR"])).await;
    r.next_text(|t| t == "41").await;
    ns.to("dN").disconnect_sockets(false);
    n.next_text(|t| t == "41").await;
}

/// Node in dynamic-private mode sends a broadcast to one socket on that socket's own
/// channel; ours in the same mode listens there, and its socket gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamic_private_mode_speaks_to_node_on_socket_channels() {
    let redis = RedisServer::start();
    let url = redis.url();
    let ours = rust_node(&url, SubscriptionMode::DynamicPrivate).await;
    let (_peer, mut n, _) = node_peer(&redis, "dynamic-private").await;
    wait_cluster(&*ours.driver, 2).await;
    let mut r = Client::connect(ours.server.addr).await;
    let own = format!("socket.io#/#{}#", r.sid);
    wait_channels(&url, &own, &[own.as_str()]).await;
    admin(&mut n, json!(["emitToRoom", r.sid, "direct", 1])).await;
    assert_eq!(r.event("direct").await.0, vec![json!(1)]);
    // Ours to Node's socket, on Node's socket channel.
    let ns = ours.server.io.of("/").unwrap();
    let theirs = format!("socket.io#/#{}#", n.sid);
    wait_channels(&url, &theirs, &[theirs.as_str()]).await;
    ns.to(n.sid.clone()).emit("direct-back", json!(2));
    assert_eq!(n.event("direct-back").await.0, vec![json!(2)]);
    drop(r);
    wait_channels(&url, &own, &[]).await;
    ours.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_never_holds_back_local_delivery() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let url = redis.url();
    let a = rust_node(&url, SubscriptionMode::Dynamic).await;
    let b = rust_node(&url, SubscriptionMode::Dynamic).await;
    wait_cluster(&*a.driver, 2).await;
    let mut on_a = Client::connect(a.server.addr).await;
    let mut on_a2 = Client::connect(a.server.addr).await;
    let mut on_b = Client::connect(b.server.addr).await;
    for c in [&mut on_a, &mut on_a2, &mut on_b] {
        assert_eq!(c.call("join", vec![json!("R")]).await, vec![json!(true)]);
    }
    wait_channels(&url, "socket.io#/#R#", &["socket.io#/#R#"]).await;
    on_a.call("to-room", vec![json!("R"), json!("before"), json!(0)])
        .await;
    assert_eq!(on_a2.event("before").await.0, vec![json!(0)]);
    assert_eq!(on_b.event("before").await.0, vec![json!(0)]);

    redis.stop();
    // Redis is gone: this node's clients still get every broadcast, at once, in order.
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
    // Requests say what failed; the count falls back to this node.
    let ns_a = a.server.io.of("/").unwrap();
    assert_eq!(ns_a.server_count().await, 1);
    let err = ns_a.fetch_sockets().await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");

    let _redis = RedisServer::start_on(port);
    // Both subscribers come back with every channel, the room's included.
    wait_cluster(&*a.driver, 2).await;
    wait_channels(&url, "socket.io#/#R#", &["socket.io#/#R#"]).await;
    let mut n = 0;
    loop {
        n += 1;
        on_a.call("to-room", vec![json!("R"), json!("after"), json!(n)])
            .await;
        let got = tokio::time::timeout(Duration::from_millis(500), on_b.event("after")).await;
        if got.is_ok() {
            break;
        }
        assert!(n < 40, "broadcasts never flowed again after the restart");
    }
    let stats = a.driver.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(
        stats.publish_failures >= 1 || stats.dropped >= 1,
        "{stats:?}"
    );
    for node in [a, b] {
        node.server.stop().await;
    }
}

/// Two real `realtime-server` processes started with `--adapter redis-sharded`: what a
/// client of one publishes to a room reaches a client of the other, on the room's
/// channel (dynamic mode, the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_processes_run_on_sharded_pubsub_when_asked() {
    use crate::common::app::{random, TempDir};
    use crate::common::node::NodeProcess;
    use crate::common::sio::SioClient;
    let redis = RedisServer::start();
    let secret = random("secret");
    let redis_url = redis.url();
    let mut nodes = Vec::new();
    let mut dbs = Vec::new();
    for id in ["sharded-a", "sharded-b"] {
        let db = TempDir::new(id);
        let database = db.sqlite_url();
        let args = [
            "--redis-url",
            redis_url.as_str(),
            "--adapter",
            "redis-sharded",
            "--database-url",
            database.as_str(),
            "--loadtest-namespace",
            "--log-level",
            "warn",
        ];
        nodes.push(NodeProcess::start(id, &args, &[("NEXTAUTH_SECRET", secret.as_str())]).await);
        dbs.push(db);
    }
    let watcher = LiveShardedDriver::connect(&redis_url, Duration::from_millis(500))
        .await
        .unwrap();
    for _ in 0..300 {
        let n = watcher.shard_num_sub("socket.io#/bench#".into()).await;
        if n.unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut on_a = SioClient::connect(nodes[0].addr, &secret, "user-a", "/bench").await;
    let mut on_b = SioClient::connect(nodes[1].addr, &secret, "user-b", "/bench").await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(
            client.call("join", json!({"room": "R"})).await,
            json!({"ok": true})
        );
    }
    wait_channels(
        &redis_url,
        "socket.io#/bench#bench:R#",
        &["socket.io#/bench#bench:R#"],
    )
    .await;
    for _ in 0..100 {
        let n = watcher
            .shard_num_sub("socket.io#/bench#bench:R#".into())
            .await;
        if n == Ok(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = json!({"room": "R", "seq": 1});
    assert_eq!(
        on_a.call("publish", sent.clone()).await,
        json!({"ok": true})
    );
    assert_eq!(on_b.event("message").await, sent);
}
