//! Connection state recovery with the real socket.io-client 4.8
//! (tests/interop/recovery-client.mjs): a client whose transport drops and that
//! reconnects within `maxDisconnectionDuration` gets its socket id, rooms and data back,
//! and every event it missed, once and in order; an explicit disconnect, an expired
//! session or recovery turned off gives a fresh socket.

use crate::common::app::{parse_config, random, Served, TempDir};
use crate::common::nodejs::NodeScript;
use crate::common::{fast_options, test_namespace, TestServer};
use realtime::auth::{mint, session_claims, TokenFormat};
use realtime::server::{Io, RecoveryOptions, ServerOptions};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(5);

fn recovery_io(options: ServerOptions) -> Io {
    Io::builder(options).namespace("/", test_namespace).build()
}

fn with_recovery(max_disconnection: Duration) -> ServerOptions {
    ServerOptions {
        recovery: Some(RecoveryOptions {
            max_disconnection,
            ..RecoveryOptions::default()
        }),
        ..fast_options()
    }
}

/// The driven clients and what they print: lines a wait skipped (another client's)
/// are kept, in order, for whoever asks about that client next.
pub(crate) struct Clients(NodeScript, std::collections::VecDeque<Value>);

impl Clients {
    pub(crate) async fn start() -> Clients {
        let script = NodeScript::start(
            "recovery-client.mjs",
            &[],
            "{\"ready\"",
            &["socket.io-client"],
        )
        .await;
        Clients(script, Default::default())
    }

    pub(crate) async fn send(&mut self, cmd: Value) {
        self.0.send_line(&cmd.to_string()).await;
    }

    /// The next printed object.
    pub(crate) async fn next(&mut self) -> Value {
        if let Some(v) = self.1.pop_front() {
            return v;
        }
        self.read().await
    }

    pub(crate) async fn read(&mut self) -> Value {
        let line = self
            .0
            .next_line(WAIT)
            .await
            .expect("the client printed nothing within 5 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// The next printed object about `name`; others' wait in the backlog.
    pub(crate) async fn next_of(&mut self, name: &str) -> Value {
        self.next_where(|v| v["name"] == name).await
    }

    /// The next printed object `wanted` accepts; the rest wait in the backlog.
    pub(crate) async fn next_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.1.iter().position(&wanted) {
            return self.1.remove(i).unwrap();
        }
        loop {
            let v = self.read().await;
            if wanted(&v) {
                return v;
            }
            self.1.push_back(v);
        }
    }

    /// Connects `name` and returns its `{id, recovered}`.
    pub(crate) async fn connect(&mut self, name: &str, url: &str) -> Value {
        self.send(json!({"cmd": "connect", "name": name, "url": url}))
            .await;
        self.expect_connect(name).await
    }

    pub(crate) async fn expect_connect(&mut self, name: &str) -> Value {
        let v = self.next_of(name).await;
        assert_eq!(v["name"], name, "{v}");
        v.get("connect")
            .cloned()
            .unwrap_or_else(|| panic!("expected a connect, got {v}"))
    }

    /// Emits with an ack and returns the answer's arguments.
    pub(crate) async fn call(&mut self, name: &str, event: &str, args: Value) -> Value {
        self.send(json!({"cmd": "emit", "name": name, "event": event, "args": args}))
            .await;
        let v = self
            .next_where(|v| v["name"] == name && v.get("ack").is_some())
            .await;
        v.get("ack")
            .cloned()
            .unwrap_or_else(|| panic!("expected an ack, got {v}"))
    }

    /// The next event `name` received, as `[event, ...args]`.
    pub(crate) async fn event(&mut self, name: &str) -> Value {
        let v = self.next_of(name).await;
        assert_eq!(v["name"], name, "{v}");
        let mut data = vec![v["event"].clone()];
        data.extend(v["args"].as_array().cloned().unwrap_or_default());
        Value::Array(data)
    }

    /// Closes `name`'s transport (the client reports "forced close"; the server sees
    /// the WebSocket close: "transport close", a recoverable reason).
    /// Every event `name` received before its next `connect` (a recovered socket's missed
    /// events come first), as `[event, ...args]`, then the connect's `{id, recovered}`.
    pub(crate) async fn events_until_connect(&mut self, name: &str) -> (Vec<Value>, Value) {
        let mut events = Vec::new();
        loop {
            let v = self.next_of(name).await;
            assert_eq!(v["name"], name, "{v}");
            if let Some(connect) = v.get("connect") {
                return (events, connect.clone());
            }
            let mut data = vec![v["event"].clone()];
            data.extend(v["args"].as_array().cloned().unwrap_or_default());
            events.push(Value::Array(data));
        }
    }

    pub(crate) async fn drop_transport(&mut self, name: &str) {
        self.send(json!({"cmd": "drop", "name": name})).await;
        assert_eq!(self.next_of(name).await["disconnect"], "forced close");
    }
}

/// `[event, ...args, offset]` without its offset, after checking there is one.
pub(crate) fn without_offset(mut event: Value) -> Value {
    let items = event.as_array_mut().expect("an event array");
    let offset = items.pop().expect("an offset");
    assert!(
        offset.is_string(),
        "the last argument is an offset string: {event}"
    );
    event
}

async fn wait_until_gone(server: &TestServer) {
    let ns = server.io.of("/").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ns.socket_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the socket never left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_gets_its_socket_rooms_data_and_every_missed_event_once() {
    let server = TestServer::start_io(
        recovery_io(with_recovery(Duration::from_secs(30))),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let ns = server.io.of("/").unwrap();
    let mut c = Clients::start().await;
    let first = c.connect("a", &server.url()).await;
    assert_eq!(first["recovered"], false);
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(c.call("a", "join", json!(["r"])).await, json!([true]));
    assert_eq!(
        c.call("a", "set-data", json!([{"k": 1}])).await,
        json!([true])
    );
    ns.to("r").emit("seen", json!(0));
    assert_eq!(without_offset(c.event("a").await), json!(["seen", 0]));

    c.drop_transport("a").await;
    wait_until_gone(&server).await;
    ns.to("r").emit("m", json!(1));
    ns.emit("m", json!(2));
    ns.to(id.as_str()).emit("m", json!(3));
    ns.to("elsewhere").emit("not-for-a", json!(4));
    ns.to("r").volatile().emit("volatile", json!(5));
    ns.to("r").except(id.as_str()).emit("not-for-a", json!(6));

    c.send(json!({"cmd": "reconnect", "name": "a"})).await;
    for n in 1..=3 {
        assert_eq!(without_offset(c.event("a").await), json!(["m", n]));
    }
    let again = c.expect_connect("a").await;
    assert_eq!(again, json!({"id": id, "recovered": true}));
    let rooms = c.call("a", "rooms", json!([])).await;
    assert!(
        rooms[0].as_array().unwrap().contains(&json!("r")),
        "{rooms}"
    );
    assert_eq!(c.call("a", "get-data", json!([])).await, json!([{"k": 1}]));
    ns.to("r").emit("live", json!(7));
    assert_eq!(without_offset(c.event("a").await), json!(["live", 7]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_disconnect_or_an_expired_session_gives_a_fresh_socket() {
    let server = TestServer::start_io(
        recovery_io(with_recovery(Duration::from_millis(300))),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let ns = server.io.of("/").unwrap();
    let mut c = Clients::start().await;

    // Explicit: the client chose to leave.
    let first = c.connect("a", &server.url()).await;
    ns.emit("stamp", json!(1));
    without_offset(c.event("a").await);
    c.send(json!({"cmd": "disconnect", "name": "a"})).await;
    assert_eq!(c.next().await["disconnect"], "io client disconnect");
    wait_until_gone(&server).await;
    c.send(json!({"cmd": "reconnect", "name": "a"})).await;
    let again = c.expect_connect("a").await;
    assert_eq!(again["recovered"], false);
    assert_ne!(again["id"], first["id"]);

    // Expired: back after maxDisconnectionDuration.
    ns.emit("stamp", json!(2));
    without_offset(c.event("a").await);
    c.drop_transport("a").await;
    wait_until_gone(&server).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send(json!({"cmd": "reconnect", "name": "a"})).await;
    let late = c.expect_connect("a").await;
    assert_eq!(late["recovered"], false);
    assert_ne!(late["id"], again["id"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recovery_nothing_changes_on_the_wire() {
    let server =
        TestServer::start_io(recovery_io(fast_options()), "127.0.0.1:0".parse().unwrap()).await;
    let ns = server.io.of("/").unwrap();
    let mut c = Clients::start().await;
    let first = c.connect("a", &server.url()).await;
    ns.emit("plain", json!(1));
    assert_eq!(c.event("a").await, json!(["plain", 1]), "no offset");
    c.drop_transport("a").await;
    wait_until_gone(&server).await;
    c.send(json!({"cmd": "reconnect", "name": "a"})).await;
    let again = c.expect_connect("a").await;
    // socket.io-client says `undefined` (no pid from the server), not false.
    assert!(again.get("recovered").is_none(), "{again}");
    assert_ne!(again["id"], first["id"]);
    server.stop().await;
}

/// `/chat` end to end, as `realtime-server` runs with CONNECTION_STATE_RECOVERY=true: a
/// user who drops while their peer sends three messages gets all three `message:new` on
/// reconnect, once each and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_user_who_drops_gets_the_messages_sent_meanwhile() {
    let dir = TempDir::new("recovery");
    let (secret, service) = (random("nextauth"), random("service"));
    let db = dir.sqlite_url();
    let config = parse_config(
        &[
            "realtime-server",
            "--listen",
            "127.0.0.1:0",
            "--env",
            "development",
            "--auth-secret",
            &secret,
            "--service-token",
            &service,
            "--database-url",
            &db,
            "--connection-state-recovery",
            "true",
            "--log-level",
            "warn",
        ],
        false,
    );
    let server = Served::start(&config).await;
    let token = |user: &str| {
        let claims = session_claims(
            user,
            None,
            None,
            SystemTime::now(),
            Duration::from_secs(3600),
        );
        mint(&secret, TokenFormat::V4, &claims)
    };
    let mut c = Clients::start().await;
    for (name, user) in [("alice", "alice"), ("bob", "bob")] {
        c.send(
            json!({"cmd": "connect", "name": name, "url": server.url(), "nsp": "/chat",
                      "auth": {"token": token(user)}}),
        )
        .await;
        c.expect_connect(name).await;
    }
    let opened = c
        .call("alice", "room:open", json!([{"peerId": "bob"}]))
        .await;
    let room_id = opened[0]["roomId"].clone();
    for name in ["alice", "bob"] {
        let joined = c
            .call(name, "room:join", json!([{"roomId": room_id}]))
            .await;
        assert_eq!(joined[0]["ok"], true, "{joined}");
    }

    // socket.io-client sends the offset of the last event it received: a client that
    // received none yet cannot recover (as with Node). Alice has been chatting.
    let sent = c
        .call(
            "bob",
            "message:send",
            json!([{"roomId": room_id, "text": "zero"}]),
        )
        .await;
    assert!(sent[0]["id"].is_i64(), "{sent}");
    let first = c
        .next_where(|v| v["name"] == "alice" && v["event"] == "message:new")
        .await;
    assert_eq!(first["args"][0]["text"], "zero");

    c.drop_transport("alice").await;
    let chat = server.io.of("/chat").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while chat.socket_count() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's socket never left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for text in ["one", "two", "three"] {
        let sent = c
            .call(
                "bob",
                "message:send",
                json!([{"roomId": room_id, "text": text}]),
            )
            .await;
        assert!(sent[0]["id"].is_i64(), "{sent}");
    }
    c.send(json!({"cmd": "reconnect", "name": "alice"})).await;
    let (events, connect) = c.events_until_connect("alice").await;
    assert_eq!(connect["recovered"], true, "{connect}");
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e[0] == "message:new")
        .map(|e| e[1]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["one", "two", "three"], "{events:?}");
    let scrape = crate::common::raw::get(server.addr, "/metrics")
        .await
        .text()
        .to_owned();
    let recovered = scrape
        .lines()
        .find(|l| {
            l.starts_with("realtime_connection_recoveries_total{")
                && l.contains(r#"namespace="/chat""#)
                && l.contains(r#"result="recovered""#)
        })
        .unwrap_or_else(|| panic!("no recovered series in /metrics:\n{scrape}"));
    assert!(!recovered.ends_with(" 0"), "{recovered}");
    server.stop().await;
}

/// The classic Redis adapter keeps sessions on the node a client was on: a client that
/// comes back to the same node recovers, with what another node broadcast meanwhile
/// (each node stamps the broadcasts it delivers, remote ones included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_classic_redis_adapter_a_client_recovers_on_the_same_node() {
    use realtime::cluster::driver::LiveDriver;
    use realtime::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
    let redis = crate::common::redis::RedisServer::start();
    let options = with_recovery(Duration::from_secs(30));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let driver = LiveDriver::connect(&redis.url(), Duration::from_millis(500))
            .await
            .expect("connect the adapter to redis");
        let factory = RedisAdapterFactory::new(
            driver,
            RedisAdapterOptions {
                recovery: options.recovery,
                ..Default::default()
            },
        );
        let io = Io::builder(options.clone())
            .adapter(std::sync::Arc::new(factory))
            .namespace("/", test_namespace)
            .build();
        nodes.push(TestServer::start_io(io, "127.0.0.1:0".parse().unwrap()).await);
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut c = Clients::start().await;
    let first = c.connect("x", &a.url()).await;
    assert_eq!(c.call("x", "join", json!(["r"])).await, json!([true]));
    b.io.of("/").unwrap().to("r").emit("from-b", json!(0));
    assert_eq!(without_offset(c.event("x").await), json!(["from-b", 0]));

    c.drop_transport("x").await;
    wait_until_gone(a).await;
    // Node a keeps what it delivered, in the order it delivered it: b's broadcast (once
    // it arrived over Redis), then its own.
    let log_len = || {
        a.io.of("/")
            .unwrap()
            .adapter()
            .local()
            .recovery()
            .unwrap()
            .len()
            .0
    };
    let wait_for = |n: usize| async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        while log_len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node a kept {} of {n}",
                log_len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    b.io.of("/").unwrap().to("r").emit("from-b", json!(1));
    wait_for(2).await;
    a.io.of("/").unwrap().to("r").emit("from-a", json!(2));
    wait_for(3).await;
    c.send(json!({"cmd": "reconnect", "name": "x"})).await;
    let (missed, connect) = c.events_until_connect("x").await;
    assert_eq!(connect, json!({"id": first["id"], "recovered": true}));
    let missed: Vec<Value> = missed.into_iter().map(without_offset).collect();
    assert_eq!(missed, [json!(["from-b", 1]), json!(["from-a", 2])]);
    for node in nodes {
        node.stop().await;
    }
}
