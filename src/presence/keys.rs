//! Where presence lives in Redis: the key names of the module docs' layout, on one
//! server (or behind Sentinel), and spread over hash-tagged buckets on a Redis Cluster.
//!
//! A cluster runs a script only when every key it touches is in one slot. Presence's
//! scripts touch a user's keys together with the users / names / sockets indexes, so on
//! a cluster those indexes are split into [`CLUSTER_BUCKETS`] buckets, each under its
//! own hash tag (`{<p>:b<n>}:users`, `{<p>:b<n>}:user:<user>`, …): a user's keys and its
//! bucket's indexes share a slot, and the buckets' slots spread over the masters. The
//! per-node keys (`nodes`, `node:<id>`, `rooms:<id>`) are few and written together, so
//! they share one tag (`{<p>:nodes}`). On a single server nothing is tagged and there is
//! one bucket: the key names stay exactly those of earlier versions.

/// Buckets of a cluster's presence: enough to spread over the masters of any cluster
/// size one would run, few enough that counting every bucket is cheap.
pub const CLUSTER_BUCKETS: u16 = 16;

/// The key names of one presence prefix.
#[derive(Debug, Clone)]
pub struct PresenceKeys {
    prefix: String,
    /// 1 on a single server (untagged), [`CLUSTER_BUCKETS`] on a cluster (tagged).
    buckets: u16,
}

impl PresenceKeys {
    /// The keys under `prefix`; `cluster` spreads them over tagged buckets.
    pub fn new(prefix: &str, cluster: bool) -> Self {
        PresenceKeys {
            prefix: prefix.to_owned(),
            buckets: if cluster { CLUSTER_BUCKETS } else { 1 },
        }
    }

    /// Every bucket, in order.
    pub fn buckets(&self) -> std::ops::Range<u16> {
        0..self.buckets
    }

    fn tagged(&self) -> bool {
        self.buckets > 1
    }

    /// The bucket of `user`: a stable hash of the name (FNV-1a), so every node and
    /// `rtctl` agree on it.
    pub fn bucket_of(&self, user: &str) -> u16 {
        let hash = user.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        (hash % u32::from(self.buckets)) as u16
    }

    /// Key `what` of bucket `bucket` (`users`, `names`, `sockets`).
    pub fn bucket_key(&self, bucket: u16, what: &str) -> String {
        match self.tagged() {
            true => format!("{{{}:b{bucket}}}:{what}", self.prefix),
            false => format!("{}:{what}", self.prefix),
        }
    }

    /// What the sorted set of `user`'s sockets is named after: its bucket's
    /// `user:` prefix (scripts append the user).
    pub fn user_prefix(&self, bucket: u16) -> String {
        self.bucket_key(bucket, "user:")
    }

    /// The sorted set of `user`'s sockets.
    pub fn user_key(&self, user: &str) -> String {
        format!("{}{user}", self.user_prefix(self.bucket_of(user)))
    }

    /// A per-node key: `nodes`, `node:<id>`, `rooms:<id>`.
    pub fn node_key(&self, what: &str) -> String {
        match self.tagged() {
            true => format!("{{{}:nodes}}:{what}", self.prefix),
            false => format!("{}:{what}", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::redis_client::key_slot as slot;

    #[test]
    fn a_single_server_keeps_the_old_names() {
        let k = PresenceKeys::new("rt:presence", false);
        assert_eq!(k.buckets().count(), 1);
        assert_eq!(k.bucket_key(0, "users"), "rt:presence:users");
        assert_eq!(k.user_key("alice"), "rt:presence:user:alice");
        assert_eq!(k.node_key("node:n1"), "rt:presence:node:n1");
    }

    /// Every script's keys are in one slot: a user's set with its bucket's indexes
    /// (APPLY, REFRESH, SWEEP), and the node keys together (the heartbeat's writes,
    /// MGET of the nodes).
    #[test]
    fn each_scripts_keys_share_a_slot_on_a_cluster() {
        let k = PresenceKeys::new("rt:presence", true);
        for user in ["alice", "bob", "user-42", "Ω"] {
            let b = k.bucket_of(user);
            let s = slot(&k.user_key(user));
            for what in ["users", "names", "sockets"] {
                assert_eq!(slot(&k.bucket_key(b, what)), s, "{user} {what}");
            }
        }
        let s = slot(&k.node_key("nodes"));
        assert_eq!(slot(&k.node_key("node:n1")), s);
        assert_eq!(slot(&k.node_key("rooms:n2")), s);
    }

    /// The buckets land on different slots, and users spread over all of them.
    #[test]
    fn buckets_spread_slots_and_users() {
        let k = PresenceKeys::new("rt:presence", true);
        let slots: std::collections::HashSet<u16> = k
            .buckets()
            .map(|b| slot(&k.bucket_key(b, "users")))
            .collect();
        assert_eq!(slots.len(), CLUSTER_BUCKETS as usize);
        // A 3-master cluster splits slots in thirds: every master holds some buckets.
        let thirds: std::collections::HashSet<u16> = slots.iter().map(|s| s / 5462).collect();
        assert_eq!(thirds.len(), 3, "{slots:?}");
        let mut used = vec![0usize; CLUSTER_BUCKETS as usize];
        for i in 0..1600 {
            used[k.bucket_of(&format!("user{i}")) as usize] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }
}
