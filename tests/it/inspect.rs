//! A cluster of real `realtime-server` processes (the built binary) on one real
//! `redis-server` and one SQLite file, inspected with the real `rtctl`:
//!
//! - `rtctl presence ls`, `rooms ls`, `nodes ls` (table and JSON, golden shapes with the
//!   volatile fields normalized) report exactly the sockets the test connected;
//! - `kill -9` of a node: its users and the node itself disappear within 3 × heartbeat;
//! - counts stay exact under 1,000 connects/disconnects spread over two nodes;
//! - chat peers hear `presence:update {userId, online}` across nodes when a user's first
//!   socket connects and when the last one leaves (by closing, or by its node dying).
//!
//! Needs redis-server (the harness panics with an install hint when it is missing).

use crate::common::app::{random, TempDir};
use crate::common::raw;
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use futures_util::StreamExt as _;
use realtime::presence::{PresenceStore, RedisPresence};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Presence heartbeat of the test nodes: short, so a dead node is noticed quickly.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Presence keys of the test cluster: not the default, so the flag is proven shared.
const PREFIX: &str = "it:presence";

/// One of the cluster: a shared Redis, database and secret.
struct Cluster {
    redis: RedisServer,
    dir: TempDir,
    secret: String,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            redis: RedisServer::start(),
            dir: TempDir::new("inspect"),
            secret: random("secret"),
        }
    }

    /// Starts `realtime-server` as node `id` and waits until it is ready.
    async fn node(&self, id: &str) -> NodeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_realtime-server"))
            .env_clear()
            .args(["--listen", &addr.to_string()])
            .args(["--redis-url", &self.redis.url()])
            .args(["--presence-heartbeat", &HEARTBEAT.as_millis().to_string()])
            .args(["--presence-prefix", PREFIX])
            .args(["--node-id", id])
            .args(["--auth-secret", &self.secret])
            .args(["--service-token", "inspect-service-token"])
            .args(["--database-url", &self.dir.sqlite_url()])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn realtime-server");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(Instant::now() < deadline, "node {id} never became ready");
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && raw::get(addr, "/api/health/ready").await.status == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        NodeProcess {
            id: id.to_owned(),
            addr,
            child,
        }
    }

    /// `rtctl ARGS --redis-url … --presence-prefix …`: exit code, stdout, stderr.
    async fn rtctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rtctl"))
            .env_clear()
            .args(args)
            .args([
                "--redis-url",
                &self.redis.url(),
                "--presence-prefix",
                PREFIX,
            ])
            .output()
            .await
            .expect("run rtctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `rtctl ARGS --format json`, which must exit 0.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let (code, out, err) = self.rtctl(&all).await;
        assert_eq!(code, 0, "rtctl {all:?}: {err}{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("rtctl {all:?}: {e}: {out}"))
    }

    /// Polls `rtctl ARGS --format json` until `normalize(answer) == want` (the nodes'
    /// heartbeats publish connection and room counts); panics with the last answer.
    async fn until(&self, args: &[&str], want: &Value, normalize: fn(Value) -> Value) {
        let deadline = Instant::now() + raw::QUICK;
        loop {
            let got = normalize(self.json(args).await);
            if &got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rtctl {args:?} never reported\n{want:#}\nlast:\n{got:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The library's presence reader on the cluster's Redis (what rtctl uses).
    async fn presence(&self) -> RedisPresence {
        let conn = realtime::redis_client::RedisArgs::at_url(self.redis.url())
            .connect()
            .await
            .unwrap()
            .unwrap();
        RedisPresence::new(conn, PREFIX, HEARTBEAT)
    }
}

struct NodeProcess {
    id: String,
    addr: SocketAddr,
    child: Child,
}

impl NodeProcess {
    /// SIGKILL: no shutdown, no goodbye to Redis.
    async fn kill_9(mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }
}

/// The value of one series in a node's `/metrics` (exact name and labels), if present.
async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let scrape = raw::get(addr, "/metrics").await;
    scrape
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `series` on `addr` satisfies `ok`; returns the value.
async fn metric_until(addr: SocketAddr, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + raw::QUICK;
    loop {
        let v = metric(addr, series).await;
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} on {addr} stayed at {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn same(v: Value) -> Value {
    v
}

/// `nodes ls` JSON with the volatile fields checked for their form and replaced.
fn normalize_nodes(mut v: Value) -> Value {
    for n in v["nodes"].as_array_mut().into_iter().flatten() {
        for field in ["started_at", "last_heartbeat"] {
            let t = n[field].as_str().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z'),
                "{field}: {t:?}"
            );
            n[field] = json!("<time>");
        }
        let age = n["heartbeat_age_ms"].as_u64().expect("heartbeat_age_ms");
        n["heartbeat_age_ms"] = json!(if age <= 2 * HEARTBEAT.as_millis() as u64 {
            "<fresh>"
        } else {
            "<stale>"
        });
        let address = n["address"].as_str().unwrap_or_default();
        assert!(address.parse::<SocketAddr>().is_ok(), "{address:?}");
        n["address"] = json!("<addr>");
    }
    v
}

/// The cells of a comfy-table (header first), without the frame.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| l.starts_with('│'))
        .map(|l| {
            l.trim_matches('│')
                .split('┆')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rtctl_reports_what_a_live_cluster_holds() {
    let cluster = Cluster::new();
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    let s = &cluster.secret;

    // alice: a tab on each node; bob on B, in a chat room with alice; carol on A's
    // /notifications.
    let mut alice_a = SioClient::connect(a.addr, s, "alice", "/chat").await;
    let opened = alice_a.call("room:open", json!({"peerId": "bob"})).await;
    let room_id = opened["roomId"].as_i64().expect("roomId");
    let room = format!("room:{room_id}");
    let _alice_b = SioClient::connect(b.addr, s, "alice", "/chat").await;
    let mut bob_b = SioClient::connect(b.addr, s, "bob", "/chat").await;
    let joined = bob_b.call("room:join", json!({ "roomId": room_id })).await;
    assert_eq!(joined["ok"], true, "{joined}");
    let _carol_a = SioClient::connect(a.addr, s, "carol", "/notifications").await;

    // nodes ls: both nodes, two connections each (after their next heartbeat).
    let node = |id: &str| {
        json!({"id": id, "address": "<addr>", "version": env!("CARGO_PKG_VERSION"),
               "connections": 2, "started_at": "<time>", "last_heartbeat": "<time>",
               "heartbeat_age_ms": "<fresh>"})
    };
    let want_nodes =
        json!({"count": 2, "connections": 4, "nodes": [node("node-a"), node("node-b")]});
    cluster
        .until(&["nodes", "ls"], &want_nodes, normalize_nodes)
        .await;
    let (code, table, err) = cluster.rtctl(&["nodes", "ls"]).await;
    assert_eq!(code, 0, "{err}");
    let rows = cells(&table);
    assert_eq!(
        rows[0],
        [
            "NODE",
            "ADDRESS",
            "VERSION",
            "CONNECTIONS",
            "UPTIME",
            "LAST HEARTBEAT"
        ]
    );
    assert_eq!(rows.len(), 3, "{table}");
    for (row, (id, addr)) in rows[1..]
        .iter()
        .zip([("node-a", a.addr), ("node-b", b.addr)])
    {
        assert_eq!(
            row[..4],
            [id, &addr.to_string(), env!("CARGO_PKG_VERSION"), "2"]
        );
        assert!(row[4].ends_with('s'), "uptime {:?}", row[4]);
        let ago: f64 = row[5]
            .strip_suffix("s ago")
            .expect("… s ago")
            .parse()
            .unwrap();
        assert!(ago <= 2.0 * HEARTBEAT.as_secs_f64(), "{table}");
    }
    assert!(
        table.starts_with('┌') && table.ends_with("2 live nodes, 4 connections\n"),
        "{table}"
    );

    // presence ls: exact JSON and table.
    let presence = json!({
        "online": 3,
        "users": [
            {"userId": "alice", "sockets": 2, "nodes": ["node-a", "node-b"]},
            {"userId": "bob", "sockets": 1, "nodes": ["node-b"]},
            {"userId": "carol", "sockets": 1, "nodes": ["node-a"]},
        ],
        "next_cursor": null,
    });
    assert_eq!(cluster.json(&["presence", "ls"]).await, presence);
    let (code, table, err) = cluster.rtctl(&["presence", "ls"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        table,
        "\
┌───────┬─────────┬────────────────┐
│ USER  ┆ SOCKETS ┆ NODES          │
╞═══════╪═════════╪════════════════╡
│ alice ┆       2 ┆ node-a, node-b │
│ bob   ┆       1 ┆ node-b         │
│ carol ┆       1 ┆ node-a         │
└───────┴─────────┴────────────────┘
3 users online
"
    );
    let page = cluster.json(&["presence", "ls", "--limit", "2"]).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["next_cursor"], "bob", "{page}");
    let rest = cluster
        .json(&["presence", "ls", "--limit", "2", "--cursor", "bob"])
        .await;
    assert_eq!(
        rest["users"],
        json!([{"userId": "carol", "sockets": 1, "nodes": ["node-a"]}])
    );
    assert_eq!(rest["next_cursor"], Value::Null, "{rest}");
    let one = cluster.json(&["presence", "ls", "--user", "alice"]).await;
    let mut nodes: Vec<&str> = one["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(
        (one["online"].clone(), nodes),
        (json!(true), vec!["node-a", "node-b"])
    );
    assert!(one["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["sid"] == alice_a.sid.as_str()));
    let (code, out, err) = cluster.rtctl(&["presence", "ls", "--user", "dave"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(err, "error: user \"dave\" is not online\n");

    // rooms ls: member counts summed over both nodes.
    let rooms = json!({"total": 4, "rooms": [
        {"namespace": "/chat", "room": room, "members": 2},
        {"namespace": "/chat", "room": "user:alice", "members": 2},
        {"namespace": "/chat", "room": "user:bob", "members": 1},
        {"namespace": "/notifications", "room": "user:carol", "members": 1},
    ]});
    cluster.until(&["rooms", "ls"], &rooms, same).await;
    let (code, table, err) = cluster.rtctl(&["rooms", "ls"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        table,
        format!(
            "\
┌────────────────┬────────────┬─────────┐
│ NAMESPACE      ┆ ROOM       ┆ MEMBERS │
╞════════════════╪════════════╪═════════╡
│ /chat          ┆ {room:<10} ┆       2 │
│ /chat          ┆ user:alice ┆       2 │
│ /chat          ┆ user:bob   ┆       1 │
│ /notifications ┆ user:carol ┆       1 │
└────────────────┴────────────┴─────────┘
4 rooms
"
        )
    );
    let only = cluster
        .json(&["rooms", "ls", "--namespace", "/chat", "--room", &room])
        .await;
    assert_eq!(
        only,
        json!({"total": 1, "rooms": [{"namespace": "/chat", "room": room, "members": 2}]})
    );
    let (code, _, err) = cluster.rtctl(&["rooms", "ls", "--room", "nowhere"]).await;
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: room \"nowhere\" has no members on any live node\n"
        )
    );
    let (code, _, err) = cluster
        .rtctl(&["rooms", "ls", "--namespace", "/admin"])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error: no live node serves namespace \"/admin\""),
        "{err}"
    );

    // kill -9 node B: its node entry and its users' sockets go within 3 × heartbeat (its
    // registration expires after two; the next beat of node A sweeps it).
    let reader = cluster.presence().await;
    let b_id = b.id.clone();
    b.kill_9().await;
    let died = Instant::now();
    loop {
        let nodes = reader.nodes().await.unwrap();
        let alice = reader.sockets_of("alice").await.unwrap();
        let bob = reader.is_online("bob").await.unwrap();
        if nodes.iter().all(|n| n.id != b_id) && alice.len() == 1 && !bob {
            break;
        }
        assert!(
            died.elapsed() <= HEARTBEAT * 3 + Duration::from_millis(300),
            "node B's entries outlived 3 × heartbeat: nodes {nodes:?}, alice {alice:?}, bob {bob}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone_after = died.elapsed();
    eprintln!("kill -9: node and users gone after {gone_after:?} (heartbeat {HEARTBEAT:?})");
    assert_eq!(
        cluster.json(&["presence", "ls"]).await,
        json!({"online": 2, "users": [
            {"userId": "alice", "sockets": 1, "nodes": ["node-a"]},
            {"userId": "carol", "sockets": 1, "nodes": ["node-a"]},
        ], "next_cursor": null})
    );
    let one = normalize_nodes(cluster.json(&["nodes", "ls"]).await);
    assert_eq!(one["count"], 1, "{one}");
    assert_eq!(one["nodes"][0]["id"], "node-a", "{one}");
    cluster
        .until(
            &["rooms", "ls"],
            &json!({"total": 3, "rooms": [
                {"namespace": "/chat", "room": room, "members": 1},
                {"namespace": "/chat", "room": "user:alice", "members": 1},
                {"namespace": "/notifications", "room": "user:carol", "members": 1},
            ]}),
            same,
        )
        .await;
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rtctl_fails_in_one_line_without_redis() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .env_clear()
        .args([
            "nodes",
            "ls",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--redis-timeout",
            "500",
        ])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot connect to Redis at redis://127.0.0.1:1: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .env_clear()
        .args(["presence", "ls"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: no Redis given"));
    let help = Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["rooms", "ls", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("  2  usage error"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_stay_exact_under_a_thousand_connects_and_disconnects() {
    let cluster = Cluster::new();
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    let addrs = [a.addr, b.addr];
    let secret = Arc::new(cluster.secret.clone());
    // 1,000 connections over both nodes, 25 at a time: 40 users; connection i stays
    // open when i % 5 == 0 (200 sockets: users u0, u5, …, u35, 25 each), the others
    // close at once.
    let started = Instant::now();
    let kept: Vec<SioClient> = futures_util::stream::iter(0..1000usize)
        .map(|i| {
            let secret = secret.clone();
            async move {
                let nsp = if i % 3 == 0 {
                    "/notifications"
                } else {
                    "/chat"
                };
                let c =
                    SioClient::connect(addrs[i % 2], &secret, &format!("u{}", i % 40), nsp).await;
                if i % 5 == 0 {
                    Some(c)
                } else {
                    c.close().await;
                    None
                }
            }
        })
        .buffer_unordered(25)
        .filter_map(|c| async move { c })
        .collect()
        .await;
    eprintln!("1,000 connects/disconnects in {:?}", started.elapsed());
    assert_eq!(kept.len(), 200);
    let want: Vec<Value> = (0..40)
        .step_by(5)
        .map(|u| json!({"userId": format!("u{u}"), "sockets": 25, "nodes": ["node-a", "node-b"]}))
        .map(|mut v| {
            // i ≡ u (mod 40) and i % 5 == 0 with u a multiple of 5: i = u + 40k, whose
            // parity is u's: even users live on node A only, odd ones on node B.
            let u: usize = v["userId"].as_str().unwrap()[1..].parse().unwrap();
            v["nodes"] = json!([if u % 2 == 0 { "node-a" } else { "node-b" }]);
            v
        })
        .collect();
    let mut sorted = want.clone();
    sorted.sort_by(|x, y| x["userId"].as_str().cmp(&y["userId"].as_str()));
    cluster
        .until(
            &["presence", "ls"],
            &json!({"online": 8, "users": sorted, "next_cursor": null}),
            same,
        )
        .await;
    let nodes = cluster.json(&["nodes", "ls"]).await;
    // Heartbeats carry the connection counts; wait for one after the churn.
    let want_connections = json!(200);
    if nodes["connections"] != want_connections {
        tokio::time::sleep(HEARTBEAT * 2).await;
    }
    let nodes = cluster.json(&["nodes", "ls"]).await;
    assert_eq!(nodes["connections"], want_connections, "{nodes:#}");
    let per_node: Vec<u64> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["connections"].as_u64().unwrap())
        .collect();
    assert_eq!(per_node, [100, 100]);

    // Everyone leaves: nobody is online, and no room is left.
    for c in kept {
        c.close().await;
    }
    cluster
        .until(
            &["presence", "ls"],
            &json!({"online": 0, "users": [], "next_cursor": null}),
            same,
        )
        .await;
    cluster
        .until(&["rooms", "ls"], &json!({"total": 0, "rooms": []}), same)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_peers_hear_presence_updates_across_nodes() {
    let cluster = Cluster::new();
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    let s = &cluster.secret;
    let mut alice = SioClient::connect(a.addr, s, "alice", "/chat").await;
    let opened = alice.call("room:open", json!({"peerId": "bob"})).await;
    assert!(opened["roomId"].is_i64(), "{opened}");
    // carol shares no room with bob: she hears nothing about him.
    let mut carol = SioClient::connect(a.addr, s, "carol", "/chat").await;

    // bob's first socket (on the other node) → alice hears he is online.
    let bob_b = SioClient::connect(b.addr, s, "bob", "/chat").await;
    assert_eq!(
        alice.event("presence:update").await,
        json!({"userId": "bob", "online": true})
    );
    // A second tab and closing one of two change nothing.
    let bob_a = SioClient::connect(a.addr, s, "bob", "/notifications").await;
    bob_b.close().await;
    alice
        .expect_no_event("presence:update", Duration::from_millis(700))
        .await;
    // The last tab leaves → offline.
    bob_a.close().await;
    assert_eq!(
        alice.event("presence:update").await,
        json!({"userId": "bob", "online": false})
    );
    // bob's peers see him too: alice connects a second tab → no news; bob on B hears
    // alice come online only when her first socket connects, so nothing now.
    let mut bob_b = SioClient::connect(b.addr, s, "bob", "/chat").await;
    assert_eq!(
        alice.event("presence:update").await,
        json!({"userId": "bob", "online": true})
    );
    // Those updates crossed nodes through Redis: B published, A received, each node
    // sees two live nodes — the adapter's and presence's own series.
    let broadcast = "{type=\"broadcast\"}";
    let published = format!("realtime_cluster_messages_published_total{broadcast}");
    let received = format!("realtime_cluster_messages_received_total{broadcast}");
    assert!(metric_until(b.addr, &published, |v| v >= 2.0).await >= 2.0);
    assert!(metric_until(a.addr, &received, |v| v >= 2.0).await >= 2.0);
    metric_until(a.addr, "realtime_cluster_nodes", |v| v == 2.0).await;
    assert_eq!(
        metric(a.addr, "realtime_redis_errors_total{component=\"adapter\"}").await,
        Some(0.0)
    );
    let alice2 = SioClient::connect(b.addr, s, "alice", "/chat").await;
    bob_b
        .expect_no_event("presence:update", Duration::from_millis(500))
        .await;
    drop(alice2);

    // bob's node dies (kill -9): the sweep of a surviving node announces him offline.
    b.kill_9().await;
    let died = Instant::now();
    assert_eq!(
        alice
            .event_within("presence:update", HEARTBEAT * 3 + raw::QUICK)
            .await,
        json!({"userId": "bob", "online": false})
    );
    eprintln!("kill -9: peers told after {:?}", died.elapsed());
    metric_until(a.addr, "realtime_cluster_nodes", |v| v == 1.0).await;
    assert!(died.elapsed() <= HEARTBEAT * 3 + Duration::from_millis(500));
    carol
        .expect_no_event("presence:update", Duration::from_millis(100))
        .await;
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_heals_within_a_heartbeat_after_redis_restarts() {
    let mut cluster = Cluster::new();
    let a = cluster.node("node-a").await;
    let secret = cluster.secret.clone();
    let _alice = SioClient::connect(a.addr, &secret, "alice", "/chat").await;
    let user = |u: &str| json!({"userId": u, "sockets": 1, "nodes": ["node-a"]});
    cluster
        .until(
            &["presence", "ls"],
            &json!({"online": 1, "users": [user("alice")], "next_cursor": null}),
            same,
        )
        .await;

    // Redis goes away (and comes back empty: no persistence). The node keeps serving:
    // a new tab connects meanwhile; rtctl says in one line that Redis is unreachable.
    let port = cluster.redis.port;
    tokio::task::block_in_place(|| cluster.redis.stop());
    let mut bob = SioClient::connect(a.addr, &secret, "bob", "/chat").await;
    let (code, out, err) = cluster.rtctl(&["presence", "ls"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot connect to Redis at "),
        "{err}"
    );
    let opened = bob.call("room:open", json!({"peerId": "alice"})).await;
    assert!(
        opened["roomId"].is_i64(),
        "chat works without Redis: {opened}"
    );

    cluster.redis = tokio::task::block_in_place(|| RedisServer::start_on(port));
    let back = Instant::now();
    // The node's heartbeat writes every local socket again: both users, the node.
    cluster
        .until(
            &["presence", "ls"],
            &json!({"online": 2, "users": [user("alice"), user("bob")], "next_cursor": null}),
            same,
        )
        .await;
    eprintln!(
        "presence rebuilt {:?} after Redis came back",
        back.elapsed()
    );
    assert_eq!(cluster.json(&["nodes", "ls"]).await["count"], 1);
    drop(a);
}
