//! The coordinator: starts nodes when asked, starts the worker processes, follows their
//! progress, starts every worker's schedule at the same instant, merges their results,
//! reads the nodes' /metrics, and judges the gate.

use super::gate::{self, Gate};
use super::machine;
use super::plan::{self, NodeTarget, WorkerConfig};
use super::report::{self, NodeUsage, Report};
use super::stats::{Counters, Histograms};
use super::worker::{Command as WorkerCommand, Event, Progress, WorkerResult};
use super::{Clock, Scenario};
use crate::client::http::HttpConn;
use crate::client::Transport;
use crate::commands::Exit;
use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A run's settings, after the command line and the gate are reconciled.
#[derive(Debug, Clone)]
pub struct Options {
    pub urls: Vec<String>,
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
    pub report: Option<std::path::PathBuf>,
    pub workers: Option<usize>,
    pub redis_url: Option<String>,
    pub connect_timeout: Duration,
    /// Without a gate: limits on message / API p99 to judge (ms).
    pub max_p99_ms: Option<f64>,
    pub max_api_p99_ms: Option<f64>,
}

/// Parses `http://host:port[/path]` into where to connect.
pub async fn node_target(url: &str) -> anyhow::Result<NodeTarget> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/socket.io/"),
    };
    let path = if path == "/" { "/socket.io/" } else { path };
    let addr = tokio::net::lookup_host(authority)
        .await
        .with_context(|| {
            format!("{url:?}: cannot resolve {authority:?} (expected http://host:port)")
        })?
        .next()
        .with_context(|| format!("{url:?}: {authority:?} has no address"))?;
    Ok(NodeTarget {
        addr,
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// Runs the load test; `Exit` 1 when a criterion fails, 2 when the run cannot be made.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let mut cluster = None;
    let result = tokio::select! {
        r = run_inner(&opts, &mut cluster) => r,
        _ = crate::commands::serve::shutdown_signal() => {
            Err(Exit::new(2, "interrupted: stopping workers and nodes").into())
        }
    };
    // Workers die with their handles (kill_on_drop); nodes get a graceful stop.
    if let Some(c) = cluster.take() {
        super::spawn::Cluster::stop(c).await;
    }
    result
}

async fn run_inner(
    opts: &Options,
    cluster_slot: &mut Option<super::spawn::Cluster>,
) -> anyhow::Result<()> {
    let secret = opts.token_secret.clone().unwrap_or_else(|| {
        if opts.spawn_nodes > 0 {
            format!("loadtest-{:032x}", rand::random::<u128>())
        } else {
            String::new()
        }
    });
    if secret.is_empty() {
        return Err(Exit::new(
            2,
            "no token secret: pass --token-secret (or NEXTAUTH_SECRET) with the servers' NEXTAUTH_SECRET",
        )
        .into());
    }
    let service_token = opts
        .service_token
        .clone()
        .or_else(|| (opts.spawn_nodes > 0).then(|| format!("svc-{:032x}", rand::random::<u128>())));
    if opts.scenario.notifications() && service_token.is_none() {
        return Err(Exit::new(
            2,
            "the notifications scenario needs --service-token (RT_SERVICE_TOKEN of the servers)",
        )
        .into());
    }
    // Before spawning anything: nodes and workers inherit the raised limit.
    let (soft, hard) = crate::client::net::raise_nofile_limit().unwrap_or((0, 0));
    let mut nodes = Vec::new();
    if opts.spawn_nodes > 0 {
        eprintln!("starting {} local node(s)…", opts.spawn_nodes);
        let c = super::spawn::start(
            opts.spawn_nodes,
            &secret,
            service_token.as_deref().unwrap_or_default(),
            opts.redis_url.clone(),
            opts.scenario == Scenario::Chat,
        )
        .await
        .map_err(|e| Exit::new(2, format!("{e:#}")))?;
        for addr in &c.nodes {
            nodes.push(NodeTarget {
                addr: *addr,
                authority: addr.to_string(),
                path: "/socket.io/".into(),
            });
        }
        *cluster_slot = Some(c);
    }
    for url in &opts.urls {
        nodes.push(
            node_target(url)
                .await
                .map_err(|e| Exit::new(2, format!("{e:#}")))?,
        );
    }
    if nodes.is_empty() {
        return Err(Exit::new(2, "no server: pass --url URL[,URL…] or --spawn-nodes M").into());
    }

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
    let shards = plan::shard(opts.clients, opts.room_size, per_worker);
    let run_id = format!("{:08x}", rand::random::<u32>());
    let total = opts.clients as f64;
    let mut configs = Vec::new();
    for (w, (first, n)) in shards.iter().enumerate() {
        let share = *n as f64 / total;
        configs.push(WorkerConfig {
            worker: w as u32,
            run_id: run_id.clone(),
            nodes: nodes.clone(),
            transport: opts.transport,
            scenario: opts.scenario,
            first_client: *first,
            clients: *n,
            room_size: opts.room_size,
            message_rate: opts.rate * share,
            api_rate: opts.api_rate * share,
            ramp: opts.ramp * share,
            duration_ms: opts.duration.as_millis() as u64,
            connect_timeout_ms: opts.connect_timeout.as_millis() as u64,
            sources,
            token_secret: secret.clone(),
            service_token: service_token.clone(),
        });
    }

    // Workers: this executable, `loadtest-worker`, JSON lines both ways.
    let exe = std::env::current_exe().context("cannot find this executable to run workers")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Option<Event>)>();
    let mut workers = Vec::new();
    for cfg in &configs {
        let mut child = tokio::process::Command::new(&exe)
            .arg("loadtest-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start a worker ({})", exe.display()))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = serde_json::to_string(cfg)?;
        line.push('\n');
        stdin.write_all(line.as_bytes()).await?;
        let w = cfg.worker as usize;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                match serde_json::from_str::<Event>(&l) {
                    Ok(ev) => {
                        let _ = tx.send((w, Some(ev)));
                    }
                    Err(e) => eprintln!("worker {w}: unreadable line ({e}): {l}"),
                }
            }
            let _ = tx.send((w, None));
        });
        workers.push((child, stdin));
    }
    drop(tx);

    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(opts.clients), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("connecting");
    let n = workers.len();
    let mut progress = vec![Progress::default(); n];
    let mut ready = vec![false; n];
    let ramp_started = Instant::now();
    while ready.iter().any(|r| !r) {
        let Some((w, ev)) = rx.recv().await else {
            bail!("workers ended unexpectedly")
        };
        match ev {
            Some(Event::Progress(p)) => progress[w] = p,
            Some(Event::Ready(p)) => {
                progress[w] = p;
                ready[w] = true;
            }
            Some(Event::Error { message }) => {
                return Err(Exit::new(2, format!("worker {w}: {message}")).into())
            }
            Some(Event::Result(_)) => {}
            None => return Err(Exit::new(2, format!("worker {w} exited during the ramp")).into()),
        }
        let connected: u64 = progress.iter().map(|p| p.connected).sum();
        let failed: u64 = progress.iter().map(|p| p.failed).sum();
        bar.set_position(connected);
        bar.set_message(format!("connecting ({failed} failed)"));
    }
    let connected: u64 = progress.iter().map(|p| p.connected).sum();
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    if connected == 0 {
        bar.finish_and_clear();
        return Err(Exit::new(
            2,
            "no client could connect (is the server up, and the token secret right?)",
        )
        .into());
    }

    // Everyone starts at the same instant.
    let clock = Clock::new();
    let at = clock.now_ms() + 1000.0;
    let start_line = format!(
        "{}\n",
        serde_json::to_string(&WorkerCommand::Start { at_unix_ms: at })?
    );
    for (_, stdin) in &mut workers {
        stdin.write_all(start_line.as_bytes()).await?;
    }
    let node_urls: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let before = scrape_all(&node_urls).await;
    let cpu_before = machine::read();
    bar.set_length(opts.duration.as_secs().max(1));
    bar.set_position(0);
    bar.set_message("running");
    let run_started = Instant::now();
    let mut results: Vec<Option<WorkerResult>> = vec![None; n];
    while results.iter().any(Option::is_none) {
        let Some((w, ev)) = rx.recv().await else {
            bail!("workers ended unexpectedly")
        };
        match ev {
            Some(Event::Progress(p)) => progress[w] = p,
            Some(Event::Result(r)) => results[w] = Some(*r),
            Some(Event::Error { message }) => {
                return Err(Exit::new(2, format!("worker {w}: {message}")).into())
            }
            Some(Event::Ready(_)) => {}
            None if results[w].is_none() => {
                return Err(Exit::new(2, format!("worker {w} exited without a result")).into())
            }
            None => {}
        }
        let received: u64 = progress.iter().map(|p| p.received).sum();
        let dropped: u64 = progress.iter().map(|p| p.dropped).sum();
        bar.set_position(run_started.elapsed().as_secs().min(opts.duration.as_secs()));
        bar.set_message(format!("running: {received} received, {dropped} dropped"));
    }
    let cpu_after = machine::read();
    let after = scrape_all(&node_urls).await;
    bar.finish_and_clear();
    let machine_cpu_busy = machine::busy_fraction(cpu_before, cpu_after);
    limits.extend(machine::saturation_note(
        machine_cpu_busy,
        opts.spawn_nodes > 0,
    ));
    for (mut child, stdin) in workers {
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    }

    // Merge.
    let results: Vec<WorkerResult> = results.into_iter().flatten().collect();
    let mut counters = Counters::default();
    let mut hist = Histograms::default();
    let mut errors = Vec::new();
    let (mut cpu, mut mem, mut mem_clients) = (0.0, 0.0, 0u64);
    let mut run_seconds = 0f64;
    for r in &results {
        counters.add(&r.counters);
        hist.merge(&Histograms::decode(&r.histograms).map_err(anyhow::Error::msg)?);
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
    let node_usage: Vec<NodeUsage> = nodes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(n, (b, a))| NodeUsage {
            node: n.authority.clone(),
            rss_bytes: a.0,
            cpu_seconds: match (b.1, a.1) {
                (Some(b), Some(a)) => Some(a - b),
                _ => None,
            },
        })
        .collect();
    let criteria = match opts.gate {
        Some(g) => g.criteria(),
        None => gate::Criteria {
            clients: opts.clients,
            messages_per_s: opts.rate,
            api_per_s: opts.api_rate,
            message_p99_ms: opts.max_p99_ms,
            api_p99_ms: opts.max_api_p99_ms,
        },
    };
    let checks = gate::evaluate(&criteria, opts.scenario, &counters, &hist);
    let pass = checks.iter().all(|c| c.pass);
    let report = Report {
        settings: json!({
            "nodes": nodes.iter().map(|n| n.authority.clone()).collect::<Vec<_>>(),
            "spawned_nodes": opts.spawn_nodes,
            "clients": opts.clients,
            "ramp_per_s": opts.ramp,
            "ramp_seconds": ramp_seconds,
            "duration_s": opts.duration.as_secs_f64(),
            "scenario": opts.scenario.as_str(),
            "room_size": opts.room_size,
            "messages_per_s": opts.rate,
            "api_per_s": opts.api_rate,
            "transport": opts.transport,
            "source_addresses": sources,
        }),
        lost: counters.lost(),
        notifications_lost: counters.notifications_lost(),
        deliveries_per_s: (counters.received + counters.notifications_received) as f64
            / run_seconds.max(0.001),
        run_seconds,
        histograms_ms: report::percentiles(&hist),
        workers: results.len(),
        client_cpu_seconds: cpu,
        client_memory_per_connection_bytes: (mem_clients > 0).then(|| mem / mem_clients as f64),
        machine_cpu_busy,
        nodes: node_usage,
        gate: json!({
            "name": opts.gate.map(Gate::as_str),
            "criteria": criteria,
        }),
        checks,
        pass,
        limits,
        errors,
        counters,
    };
    print!("{}", report.render());
    if let Some(path) = &opts.report {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    let name = opts.gate.map_or("loadtest", Gate::as_str);
    if pass {
        println!("{name}: all criteria hold");
        Ok(())
    } else {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name)
            .collect();
        Err(Exit::new(1, format!("{name}: criteria failed: {}", failed.join(", "))).into())
    }
}

/// (RSS bytes, CPU seconds) of each node from its /metrics.
async fn scrape_all(nodes: &[SocketAddr]) -> Vec<(Option<f64>, Option<f64>)> {
    let mut out = Vec::new();
    for addr in nodes {
        out.push(scrape(*addr).await.unwrap_or((None, None)));
    }
    out
}

async fn scrape(addr: SocketAddr) -> Option<(Option<f64>, Option<f64>)> {
    let fetch = async {
        let mut conn = HttpConn::open(addr, None, &addr.to_string()).await.ok()?;
        conn.request(http::Method::GET, "/metrics", &[], bytes::Bytes::new())
            .await
            .ok()
    };
    let res = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&res.body);
    Some((
        metric(&text, "process_resident_memory_bytes"),
        metric(&text, "process_cpu_seconds_total"),
    ))
}

/// The value of an unlabelled sample in Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unlabelled_samples() {
        let text = "# HELP x\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1048576\nother{a=\"b\"} 3\n";
        assert_eq!(metric(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(
            metric(text, "process_resident_memory_bytes"),
            Some(1048576.0)
        );
        assert_eq!(metric(text, "missing"), None);
    }
}
