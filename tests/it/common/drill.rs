//! What the failover drills (`sentinel`, `redis_cluster`) share: whether a cross-node
//! broadcast gets through, whether a key landed, the wall clock.

use super::sio::SioClient;
use realtime::redis_client::RedisConn;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
