//! A real Redis Cluster on loopback: three masters, each with a replica, made with
//! `redis-cli --cluster create` (what operators run), with a node timeout of 1 s so a
//! dead master is replaced by its replica within a few seconds. Stopped when dropped.

use super::redis::RedisServer;
use realtime::redis_client::key_slot;
use std::ops::RangeInclusive;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RedisCluster {
    /// Masters first (`--cluster create` makes the first three masters), then replicas.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, joins them, and waits until every node reports the cluster ok.
    pub async fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_cluster_node()).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): install it with `apt-get install -y redis-tools` (scripts/test does this)")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(20)).await;
        cluster.wait_replicas_in_sync(Duration::from_secs(20)).await;
        cluster
    }

    /// `host:port,…` of every node, for `--redis-cluster-nodes`.
    pub fn addresses(&self) -> String {
        let list: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        list.join(",")
    }

    /// The node serving `key`'s slot as master now.
    pub async fn master_of(&self, key: &str) -> usize {
        let slot = key_slot(key);
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_stopped() && master_ranges(node).await.iter().any(|r| r.contains(&slot)) {
                return i;
            }
        }
        panic!("no live node serves slot {slot} ({key:?}) as master");
    }

    /// Keys among `candidates` whose slot node `i` serves as master now.
    pub async fn keys_on(&self, i: usize, candidates: impl Iterator<Item = String>) -> Vec<String> {
        let ranges = master_ranges(&self.nodes[i]).await;
        candidates
            .filter(|k| ranges.iter().any(|r| r.contains(&key_slot(k))))
            .collect()
    }

    /// Kills node `i` (a master's crash).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Until every replica's link to its master is up (`INFO replication`): a replica
    /// that never synced refuses to take over ("disconnected from master for longer
    /// than allowed").
    async fn wait_replicas_in_sync(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut synced = 0;
            for node in &self.nodes {
                if let Ok(info) = node.query(&["INFO", "replication"]).await {
                    let info = text(&info);
                    if info.contains("role:master") || info.contains("master_link_status:up") {
                        synced += 1;
                    }
                }
            }
            if synced == self.nodes.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster's replicas did not sync within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Until every live node says `cluster_state:ok`, or panics after `within`.
    pub async fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut all_ok = true;
            for node in &self.nodes {
                match node.query(&["CLUSTER", "INFO"]).await {
                    Ok(info) if text(&info).contains("cluster_state:ok") => {}
                    Ok(_) => all_ok = false,
                    Err(_) if node.is_stopped() => {}
                    Err(_) => all_ok = false,
                }
            }
            if all_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not reach cluster_state:ok within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The slot ranges `node` serves as master, as it sees the cluster (`CLUSTER SLOTS`:
/// ranges, each with its master's address first); none when it does not answer.
async fn master_ranges(node: &RedisServer) -> Vec<RangeInclusive<u16>> {
    let Ok(redis::Value::Array(all)) = node.query(&["CLUSTER", "SLOTS"]).await else {
        return Vec::new();
    };
    let mut mine = Vec::new();
    for range in all {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        if let (
            Some(redis::Value::Int(lo)),
            Some(redis::Value::Int(hi)),
            Some(redis::Value::Array(master)),
        ) = (parts.first(), parts.get(1), parts.get(2))
        {
            if matches!(master.get(1), Some(redis::Value::Int(p)) if *p as u16 == node.port) {
                mine.push(*lo as u16..=*hi as u16);
            }
        }
    }
    mine
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    }
}
