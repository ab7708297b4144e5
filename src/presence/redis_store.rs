//! Presence in Redis: the layout of the module docs, written by Lua scripts so each
//! change is atomic, and read without `KEYS`. On a Redis Cluster the same layout is
//! spread over hash-tagged buckets ([`PresenceKeys`]): each script runs on one bucket,
//! and reads of every user (count, pages) visit every bucket.

use super::keys::PresenceKeys;
use super::{
    now_ms, Change, ChangeKind, Heartbeat, NodeInfo, PresenceStore, Result, RoomCounts,
    SocketPresence, UsersPage,
};
use crate::redis_client::{RedisConn, RedisTarget};
use crate::server::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

/// `ZRANGE key (now +inf BYSCORE`: the members of an expiry-scored ZSET that have not
/// expired (presence scores every entry with its expiry time in ms).
fn alive(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(key)
        .arg(format!("({}", now_ms()))
        .arg("+inf")
        .arg("BYSCORE");
    cmd
}

/// Presence in Redis; see the module docs for the keys.
pub struct RedisPresence {
    conn: RedisConn,
    keys: PresenceKeys,
    /// Expiry of a new socket entry: 2 × heartbeat.
    ttl: Duration,
}

/// Applies a batch of changes in order. KEYS: users, sockets, names. ARGV: now, expiry of
/// a new entry, node id, user key prefix, then `op, user, sid` triples (`+` connect,
/// `-` disconnect). Returns one 0/1 per change: 1 when a connect was the user's first
/// live socket, or a disconnect took the user off the online list (0 if a sweep had
/// already done so and reported it).
const APPLY: &str = r#"
local now = tonumber(ARGV[1])
local out = {}
for i = 5, #ARGV, 3 do
  local user, sid = ARGV[i + 1], ARGV[i + 2]
  local k = ARGV[4] .. user
  if ARGV[i] == '+' then
    local live = redis.call('ZCOUNT', k, '(' .. now, '+inf')
    redis.call('ZADD', k, ARGV[2], sid)
    redis.call('PEXPIREAT', k, ARGV[2])
    redis.call('HSET', KEYS[2], sid, ARGV[3])
    redis.call('ZADD', KEYS[1], 'GT', ARGV[2], user)
    redis.call('ZADD', KEYS[3], 0, user)
    out[#out + 1] = (live == 0) and 1 or 0
  else
    redis.call('ZREM', k, sid)
    redis.call('HDEL', KEYS[2], sid)
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
    if #top == 0 then
      local was = redis.call('ZREM', KEYS[1], user)
      redis.call('ZREM', KEYS[3], user)
      redis.call('DEL', k)
      out[#out + 1] = was
    else
      redis.call('ZADD', KEYS[1], top[2], user)
      out[#out + 1] = 0
    end
  end
end
return out
"#;

/// A heartbeat's refresh of this node's live sockets. KEYS: users, sockets, names.
/// ARGV: new expiry, node id, user key prefix, then `user, sid` pairs grouped by user.
/// Per socket one ZADD; the socket's other entries are rewritten only when that ZADD
/// finds it missing (swept while Redis was away, or Redis restarted empty).
const REFRESH: &str = r#"
local last = nil
for i = 4, #ARGV, 2 do
  local user, sid = ARGV[i], ARGV[i + 1]
  local k = ARGV[3] .. user
  if redis.call('ZADD', k, ARGV[1], sid) == 1 then
    redis.call('HSET', KEYS[2], sid, ARGV[2])
    redis.call('ZADD', KEYS[3], 0, user)
  end
  if user ~= last then
    redis.call('PEXPIREAT', k, ARGV[1])
    redis.call('ZADD', KEYS[1], 'GT', ARGV[1], user)
    last = user
  end
end
return 0
"#;

/// Sockets refreshed per REFRESH call: about a millisecond of Redis time each, so other
/// clients' commands interleave with a large node's heartbeat.
const REFRESH_CHUNK: usize = 1000;

/// Sweeps up to ARGV[3] users whose every socket expired (a node died); returns the
/// users it removed (no live socket left). Atomic, so each is returned to one caller.
/// KEYS: users, sockets, names (of one bucket).
const SWEEP: &str = r#"
local now = tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local gone = {}
for _, u in ipairs(stale) do
  local k = ARGV[2] .. u
  local dead = redis.call('ZRANGEBYSCORE', k, '-inf', now)
  for _, s in ipairs(dead) do redis.call('HDEL', KEYS[2], s) end
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
  if #top == 0 then
    redis.call('ZREM', KEYS[1], u)
    redis.call('ZREM', KEYS[3], u)
    redis.call('DEL', k)
    table.insert(gone, u)
  else
    redis.call('ZADD', KEYS[1], top[2], u)
  end
end
return gone
"#;

static APPLY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPLY));
static REFRESH_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REFRESH));
static SWEEP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SWEEP));

impl RedisPresence {
    /// Presence under key prefix `prefix` (e.g. `rt:presence`), for nodes beating
    /// every `heartbeat`; bucketed when `conn` is on a Redis Cluster.
    pub fn new(conn: RedisConn, prefix: &str, heartbeat: Duration) -> Self {
        let cluster = matches!(conn.target(), RedisTarget::Cluster(_));
        RedisPresence {
            conn,
            keys: PresenceKeys::new(prefix, cluster),
            ttl: heartbeat * 2,
        }
    }

    /// A script invocation on bucket `bucket`: KEYS users, sockets, names.
    fn on_bucket(
        &self,
        script: &'static redis::Script,
        bucket: u16,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = script.prepare_invoke();
        for what in ["users", "sockets", "names"] {
            inv.key(self.keys.bucket_key(bucket, what));
        }
        inv
    }

    /// The live users of one bucket after `from` (a `ZRANGE … BYLEX` bound), at most
    /// `limit`, and where that bucket's next page starts (`None`: it ran out).
    async fn bucket_page(
        mut conn: RedisConn,
        names: String,
        users: String,
        mut from: String,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        let mut page: Vec<String> = Vec::new();
        let mut last_seen = None;
        // Names of users whose node died stay until a sweep: skip those (their
        // expiry passed) and read on, a bounded number of times.
        for _ in 0..8 {
            let want = limit - page.len();
            if want == 0 {
                break;
            }
            let candidates: Vec<String> = redis::cmd("ZRANGE")
                .arg(&names)
                .arg(&from)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(want)
                .query_async(&mut conn)
                .await?;
            let Some(last) = candidates.last() else {
                return Ok((page, None));
            };
            from = format!("({last}");
            last_seen = Some(last.clone());
            let expiries: Vec<Option<f64>> = redis::cmd("ZMSCORE")
                .arg(&users)
                .arg(&candidates)
                .query_async(&mut conn)
                .await?;
            let now = now_ms() as f64;
            let exhausted = candidates.len() < want;
            page.extend(
                candidates
                    .into_iter()
                    .zip(expiries)
                    .filter(|(_, e)| e.is_some_and(|e| e > now))
                    .map(|(u, _)| u),
            );
            if exhausted {
                return Ok((page, None));
            }
        }
        // More may follow: go on after the last name read (returned or skipped).
        Ok((page, last_seen))
    }
}

/// One page of users from every bucket's page: the first `limit` names in order, never
/// past where a bucket that did not run out stopped (names after it were not read), and
/// where the next page starts.
fn merge_pages(pages: Vec<(Vec<String>, Option<String>)>, limit: usize) -> UsersPage {
    let bound = pages.iter().filter_map(|(_, next)| next.clone()).min();
    let mut users: Vec<String> = pages
        .into_iter()
        .flat_map(|(users, _)| users)
        .filter(|u| bound.as_ref().is_none_or(|b| u <= b))
        .collect();
    users.sort();
    users.truncate(limit);
    let next_cursor = match users.last() {
        Some(last) if users.len() == limit => Some(last.clone()),
        _ => bound,
    };
    UsersPage { users, next_cursor }
}

impl PresenceStore for RedisPresence {
    fn apply(&self, node: &str, changes: &[Change]) -> BoxFuture<Result<Vec<bool>>> {
        let now = now_ms();
        // One script call per bucket, each with its changes in order; the flips are
        // put back in the order of `changes`.
        let mut by_bucket: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, c) in changes.iter().enumerate() {
            by_bucket
                .entry(self.keys.bucket_of(&c.user))
                .or_default()
                .push(i);
        }
        let calls: Vec<(Vec<usize>, redis::ScriptInvocation<'static>)> = by_bucket
            .into_iter()
            .map(|(bucket, indexes)| {
                let mut inv = self.on_bucket(&APPLY_SCRIPT, bucket);
                inv.arg(now)
                    .arg(now + self.ttl.as_millis() as u64)
                    .arg(node)
                    .arg(self.keys.user_prefix(bucket));
                for &i in &indexes {
                    let c = &changes[i];
                    let op = match c.kind {
                        ChangeKind::Connected => "+",
                        ChangeKind::Disconnected => "-",
                    };
                    inv.arg(op).arg(&c.user).arg(&c.sid);
                }
                (indexes, inv)
            })
            .collect();
        let mut conn = self.conn.clone();
        let n = changes.len();
        Box::pin(async move {
            let mut out = vec![false; n];
            for (indexes, inv) in calls {
                let flips: Vec<i64> = inv.invoke_async(&mut conn).await?;
                for (i, f) in indexes.into_iter().zip(flips) {
                    out[i] = f == 1;
                }
            }
            Ok(out)
        })
    }

    fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<Vec<String>>> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let expires = now + beat.ttl.as_millis() as u64;
        // Grouped by bucket, and by user within it (REFRESH expects that order).
        let mut by_bucket: BTreeMap<u16, Vec<&(String, String)>> = BTreeMap::new();
        for pair in &beat.sockets {
            by_bucket
                .entry(self.keys.bucket_of(&pair.0))
                .or_default()
                .push(pair);
        }
        let mut refreshes: Vec<redis::ScriptInvocation<'static>> = Vec::new();
        for (bucket, sockets) in &by_bucket {
            for chunk in sockets.chunks(REFRESH_CHUNK) {
                let mut inv = self.on_bucket(&REFRESH_SCRIPT, *bucket);
                inv.arg(expires)
                    .arg(&beat.node.id)
                    .arg(self.keys.user_prefix(*bucket));
                for (user, sid) in chunk {
                    inv.arg(user).arg(sid);
                }
                refreshes.push(inv);
            }
        }
        let pipe = self.node_beat(&beat, now, expires);
        let sweeps: Vec<redis::ScriptInvocation<'static>> = self
            .keys
            .buckets()
            .map(|bucket| {
                let mut inv = self.on_bucket(&SWEEP_SCRIPT, bucket);
                inv.arg(now).arg(self.keys.user_prefix(bucket)).arg(1000);
                inv
            })
            .collect();
        Box::pin(async move {
            for refresh in refreshes {
                refresh.invoke_async::<()>(&mut conn).await?;
            }
            pipe.query_async::<()>(&mut conn).await?;
            let mut gone = Vec::new();
            for sweep in sweeps {
                gone.extend(sweep.invoke_async::<Vec<String>>(&mut conn).await?);
            }
            Ok(gone)
        })
    }

    fn is_online(&self, user: &str) -> BoxFuture<Result<bool>> {
        let mut conn = self.conn.clone();
        let key = self.keys.bucket_key(self.keys.bucket_of(user), "users");
        let user = user.to_owned();
        Box::pin(async move {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(key)
                .arg(user)
                .query_async(&mut conn)
                .await?;
            Ok(score.is_some_and(|s| s as u64 > now_ms()))
        })
    }

    fn sockets_of(&self, user: &str) -> BoxFuture<Result<Vec<SocketPresence>>> {
        let mut conn = self.conn.clone();
        let key = self.keys.user_key(user);
        let sockets_key = self.keys.bucket_key(self.keys.bucket_of(user), "sockets");
        Box::pin(async move {
            let sids: Vec<String> = alive(&key).query_async(&mut conn).await?;
            if sids.is_empty() {
                return Ok(Vec::new());
            }
            let nodes: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&sockets_key)
                .arg(&sids)
                .query_async(&mut conn)
                .await?;
            Ok(sids
                .into_iter()
                .zip(nodes)
                .map(|(sid, node)| SocketPresence {
                    sid,
                    node: node.unwrap_or_default(),
                })
                .collect())
        })
    }

    fn online_users(&self, after: Option<&str>, limit: usize) -> BoxFuture<Result<UsersPage>> {
        let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let pages: Vec<_> = self
            .keys
            .buckets()
            .map(|b| {
                Self::bucket_page(
                    self.conn.clone(),
                    self.keys.bucket_key(b, "names"),
                    self.keys.bucket_key(b, "users"),
                    from.clone(),
                    limit,
                )
            })
            .collect();
        Box::pin(async move {
            let pages = futures_util::future::try_join_all(pages).await?;
            Ok(merge_pages(pages, limit))
        })
    }

    fn online_count(&self) -> BoxFuture<Result<usize>> {
        let counts: Vec<_> = self
            .keys
            .buckets()
            .map(|b| {
                let mut conn = self.conn.clone();
                let key = self.keys.bucket_key(b, "users");
                async move {
                    redis::cmd("ZCOUNT")
                        .arg(&key)
                        .arg(format!("({}", now_ms()))
                        .arg("+inf")
                        .query_async::<usize>(&mut conn)
                        .await
                }
            })
            .collect();
        Box::pin(async move {
            let counts = futures_util::future::try_join_all(counts).await?;
            Ok(counts.into_iter().sum())
        })
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>> {
        let mut conn = self.conn.clone();
        let key = self.keys.node_key("nodes");
        let keys = self.keys.clone();
        Box::pin(async move {
            let ids: Vec<String> = alive(&key).query_async(&mut conn).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids
                .iter()
                .map(|id| keys.node_key(&format!("node:{id}")))
                .collect();
            let infos: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            Ok(infos
                .into_iter()
                .flatten()
                .filter_map(|j| serde_json::from_str(&j).ok())
                .collect())
        })
    }

    fn rooms(&self, namespace: &str) -> BoxFuture<Result<RoomCounts>> {
        let nodes = self.nodes();
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let namespace = namespace.to_owned();
        Box::pin(async move {
            let mut totals: HashMap<String, usize> = HashMap::new();
            for node in nodes.await? {
                let json: Option<String> = redis::cmd("HGET")
                    .arg(keys.node_key(&format!("rooms:{}", node.id)))
                    .arg(&namespace)
                    .query_async(&mut conn)
                    .await?;
                let rooms: RoomCounts = json
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default();
                for (room, n) in rooms {
                    *totals.entry(room).or_default() += n;
                }
            }
            let mut rooms: RoomCounts = totals.into_iter().collect();
            rooms.sort();
            Ok(rooms)
        })
    }

    fn namespaces(&self) -> BoxFuture<Result<Vec<String>>> {
        let nodes = self.nodes();
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        Box::pin(async move {
            let mut names = std::collections::BTreeSet::new();
            for node in nodes.await? {
                let found: Vec<String> = redis::cmd("HKEYS")
                    .arg(keys.node_key(&format!("rooms:{}", node.id)))
                    .query_async(&mut conn)
                    .await?;
                names.extend(found);
            }
            Ok(names.into_iter().collect())
        })
    }
}

impl RedisPresence {
    /// The node's own entries, one pipeline on the node keys' slot: its JSON, its
    /// expiry in the nodes index (and the index swept of dead nodes), its room counts.
    fn node_beat(&self, beat: &Heartbeat, now: u64, expires: u64) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let ttl_ms = beat.ttl.as_millis() as u64;
        let node_json = serde_json::to_string(&beat.node).unwrap_or_default();
        pipe.cmd("SET")
            .arg(self.keys.node_key(&format!("node:{}", beat.node.id)))
            .arg(node_json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        let nodes = self.keys.node_key("nodes");
        pipe.cmd("ZADD")
            .arg(&nodes)
            .arg(expires)
            .arg(&beat.node.id)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&nodes)
            .arg("-inf")
            .arg(now)
            .ignore();
        let rooms_key = self.keys.node_key(&format!("rooms:{}", beat.node.id));
        // Each namespace's field is overwritten, never deleted first: a reader between
        // two commands of this (non-transactional) pipeline never sees a node without
        // rooms. A node's namespaces are fixed for its lifetime, so no field goes stale.
        for (nsp, rooms) in &beat.rooms {
            pipe.cmd("HSET")
                .arg(&rooms_key)
                .arg(nsp)
                .arg(serde_json::to_string(rooms).unwrap_or_default())
                .ignore();
        }
        pipe.cmd("PEXPIRE").arg(&rooms_key).arg(ttl_ms).ignore();
        pipe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(users: &[&str], next: Option<&str>) -> (Vec<String>, Option<String>) {
        (
            users.iter().map(|u| u.to_string()).collect(),
            next.map(str::to_owned),
        )
    }

    /// Buckets' pages merge in name order, never past a bucket that stopped early.
    #[test]
    fn bucket_pages_merge_in_order_up_to_the_earliest_stop() {
        let merged = merge_pages(vec![page(&["a", "d"], None), page(&["b", "c"], None)], 3);
        assert_eq!(merged.users, vec!["a", "b", "c"]);
        assert_eq!(merged.next_cursor.as_deref(), Some("c"));

        let merged = merge_pages(vec![page(&["a", "d"], None), page(&["b"], Some("c"))], 3);
        assert_eq!(
            merged.users,
            vec!["a", "b"],
            "d is after where bucket 2 stopped"
        );
        assert_eq!(merged.next_cursor.as_deref(), Some("c"));

        let merged = merge_pages(vec![page(&["a"], None), page(&[], None)], 3);
        assert_eq!((merged.users.len(), merged.next_cursor), (1, None));
    }
}
