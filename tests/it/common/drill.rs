//! What the failover drills (`sentinel`, `redis_cluster`) share: whether a cross-node
//! broadcast gets through, whether a key landed, the wall clock.

use super::sio::SioClient;
use realtime::redis_client::RedisConn;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The flags both drills give their nodes after the Redis location and the node id:
/// heartbeats every second, Redis commands failing after 500 ms, a rate limit that
/// counts without refusing, no per-socket event budget (a drill's probes send as fast
/// as the node answers, far above a person's 100 events a second), and `/bench`.
pub const NODE_FLAGS: &[&str] = &[
    "--presence-heartbeat",
    "1000",
    "--redis-timeout",
    "500",
    "--rate-limit",
    "message:send=100000/60",
    "--socket-event-budget",
    "0",
    "--loadtest-namespace",
    "--log-level",
    "warn",
];

/// A `/bench` publisher on `a` and a receiver on `b`, both in room R, once a broadcast
/// crosses (within `within`); `seq` counts the publishes.
pub async fn bench_pair(
    a: SocketAddr,
    b: SocketAddr,
    secret: &str,
    seq: &mut u64,
    within: Duration,
) -> (SioClient, SioClient) {
    let mut publisher = SioClient::connect(a, secret, "pub", "/bench").await;
    let mut receiver = SioClient::connect(b, secret, "sub", "/bench").await;
    for c in [&mut publisher, &mut receiver] {
        assert_eq!(
            c.call("join", json!({"room": "R"})).await,
            json!({"ok": true})
        );
    }
    let before = Instant::now();
    while !crosses(&mut publisher, &mut receiver, seq).await {
        assert!(
            before.elapsed() < within,
            "no cross-node broadcast before the kill"
        );
    }
    (publisher, receiver)
}

/// Publishes the next `seq` on `/bench` room R and says whether the receiver (on the
/// other node) got it within 300 ms.
pub async fn crosses(publisher: &mut SioClient, receiver: &mut SioClient, seq: &mut u64) -> bool {
    *seq += 1;
    let ok = publisher
        .call("publish", json!({"room": "R", "seq": *seq}))
        .await;
    assert_eq!(ok, json!({"ok": true}));
    loop {
        match receiver
            .try_event_within("message", Duration::from_millis(300))
            .await
        {
            Some(m) if m["seq"] == *seq => return true,
            Some(_) => continue, // a late one from the outage
            None => return false,
        }
    }
}

/// `EXISTS key` on `conn`'s server.
pub async fn exists(conn: &RedisConn, key: &str) -> bool {
    let mut conn = conn.clone();
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut conn)
        .await
        .is_ok_and(|n| n == 1)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
