//! The coordinator: starts nodes when asked, starts the worker processes, follows their
//! progress, starts every worker's schedule at the same instant, merges their results,
//! reads the nodes' /metrics, and judges the criteria — one phase function each, in
//! [`coordinate`]'s order. It returns a [`Verdict`] (or why no run could be made) and
//! prints nothing: the command shows the report and picks the exit code.

use super::drill::{self, Drills};
use super::error::LoadtestError;
use super::gate::Gate;
use super::ipc::WorkerResult;
use super::merge::{self, Measured};
use super::observe::{Observer, Update};
use super::plan::NodeTarget;
use super::processes::{Placement, Workers};
use super::report::Report;
use super::setup::{self, Credentials};
use super::spawn::{self, Cluster, Database};
use super::stored::{self, StoredCheck};
use super::{machine, memory, postgres, procwatch, scrape, Clock, Scenario};
use crate::client::backoff::Reconnection;
use crate::client::Transport;
use crate::node_addr::NodeUrl;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A run's settings, after the command line and the gate are reconciled.
#[derive(Debug, Clone)]
pub struct Options {
    pub urls: Vec<NodeUrl>,
    pub spawn_nodes: usize,
    pub clients: u64,
    pub ramp: f64,
    pub duration: Duration,
    pub scenario: Scenario,
    pub room_size: u64,
    pub rate: f64,
    pub api_rate: f64,
    pub transport: Transport,
    pub token_secret: Option<String>,
    pub service_token: Option<String>,
    pub gate: Option<Gate>,
    /// Local worker processes (`None`: as few as the open-files limit allows; with
    /// remote workers, none unless given).
    pub workers: Option<usize>,
    /// Remote workers, `HOST:PORT` of `rtctl loadtest worker --listen`.
    pub remote_workers: Vec<String>,
    /// The key the remote workers ask for (`--worker-key`).
    pub worker_key: Option<String>,
    pub redis_url: Option<String>,
    pub connect_timeout: Duration,
    /// Without a gate: limits on message / API p99 to judge (ms).
    pub max_p99_ms: Option<f64>,
    pub max_api_p99_ms: Option<f64>,
    /// `--churn`: transports dropped per second during the schedule (0: none).
    pub churn: f64,
    /// How dropped clients pace their reconnection (socket.io-client's defaults).
    pub reconnection: Reconnection,
    /// `--recovery`: spawned nodes run with connection state recovery.
    pub recovery: bool,
    /// `--adapter`: the spawned nodes' cluster adapter (`redis`, `redis-streams`);
    /// `None`: the server's default.
    pub adapter: Option<String>,
    /// Failures made during the schedule.
    pub drills: Drills,
    /// `--database-url`: the database every spawned node shares (else SQLite files).
    pub database_url: Option<String>,
    /// `--sample-rss-every` and `--rss-warm-up`: the nodes' memory over the schedule.
    pub rss_sampling: Option<(Duration, Duration)>,
    /// `--chat-share`: the mixed scenario's share of clients and messages on stored
    /// `/chat` 1:1 rooms (0–1).
    pub chat_share: f64,
    /// `--watch-pid`: server processes on this machine measured from `/proc`.
    pub watch_pids: Vec<u32>,
}

impl Options {
    /// Whether the run sends stored chat messages (checked in the database at the end).
    pub fn stores_chat(&self) -> bool {
        self.scenario == Scenario::Chat
            || (self.scenario == Scenario::Mixed && self.chat_share > 0.0)
    }
}

/// How a run that was made came out; either way with its report.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every criterion holds.
    Met(Box<Report>),
    /// Some criterion failed (the report's checks say which).
    Failed(Box<Report>),
}

impl Verdict {
    pub fn report(&self) -> &Report {
        match self {
            Verdict::Met(r) | Verdict::Failed(r) => r,
        }
    }

    /// The names of the criteria that failed, in the report's order.
    pub fn failed_criteria(&self) -> Vec<&'static str> {
        self.report()
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name)
            .collect()
    }
}

/// Runs the load test until it is judged, or until `shutdown` resolves (then
/// [`LoadtestError::Interrupted`]). Workers die with their handles; nodes this run
/// started get a graceful stop whatever the outcome.
pub async fn run(
    opts: Options,
    shutdown: impl Future<Output = ()>,
    observer: Arc<dyn Observer>,
) -> Result<Verdict, LoadtestError> {
    let mut cluster = None;
    let result = tokio::select! {
        r = coordinate(&opts, &mut cluster, observer.clone()) => r,
        _ = shutdown => Err(LoadtestError::Interrupted),
    };
    if let Some(c) = cluster.take() {
        c.stop(&*observer).await;
    }
    result
}

/// The run's phases, in order. Started nodes go into `cluster` at once, so an
/// interrupted run still stops them.
async fn coordinate(
    opts: &Options,
    cluster: &mut Option<Cluster>,
    observer: Arc<dyn Observer>,
) -> Result<Verdict, LoadtestError> {
    let credentials = setup::credentials(opts)?;
    let mut traces = watch_before_ramp(&opts.watch_pids)?;
    // Before spawning anything: nodes and workers inherit the raised limit.
    let nofile = crate::client::net::raise_nofile_limit().unwrap_or((0, 0));
    let spawned = start_nodes(opts, &credentials, cluster, &*observer).await?;
    let drill_target = cluster
        .as_ref()
        .is_some_and(|c| !opts.drills.restarts_redis() || c.has_redis());
    if opts.drills.any() && !drill_target {
        return Err(LoadtestError::DrillWithoutSpawnedNodes);
    }
    let restarts_own_postgres = matches!(opts.drills.restart_postgres, Some((_, None)));
    if restarts_own_postgres
        && cluster
            .as_ref()
            .is_none_or(|c| c.postgres_restart_command().is_none())
    {
        return Err(LoadtestError::NoPostgresToRestart);
    }
    let nodes = setup::node_targets(&spawned, &opts.urls).await?;
    let plan = setup::worker_plan(opts, &nodes, &credentials, nofile);
    let placement = Placement {
        local: opts.workers.unwrap_or(0),
        remote: &opts.remote_workers,
        key: opts.worker_key.as_deref(),
    };
    let mut workers = Workers::start(&plan.configs, &placement, observer.clone()).await?;
    let ramp = workers.ramp(opts.clients, &*observer).await?;
    if ramp.connected == 0 {
        observer.update(Update::Measured);
        return Err(LoadtestError::NoClientConnected);
    }
    let mut measured = measure(
        &mut workers,
        &nodes,
        cluster.as_mut(),
        opts,
        &mut traces,
        &*observer,
    )
    .await?;
    measured.watched = traces;
    measured.remote = workers.remote.clone();
    let chat_database = cluster.as_ref().and_then(|c| c.shared_database_url.clone());
    if let (true, Some(url)) = (opts.stores_chat(), chat_database) {
        measured.stored = Some(check_stored(&url, &plan.run_id, &measured.results).await);
    }
    measured.store = cluster.as_ref().map(|c| c.database.describe());
    let mut limits = plan.limits;
    if cluster
        .as_ref()
        .is_some_and(|c| c.database == Database::SharedSqlite)
    {
        limits.push(
            "stored chat ran on one SQLite file the nodes share (no PostgreSQL found: install \
             postgresql, set RT_PG_BIN, or pass --database-url): its write lock, not the \
             server, may set the chat latency"
                .into(),
        );
    }
    limits.extend(machine::saturation_note(
        measured.machine_cpu_busy,
        opts.spawn_nodes > 0,
    ));
    workers.finish().await;
    let report = merge::report(opts, &nodes, plan.sources, limits, &ramp, measured)?;
    Ok(if report.pass {
        Verdict::Met(Box::new(report))
    } else {
        Verdict::Failed(Box::new(report))
    })
}

/// `--watch-pid`: each process read once before any client connects (its memory then is
/// what the clients' memory is measured from); a pid that cannot be read stops the run.
fn watch_before_ramp(pids: &[u32]) -> Result<Vec<procwatch::Trace>, LoadtestError> {
    pids.iter()
        .map(|&pid| {
            let reading = procwatch::read(pid).ok_or(LoadtestError::NoSuchProcess(pid))?;
            Ok(procwatch::Trace {
                pid,
                before_ramp: Some(reading),
                readings: Vec::new(),
            })
        })
        .collect()
}

/// The chat messages in the nodes' database, against what the workers had acked; a
/// database that cannot be read fails the check (with why).
async fn check_stored(
    url: &str,
    run_id: &str,
    results: &[WorkerResult],
) -> Result<StoredCheck, String> {
    let acked: Vec<[u64; 2]> = results
        .iter()
        .flat_map(|r| r.acked_chat.iter().copied())
        .collect();
    stored::check(url, &format!("lt-{run_id}-"), &acked).await
}

/// `--spawn-nodes`: starts the local nodes (and Redis) with the run's secrets.
async fn start_nodes(
    opts: &Options,
    credentials: &Credentials,
    cluster: &mut Option<Cluster>,
    observer: &dyn Observer,
) -> Result<Vec<SocketAddr>, LoadtestError> {
    if opts.spawn_nodes == 0 {
        return Ok(Vec::new());
    }
    observer.update(Update::StartingNodes {
        count: opts.spawn_nodes,
    });
    let started = spawn::start(
        opts.spawn_nodes,
        &credentials.token_secret,
        credentials.service_token.as_deref().unwrap_or_default(),
        opts.redis_url.clone(),
        &spawn::NodeSettings {
            recovery: opts.recovery,
            adapter: opts.adapter.clone(),
            database: nodes_database(opts),
        },
    )
    .await?;
    Ok(cluster.insert(started).nodes.clone())
}

/// Where spawned nodes store: the database given; for stored chat messages, which both
/// members' nodes must see, a local PostgreSQL when this machine has one (what the app
/// runs on), else one SQLite file they share; else a SQLite file per node.
fn nodes_database(opts: &Options) -> Database {
    if let Some(url) = &opts.database_url {
        return Database::Given(url.clone());
    }
    if !opts.stores_chat() {
        return Database::SqlitePerNode;
    }
    match postgres::find_bin() {
        Some(bin) => Database::LocalPostgres(bin),
        None => Database::SharedSqlite,
    }
}

/// How often `--watch-pid` processes are read.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The schedule, measured: every worker starts at the same instant (a second from now,
/// so all have the line), the drills run beside it, and the nodes' /metrics, the
/// machine's CPU and a spawned Redis's CPU are read before and after it.
async fn measure(
    workers: &mut Workers,
    nodes: &[NodeTarget],
    cluster: Option<&mut Cluster>,
    opts: &Options,
    traces: &mut [procwatch::Trace],
    observer: &dyn Observer,
) -> Result<Measured, LoadtestError> {
    let start_ms = Clock::new().now_ms() + 1000.0;
    workers.start_at(start_ms).await?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let before = scrape::sample_all(&addrs).await;
    let cpu_before = machine::read();
    let redis_pid = cluster.as_ref().and_then(|c| c.redis_pid());
    let redis_before = redis_pid.and_then(machine::process_cpu_seconds);
    let commander = workers.commander();
    let drilling = async {
        match cluster {
            Some(c) if opts.drills.any() => {
                let d = opts.duration;
                Some(drill::run(&opts.drills, c, &commander, start_ms, d, observer).await)
            }
            _ => None,
        }
    };
    let sampling = async {
        let (every, warm_up) = opts.rss_sampling?;
        let start = tokio::time::Instant::from_std(Clock::new().instant(start_ms));
        Some(memory::sample(&addrs, start, every, opts.duration, warm_up).await)
    };
    let watching = async {
        if !traces.is_empty() {
            let start = tokio::time::Instant::from_std(Clock::new().instant(start_ms));
            procwatch::sample(traces, start, WATCH_EVERY, opts.duration).await;
        }
    };
    let (results, drills, memory, ()) = tokio::join!(
        workers.results(opts.duration, observer),
        drilling,
        sampling,
        watching
    );
    let results = results?;
    let cpu_after = machine::read();
    let redis_after = redis_pid.and_then(machine::process_cpu_seconds);
    let after = scrape::sample_all(&addrs).await;
    observer.update(Update::Measured);
    Ok(Measured {
        results,
        before,
        after,
        machine_cpu_busy: machine::busy_fraction(cpu_before, cpu_after),
        redis_cpu_seconds: redis_before.zip(redis_after).map(|(b, a)| a - b),
        drills,
        stored: None,
        store: None,
        memory,
        watched: Vec::new(),
        remote: Vec::new(),
    })
}
