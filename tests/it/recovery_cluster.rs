//! Connection state recovery across a cluster on the Redis Streams adapter, with the
//! real socket.io-client 4.8 (tests/interop/recovery-client.mjs) behind a switching
//! proxy, the load balancer: a client that drops on one node and reconnects through
//! another gets its socket id, rooms and data back, with every event it missed once and
//! in order — between two of our nodes, and between ours and a Node socket.io 4.8 node
//! on @socket.io/redis-streams-adapter 0.3.1, both ways.

use crate::common::proxy::SwitchProxy;
use crate::common::redis::RedisServer;
use crate::recovery::{without_offset, Clients};
use crate::streams::{admin, node_peer, rust_node, wait_cluster};
use realtime::cluster::redis_streams::live::LiveStreams;
use realtime::cluster::redis_streams::store::StreamStore as _;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// Recovery sessions kept in Redis (`sio:session:<pid>`, the package's default prefix).
async fn kept_sessions(redis: &RedisServer) -> usize {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("sio:session:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

/// Until the node the client left has persisted its session.
async fn wait_for_session(redis: &RedisServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while kept_sessions(redis).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session persisted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Entries in the (single) stream. Each broadcast waits for its entry before the next
/// one, so the order the client must see is the order of the calls, across nodes.
struct Stream<'a> {
    streams: &'a LiveStreams,
    len: usize,
}

impl<'a> Stream<'a> {
    async fn at(streams: &'a LiveStreams) -> Stream<'a> {
        let len = Self::len(streams).await;
        Stream { streams, len }
    }

    async fn len(streams: &LiveStreams) -> usize {
        streams
            .xrange("socket.io", "-", "+", None)
            .await
            .unwrap()
            .len()
    }

    /// Until the broadcast just made is written.
    async fn written(&mut self) {
        self.len += 1;
        let deadline = tokio::time::Instant::now() + WAIT;
        while Self::len(self.streams).await < self.len {
            assert!(
                tokio::time::Instant::now() < deadline,
                "broadcast never written"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Reconnects `name` and returns the events it got before its CONNECT reply (offsets
/// checked and stripped) and the reply's `{id, recovered}`.
async fn reconnect(c: &mut Clients, name: &str) -> (Vec<Value>, Value) {
    c.send(json!({"cmd": "reconnect", "name": name})).await;
    let (missed, connect) = c.events_until_connect(name).await;
    (missed.into_iter().map(without_offset).collect(), connect)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_on_one_node_recovers_on_another() {
    let redis = RedisServer::start();
    let recovery = Some(Duration::from_secs(3));
    let a = rust_node(&redis.url(), recovery).await;
    let b = rust_node(&redis.url(), recovery).await;
    wait_cluster(&*a.driver, 2).await;
    let (on_a, on_b) = (a.server.io.of("/").unwrap(), b.server.io.of("/").unwrap());
    let proxy = SwitchProxy::start(a.server.addr).await;
    let mut c = Clients::start().await;
    let sid = c.connect("x", &proxy.url()).await["id"].clone();
    let sid_str = sid.as_str().unwrap().to_owned();
    assert_eq!(c.call("x", "join", json!(["r"])).await, json!([true]));
    let data = json!({"user": "carol"});
    assert_eq!(c.call("x", "set-data", json!([data])).await, json!([true]));
    on_b.to("r").emit("m", json!(0));
    assert_eq!(without_offset(c.event("x").await), json!(["m", 0]));

    c.drop_transport("x").await;
    wait_for_session(&redis).await;
    let mut stream = Stream::at(&a.streams).await;
    on_b.to("r").emit("m", json!(1));
    stream.written().await;
    on_a.to("r").emit("m", json!(2));
    stream.written().await;
    on_b.to(sid_str.clone()).emit("direct", json!(3));
    stream.written().await;
    on_b.to("elsewhere").emit("not-for-it", json!(4));
    stream.written().await;
    on_a.except(sid_str.clone()).emit("not-for-it", json!(5));
    stream.written().await;
    on_a.emit("everyone", json!(6));
    stream.written().await;

    proxy.switch_to(b.server.addr);
    let (missed, connect) = reconnect(&mut c, "x").await;
    assert_eq!(connect, json!({"id": sid, "recovered": true}));
    let want = [
        json!(["m", 1]),
        json!(["m", 2]),
        json!(["direct", 3]),
        json!(["everyone", 6]),
    ];
    assert_eq!(missed, want);
    assert_eq!(c.call("x", "get-data", json!([])).await, json!([data]));
    assert_eq!((on_a.socket_count(), on_b.socket_count()), (0, 1));
    on_a.to("r").emit("m", json!(7));
    assert_eq!(without_offset(c.event("x").await), json!(["m", 7]));

    // Away longer than maxDisconnectionDuration: a fresh socket, without its rooms.
    c.drop_transport("x").await;
    wait_for_session(&redis).await;
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    proxy.switch_to(a.server.addr);
    let (missed, connect) = reconnect(&mut c, "x").await;
    assert_eq!(connect["recovered"], json!(false), "{connect}");
    assert_ne!(connect["id"], sid);
    assert_eq!(missed, Vec::<Value>::new());
    assert_eq!(c.call("x", "get-data", json!([])).await, json!([{}]));

    // An explicit disconnect keeps nothing: the next connect is fresh too.
    let fresh = connect["id"].clone();
    c.send(json!({"cmd": "disconnect", "name": "x"})).await;
    assert_eq!(c.next_of("x").await["disconnect"], "io client disconnect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kept_sessions(&redis).await, 0);
    let (_, connect) = reconnect(&mut c, "x").await;
    assert_eq!(connect["recovered"], json!(false), "{connect}");
    assert_ne!(connect["id"], fresh);
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_across_runtimes_both_ways() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url(), Some(Duration::from_secs(60))).await;
    let (_peer, mut node_admin, node_addr) = node_peer(&redis, Some(60_000)).await;
    wait_cluster(&*ours.driver, 2).await;
    let on_ours = ours.server.io.of("/").unwrap();
    let proxy = SwitchProxy::start(node_addr).await;
    let mut c = Clients::start().await;
    let sid = c.connect("x", &proxy.url()).await["id"].clone();
    assert_eq!(c.call("x", "join", json!(["r"])).await, json!([true]));
    let data = json!({"user": "dave"});
    assert_eq!(c.call("x", "set-data", json!([data])).await, json!([true]));
    on_ours.to("r").emit("m", json!(0));
    assert_eq!(without_offset(c.event("x").await), json!(["m", 0]));

    // Dropped on the Node node, recovered on ours.
    c.drop_transport("x").await;
    wait_for_session(&redis).await;
    let mut stream = Stream::at(&ours.streams).await;
    on_ours.to("r").emit("m", json!(1));
    stream.written().await;
    admin(&mut node_admin, json!(["emitToRoom", "r", "m", 2])).await;
    stream.written().await;
    admin(&mut node_admin, json!(["emitToRoom", sid, "direct", 3])).await;
    stream.written().await;
    proxy.switch_to(ours.server.addr);
    let (missed, connect) = reconnect(&mut c, "x").await;
    assert_eq!(connect, json!({"id": sid, "recovered": true}));
    assert_eq!(
        missed,
        [json!(["m", 1]), json!(["m", 2]), json!(["direct", 3])]
    );
    assert_eq!(c.call("x", "get-data", json!([])).await, json!([data]));
    admin(&mut node_admin, json!(["emitToRoom", "r", "m", 4])).await;
    assert_eq!(without_offset(c.event("x").await), json!(["m", 4]));

    // Dropped on ours, recovered on the Node node.
    c.drop_transport("x").await;
    wait_for_session(&redis).await;
    let mut stream = Stream::at(&ours.streams).await;
    admin(&mut node_admin, json!(["emitToRoom", "r", "m", 5])).await;
    stream.written().await;
    on_ours.to("r").emit("m", json!(6));
    stream.written().await;
    proxy.switch_to(node_addr);
    let (missed, connect) = reconnect(&mut c, "x").await;
    assert_eq!(connect, json!({"id": sid, "recovered": true}));
    assert_eq!(missed, [json!(["m", 5]), json!(["m", 6])]);
    assert_eq!(c.call("x", "get-data", json!([])).await, json!([data]));
    ours.server.stop().await;
}

/// A rolling deploy: SIGTERM to the node a client is on. "server shutting down" is a
/// recoverable reason, the node writes its clients' sessions to Redis before it exits,
/// and the client, sent to another node by the balancer, recovers there with what was
/// published while it moved. Real `realtime-server` processes on `/bench`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_node_that_stops_recovers_on_another() {
    use crate::common::app::{random, TempDir};
    use crate::common::node::NodeProcess;
    use realtime::auth::{mint, session_claims, TokenFormat};
    let redis = RedisServer::start();
    let secret = random("secret");
    let redis_url = redis.url();
    let (mut nodes, mut dbs) = (Vec::new(), Vec::new());
    for id in ["deploy-a", "deploy-b"] {
        let db = TempDir::new(id);
        let database = db.sqlite_url();
        let args = [
            "--redis-url",
            redis_url.as_str(),
            "--adapter",
            "redis-streams",
            "--connection-state-recovery",
            "true",
            "--database-url",
            database.as_str(),
            "--loadtest-namespace",
            "--log-level",
            "warn",
        ];
        nodes.push(NodeProcess::start(id, &args, &[("NEXTAUTH_SECRET", secret.as_str())]).await);
        dbs.push(db);
    }
    let watcher = realtime::cluster::driver::LiveDriver::connect(&redis_url, WAIT)
        .await
        .unwrap();
    wait_for_bench_nodes(&*watcher, 2).await;
    let token = |user: &str| {
        let claims = session_claims(user, None, None, std::time::SystemTime::now(), WAIT * 100);
        mint(&secret, TokenFormat::V4, &claims)
    };
    let proxy = SwitchProxy::start(nodes[0].addr).await;
    let mut c = Clients::start().await;
    for (name, url) in [("x", proxy.url()), ("y", nodes[1].url())] {
        c.send(
            json!({"cmd": "connect", "name": name, "url": url, "nsp": "/bench",
                      "auth": {"token": token(name)}}),
        )
        .await;
        c.expect_connect(name).await;
        let joined = c.call(name, "join", json!([{"room": "R"}])).await;
        assert_eq!(joined, json!([{"ok": true}]));
    }
    let publish = |seq: u64| json!([{"room": "R", "seq": seq}]);
    assert_eq!(
        c.call("y", "publish", publish(0)).await,
        json!([{"ok": true}])
    );
    assert_eq!(
        without_offset(c.event("x").await),
        json!(["message", {"room": "R", "seq": 0}])
    );

    let status = nodes[0].terminate();
    assert!(status.success(), "{status}: {}", nodes[0].log());
    let gone = c.next_of("x").await;
    assert!(gone.get("disconnect").is_some(), "{gone}");
    for seq in [1, 2] {
        assert_eq!(
            c.call("y", "publish", publish(seq)).await,
            json!([{"ok": true}])
        );
    }
    proxy.switch_to(nodes[1].addr);
    let (missed, connect) = reconnect(&mut c, "x").await;
    assert_eq!(
        connect["recovered"],
        json!(true),
        "{connect}: {}",
        nodes[0].log()
    );
    let want: Vec<Value> = [1, 2]
        .iter()
        .map(|seq| json!(["message", {"room": "R", "seq": seq}]))
        .collect();
    assert_eq!(missed, want);
    assert_eq!(
        c.call("y", "publish", publish(3)).await,
        json!([{"ok": true}])
    );
    assert_eq!(
        without_offset(c.event("x").await),
        json!(["message", {"room": "R", "seq": 3}])
    );
}

/// Until `n` server processes read `/bench`'s requests channel.
async fn wait_for_bench_nodes(driver: &dyn realtime::cluster::driver::RedisDriver, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    while driver
        .num_sub("socket.io#/bench#".into())
        .await
        .unwrap_or(0)
        < n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} nodes never joined"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // the stream readers start at "$"
}
