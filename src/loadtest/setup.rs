//! Before any worker starts: the secrets the clients use, the nodes they connect to, and
//! how the clients are split into worker processes (with the limits that split meets).

use super::error::LoadtestError;
use super::plan::{self, NodeTarget, WorkerConfig};
use super::run::Options;
use super::Scenario;
use crate::node_addr::NodeUrl;
use std::net::SocketAddr;

/// The secrets of a run: given, or generated for nodes this run starts itself.
pub(super) struct Credentials {
    pub(super) token_secret: String,
    pub(super) service_token: Option<String>,
}

/// The token secret (required) and the service token (required for notifications);
/// `--spawn-nodes` generates both, since it starts the servers that must agree.
pub(super) fn credentials(opts: &Options) -> Result<Credentials, LoadtestError> {
    let spawning = opts.spawn_nodes > 0;
    let token_secret = match (&opts.token_secret, spawning) {
        (Some(s), _) => s.clone(),
        (None, true) => format!("loadtest-{:032x}", rand::random::<u128>()),
        (None, false) => String::new(),
    };
    if token_secret.is_empty() {
        return Err(LoadtestError::NoTokenSecret);
    }
    let service_token = opts
        .service_token
        .clone()
        .or_else(|| spawning.then(|| format!("svc-{:032x}", rand::random::<u128>())));
    if opts.scenario.notifications() && service_token.is_none() {
        return Err(LoadtestError::NoServiceToken);
    }
    Ok(Credentials {
        token_secret,
        service_token,
    })
}

/// Every node of the run: the spawned ones, then those of `--url`.
pub(super) async fn node_targets(
    spawned: &[SocketAddr],
    urls: &[NodeUrl],
) -> Result<Vec<NodeTarget>, LoadtestError> {
    let mut nodes: Vec<NodeTarget> = spawned
        .iter()
        .map(|addr| NodeTarget {
            addr: *addr,
            authority: addr.to_string(),
            path: "/socket.io/".into(),
        })
        .collect();
    for url in urls {
        nodes.push(node_target(url).await?);
    }
    if nodes.is_empty() {
        return Err(LoadtestError::NoServer);
    }
    Ok(nodes)
}

/// Resolves a node URL into where the clients connect (the first address it resolves
/// to; the Engine.IO path defaults to `/socket.io/`).
pub async fn node_target(url: &NodeUrl) -> Result<NodeTarget, LoadtestError> {
    let authority = url.addr().authority();
    let addr = url
        .addr()
        .resolve()
        .await
        .map_err(|error| LoadtestError::Resolve {
            url: url.to_string(),
            authority: authority.to_owned(),
            error,
        })?
        .into_iter()
        .next()
        .ok_or_else(|| LoadtestError::NoAddress {
            url: url.to_string(),
            authority: authority.to_owned(),
        })?;
    Ok(NodeTarget {
        addr,
        authority: authority.to_owned(),
        path: url.path_or("/socket.io/").to_owned(),
    })
}

/// The run split into workers, and what limits that split runs into.
pub(super) struct WorkerPlan {
    pub(super) configs: Vec<WorkerConfig>,
    /// Makes the run's user ids (`lt-<run_id>-<client>`) and room names unique.
    pub(super) run_id: String,
    /// Source addresses (127.0.0.1..=N) the clients spread over.
    pub(super) sources: u64,
    /// Limits of this machine that may bound the run (shown in the report).
    pub(super) limits: Vec<String>,
}

/// Clients of one scenario, with their part of the rates.
struct Group {
    scenario: Scenario,
    /// The global index of its first client.
    first: u64,
    clients: u64,
    room_size: u64,
    rate: f64,
    api_rate: f64,
}

/// The run's clients by scenario: the mixed scenario's chat share (`--chat-share`) is
/// a group of its own, in 1:1 `/chat` rooms after the `/bench` clients, with that share
/// of the message rate; the notifications stay with the `/bench` clients.
fn groups(opts: &Options) -> Vec<Group> {
    let chat = match opts.scenario {
        Scenario::Mixed => chat_clients(opts.clients, opts.chat_share),
        _ => 0,
    };
    let main = Group {
        scenario: opts.scenario,
        first: 0,
        clients: opts.clients - chat,
        room_size: opts.room_size,
        rate: opts.rate * if chat > 0 { 1.0 - opts.chat_share } else { 1.0 },
        api_rate: opts.api_rate,
    };
    let chat = Group {
        scenario: Scenario::Chat,
        first: main.clients,
        clients: chat,
        room_size: 2,
        rate: opts.rate * opts.chat_share,
        api_rate: 0.0,
    };
    [main, chat].into_iter().filter(|g| g.clients > 0).collect()
}

/// How many of `clients` are chat clients for `share`: whole pairs, at least one pair
/// when the share is above 0, and never every client.
pub(super) fn chat_clients(clients: u64, share: f64) -> u64 {
    if share <= 0.0 {
        return 0;
    }
    let pairs = ((clients as f64 * share / 2.0).round() as u64).max(1);
    (pairs * 2).min(clients.saturating_sub(1) / 2 * 2)
}

/// Shards the clients by whole rooms into workers of at most what the open-files limit
/// (`nofile`: soft, hard) allows, each with its share of the rates.
pub(super) fn worker_plan(
    opts: &Options,
    nodes: &[NodeTarget],
    credentials: &Credentials,
    (soft, hard): (u64, u64),
) -> WorkerPlan {
    let mut limits = Vec::new();
    let slots = opts.workers.unwrap_or(0) + opts.remote_workers.len();
    let per_worker = match opts.workers {
        _ if !opts.remote_workers.is_empty() => opts
            .clients
            .div_ceil(slots as u64)
            .max(opts.room_size)
            .min(plan::MAX_CLIENTS_PER_WORKER),
        Some(w) => opts.clients.div_ceil(w.max(1) as u64).max(opts.room_size),
        None => plan::MAX_CLIENTS_PER_WORKER.min(hard.saturating_sub(2000).max(1000)),
    };
    if hard > 0 && hard < plan::MAX_CLIENTS_PER_WORKER + 2000 {
        limits.push(format!(
            "open files: hard limit {hard} (soft now {soft}) caps a worker at {per_worker} clients"
        ));
    }
    let per_node = opts.clients.div_ceil(nodes.len() as u64);
    if per_node > 19_000 {
        limits.push(format!(
            "{per_node} clients per node: a node holds at most ~19,000 connections (its own open-files limit); use more nodes"
        ));
    }
    let sources = plan::sources_for(opts.clients, nodes.len() as u64);
    let run_id = format!("{:08x}", rand::random::<u32>());
    let total = opts.clients as f64;
    let mut configs = Vec::new();
    for g in groups(opts) {
        for (first, n) in plan::shard(g.clients, g.room_size, per_worker) {
            let share = n as f64 / total;
            let group_share = n as f64 / g.clients as f64;
            configs.push(WorkerConfig {
                worker: configs.len() as u32,
                run_id: run_id.clone(),
                nodes: nodes.to_vec(),
                transport: opts.transport,
                scenario: g.scenario,
                first_client: g.first + first,
                clients: n,
                room_size: g.room_size,
                message_rate: g.rate * group_share,
                api_rate: g.api_rate * group_share,
                ramp: opts.ramp * share,
                duration_ms: opts.duration.as_millis() as u64,
                connect_timeout_ms: opts.connect_timeout.as_millis() as u64,
                sources,
                token_secret: credentials.token_secret.clone(),
                service_token: credentials.service_token.clone(),
                churn_per_s: opts.churn * share,
                reconnection: opts.reconnection,
                reconnect_on_close: opts.drills.any(),
                clock_offset_ms: 0.0,
            });
        }
    }
    WorkerPlan {
        configs,
        run_id,
        sources,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::chat_clients;

    #[test]
    fn the_chat_share_is_whole_pairs_and_never_every_client() {
        assert_eq!(chat_clients(1000, 0.1), 100);
        assert_eq!(chat_clients(100_000, 0.1), 10_000);
        assert_eq!(chat_clients(1000, 0.0), 0);
        assert_eq!(chat_clients(30, 0.01), 2, "at least one pair");
        assert_eq!(chat_clients(11, 1.0), 10, "a client stays for the rest");
        assert_eq!(chat_clients(2, 0.5), 0, "no pair fits beside the rest");
    }
}
