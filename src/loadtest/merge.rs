//! After the schedule: the workers' results folded into one, the nodes' usage, and the
//! criteria judged — the [`Report`] a verdict carries.

use super::drill::Timeline;
use super::error::LoadtestError;
use super::gate::{self, Gate};
use super::ipc::WorkerResult;
use super::late::LateBySecond;
use super::memory::RssTrend;
use super::plan::NodeTarget;
use super::processes::Ramp;
use super::procwatch;
use super::report::{self, NodeUsage, Report};
use super::run::Options;
use super::scrape::NodeSample;
use super::stats::{Counters, Histograms};
use super::stored::StoredCheck;
use serde_json::json;

/// What the schedule measured, before it is merged.
pub(super) struct Measured {
    pub(super) results: Vec<WorkerResult>,
    /// Each node's figures before and after the schedule.
    pub(super) before: Vec<NodeSample>,
    pub(super) after: Vec<NodeSample>,
    pub(super) machine_cpu_busy: Option<f64>,
    /// CPU seconds the redis-server this run started used during the schedule.
    pub(super) redis_cpu_seconds: Option<f64>,
    /// What the drills did, when the run had any.
    pub(super) drills: Option<Timeline>,
    /// Chat on a database the nodes shared: the acked messages found there (or why
    /// they could not be read).
    pub(super) stored: Option<Result<StoredCheck, String>>,
    /// `--sample-rss-every`: the nodes' memory over the schedule.
    pub(super) memory: Option<RssTrend>,
    /// What the spawned nodes stored into (`None`: no spawned nodes).
    pub(super) store: Option<&'static str>,
    /// `--watch-pid`: the processes' readings over the schedule.
    pub(super) watched: Vec<procwatch::Trace>,
    /// `--workers HOST:PORT`: the remote workers and their measured clocks.
    pub(super) remote: Vec<super::remote::RemoteWorker>,
}

/// The workers' results as one.
struct Merged {
    counters: Counters,
    hist: Histograms,
    late: LateBySecond,
    /// The first ten distinct errors any worker saw.
    errors: Vec<String>,
    client_cpu_seconds: f64,
    client_memory_per_connection_bytes: Option<f64>,
    /// The longest worker's schedule, drain included.
    run_seconds: f64,
    /// Workers whose open-files limit was below their clients.
    limits: Vec<String>,
}

fn merge(results: &[WorkerResult]) -> Result<Merged, LoadtestError> {
    let mut counters = Counters::default();
    let mut hist = Histograms::default();
    let mut late = LateBySecond::default();
    let mut errors = Vec::new();
    let (mut cpu, mut mem, mut mem_clients) = (0.0, 0.0, 0u64);
    let mut run_seconds = 0f64;
    let mut limits = Vec::new();
    for r in results {
        counters.add(&r.counters);
        let h = Histograms::decode(&r.histograms).map_err(|reason| LoadtestError::Histograms {
            worker: r.worker,
            reason,
        })?;
        hist.merge(&h);
        late.merge(&r.late);
        for e in &r.errors {
            if errors.len() < 10 && !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        cpu += r.cpu_run_seconds;
        mem += r.rss_connected.saturating_sub(r.rss_before) as f64;
        mem_clients += r.counters.connected;
        run_seconds = run_seconds.max(r.run_seconds);
        if r.nofile_limit > 0 && r.nofile_limit < r.counters.clients + 200 {
            limits.push(format!(
                "worker {}: open-files limit {} below its {} clients",
                r.worker, r.nofile_limit, r.counters.clients
            ));
        }
    }
    Ok(Merged {
        counters,
        hist,
        late,
        errors,
        client_cpu_seconds: cpu,
        client_memory_per_connection_bytes: (mem_clients > 0).then(|| mem / mem_clients as f64),
        run_seconds,
        limits,
    })
}

/// What each node used during the schedule (CPU: the difference of its counter).
/// What each watched process spent, per delivery the clients received and per client
/// connected.
fn watched_usage(traces: &[procwatch::Trace], c: &Counters) -> Vec<procwatch::ProcUsage> {
    let deliveries = c.received + c.notifications_received;
    let interval = super::run::WATCH_EVERY.as_secs_f64();
    traces
        .iter()
        .map(|t| procwatch::usage(t, interval, deliveries, c.connected))
        .collect()
}

fn node_usage(nodes: &[NodeTarget], before: &[NodeSample], after: &[NodeSample]) -> Vec<NodeUsage> {
    nodes
        .iter()
        .zip(before.iter().zip(after))
        .map(|(n, (b, a))| NodeUsage {
            node: n.authority.clone(),
            rss_bytes: a.rss_bytes,
            // A node restarted by a drill starts its counter again: no figure.
            cpu_seconds: match (b.cpu_seconds, a.cpu_seconds) {
                (Some(b), Some(a)) if a >= b => Some(a - b),
                _ => None,
            },
            cluster_received: match (b.cluster_received, a.cluster_received) {
                (b, Some(a)) => Some(a - b.unwrap_or(0.0)),
                _ => None,
            },
        })
        .collect()
}

/// The gate's criteria, or (without a gate) the run's own workload and `--max-p99`s.
fn criteria(opts: &Options) -> gate::Criteria {
    match opts.gate {
        Some(g) => g.criteria(),
        None => gate::Criteria {
            clients: opts.clients,
            messages_per_s: opts.rate,
            api_per_s: opts.api_rate,
            message_p99_ms: opts.max_p99_ms,
            api_p99_ms: opts.max_api_p99_ms,
            chat_share: if opts.stores_chat() {
                opts.chat_share
            } else {
                0.0
            },
        },
    }
}

/// The spawned nodes' cluster adapter.
fn adapter_of(opts: &Options) -> String {
    match (&opts.adapter, opts.spawn_nodes) {
        (_, 0) => "the nodes' own".into(),
        (_, 1) => "in-process (one node)".into(),
        (Some(a), _) => a.clone(),
        (None, _) => "redis (pub/sub)".into(),
    }
}

/// The report of a run: its settings, the merged measurements, and each criterion
/// judged. `limits` are what the plan and the machine noted so far.
pub(super) fn report(
    opts: &Options,
    nodes: &[NodeTarget],
    sources: u64,
    mut limits: Vec<String>,
    ramp: &Ramp,
    measured: Measured,
) -> Result<Report, LoadtestError> {
    let m = merge(&measured.results)?;
    limits.extend(m.limits);
    let criteria = criteria(opts);
    let drilled = measured.drills.is_some();
    let mut checks = gate::evaluate(&criteria, opts.scenario, &m.counters, &m.hist, drilled);
    if opts.churn > 0.0 {
        checks.push(gate::churn_check(&m.counters));
    }
    if let Some(t) = &measured.drills {
        checks.push(gate::drill_check(&m.counters, &m.hist, &t.failures));
    }
    if let Some(stored) = &measured.stored {
        checks.push(gate::stored_check(stored));
    }
    let pass = checks.iter().all(|c| c.pass);
    let c = &m.counters;
    Ok(Report {
        settings: json!({
            "nodes": nodes.iter().map(|n| n.authority.clone()).collect::<Vec<_>>(),
            "spawned_nodes": opts.spawn_nodes,
            "clients": opts.clients,
            "ramp_per_s": opts.ramp,
            "ramp_seconds": ramp.seconds,
            "duration_s": opts.duration.as_secs_f64(),
            "scenario": opts.scenario.as_str(),
            "room_size": opts.room_size,
            "messages_per_s": opts.rate,
            "api_per_s": opts.api_rate,
            "transport": opts.transport,
            "source_addresses": sources,
            "churn_per_s": opts.churn,
            "spawned_with_recovery": opts.spawn_nodes > 0 && opts.recovery,
            "chat_share": opts.chat_share,
            "remote_workers": measured.remote,
            "store": measured.store.unwrap_or("the nodes' own"),
            "adapter": adapter_of(opts),
            "drills": drilled.then(|| json!({
                "kill_node_at_s": opts.drills.kill_node_at.map(|d| d.as_secs_f64()),
                "restart_after_s": opts.drills.restart_after.as_secs_f64(),
                "rolling_restart_at_s": opts.drills.rolling_restart_at.map(|d| d.as_secs_f64()),
                "restart_redis_at_s": opts.drills.restart_redis_at.map(|d| d.as_secs_f64()),
                "recovery_window_s": opts.drills.recovery_window.as_secs_f64(),
                "clients_reconnect": "rotating through the node list, a random other node first",
            })),
        }),
        lost: c.lost(),
        notifications_lost: c.notifications_lost(),
        deliveries_per_s: (c.received + c.notifications_received) as f64 / m.run_seconds.max(0.001),
        run_seconds: m.run_seconds,
        histograms_ms: report::percentiles(&m.hist),
        late: m.late.summary(5),
        late_by_second: m.late,
        workers: measured.results.len(),
        client_cpu_seconds: m.client_cpu_seconds,
        client_memory_per_connection_bytes: m.client_memory_per_connection_bytes,
        machine_cpu_busy: measured.machine_cpu_busy,
        redis_cpu_seconds: measured.redis_cpu_seconds,
        nodes: node_usage(nodes, &measured.before, &measured.after),
        gate: json!({
            "name": opts.gate.map(Gate::as_str),
            "criteria": criteria,
        }),
        checks,
        pass,
        drills: measured.drills,
        stored: measured.stored.and_then(Result::ok),
        memory: measured.memory,
        processes: watched_usage(&measured.watched, c),
        limits,
        errors: m.errors,
        counters: m.counters,
    })
}
