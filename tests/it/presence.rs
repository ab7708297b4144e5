//! Presence in a real `redis-server`: users counted once however many tabs, a dead
//! node's users swept, and what a heartbeat costs Redis — the same for thousands of
//! sockets as for none, with full rewrites when Redis lost the entries, periodically,
//! and while a node of an earlier version is alive.

use crate::common::raw::quiet_options;
use crate::common::redis::RedisServer;
use realtime::presence::{Presence, RedisPresence, FULL_REFRESH_EVERY};
use realtime::server::Io;
use std::sync::Arc;
use std::time::Duration;

async fn presence_node(redis: &RedisServer, id: &str, heartbeat: Duration) -> Arc<Presence> {
    let conn = realtime::redis_client::RedisArgs::at_url(redis.url())
        .connect()
        .await
        .unwrap()
        .unwrap();
    let store = RedisPresence::new(conn, "test:presence", heartbeat);
    Presence::new(Arc::new(store), id, "127.0.0.1:0", heartbeat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_users_not_tabs_across_nodes() {
    let redis = RedisServer::start();
    let hb = Duration::from_secs(5);
    let n1 = presence_node(&redis, "n1", hb).await;
    let n2 = presence_node(&redis, "n2", hb).await;
    assert!(n1.connected("u1", "s1").await.unwrap(), "first tab");
    assert!(
        !n2.connected("u1", "s2").await.unwrap(),
        "second tab, other node"
    );
    assert!(n1.connected("u2", "s3").await.unwrap());
    assert!(n2.is_online("u1").await.unwrap());
    assert_eq!(n2.online_count().await.unwrap(), 2);
    let mut sockets = n1.sockets_of("u1").await.unwrap();
    sockets.sort_by(|a, b| a.sid.cmp(&b.sid));
    let pairs: Vec<(&str, &str)> = sockets
        .iter()
        .map(|s| (s.sid.as_str(), s.node.as_str()))
        .collect();
    assert_eq!(pairs, [("s1", "n1"), ("s2", "n2")]);
    let page = n1.online_users(None, 1).await.unwrap();
    assert_eq!(page.users, ["u1"]);
    let rest = n1
        .online_users(page.next_cursor.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!(rest.users, ["u2"]);
    assert_eq!(rest.next_cursor, None);
    assert!(!n1.disconnected("u1", "s1").await.unwrap(), "one tab left");
    assert!(n2.disconnected("u1", "s2").await.unwrap(), "last tab");
    assert!(!n1.is_online("u1").await.unwrap());
    assert_eq!(n1.online_count().await.unwrap(), 1);

    // Many connects and disconnects from two nodes at once keep the count exact.
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let p = if i % 2 == 0 { n1.clone() } else { n2.clone() };
        tasks.push(tokio::spawn(async move {
            let (user, sid) = (format!("m{}", i % 50), format!("x{i}"));
            p.connected(&user, &sid).await.unwrap();
            if i % 3 != 0 {
                p.disconnected(&user, &sid).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Users m0..m49 keep a socket exactly when some i ≡ user (mod 50) has i % 3 == 0.
    let mut expected: Vec<String> = (0..50u32)
        .filter(|u| (0..1000u32).any(|i| i % 50 == *u && i % 3 == 0))
        .map(|u| format!("m{u}"))
        .collect();
    expected.push("u2".into());
    expected.sort();
    assert_eq!(n1.online_count().await.unwrap(), expected.len());
    // Walking the pages lists each of them once, in id order.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = n2.online_users(cursor.as_deref(), 7).await.unwrap();
        walked.extend(page.users);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(walked, expected);
}

/// A node's registration expires after two heartbeats; the next heartbeat of a survivor
/// sweeps its sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_s_users_vanish_within_three_heartbeats() {
    let redis = RedisServer::start();
    let hb = Duration::from_millis(300);
    let survivor = beating_node(&redis, "alive", hb).await;
    let doomed = beating_node(&redis, "doomed", hb).await;
    doomed.connected("gone", "s1").await.unwrap();
    survivor.connected("stays", "s2").await.unwrap();
    tokio::time::sleep(hb * 3).await; // heartbeats keep both alive past the first TTL
    assert!(survivor.is_online("gone").await.unwrap());
    let mut ids: Vec<String> = survivor
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["alive", "doomed"]);

    // kill -9: the node stops without a word (its heartbeat task ends with it).
    drop(doomed);
    offline_within_three_beats(&survivor, "gone", hb).await;
    assert!(survivor.is_online("stays").await.unwrap());
    // Listed or not, the dead node's user is gone, swept or not yet.
    assert_eq!(
        survivor.online_users(None, 10).await.unwrap().users,
        ["stays"]
    );
    let ids: Vec<String> = survivor
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["alive"]);
    assert_eq!(survivor.online_count().await.unwrap(), 1);
}

/// A node whose heartbeat runs on its own, every `hb`.
async fn beating_node(redis: &RedisServer, id: &str, hb: Duration) -> Arc<Presence> {
    let node = presence_node(redis, id, hb).await;
    node.attach(Io::builder(quiet_options()).build());
    node
}

/// How many times Redis has run `command` (scripts' calls included), from
/// `INFO commandstats`.
async fn calls_of(redis: &RedisServer, command: &str) -> u64 {
    let info = match redis.query(&["INFO", "commandstats"]).await.unwrap() {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO answered {other:?}"),
    };
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// A node with `n` sockets of `n` users, written to Redis, its first (full) beat done.
async fn node_with_sockets(redis: &RedisServer, id: &str, n: usize) -> Arc<Presence> {
    let node = presence_node(redis, id, Duration::from_secs(3600)).await;
    let connects = (0..n).map(|i| {
        let node = node.clone();
        async move {
            node.connected(&format!("u{i}"), &format!("{id}-s{i}"))
                .await
        }
    });
    for r in futures_util::future::join_all(connects).await {
        r.unwrap();
    }
    node.beat().await.unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_costs_redis_the_same_for_two_thousand_sockets_as_for_none() {
    let redis = RedisServer::start();
    let node = node_with_sockets(&redis, "big", 2000).await;
    let before = calls_of(&redis, "zadd").await;
    for _ in 0..5 {
        node.beat().await.unwrap();
    }
    let per_beat = (calls_of(&redis, "zadd").await - before) as f64 / 5.0;
    assert!(per_beat <= 2.0, "{per_beat} ZADD per ordinary beat");
    assert_eq!(node.online_count().await.unwrap(), 2000);

    // Every FULL_REFRESH_EVERY beats, one rewrites every socket (a lost entry comes
    // back, an index that missed a write is rebuilt).
    let before = calls_of(&redis, "zadd").await;
    for _ in 5..FULL_REFRESH_EVERY {
        node.beat().await.unwrap();
    }
    let rewrites = calls_of(&redis, "zadd").await - before;
    assert!(
        rewrites >= 2000,
        "{rewrites} ZADD over a full refresh period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_everything_has_the_sockets_back_after_one_beat() {
    let redis = RedisServer::start();
    let node = node_with_sockets(&redis, "n1", 50).await;
    redis.query(&["FLUSHALL"]).await.unwrap();
    assert!(!node.is_online("u7").await.unwrap());
    node.beat().await.unwrap();
    assert_eq!(node.online_count().await.unwrap(), 50);
    assert_eq!(sockets_at(&node, "u7").await, ["n1-s7@n1"]);
    assert_eq!(node.nodes().await.unwrap().len(), 1);
}

/// A node that stalled past its registration is swept like a dead one; its next beat
/// writes its sockets again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_swept_after_a_stall_comes_back_whole() {
    let redis = RedisServer::start();
    let hb = Duration::from_millis(300);
    let survivor = beating_node(&redis, "alive", hb).await;
    let stalled = presence_node(&redis, "stalled", hb).await;
    stalled.connected("paul", "p1").await.unwrap();
    stalled.beat().await.unwrap();
    assert!(survivor.is_online("paul").await.unwrap());
    offline_within_three_beats(&survivor, "paul", hb).await;
    stalled.beat().await.unwrap();
    assert!(survivor.is_online("paul").await.unwrap());
    let ids: Vec<String> = survivor
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert!(ids.contains(&"stalled".to_owned()), "{ids:?}");
}

/// A recovered session keeps its socket id on its new node: sweeping the old node must
/// not take it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_a_dead_node_spares_its_sessions_recovered_elsewhere() {
    let redis = RedisServer::start();
    let hb = Duration::from_millis(300);
    let old = presence_node(&redis, "old", hb).await;
    old.connected("rita", "r1").await.unwrap();
    old.connected("sam", "s1").await.unwrap();
    old.beat().await.unwrap();
    let new = beating_node(&redis, "new", hb).await;
    new.connected("rita", "r1").await.unwrap();
    drop(old);
    offline_within_three_beats(&new, "sam", hb).await;
    assert_eq!(sockets_at(&new, "rita").await, ["r1@new"]);
}

/// Nodes of earlier versions refresh by expiry and shorten the keys they share with
/// ours: while one is alive, every beat is a full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_node_of_an_earlier_version_lives_every_beat_rewrites() {
    let redis = RedisServer::start();
    let node = node_with_sockets(&redis, "n1", 100).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let until = (now.as_millis() + 3_600_000).to_string();
    let legacy =
        r#"{"id":"old","address":"127.0.0.1:1","version":"0.0.9","connections":0,"started_at":1}"#;
    redis
        .query(&["SET", "test:presence:node:old", legacy])
        .await
        .unwrap();
    redis
        .query(&["ZADD", "test:presence:nodes", &until, "old"])
        .await
        .unwrap();
    node.beat().await.unwrap(); // sees the legacy node
    let before = calls_of(&redis, "zadd").await;
    node.beat().await.unwrap();
    let full = calls_of(&redis, "zadd").await - before;
    assert!(full >= 100, "{full} ZADD with a legacy peer alive");

    redis
        .query(&["ZREM", "test:presence:nodes", "old"])
        .await
        .unwrap();
    node.beat().await.unwrap(); // sees it gone
    let before = calls_of(&redis, "zadd").await;
    node.beat().await.unwrap();
    let ordinary = calls_of(&redis, "zadd").await - before;
    assert!(ordinary <= 2, "{ordinary} ZADD once it is gone");
}

/// A disconnect the store never got (Redis was away) leaves an entry the node no longer
/// has; the next full rewrite removes it, and says the user left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rewrite_removes_sockets_whose_disconnect_was_lost() {
    let redis = RedisServer::start();
    let node = node_with_sockets(&redis, "n1", 3).await;
    // What n1 wrote before it lost track of the socket: the same node id, another memory.
    let before_restart = presence_node(&redis, "n1", Duration::from_secs(3600)).await;
    before_restart.connected("ghost", "g1").await.unwrap();
    assert!(node.is_online("ghost").await.unwrap());
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = heard.clone();
    node.on_change(Arc::new(move |user, online| {
        h.lock().unwrap().push((user, online))
    }));
    for _ in 0..FULL_REFRESH_EVERY {
        node.beat().await.unwrap();
    }
    assert!(!node.is_online("ghost").await.unwrap());
    assert_eq!(node.online_count().await.unwrap(), 3);
    assert_eq!(*heard.lock().unwrap(), [("ghost".to_owned(), false)]);
}

/// Waits until `reader` sees `user` offline, failing past three heartbeats (the
/// registration's two and the survivor's beat that sweeps it) and a margin.
async fn offline_within_three_beats(reader: &Presence, user: &str, hb: Duration) {
    let since = std::time::Instant::now();
    while reader.is_online(user).await.unwrap() {
        assert!(
            since.elapsed() < hb * 3 + Duration::from_millis(200),
            "{user} still online after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `<socket id>@<node>` of every socket of `user`.
async fn sockets_at(reader: &Presence, user: &str) -> Vec<String> {
    let sockets = reader.sockets_of(user).await.unwrap();
    sockets
        .into_iter()
        .map(|s| format!("{}@{}", s.sid, s.node))
        .collect()
}
