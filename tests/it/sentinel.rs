//! Redis behind Sentinel (`--redis-sentinels`): the failover drill. Two nodes share a
//! PostgreSQL database and a Redis master with a replica and three Sentinels; clients on
//! both nodes share a `/bench` room and a `/chat` room. The master is killed mid-traffic.
//! Without a restart, each node finds the new master by itself: cross-node broadcasts
//! flow again, presence heartbeats and rate-limit counters land on the new master, and
//! every chat message a sender saw acknowledged is in the database exactly once.
//! The measured times are printed (`cargo test sentinel -- --nocapture`).

use crate::common::app::{parse_config, random, Served};
use crate::common::drill::{bench_pair, crosses, exists, now_ms, NODE_FLAGS};
use crate::common::postgres::{fresh_database, shared};
use crate::common::sentinel::{SentinelSet, MASTER};
use crate::common::sio::SioClient;
use crate::observability::health;
use realtime::presence::{PresenceStore, RedisPresence};
use realtime::redis_client::RedisArgs;
use serde_json::json;
use std::time::{Duration, Instant};

/// The longest the drill waits for the cluster to heal (a failover here takes ~2–4 s:
/// 1 s until the master is "down", then the election and promotion).
const HEAL_WITHIN: Duration = Duration::from_secs(30);

/// When each part of the cluster worked again, measured from the kill.
#[derive(Debug, Default)]
struct Healed {
    broadcasts: Option<Duration>,
    presence: Option<Duration>,
    rate_limits: Option<Duration>,
}

impl Healed {
    fn done(&self) -> bool {
        self.broadcasts.is_some() && self.presence.is_some() && self.rate_limits.is_some()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_leaves_the_cluster_serving_by_itself() {
    let mut set = SentinelSet::start().await;
    let db = fresh_database().await;
    let (secret, service) = (random("secret"), random("service"));
    let sentinels = set.addresses();
    let config = |node: &str| {
        parse_config(
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
                "--db-auto-migrate",
                "--redis-sentinels",
                &sentinels,
                "--redis-sentinel-master",
                MASTER,
                "--node-id",
                node,
            ]
            .iter()
            .chain(NODE_FLAGS)
            .copied()
            .collect::<Vec<&str>>(),
            true,
        )
    };
    let a = Served::start(&config("node-a")).await;
    let b = Served::start(&config("node-b")).await;

    // /bench: a publisher on a, a receiver on b. /chat: alice on a, bob on b.
    let mut seq = 0u64;
    let (mut publisher, mut receiver) =
        bench_pair(a.addr, b.addr, &secret, &mut seq, HEAL_WITHIN).await;
    let mut alice = SioClient::connect(a.addr, &secret, "alice", "/chat").await;
    let mut bob = SioClient::connect(b.addr, &secret, "bob", "/chat").await;
    let opened = alice.call("room:open", json!({"peerId": "bob"})).await;
    let room = opened["roomId"].clone();
    for c in [&mut alice, &mut bob] {
        let joined = c.call("room:join", json!({"roomId": room})).await;
        assert_eq!(joined["ok"], true, "{joined}");
    }

    // The new master, read directly (not through the nodes' connections).
    let replica = set.replica.url();
    let direct = RedisArgs::at_url(&replica)
        .connect()
        .await
        .unwrap()
        .unwrap();
    let presence_on_replica =
        RedisPresence::new(direct.clone(), "rt:presence", Duration::from_secs(10));

    // Health names the role and the address each node talks to.
    let redis_of = |body: serde_json::Value| body["services"]["redis"].clone();
    let (status, body) = health(a.addr, "/api/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(redis_of(body)["address"], json!(set.master.url()));

    let killed_at = Instant::now();
    let killed_ms = now_ms();
    set.master.stop();
    let mut healed = Healed::default();
    let (mut acked, mut unacked) = (Vec::new(), 0u32);
    let mut probe = 0u32;
    while !healed.done() {
        let since = killed_at.elapsed();
        assert!(
            since < HEAL_WITHIN,
            "not healed {HEAL_WITHIN:?} after the kill: {healed:?}"
        );
        // A chat message from alice: acknowledged (stored) or refused, never silent.
        let sent = alice
            .call(
                "message:send",
                json!({"roomId": room, "text": format!("m{}", acked.len())}),
            )
            .await;
        match sent["id"].as_i64() {
            Some(id) => acked.push(id),
            None => unacked += 1,
        }
        if healed.broadcasts.is_none() && crosses(&mut publisher, &mut receiver, &mut seq).await {
            healed.broadcasts = Some(killed_at.elapsed());
        }
        if healed.presence.is_none() {
            let nodes = presence_on_replica.nodes().await.unwrap_or_default();
            let fresh = nodes.iter().filter(|n| n.heartbeat_at > killed_ms).count();
            if fresh == 2 {
                healed.presence = Some(killed_at.elapsed());
            }
        }
        if healed.rate_limits.is_none() {
            probe += 1;
            let user = format!("drill-{probe}");
            a.state.limiter.consume("message:send", &user).await;
            if exists(&direct, &format!("socket_rl:{user}")).await {
                healed.rate_limits = Some(killed_at.elapsed());
            }
        }
    }
    println!(
        "sentinel failover drill: broadcasts back after {:?}, presence after {:?}, rate limits after {:?}; \
         chat: {} acknowledged, {} refused during the failover",
        healed.broadcasts.unwrap(),
        healed.presence.unwrap(),
        healed.rate_limits.unwrap(),
        acked.len(),
        unacked
    );
    assert_eq!(
        set.master_port().await,
        Some(set.replica.port),
        "the Sentinels promoted the replica"
    );
    for node in [&a, &b] {
        let (status, body) = health(node.addr, "/api/health").await;
        let redis = redis_of(body);
        assert_eq!(status, 200, "{redis}");
        assert_eq!(
            (redis["role"].clone(), redis["address"].clone()),
            (json!("master"), json!(replica))
        );
    }

    // Every acknowledged message is stored once.
    let database = db.rsplit('/').next().unwrap().split('?').next().unwrap();
    let listed = shared().psql(
        database,
        &format!("SELECT id FROM messages WHERE room_id = {room} ORDER BY id"),
    );
    let stored: Vec<i64> = listed
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for id in &acked {
        assert_eq!(
            stored.iter().filter(|s| *s == id).count(),
            1,
            "acknowledged message {id} stored {stored:?}"
        );
    }
    drop(bob);
    a.stop().await;
    b.stop().await;
}

#[test]
fn sentinel_settings_are_checked_at_start() {
    let parse = |extra: &[&str]| {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            redis: RedisArgs,
        }
        let mut argv = vec!["x"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv)
            .unwrap()
            .redis
            .target()
            .map(|t| t.map(|t| t.describe()))
    };
    let both = parse(&["--redis-url", "redis://h:1", "--redis-sentinels", "h:26379"]);
    assert!(both.unwrap_err().to_string().contains("keep one"));
    let bad = parse(&["--redis-sentinels", "h:26379,nope"]);
    let text = bad.unwrap_err().to_string();
    assert!(text.contains("\"nope\" is not host:port"), "{text}");
    let ok = parse(&[
        "--redis-sentinels",
        "10.0.0.5:26379,10.0.0.6:26379",
        "--redis-sentinel-master",
        "rt",
    ]);
    assert_eq!(
        ok.unwrap().unwrap(),
        "master \"rt\" via Sentinel 10.0.0.5:26379,10.0.0.6:26379"
    );
}
