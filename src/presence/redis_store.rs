//! Presence in Redis: the layout of the module docs, written by Lua scripts so each
//! change is atomic, and read without `KEYS`. On a Redis Cluster the same layout is
//! spread over hash-tagged buckets ([`PresenceKeys`]): each script runs on one bucket,
//! and reads of every user (count, pages) visit every bucket.

use super::keys::PresenceKeys;
use super::{
    now_ms, BeatOutcome, Change, ChangeKind, Heartbeat, NodeInfo, PresenceStore, Result,
    RoomCounts, SocketPresence, UsersPage,
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
#[derive(Clone)]
pub struct RedisPresence {
    conn: RedisConn,
    keys: PresenceKeys,
    /// How long a socket entry lives without a rewrite ([`super::LEASE_BEATS`]).
    lease: Duration,
}

/// Applies a batch of changes in order. KEYS: users, sockets, names. ARGV: now, expiry of
/// a new entry, node id, user key prefix, then `op, user, sid` triples (`+` connect,
/// `-` disconnect). A disconnect removes the socket only if the sockets hash names this
/// node (or nothing): a recovered session keeps its id on its new node. Returns one 0/1
/// per change: 1 when a connect was the user's first live socket, or a disconnect took
/// the user off the online list (0 if a sweep had already done so and reported it).
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
  elseif redis.call('HGET', KEYS[2], sid) == ARGV[3]
      or redis.call('HEXISTS', KEYS[2], sid) == 0 then
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
  else
    out[#out + 1] = 0
  end
end
return out
"#;

/// A full rewrite of this node's live sockets. KEYS: users, sockets, names.
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

/// Sockets per REFRESH call, index write or sweep step: under half a millisecond of
/// Redis time each, so other clients' commands (room messages) interleave with them.
const CHUNK: usize = 500;

/// A node's registration, once per heartbeat. KEYS: nodes, indexed, this node's index.
/// ARGV: node id, new expiry, now. Returns `{state, dead}`: state 1 registered, 0 newly
/// registered (the store has none of its sockets: Redis restarted empty, first beat, or
/// it was swept), -1 declared dead with sockets still indexed (its registration expired:
/// it stays dead until that index is swept, so no sweeper removes what it writes again).
/// `dead`: the indexed nodes whose registration expired, to sweep. Nodes of earlier
/// versions (not indexed) are dropped from `nodes` once expired, as they did themselves.
const REGISTER: &str = r#"
local id, now = ARGV[1], tonumber(ARGV[3])
local score = redis.call('ZSCORE', KEYS[1], id)
local state = 0
if score and tonumber(score) > now then
  state = 1
elseif redis.call('EXISTS', KEYS[3]) == 1 and redis.call('SISMEMBER', KEYS[2], id) == 1 then
  state = -1
end
if state ~= -1 then
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('SADD', KEYS[2], id)
end
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local s = redis.call('ZSCORE', KEYS[1], node)
  if not s or tonumber(s) <= now then dead[#dead + 1] = node end
end
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  if redis.call('SISMEMBER', KEYS[2], node) == 0 then redis.call('ZREM', KEYS[1], node) end
end
return {state, dead}
"#;

/// Ends the sweep of a dead node whose index is empty: it leaves `nodes` and `indexed`,
/// unless it registered again meanwhile. KEYS: nodes, indexed, its index. ARGV: node
/// id, now.
const FORGET: &str = r#"
if redis.call('SCARD', KEYS[3]) > 0 then return 0 end
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"#;

/// Sweep steps (of [`CHUNK`] sockets) per dead node per heartbeat: a dead node of
/// 20,000 sockets is swept by one survivor in two beats, by several in one.
const SWEEP_STEPS: usize = 20;

/// A registration state [`REGISTER`] returns.
const DECLARED_DEAD: i64 = -1;
const NEWLY_REGISTERED: i64 = 0;

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
static REGISTER_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REGISTER));
static FORGET_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(FORGET));

impl RedisPresence {
    /// Presence under key prefix `prefix` (e.g. `rt:presence`), for nodes beating
    /// every `heartbeat`; bucketed when `conn` is on a Redis Cluster.
    pub fn new(conn: RedisConn, prefix: &str, heartbeat: Duration) -> Self {
        let cluster = matches!(conn.target(), RedisTarget::Cluster(_));
        RedisPresence {
            conn,
            keys: PresenceKeys::new(prefix, cluster),
            lease: heartbeat * super::LEASE_BEATS,
        }
    }

    /// The index of `node`'s sockets: `<sid> <user>` members.
    fn index_key(&self, node: &str) -> String {
        self.keys.node_key(&format!("node-sockets:{node}"))
    }

    /// A script on the node keys: KEYS nodes, indexed, `node`'s index.
    fn on_nodes(
        &self,
        script: &'static redis::Script,
        node: &str,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.node_key("nodes"))
            .key(self.keys.node_key("indexed"))
            .key(self.index_key(node));
        inv
    }

    /// The APPLY calls for `changes` of sockets on `node`: one per bucket, each with the
    /// indexes of its changes in `changes`.
    fn apply_calls(
        &self,
        node: &str,
        changes: &[Change],
    ) -> Vec<(Vec<usize>, redis::ScriptInvocation<'static>)> {
        let now = now_ms();
        let mut by_bucket: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, c) in changes.iter().enumerate() {
            by_bucket
                .entry(self.keys.bucket_of(&c.user))
                .or_default()
                .push(i);
        }
        by_bucket
            .into_iter()
            .map(|(bucket, indexes)| {
                let mut inv = self.on_bucket(&APPLY_SCRIPT, bucket);
                inv.arg(now)
                    .arg(now + self.lease.as_millis() as u64)
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
            .collect()
    }

    /// Runs [`Self::apply_calls`]; the flips come back in the order of the changes.
    async fn run_apply(
        conn: &mut RedisConn,
        calls: Vec<(Vec<usize>, redis::ScriptInvocation<'static>)>,
        n: usize,
    ) -> Result<Vec<bool>> {
        let mut out = vec![false; n];
        for (indexes, inv) in calls {
            let flips: Vec<i64> = inv.invoke_async(conn).await?;
            for (i, f) in indexes.into_iter().zip(flips) {
                out[i] = f == 1;
            }
        }
        Ok(out)
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
        let calls = self.apply_calls(node, changes);
        let index = self.index_key(node);
        let member = |c: &Change| format!("{} {}", c.sid, c.user);
        let (added, removed): (Vec<&Change>, Vec<&Change>) = changes
            .iter()
            .partition(|c| c.kind == ChangeKind::Connected);
        let mut pipe = redis::pipe();
        if !added.is_empty() {
            pipe.cmd("SADD")
                .arg(&index)
                .arg(added.into_iter().map(member).collect::<Vec<_>>())
                .ignore();
        }
        if !removed.is_empty() {
            pipe.cmd("SREM")
                .arg(&index)
                .arg(removed.into_iter().map(member).collect::<Vec<_>>())
                .ignore();
        }
        let mut conn = self.conn.clone();
        let n = changes.len();
        Box::pin(async move {
            let flips = Self::run_apply(&mut conn, calls, n).await?;
            pipe.query_async::<()>(&mut conn).await?;
            Ok(flips)
        })
    }

    fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<BeatOutcome>> {
        let me = self.clone();
        Box::pin(async move { me.beat(beat).await })
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
    /// One heartbeat: the registration, the sockets when the beat carries them, the
    /// node's JSON and rooms, then the sweeps of dead nodes and of expired entries.
    async fn beat(self, beat: Heartbeat) -> Result<BeatOutcome> {
        let mut conn = self.conn.clone();
        let id = beat.node.id.clone();
        let now = now_ms();
        let expires = now + beat.ttl.as_millis() as u64;
        let (state, dead): (i64, Vec<String>) = self
            .on_nodes(&REGISTER_SCRIPT, &id)
            .arg(&id)
            .arg(expires)
            .arg(now)
            .invoke_async(&mut conn)
            .await?;
        let mut outcome = BeatOutcome::default();
        if state != DECLARED_DEAD {
            match &beat.sockets {
                Some(sockets) => outcome.gone = self.rewrite(&id, sockets, &mut conn).await?,
                None => outcome.wants_sockets = state == NEWLY_REGISTERED,
            }
            self.node_beat(&beat).query_async::<()>(&mut conn).await?;
        }
        for node in dead {
            outcome
                .gone
                .extend(self.sweep_node(&node, &mut conn).await?);
        }
        outcome
            .gone
            .extend(self.sweep_expired(now, &mut conn).await?);
        Ok(outcome)
    }

    /// Rewrites every socket of `node` with a fresh lease, and its index: built aside
    /// and renamed over the old one, so a sweeper never reads it half-written. Sockets
    /// the old index lists and the node no longer has (their disconnect was lost) are
    /// removed; returns the users that left with them.
    async fn rewrite(
        &self,
        node: &str,
        sockets: &[(String, String)],
        conn: &mut RedisConn,
    ) -> Result<Vec<String>> {
        let gone = self.remove_departed(node, sockets, conn).await?;
        let expires = now_ms() + self.lease.as_millis() as u64;
        // Grouped by bucket, and by user within it (REFRESH expects that order).
        let mut by_bucket: BTreeMap<u16, Vec<&(String, String)>> = BTreeMap::new();
        for pair in sockets {
            by_bucket
                .entry(self.keys.bucket_of(&pair.0))
                .or_default()
                .push(pair);
        }
        for (bucket, pairs) in by_bucket {
            for chunk in pairs.chunks(CHUNK) {
                let mut inv = self.on_bucket(&REFRESH_SCRIPT, bucket);
                inv.arg(expires)
                    .arg(node)
                    .arg(self.keys.user_prefix(bucket));
                for (user, sid) in chunk {
                    inv.arg(user).arg(sid);
                }
                inv.invoke_async::<()>(conn).await?;
            }
        }
        let index = self.index_key(node);
        let next = format!("{index}:next");
        let mut pipe = redis::pipe();
        pipe.del(&next).ignore();
        for chunk in sockets.chunks(CHUNK) {
            let members: Vec<String> = chunk.iter().map(|(u, s)| format!("{s} {u}")).collect();
            pipe.cmd("SADD").arg(&next).arg(members).ignore();
        }
        match sockets.is_empty() {
            true => pipe.del(&index).ignore(),
            false => pipe.rename(&next, &index).ignore(),
        };
        pipe.query_async::<()>(conn).await?;
        Ok(gone)
    }

    /// Removes the sockets `node`'s index lists but `sockets` does not; returns the users
    /// left with none.
    async fn remove_departed(
        &self,
        node: &str,
        sockets: &[(String, String)],
        conn: &mut RedisConn,
    ) -> Result<Vec<String>> {
        let indexed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.index_key(node))
            .query_async(conn)
            .await?;
        let live: std::collections::HashSet<&str> =
            sockets.iter().map(|(_, sid)| sid.as_str()).collect();
        let departed: Vec<&String> = indexed
            .iter()
            .filter(|m| m.split_once(' ').is_none_or(|(sid, _)| !live.contains(sid)))
            .collect();
        let mut gone = Vec::new();
        for chunk in departed.chunks(CHUNK) {
            gone.extend(self.remove_indexed(node, chunk, conn).await?);
        }
        Ok(gone)
    }

    /// Removes the sockets of index `members` (`<sid> <user>`) of `node`, each only if it
    /// is still that node's; returns the users left with none.
    async fn remove_indexed(
        &self,
        node: &str,
        members: &[impl AsRef<str>],
        conn: &mut RedisConn,
    ) -> Result<Vec<String>> {
        let changes: Vec<Change> = members
            .iter()
            .filter_map(|m| m.as_ref().split_once(' '))
            .map(|(sid, user)| Change {
                kind: ChangeKind::Disconnected,
                user: user.to_owned(),
                sid: sid.to_owned(),
            })
            .collect();
        let flips = Self::run_apply(conn, self.apply_calls(node, &changes), changes.len()).await?;
        Ok(changes
            .into_iter()
            .zip(flips)
            .filter(|(_, flipped)| *flipped)
            .map(|(c, _)| c.user)
            .collect())
    }

    /// Removes a dead node's sockets, a step at a time (each socket only if it is still
    /// that node's); returns the users left with none. When the index is empty the node
    /// is forgotten. Several nodes may sweep the same dead node: each removal is atomic,
    /// so every user is returned once.
    async fn sweep_node(&self, node: &str, conn: &mut RedisConn) -> Result<Vec<String>> {
        let index = self.index_key(node);
        let mut gone = Vec::new();
        for _ in 0..SWEEP_STEPS {
            let members: Vec<String> = redis::cmd("SRANDMEMBER")
                .arg(&index)
                .arg(CHUNK)
                .query_async(conn)
                .await?;
            if members.is_empty() {
                self.on_nodes(&FORGET_SCRIPT, node)
                    .arg(node)
                    .arg(now_ms())
                    .invoke_async::<i64>(conn)
                    .await?;
                break;
            }
            gone.extend(self.remove_indexed(node, &members, conn).await?);
            redis::cmd("SREM")
                .arg(&index)
                .arg(&members)
                .query_async::<()>(conn)
                .await?;
        }
        Ok(gone)
    }

    /// Sweeps entries whose lease expired — left by nodes of earlier versions, or
    /// written while an index write failed — on every bucket.
    async fn sweep_expired(&self, now: u64, conn: &mut RedisConn) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for bucket in self.keys.buckets() {
            let mut inv = self.on_bucket(&SWEEP_SCRIPT, bucket);
            inv.arg(now).arg(self.keys.user_prefix(bucket)).arg(1000);
            gone.extend(inv.invoke_async::<Vec<String>>(conn).await?);
        }
        Ok(gone)
    }

    /// The node's own entries, one pipeline on the node keys' slot: its JSON and its
    /// room counts (its registration is [`REGISTER`]'s).
    fn node_beat(&self, beat: &Heartbeat) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let ttl_ms = beat.ttl.as_millis() as u64;
        let node_json = serde_json::to_string(&beat.node).unwrap_or_default();
        pipe.cmd("SET")
            .arg(self.keys.node_key(&format!("node:{}", beat.node.id)))
            .arg(node_json)
            .arg("PX")
            .arg(ttl_ms)
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
