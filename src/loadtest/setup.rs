//! Before any worker starts: the secrets the clients use, the nodes they connect to, and
//! how the clients are split into worker processes (with the limits that split meets).

use super::error::LoadtestError;
use super::plan::{self, NodeTarget, WorkerConfig};
use super::run::Options;
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

/// Shards the clients by whole rooms into workers of at most what the open-files limit
/// (`nofile`: soft, hard) allows, each with its share of the rates.
pub(super) fn worker_plan(
    opts: &Options,
    nodes: &[NodeTarget],
    credentials: &Credentials,
    (soft, hard): (u64, u64),
) -> WorkerPlan {
    let mut limits = Vec::new();
    let per_worker = match opts.workers {
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
    let configs = plan::shard(opts.clients, opts.room_size, per_worker)
        .into_iter()
        .enumerate()
        .map(|(w, (first, n))| {
            let share = n as f64 / total;
            WorkerConfig {
                worker: w as u32,
                run_id: run_id.clone(),
                nodes: nodes.to_vec(),
                transport: opts.transport,
                scenario: opts.scenario,
                first_client: first,
                clients: n,
                room_size: opts.room_size,
                message_rate: opts.rate * share,
                api_rate: opts.api_rate * share,
                ramp: opts.ramp * share,
                duration_ms: opts.duration.as_millis() as u64,
                connect_timeout_ms: opts.connect_timeout.as_millis() as u64,
                sources,
                token_secret: credentials.token_secret.clone(),
                service_token: credentials.service_token.clone(),
                churn_per_s: opts.churn * share,
                reconnection: opts.reconnection,
                reconnect_on_close: opts.drills.any(),
            }
        })
        .collect();
    WorkerPlan {
        configs,
        run_id,
        sources,
        limits,
    }
}
