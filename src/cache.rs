//! The unread-notification-count cache (requirements SR-3).
//!
//! Key `unread_count:<userId>` with a 300 s TTL, in Redis when configured (shared by
//! every node and by a Next.js process using the same key), otherwise in process.
//! Every create and mark-read invalidates the user's entry, so a stale count lives at
//! most until the next change or the TTL. A Redis error counts as a miss: the count is
//! then read from the database, never guessed.

use crate::redis_client::RedisConn;
use crate::sync::MutexExt as _;
use crate::telemetry::LogThrottle;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const UNREAD_TTL: Duration = Duration::from_secs(300);

pub struct UnreadCache {
    redis: Option<RedisConn>,
    local: Mutex<HashMap<String, (i64, Instant)>>,
    ttl: Duration,
}

fn key(user: &str) -> String {
    format!("unread_count:{user}")
}

impl UnreadCache {
    pub fn new(redis: Option<RedisConn>) -> Self {
        Self::with_ttl(redis, UNREAD_TTL)
    }

    pub fn with_ttl(redis: Option<RedisConn>, ttl: Duration) -> Self {
        crate::metrics::declare_cache("unread_count");
        UnreadCache {
            redis,
            local: Mutex::default(),
            ttl,
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Instant)>> {
        self.local.lock_unpoisoned()
    }

    /// The cached count, if any.
    pub async fn get(&self, user: &str) -> Option<i64> {
        let found = self.lookup(user).await;
        crate::metrics::cache_lookup("unread_count", found.is_some());
        found
    }

    async fn lookup(&self, user: &str) -> Option<i64> {
        match &self.redis {
            Some(conn) => {
                let mut conn = conn.clone();
                match conn.get::<_, Option<i64>>(key(user)).await {
                    Ok(v) => v,
                    Err(e) => {
                        crate::metrics::redis_error("cache");
                        static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                        if let Some(held_back) = THROTTLE.allow() {
                            tracing::warn!(error = %e, held_back, "unread cache: Redis read failed; reading the database");
                        }
                        None
                    }
                }
            }
            None => {
                let now = Instant::now();
                let mut local = self.local();
                match local.get(user) {
                    Some((n, expires)) if *expires > now => Some(*n),
                    Some(_) => {
                        local.remove(user);
                        None
                    }
                    None => None,
                }
            }
        }
    }

    /// Stores a count read from the database.
    pub async fn set(&self, user: &str, count: i64) {
        match &self.redis {
            Some(conn) => {
                let mut conn = conn.clone();
                let r: redis::RedisResult<()> =
                    conn.set_ex(key(user), count, self.ttl.as_secs()).await;
                if let Err(e) = r {
                    crate::metrics::redis_error("cache");
                    static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                    if let Some(held_back) = THROTTLE.allow() {
                        tracing::warn!(error = %e, held_back, "unread cache: Redis write failed");
                    }
                }
            }
            None => {
                let mut local = self.local();
                if local.len() > 100_000 {
                    let now = Instant::now();
                    local.retain(|_, (_, e)| *e > now);
                }
                local.insert(user.to_owned(), (count, Instant::now() + self.ttl));
            }
        }
    }

    /// Drops the user's entry after a change to their notifications.
    pub async fn invalidate(&self, user: &str) {
        match &self.redis {
            Some(conn) => {
                let mut conn = conn.clone();
                let r: redis::RedisResult<()> = conn.del(key(user)).await;
                if let Err(e) = r {
                    crate::metrics::redis_error("cache");
                    static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                    if let Some(held_back) = THROTTLE.allow() {
                        tracing::warn!(error = %e, held_back, "unread cache: Redis invalidation failed; the entry expires within its TTL");
                    }
                }
            }
            None => {
                self.local().remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_entries_expire_and_invalidate() {
        let c = UnreadCache::with_ttl(None, Duration::from_millis(100));
        assert_eq!(c.get("u").await, None);
        c.set("u", 3).await;
        assert_eq!(c.get("u").await, Some(3));
        c.invalidate("u").await;
        assert_eq!(c.get("u").await, None);
        c.set("u", 4).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(c.get("u").await, None);
    }
}
