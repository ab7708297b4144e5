//! Per-user, per-event-class rate limits (requirements SR-5).
//!
//! The Redis backend keeps exactly the layout of rate-limiter-flexible's
//! `RateLimiterRedis`: the key `<keyPrefix>:<key>` holds the points consumed as an integer,
//! created by the first consume with a TTL of the window (a fixed window from the first
//! consume), incremented atomically. So a Node process still running
//! `new RateLimiterRedis({ keyPrefix: "socket_rl", points: 10, duration: 60 })` and our
//! nodes draw from one budget during a migration.
//!
//! The in-process backend has the same semantics for the single-node default. If Redis
//! fails, the limiter falls back to the in-process budget of this node rather than either
//! refusing everything or letting floods through.

use crate::redis_client::RedisConn;
use crate::sync::MutexExt as _;
use crate::telemetry::LogThrottle;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// rate-limiter-flexible's atomic consume: create the window if absent, add the points,
/// return the total and the window's remaining time in ms.
const CONSUME_SCRIPT: &str = r"
redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX')
local consumed = redis.call('incrby', KEYS[1], ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if ttl == -1 then
  redis.call('expire', KEYS[1], ARGV[2])
  ttl = 1000 * ARGV[2]
end
return {consumed, ttl}
";

/// The limit of one event class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub event: String,
    pub points: u32,
    pub duration: Duration,
    pub key_prefix: String,
}

impl Rule {
    /// Parses `event=points/seconds[@keyPrefix]`, e.g. `message:send=10/60@socket_rl`.
    /// Without a prefix, `message:send` uses `socket_rl` (the Node app's limiter) and
    /// any other event `socket_rl:<event>`.
    pub fn parse(s: &str) -> Result<Rule, String> {
        let usage = || format!("{s:?} is not a rate limit like message:send=10/60[@socket_rl]");
        let (event, rest) = s.trim().split_once('=').ok_or_else(usage)?;
        let (limit, prefix) = match rest.split_once('@') {
            Some((l, p)) => (l, Some(p.to_owned())),
            None => (rest, None),
        };
        let (points, secs) = limit.split_once('/').ok_or_else(usage)?;
        let points: u32 = points.trim().parse().map_err(|_| usage())?;
        let secs: u64 = secs.trim().parse().map_err(|_| usage())?;
        if event.is_empty() || points == 0 || secs == 0 {
            return Err(usage());
        }
        let key_prefix = prefix.unwrap_or_else(|| {
            if event == "message:send" {
                "socket_rl".to_owned()
            } else {
                format!("socket_rl:{event}")
            }
        });
        Ok(Rule {
            event: event.to_owned(),
            points,
            duration: Duration::from_secs(secs),
            key_prefix,
        })
    }
}

/// The answer to one consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

/// Limits events per user. Events without a rule are never limited.
pub struct RateLimiter {
    rules: HashMap<String, Rule>,
    redis: Option<RedisConn>,
    local: Mutex<LocalWindows>,
}

#[derive(Default)]
struct LocalWindows {
    windows: HashMap<String, (u32, Instant)>,
    consumes_since_prune: u32,
}

impl RateLimiter {
    pub fn new(rules: Vec<Rule>, redis: Option<RedisConn>) -> Self {
        RateLimiter {
            rules: rules.into_iter().map(|r| (r.event.clone(), r)).collect(),
            redis,
            local: Mutex::default(),
        }
    }

    /// Consumes one point of `event` for `key` (the user id).
    pub async fn consume(&self, event: &str, key: &str) -> Decision {
        let Some(rule) = self.rules.get(event) else {
            return Decision::Allowed {
                remaining: u32::MAX,
            };
        };
        let full_key = format!("{}:{}", rule.key_prefix, key);
        if let Some(conn) = &self.redis {
            match consume_redis(conn.clone(), &full_key, rule).await {
                Ok(d) => return d,
                Err(e) => {
                    crate::metrics::redis_error("rate_limit");
                    static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                    if let Some(held_back) = THROTTLE.allow() {
                        tracing::warn!(
                            error = %e,
                            event,
                            held_back,
                            "rate limit: Redis unavailable, using this node's in-process budget"
                        )
                    }
                }
            }
        }
        self.consume_local(&full_key, rule)
    }

    fn consume_local(&self, key: &str, rule: &Rule) -> Decision {
        let now = Instant::now();
        let mut local = self.local.lock_unpoisoned();
        local.consumes_since_prune += 1;
        if local.consumes_since_prune >= 1024 {
            local.consumes_since_prune = 0;
            local.windows.retain(|_, (_, expires)| *expires > now);
        }
        let entry = local
            .windows
            .entry(key.to_owned())
            .or_insert((0, now + rule.duration));
        if entry.1 <= now {
            *entry = (0, now + rule.duration);
        }
        entry.0 = entry.0.saturating_add(1);
        decide(rule, entry.0 as i64, entry.1.saturating_duration_since(now))
    }
}

async fn consume_redis(
    mut conn: RedisConn,
    key: &str,
    rule: &Rule,
) -> redis::RedisResult<Decision> {
    let (consumed, ttl_ms): (i64, i64) = redis::Script::new(CONSUME_SCRIPT)
        .key(key)
        .arg(1)
        .arg(rule.duration.as_secs())
        .invoke_async(&mut conn)
        .await?;
    Ok(decide(
        rule,
        consumed,
        Duration::from_millis(ttl_ms.max(0) as u64),
    ))
}

fn decide(rule: &Rule, consumed: i64, window_left: Duration) -> Decision {
    if consumed > rule.points as i64 {
        Decision::Limited {
            retry_after: window_left,
        }
    } else {
        Decision::Allowed {
            remaining: (rule.points as i64 - consumed) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_node_compatible_prefixes() {
        let r = Rule::parse("message:send=10/60").unwrap();
        assert_eq!(
            (r.points, r.duration.as_secs(), r.key_prefix.as_str()),
            (10, 60, "socket_rl")
        );
        assert_eq!(
            Rule::parse("typing=30/10").unwrap().key_prefix,
            "socket_rl:typing"
        );
        assert_eq!(Rule::parse("x=1/1@rl").unwrap().key_prefix, "rl");
        for bad in ["", "x", "x=1", "x=0/60", "x=1/0", "=1/1", "x=a/1"] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn local_window_allows_points_then_limits_until_it_expires() {
        let rule = Rule {
            event: "e".into(),
            points: 3,
            duration: Duration::from_millis(200),
            key_prefix: "p".into(),
        };
        let rl = RateLimiter::new(vec![rule], None);
        for left in [2, 1, 0] {
            assert_eq!(
                rl.consume("e", "u1").await,
                Decision::Allowed { remaining: left }
            );
        }
        assert!(matches!(
            rl.consume("e", "u1").await,
            Decision::Limited { .. }
        ));
        assert_eq!(
            rl.consume("e", "u2").await,
            Decision::Allowed { remaining: 2 }
        );
        assert_eq!(
            rl.consume("other", "u1").await,
            Decision::Allowed {
                remaining: u32::MAX
            }
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            rl.consume("e", "u1").await,
            Decision::Allowed { remaining: 2 }
        );
    }
}
