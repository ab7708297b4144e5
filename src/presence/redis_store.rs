//! Presence in Redis: the layout of the module docs, written by Lua scripts so each
//! change is atomic, and read without `KEYS`.

use super::{
    now_ms, Change, ChangeKind, Heartbeat, NodeInfo, PresenceStore, Result, RoomCounts,
    SocketPresence, UsersPage,
};
use crate::redis_client::RedisConn;
use crate::server::BoxFuture;
use std::collections::HashMap;
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
    prefix: String,
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
    redis.call('ZREM', KEYS[4], u)
    redis.call('DEL', k)
    table.insert(gone, u)
  else
    redis.call('ZADD', KEYS[1], top[2], u)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return gone
"#;

static APPLY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPLY));
static REFRESH_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REFRESH));
static SWEEP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SWEEP));

impl RedisPresence {
    /// Presence under key prefix `prefix` (e.g. `rt:presence`), for nodes beating
    /// every `heartbeat`.
    pub fn new(conn: RedisConn, prefix: &str, heartbeat: Duration) -> Self {
        RedisPresence {
            conn,
            prefix: prefix.to_owned(),
            ttl: heartbeat * 2,
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }
}

impl PresenceStore for RedisPresence {
    fn apply(&self, node: &str, changes: &[Change]) -> BoxFuture<Result<Vec<bool>>> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let mut inv = APPLY_SCRIPT.prepare_invoke();
        inv.key(self.key("users"))
            .key(self.key("sockets"))
            .key(self.key("names"))
            .arg(now)
            .arg(now + self.ttl.as_millis() as u64)
            .arg(node)
            .arg(format!("{}:user:", self.prefix));
        for c in changes {
            let op = match c.kind {
                ChangeKind::Connected => "+",
                ChangeKind::Disconnected => "-",
            };
            inv.arg(op).arg(&c.user).arg(&c.sid);
        }
        Box::pin(async move {
            let flips: Vec<i64> = inv.invoke_async(&mut conn).await?;
            Ok(flips.into_iter().map(|f| f == 1).collect())
        })
    }

    fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<Vec<String>>> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let expires = now + beat.ttl.as_millis() as u64;
        let refreshes: Vec<redis::ScriptInvocation<'static>> = beat
            .sockets
            .chunks(REFRESH_CHUNK)
            .map(|chunk| {
                let mut inv = REFRESH_SCRIPT.prepare_invoke();
                inv.key(self.key("users"))
                    .key(self.key("sockets"))
                    .key(self.key("names"))
                    .arg(expires)
                    .arg(&beat.node.id)
                    .arg(format!("{}:user:", self.prefix));
                for (user, sid) in chunk {
                    inv.arg(user).arg(sid);
                }
                inv
            })
            .collect();
        let mut pipe = redis::pipe();
        let node_key = self.key(&format!("node:{}", beat.node.id));
        let node_json = serde_json::to_string(&beat.node).unwrap_or_default();
        pipe.cmd("SET")
            .arg(&node_key)
            .arg(node_json)
            .arg("PX")
            .arg(beat.ttl.as_millis() as u64)
            .ignore();
        pipe.cmd("ZADD")
            .arg(self.key("nodes"))
            .arg(expires)
            .arg(&beat.node.id)
            .ignore();
        let rooms_key = self.key(&format!("rooms:{}", beat.node.id));
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
        pipe.cmd("PEXPIRE")
            .arg(&rooms_key)
            .arg(beat.ttl.as_millis() as u64)
            .ignore();
        let mut sweep = SWEEP_SCRIPT.prepare_invoke();
        sweep
            .key(self.key("users"))
            .key(self.key("sockets"))
            .key(self.key("nodes"))
            .key(self.key("names"))
            .arg(now)
            .arg(format!("{}:user:", self.prefix))
            .arg(1000);
        Box::pin(async move {
            for refresh in refreshes {
                refresh.invoke_async::<()>(&mut conn).await?;
            }
            pipe.query_async::<()>(&mut conn).await?;
            Ok(sweep.invoke_async::<Vec<String>>(&mut conn).await?)
        })
    }

    fn is_online(&self, user: &str) -> BoxFuture<Result<bool>> {
        let mut conn = self.conn.clone();
        let key = self.key("users");
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
        let key = self.user_key(user);
        let sockets_key = self.key("sockets");
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
        let mut conn = self.conn.clone();
        let names = self.key("names");
        let users = self.key("users");
        let mut from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        Box::pin(async move {
            let mut page: Vec<String> = Vec::new();
            let mut last_seen = None;
            let mut exhausted = false;
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
                    exhausted = true;
                    break;
                };
                from = format!("({last}");
                last_seen = Some(last.clone());
                let expiries: Vec<Option<f64>> = redis::cmd("ZMSCORE")
                    .arg(&users)
                    .arg(&candidates)
                    .query_async(&mut conn)
                    .await?;
                let now = now_ms() as f64;
                exhausted = candidates.len() < want;
                page.extend(
                    candidates
                        .into_iter()
                        .zip(expiries)
                        .filter(|(_, e)| e.is_some_and(|e| e > now))
                        .map(|(u, _)| u),
                );
                if exhausted {
                    break;
                }
            }
            // More may follow unless the index ran out: go on after the last name read
            // (returned or skipped).
            let next_cursor = if exhausted { None } else { last_seen };
            Ok(UsersPage {
                users: page,
                next_cursor,
            })
        })
    }

    fn online_count(&self) -> BoxFuture<Result<usize>> {
        let mut conn = self.conn.clone();
        let key = self.key("users");
        Box::pin(async move {
            Ok(redis::cmd("ZCOUNT")
                .arg(&key)
                .arg(format!("({}", now_ms()))
                .arg("+inf")
                .query_async(&mut conn)
                .await?)
        })
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>> {
        let mut conn = self.conn.clone();
        let key = self.key("nodes");
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let ids: Vec<String> = alive(&key).query_async(&mut conn).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}:node:{id}")).collect();
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
        let prefix = self.prefix.clone();
        let namespace = namespace.to_owned();
        Box::pin(async move {
            let mut totals: HashMap<String, usize> = HashMap::new();
            for node in nodes.await? {
                let json: Option<String> = redis::cmd("HGET")
                    .arg(format!("{prefix}:rooms:{}", node.id))
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
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let mut names = std::collections::BTreeSet::new();
            for node in nodes.await? {
                let keys: Vec<String> = redis::cmd("HKEYS")
                    .arg(format!("{prefix}:rooms:{}", node.id))
                    .query_async(&mut conn)
                    .await?;
                names.extend(keys);
            }
            Ok(names.into_iter().collect())
        })
    }
}
