//! Who connects where: clients in rooms of K, rooms sharded over worker processes (all
//! members of a room in one worker, so loss and duplicates are counted where they
//! happen), members of a room spread round-robin over the target nodes (so fan-out
//! crosses nodes), and source addresses 127.0.0.1–N to multiply ephemeral ports.

use super::Scenario;
use crate::client::backoff::Reconnection;
use crate::client::Transport;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The most sockets one worker holds: the open-files limit here is 20,000 per process,
/// minus room for API connections, pipes and the runtime.
pub const MAX_CLIENTS_PER_WORKER: u64 = 18_000;

/// Clients per source address per node: below the ~28,000 ephemeral ports of one
/// (source, destination) pair, with room for TIME_WAIT from earlier runs.
pub const CLIENTS_PER_SOURCE: u64 = 20_000;

/// One node the clients connect to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeTarget {
    pub addr: SocketAddr,
    /// `host:port` for the Host header.
    pub authority: String,
    /// The Engine.IO path (`/socket.io/`).
    pub path: String,
}

/// Everything one worker process needs (sent to it as one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub worker: u32,
    /// Makes user ids and room names unique per run.
    pub run_id: String,
    pub nodes: Vec<NodeTarget>,
    pub transport: Transport,
    pub scenario: Scenario,
    /// The global index of this worker's first client; it has `clients` after it.
    pub first_client: u64,
    pub clients: u64,
    pub room_size: u64,
    /// Messages per second this worker sends.
    pub message_rate: f64,
    /// API requests per second this worker makes.
    pub api_rate: f64,
    /// Clients per second this worker connects.
    pub ramp: f64,
    pub duration_ms: u64,
    /// Milliseconds one client may take to connect and join.
    pub connect_timeout_ms: u64,
    /// How many source addresses (127.0.0.1..=N).
    pub sources: u64,
    pub token_secret: String,
    pub service_token: Option<String>,
    /// Transports this worker drops per second during the schedule (`--churn` share).
    pub churn_per_s: f64,
    /// How its clients pace their reconnection attempts.
    pub reconnection: Reconnection,
    /// Drills: a client whose connection ends on its own (its node was killed or
    /// drained) reconnects as socket.io-client does, to another node first, instead of
    /// counting as dropped.
    #[serde(default)]
    pub reconnect_on_close: bool,
    /// How far this worker's wall clock is ahead of the coordinator's (ms; 0 for a local
    /// worker, measured for a remote one): the worker subtracts it, so every time it
    /// reads (the start, drill windows, `sentAt`) is on the coordinator's clock.
    #[serde(default)]
    pub clock_offset_ms: f64,
}

impl WorkerConfig {
    /// The node global client `c` connects to (round-robin).
    pub fn node_of(&self, c: u64) -> usize {
        (c % self.nodes.len() as u64) as usize
    }

    /// The node `shift` places after client `c`'s own in the list: where a reconnecting
    /// client rotates to when its own node is gone.
    pub fn node_after(&self, c: u64, shift: usize) -> usize {
        (self.node_of(c) + shift) % self.nodes.len()
    }

    /// The source address of global client `c`.
    pub fn source_of(&self, c: u64) -> Option<std::net::IpAddr> {
        if self.sources <= 1 {
            return None;
        }
        let n = (c / self.nodes.len() as u64) % self.sources;
        Some(std::net::Ipv4Addr::new(127, 0, 0, 1 + n as u8).into())
    }

    pub fn user_of(&self, c: u64) -> String {
        format!("lt-{}-{c}", self.run_id)
    }

    /// The local room of local client `i`, its members' local range.
    pub fn room_members(&self, room: u64) -> std::ops::Range<u64> {
        let start = room * self.room_size;
        start..(start + self.room_size).min(self.clients)
    }

    pub fn rooms(&self) -> u64 {
        if !self.scenario.messages() {
            return 0;
        }
        self.clients.div_ceil(self.room_size)
    }

    /// The global name of local room `room`.
    pub fn room_name(&self, room: u64) -> String {
        format!(
            "{}-{}",
            self.run_id,
            self.first_client / self.room_size + room
        )
    }
}

/// How a run is split into workers: each `(first_client, clients)`.
pub fn shard(clients: u64, room_size: u64, max_per_worker: u64) -> Vec<(u64, u64)> {
    let rooms = clients.div_ceil(room_size);
    let workers = clients.div_ceil(max_per_worker).max(1);
    let mut out = Vec::new();
    for w in 0..workers {
        let (r0, r1) = (rooms * w / workers, rooms * (w + 1) / workers);
        let first = r0 * room_size;
        let last = (r1 * room_size).min(clients);
        if last > first {
            out.push((first, last - first));
        }
    }
    out
}

/// How many source addresses spread `clients` over `nodes` nodes.
pub fn sources_for(clients: u64, nodes: u64) -> u64 {
    clients
        .div_ceil(nodes.max(1))
        .div_ceil(CLIENTS_PER_SOURCE)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_by_whole_rooms_and_covers_every_client_once() {
        for (clients, k, max) in [
            (1000, 10, 18_000),
            (100_000, 10, 18_000),
            (205, 10, 100),
            (7, 3, 2),
        ] {
            let shards = shard(clients, k, max);
            let mut next = 0;
            for (first, n) in &shards {
                assert_eq!(*first, next, "{clients} {k} {max}: {shards:?}");
                assert_eq!(first % k, 0, "a shard starts at a room boundary");
                assert!(*n <= max.max(k), "{shards:?}");
                next = first + n;
            }
            assert_eq!(next, clients);
        }
        assert_eq!(shard(100_000, 10, 18_000).len(), 6);
        assert_eq!(shard(1000, 10, 18_000), vec![(0, 1000)]);
    }

    #[test]
    fn sources_keep_each_pair_under_the_port_range() {
        assert_eq!(sources_for(1000, 2), 1);
        assert_eq!(sources_for(100_000, 6), 1);
        assert_eq!(sources_for(100_000, 2), 3);
    }
}
