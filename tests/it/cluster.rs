//! The Redis adapter against real processes: a real `redis-server`, several of our nodes
//! (in-process servers, each with its own Redis connections, so everything between them
//! goes through Redis — where a test needs the server-side API — and real
//! `realtime-server` processes), a real Node socket.io 4.8 server with
//! @socket.io/redis-adapter, and @socket.io/redis-emitter — all from tests/interop.

use crate::common::app::{random, TempDir};
use crate::common::free_port;
use crate::common::node::NodeProcess;
use crate::common::nodejs::NodeScript;
use crate::common::raw::{quiet_options, wait_until, Ws, QUICK};
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use crate::common::{test_namespace, TestServer};
use realtime::cluster::driver::{LiveDriver, RedisDriver};
use realtime::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
use realtime::server::{Io, Payload};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// What tests/interop/cluster-node.mjs (a Node socket.io server on the Redis adapter)
/// imports.
const CLUSTER_NODE_PACKAGES: [&str; 3] = ["socket.io", "@socket.io/redis-adapter", "redis"];

/// One of our nodes: `/` and `/chat` with the shared test handlers, on the Redis adapter.
struct Node {
    server: TestServer,
    driver: Arc<LiveDriver>,
}

async fn rust_node(redis: &str) -> Node {
    let driver = LiveDriver::connect(redis, Duration::from_millis(500))
        .await
        .expect("connect the adapter to redis");
    let factory = RedisAdapterFactory::new(
        driver.clone(),
        RedisAdapterOptions {
            requests_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    );
    let io = Io::builder(quiet_options())
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
    Node { server, driver }
}

/// A raw Socket.IO client connected to `/` on `addr` (ours or Node's).
pub(crate) struct Client {
    pub(crate) ws: Ws,
    pub(crate) sid: String,
    next_ack: u64,
}

impl Client {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Client {
        let (mut ws, _) = Ws::open(addr).await;
        ws.send_text("40").await;
        let reply = ws.recv_text(QUICK).await;
        let v: Value = serde_json::from_str(reply.strip_prefix("40").expect("CONNECT reply"))
            .unwrap_or_else(|e| panic!("{reply:?}: {e}"));
        Client {
            ws,
            sid: v["sid"].as_str().unwrap().to_owned(),
            next_ack: 1,
        }
    }

    /// Emits `[event, ...args]` with an ack id and returns the ack's arguments.
    pub(crate) async fn call(&mut self, event: &str, args: Vec<Value>) -> Vec<Value> {
        self.try_call(event, args)
            .await
            .expect("connection closed while waiting for an ack")
    }

    /// [`Self::call`], or `None` when the server closed the connection first.
    pub(crate) async fn try_call(&mut self, event: &str, args: Vec<Value>) -> Option<Vec<Value>> {
        let id = self.next_ack;
        self.next_ack += 1;
        let mut data = vec![json!(event)];
        data.extend(args);
        self.ws
            .send_text(&format!("42{id}{}", Value::Array(data)))
            .await;
        let prefix = format!("43{id}");
        let text = self.try_next_text(|t| t.starts_with(&prefix)).await?;
        Some(serde_json::from_str(&text[prefix.len()..]).unwrap())
    }

    /// The next text frame that satisfies `want`; pings are answered, others skipped.
    pub(crate) async fn next_text(&mut self, want: impl Fn(&str) -> bool) -> String {
        self.try_next_text(want)
            .await
            .expect("connection closed while waiting")
    }

    /// [`Self::next_text`], or `None` when the server closed the connection first.
    async fn try_next_text(&mut self, want: impl Fn(&str) -> bool) -> Option<String> {
        loop {
            match self.ws.recv(Duration::from_secs(8)).await? {
                Message::Text(t) if t.as_str() == "2" => self.ws.send_text("3").await,
                Message::Text(t) if want(t.as_str()) => return Some(t.as_str().to_owned()),
                _ => {}
            }
        }
    }

    /// Waits for the event `name` and returns its arguments (and ack id, if any).
    pub(crate) async fn event(&mut self, name: &str) -> (Vec<Value>, Option<u64>) {
        self.try_event(name)
            .await
            .expect("connection closed while waiting for an event")
    }

    /// [`Self::event`], or `None` when the server closed the connection first.
    pub(crate) async fn try_event(&mut self, name: &str) -> Option<(Vec<Value>, Option<u64>)> {
        let needle = format!("[\"{name}\"");
        let text = self.try_next_text(|t| t.contains(&needle)).await?;
        let start = text.find('[').unwrap();
        // `4` + `2<id>` or `5<n>-<id>` (namespace `/`: no `nsp,`).
        let head = &text[1..start];
        let rest = match head.strip_prefix('5') {
            Some(binary) => binary.split_once('-').map_or("", |(_, id)| id),
            None => head.get(1..).unwrap_or(""),
        };
        let id = rest.parse().ok();
        let mut data: Vec<Value> = serde_json::from_str(&text[start..]).unwrap();
        data.remove(0);
        Some((data, id))
    }

    /// Waits for the binary event `name`: its arguments and the attachments.
    pub(crate) async fn binary_event(
        &mut self,
        name: &str,
        attachments: usize,
    ) -> (Vec<Value>, Vec<Vec<u8>>) {
        let (args, _) = self.event(name).await;
        let mut bins = Vec::new();
        while bins.len() < attachments {
            match self.ws.recv(QUICK).await {
                Some(Message::Binary(b)) => bins.push(b.to_vec()),
                other => panic!("expected an attachment, got {other:?}"),
            }
        }
        (args, bins)
    }

    pub(crate) async fn expect_no_event(&mut self, name: &str, d: Duration) {
        let needle = format!("[\"{name}\"");
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.recv(d * 2)).await {
            if let Some(Message::Text(t)) = next {
                assert!(!t.as_str().contains(&needle), "unexpected {t}");
            }
        }
    }
}

pub(crate) fn ph(n: usize) -> Value {
    json!({"_placeholder": true, "num": n})
}

/// Waits until every node listens on the request channel of `/` (NUMSUB), so no message
/// is published before everyone subscribed.
async fn wait_subscribed(driver: &dyn RedisDriver, nodes: usize) {
    wait_subscribed_to(driver, "/", nodes).await
}

pub(crate) async fn wait_subscribed_to(driver: &dyn RedisDriver, nsp: &str, nodes: usize) {
    for _ in 0..300 {
        let n = driver
            .num_sub(format!("socket.io-request#{nsp}#"))
            .await
            .unwrap_or(0);
        if n >= nodes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{nodes} nodes never subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_are_one_server() {
    let redis = RedisServer::start();
    let a = rust_node(&redis.url()).await;
    let b = rust_node(&redis.url()).await;
    let c = rust_node(&redis.url()).await;
    wait_subscribed(&*a.driver, 3).await;

    let mut on_a = Client::connect(a.server.addr).await;
    let mut on_c = Client::connect(c.server.addr).await;
    assert_eq!(on_a.call("join", vec![json!("R")]).await, vec![json!(true)]);

    // A client on node C sends to room R; the client on node A receives it.
    on_c.call("to-room", vec![json!("R"), json!("hello"), json!({"n": 1})])
        .await;
    let (args, _) = on_a.event("hello").await;
    assert_eq!(args, vec![json!({"n": 1})]);

    // Binary crosses nodes as an attachment.
    let text = format!(r#"451-1["to-room","R","bin",{}]"#, ph(0));
    on_c.ws.send_text(&text).await;
    on_c.ws.send_binary(&[0xde, 0xad, 0xbe, 0xef]).await;
    let (args, bins) = on_a.binary_event("bin", 1).await;
    assert_eq!(args, vec![ph(0)]);
    assert_eq!(bins, vec![vec![0xde, 0xad, 0xbe, 0xef]]);

    // fetch_sockets from node B sees the sockets of A and C, with their rooms.
    let requests = |t: &'static str| {
        realtime::metrics::cluster()
            .request_duration
            .get_or_create(&realtime::metrics::TypeLabels { r#type: t })
            .count()
    };
    let fetches = requests("fetch_sockets");
    let ns_b = b.server.io.of("/").unwrap();
    let sockets = ns_b.fetch_sockets().await.unwrap();
    let mut ids: Vec<&str> = sockets.iter().map(|s| s.id.as_str()).collect();
    ids.sort();
    let mut want = vec![on_a.sid.as_str(), on_c.sid.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let in_r = ns_b.to("R").fetch_sockets().await.unwrap();
    assert_eq!(in_r.len(), 1);
    assert_eq!(in_r[0].id, on_a.sid);
    assert!(in_r[0].rooms.iter().any(|r| &**r == "R"));
    // Both were requests to the other nodes, timed in the adapter's metrics (the
    // registry is per process: other tests may add to it, never take away).
    assert!(requests("fetch_sockets") >= fetches + 2);

    // A broadcast with acks from node B: the client on A answers, B gets it.
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
    let id = id.expect("the broadcast asks for an ack");
    on_a.ws.send_text(&format!(r#"43{id}["answer"]"#)).await;
    let answers = ask.await.unwrap().expect("every ack arrives");
    assert_eq!(answers, vec![Payload::new(vec![json!("answer")])]);

    // server_side_emit with acks: both other nodes answer.
    let mut answers = a
        .server
        .io
        .of("/")
        .unwrap()
        .server_side_emit_with_ack("ping", vec![json!("x")])
        .await
        .unwrap();
    answers.sort_by_key(|v| v.to_string());
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], json!({"from": "rust", "args": ["x"]}));

    // sockets_join from node B moves the socket on node C; disconnect_sockets from A.
    ns_b.to(on_c.sid.clone()).sockets_join("joined-remotely");
    let c_ns = c.server.io.of("/").unwrap();
    let sid_c = realtime::sid::Sid::parse(&on_c.sid).unwrap();
    wait_until(QUICK, "remote join", || {
        c_ns.get_socket(&sid_c)
            .is_some_and(|s| s.rooms().iter().any(|r| &**r == "joined-remotely"))
    })
    .await;
    a.server
        .io
        .of("/")
        .unwrap()
        .to("joined-remotely")
        .disconnect_sockets(false);
    on_c.next_text(|t| t == "41").await;
    assert_eq!(a.driver.stats().publish_failures, 0);
    for node in [a, b, c] {
        node.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_socket_io_server_and_ours_are_one_cluster() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url()).await;
    let port = free_port();
    let _node = NodeScript::start(
        "cluster-node.mjs",
        &[&port.to_string(), &redis.url()],
        "listening",
        &CLUSTER_NODE_PACKAGES,
    )
    .await;
    wait_subscribed(&*ours.driver, 2).await;
    let node_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut r = Client::connect(ours.server.addr).await;
    let mut n = Client::connect(node_addr).await;
    assert_eq!(r.call("join", vec![json!("R")]).await, vec![json!(true)]);
    assert_eq!(n.call("join", vec![json!("R")]).await, vec![json!(true)]);

    // Broadcasts both ways, binary included.
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

    // socketsJoin both ways: ours moves Node's socket, Node's moves ours.
    let ns = ours.server.io.of("/").unwrap();
    ns.to(n.sid.clone()).sockets_join("J");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rooms = n.call("admin", vec![json!("rooms"), json!(n.sid)]).await;
    assert!(
        rooms[0]["rooms"].as_array().unwrap().contains(&json!("J")),
        "{rooms:?}"
    );
    ns.to("J").emit("via-j", json!(1));
    assert_eq!(n.event("via-j").await.0, vec![json!(1)]);
    n.call(
        "admin",
        vec![json!("socketsJoin"), json!("K"), json!(r.sid)],
    )
    .await;
    let sid_r = realtime::sid::Sid::parse(&r.sid).unwrap();
    wait_until(QUICK, "join requested by node", || {
        ns.get_socket(&sid_r)
            .is_some_and(|s| s.rooms().iter().any(|room| &**room == "K"))
    })
    .await;

    // fetchSockets both ways.
    let fetched = n.call("admin", vec![json!("fetchSockets")]).await;
    let ids: Vec<&str> = fetched[0]["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&r.sid.as_str()) && ids.contains(&n.sid.as_str()),
        "{fetched:?}"
    );
    let ours_view = ns.fetch_sockets().await.unwrap();
    let remote = ours_view
        .iter()
        .find(|s| s.id == n.sid)
        .expect("node's socket");
    assert_eq!(remote.data, json!({"runtime": "node"}));
    assert!(remote.local.is_none());

    // serverSideEmit both ways, with acks.
    let answers = ns
        .server_side_emit_with_ack("ping", vec![json!("q")])
        .await
        .unwrap();
    assert_eq!(answers, vec![json!({"from": "node", "args": ["q"]})]);
    let from_node = n
        .call(
            "admin",
            vec![json!("serverSideEmit"), json!("ping"), json!(7)],
        )
        .await;
    assert_eq!(
        from_node[0]["responses"],
        json!([{"from": "rust", "args": [7]}]),
        "{from_node:?}"
    );

    // disconnectSockets both ways.
    assert_eq!(r.call("join", vec![json!("dR")]).await, vec![json!(true)]);
    assert_eq!(n.call("join", vec![json!("dN")]).await, vec![json!(true)]);
    n.call("admin", vec![json!("disconnectSockets"), json!("dR")])
        .await;
    r.next_text(|t| t == "41").await;
    ns.to("dN").disconnect_sockets(false);
    n.next_text(|t| t == "41").await;
    ours.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_emitter_reaches_our_clients() {
    let redis = RedisServer::start();
    let ours = rust_node(&redis.url()).await;
    wait_subscribed(&*ours.driver, 1).await;
    let mut u1 = Client::connect(ours.server.addr).await;
    let mut u2 = Client::connect(ours.server.addr).await;
    assert_eq!(
        u1.call("join", vec![json!("user:u1")]).await,
        vec![json!(true)]
    );
    assert_eq!(
        u1.call("join", vec![json!("room:1")]).await,
        vec![json!(true)]
    );
    assert_eq!(
        u2.call("join", vec![json!("room:1")]).await,
        vec![json!(true)]
    );
    assert_eq!(
        u2.call("join", vec![json!("muted")]).await,
        vec![json!(true)]
    );

    let steps = json!([
        {"to": ["room:1"], "event": "to-room", "args": [{"x": 1}]},
        {"to": ["user:u1"], "event": "to-user", "args": ["hi", {"$binary": [1, 2, 3]}]},
        {"to": ["room:1"], "except": ["muted"], "event": "except", "args": []},
        {"event": "everyone", "args": [true]}
    ]);
    let mut emitter = NodeScript::start(
        "cluster-emit.mjs",
        &[&redis.url(), "/", &steps.to_string()],
        "emitted everyone",
        &["@socket.io/redis-emitter", "redis"],
    )
    .await;
    assert_eq!(u1.event("to-room").await.0, vec![json!({"x": 1})]);
    assert_eq!(u2.event("to-room").await.0, vec![json!({"x": 1})]);
    let (args, bins) = u1.binary_event("to-user", 1).await;
    assert_eq!(
        (args, bins),
        (vec![json!("hi"), ph(0)], vec![vec![1, 2, 3]])
    );
    u1.event("except").await;
    assert_eq!(u1.event("everyone").await.0, vec![json!(true)]);
    assert_eq!(u2.event("everyone").await.0, vec![json!(true)]);
    u2.expect_no_event("except", Duration::from_millis(100))
        .await;
    let _ = emitter.child.kill().await;
    ours.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_recover_when_redis_restarts() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let a = rust_node(&redis.url()).await;
    let b = rust_node(&redis.url()).await;
    wait_subscribed(&*a.driver, 2).await;
    let mut on_a = Client::connect(a.server.addr).await;
    let mut on_a2 = Client::connect(a.server.addr).await;
    let mut on_b = Client::connect(b.server.addr).await;
    for c in [&mut on_a, &mut on_a2, &mut on_b] {
        assert_eq!(c.call("join", vec![json!("R")]).await, vec![json!(true)]);
    }

    redis.stop();
    // Local delivery goes on, and the emit does not wait for Redis.
    let started = std::time::Instant::now();
    on_a.call("to-room", vec![json!("R"), json!("during"), json!(1)])
        .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(on_a2.event("during").await.0, vec![json!(1)]);

    let _redis = RedisServer::start_on(port);
    wait_subscribed(&*a.driver, 2).await;
    // Broadcasts flow again once both subscribers are back.
    let mut n = 0;
    loop {
        n += 1;
        on_a.call("to-room", vec![json!("R"), json!("after"), json!(n)])
            .await;
        let got = tokio::time::timeout(Duration::from_millis(500), on_b.event("after")).await;
        if got.is_ok() {
            break;
        }
        assert!(n < 30, "broadcasts never flowed again after the restart");
    }
    assert!(a.driver.stats().reconnects >= 1);
    assert!(realtime::metrics::cluster().redis_reconnects.get() >= 1);
    for node in [a, b] {
        node.server.stop().await;
    }
}

/// Reads the next `42<nsp>,<id>[…]` event (an event that asks for an ack): its id and
/// arguments after the name.
async fn event_with_ack_id(client: &mut SioClient, name: &str) -> (u64, Vec<Value>) {
    let head = format!("42{},", client.nsp);
    let text = client.packet(&head).await;
    let rest = &text[head.len()..];
    let digits = rest.find('[').expect("an event array");
    let id = rest[..digits].parse().expect("the event asks for an ack");
    let mut args: Vec<Value> = serde_json::from_str(&rest[digits..]).unwrap();
    assert_eq!(args.remove(0), json!(name), "{text}");
    (id, args)
}

/// Three real `realtime-server` processes (the built binary, as operators run it) and a
/// real Node socket.io peer on one real `redis-server`: a client on node A receives what a
/// client on node C publishes to their room, binary attachments included; the Node peer's
/// `fetchSockets` is answered by all three processes; its broadcast with acks collects the
/// answers of clients on two of our processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_server_processes_are_one_server() {
    let redis = RedisServer::start();
    let secret = random("secret");
    let redis_url = redis.url();
    let mut nodes = Vec::new();
    let mut dbs = Vec::new();
    for id in ["proc-a", "proc-b", "proc-c"] {
        let db = TempDir::new(id);
        let database = db.sqlite_url();
        let args = [
            "--redis-url",
            redis_url.as_str(),
            "--database-url",
            database.as_str(),
            "--loadtest-namespace",
            "--log-level",
            "warn",
        ];
        nodes.push(NodeProcess::start(id, &args, &[("NEXTAUTH_SECRET", secret.as_str())]).await);
        dbs.push(db);
    }
    let port = free_port();
    let _peer = NodeScript::start(
        "cluster-node.mjs",
        &[&port.to_string(), &redis_url],
        "listening",
        &CLUSTER_NODE_PACKAGES,
    )
    .await;
    let watcher = LiveDriver::connect(&redis_url, Duration::from_millis(500))
        .await
        .expect("connect to redis");
    wait_subscribed_to(&*watcher, "/bench", 4).await;

    let mut on_a = SioClient::connect(nodes[0].addr, &secret, "user-a", "/bench").await;
    let mut on_b = SioClient::connect(nodes[1].addr, &secret, "user-b", "/bench").await;
    let mut on_c = SioClient::connect(nodes[2].addr, &secret, "user-c", "/bench").await;
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        assert_eq!(
            client.call("join", json!({"room": "R"})).await,
            json!({"ok": true})
        );
    }

    // C publishes to R: A and B (other processes) receive it, C (the sender) does not.
    let sent = json!({"room": "R", "seq": 1});
    assert_eq!(
        on_c.call("publish", sent.clone()).await,
        json!({"ok": true})
    );
    assert_eq!(on_a.event("message").await, sent);
    assert_eq!(on_b.event("message").await, sent);

    // Binary: the attachment crosses from process C to process A through Redis.
    let with_bytes = json!({"room": "R", "seq": 2, "data": ph(0)});
    on_c.ws
        .send_text(&format!(r#"451-/bench,90["publish",{with_bytes}]"#))
        .await;
    on_c.ws.send_binary(&[0xca, 0xfe, 0x00, 0xff]).await;
    assert_eq!(
        on_c.packet("43/bench,90").await,
        r#"43/bench,90[{"ok":true}]"#
    );
    let header = on_a.packet("451-/bench,").await;
    assert_eq!(header, format!(r#"451-/bench,["message",{with_bytes}]"#));
    assert_eq!(
        on_a.ws.recv_binary(QUICK).await,
        vec![0xca, 0xfe, 0x00, 0xff]
    );
    on_c.expect_no_event("message", Duration::from_millis(300))
        .await;

    // The Node peer's fetchSockets on /bench: every one of our processes answers.
    let node_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut admin = Client::connect(node_addr).await;
    let fetched = admin
        .call("admin", vec![json!("fetchSockets"), json!("/bench")])
        .await;
    let mut seen: Vec<(String, Value)> = fetched[0]["sockets"]
        .as_array()
        .unwrap_or_else(|| panic!("{fetched:?}"))
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s["data"].clone()))
        .collect();
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want: Vec<(String, Value)> = [(&on_a, "user-a"), (&on_b, "user-b"), (&on_c, "user-c")]
        .iter()
        .map(|(c, user)| (c.sid.clone(), json!({ "userId": user })))
        .collect();
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(seen, want);

    // A broadcast with acks from the Node peer to R: the clients on A, B and C answer, and
    // each answer travels back through its process (BROADCAST_CLIENT_COUNT + _ACK).
    let ask = tokio::spawn(async move {
        let args = ["emitWithAck", "/bench", "bench:R", "question"].map(|a| json!(a));
        let mut args = args.to_vec();
        args.push(json!(42));
        admin.call("admin", args).await
    });
    for (client, answer) in [
        (&mut on_a, "from-a"),
        (&mut on_b, "from-b"),
        (&mut on_c, "from-c"),
    ] {
        let (id, args) = event_with_ack_id(client, "question").await;
        assert_eq!(args, vec![json!(42)]);
        client
            .ws
            .send_text(&format!(r#"43/bench,{id}["{answer}"]"#))
            .await;
    }
    let answers = ask.await.unwrap();
    assert_eq!(answers[0]["ok"], json!(true), "{answers:?}");
    let mut got = answers[0]["responses"].as_array().unwrap().clone();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!("from-a"), json!("from-b"), json!("from-c")]);
}
