//! Rate limits and the unread cache against a real redis-server.

use crate::common::redis::RedisServer;
use realtime::cache::UnreadCache;
use realtime::ratelimit::{Decision, RateLimiter, Rule};
use realtime::redis_client::RedisArgs;
use std::time::Duration;

async fn connect(server: &RedisServer) -> realtime::redis_client::RedisConn {
    RedisArgs {
        redis_timeout: 500,
        ..RedisArgs::at_url(server.url())
    }
    .connect()
    .await
    .expect("connect to the test redis")
    .expect("configured")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limiter_shares_rate_limiter_flexible_layout() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let rule = Rule::parse("message:send=3/60").unwrap();
    let a = RateLimiter::new(vec![rule.clone()], Some(conn.clone()));
    let b = RateLimiter::new(vec![rule], Some(conn.clone()));
    // Two nodes draw from one budget.
    assert_eq!(
        a.consume("message:send", "u1").await,
        Decision::Allowed { remaining: 2 }
    );
    assert_eq!(
        b.consume("message:send", "u1").await,
        Decision::Allowed { remaining: 1 }
    );
    assert_eq!(
        a.consume("message:send", "u1").await,
        Decision::Allowed { remaining: 0 }
    );
    match b.consume("message:send", "u1").await {
        Decision::Limited { retry_after } => {
            assert!(retry_after > Duration::from_secs(55) && retry_after <= Duration::from_secs(60))
        }
        other => panic!("expected a limit, got {other:?}"),
    }
    // The key, value and TTL are what rate-limiter-flexible writes and reads.
    let mut c = conn.clone();
    let (value, ttl): (i64, i64) = redis::pipe()
        .get("socket_rl:u1")
        .ttl("socket_rl:u1")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(value, 4);
    assert!((55..=60).contains(&ttl), "ttl {ttl}");
    // A budget a Node process already consumed counts here too.
    let _: () = redis::cmd("SET")
        .arg("socket_rl:u2")
        .arg(3)
        .arg("EX")
        .arg(60)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(matches!(
        a.consume("message:send", "u2").await,
        Decision::Limited { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_and_cache_survive_a_redis_outage() {
    let mut server = RedisServer::start();
    let conn = connect(&server).await;
    let limiter = RateLimiter::new(
        vec![Rule::parse("message:send=2/60").unwrap()],
        Some(conn.clone()),
    );
    let cache = UnreadCache::new(Some(conn.clone()));
    cache.set("u", 5).await;
    assert_eq!(cache.get("u").await, Some(5));
    server.stop();
    // Falls back to this node's budget, answers within the Redis timeout, never hangs.
    let started = std::time::Instant::now();
    assert!(matches!(
        limiter.consume("message:send", "u").await,
        Decision::Allowed { .. }
    ));
    assert!(matches!(
        limiter.consume("message:send", "u").await,
        Decision::Allowed { .. }
    ));
    assert!(matches!(
        limiter.consume("message:send", "u").await,
        Decision::Limited { .. }
    ));
    assert_eq!(cache.get("u").await, None, "a Redis error is a miss");
    cache.invalidate("u").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let server = RedisServer::start_on(server.port);
    // The connection manager reconnects on its own.
    let mut ok = false;
    for _ in 0..50 {
        cache.set("u", 7).await;
        if cache.get("u").await == Some(7) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "cache works again after Redis came back");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_cache_uses_the_shared_key_and_ttl() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let cache = UnreadCache::new(Some(conn.clone()));
    cache.set("42", 9).await;
    let mut c = conn.clone();
    let (v, ttl): (i64, i64) = redis::pipe()
        .get("unread_count:42")
        .ttl("unread_count:42")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v, 9);
    assert!((295..=300).contains(&ttl));
    cache.invalidate("42").await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("unread_count:42")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!exists);
}
