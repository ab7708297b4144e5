//! Failure drills during the schedule (`--kill-node-at`, `--rolling-restart`,
//! `--restart-redis-at`, `--restart-postgres-at`): what an operator does to a cluster
//! before trusting it with a release, done to the nodes (and the Redis) this run spawned
//! — and to PostgreSQL through the operator's own restart command — while the clients
//! keep sending.
//!
//! Each drill opens a *window* in every worker ([`Command::Window`]) as it begins and
//! closes it a recovery window after its last action: the latencies and API failures of
//! what is sent inside are measured apart, so the phase's criteria are judged outside
//! the windows, and the drill's own figures (how fast the disconnected clients came
//! back, what was lost and why) are reported beside them.
//!
//! Where the disconnected clients go: each rotates through the node list, starting at a
//! random other node (the worker's reconnect module) — the drill measures clients that
//! know every node's address (as `--url a,b,c` gives them), not a load balancer's
//! failover.

use super::ipc::Command;
use super::observe::{Observer, Update};
use super::processes::Commander;
use super::spawn::Cluster;
use super::Clock;
use serde::Serialize;
use std::time::Duration;

/// The drills a run makes (all relative to the schedule's start).
#[derive(Debug, Clone, PartialEq)]
pub struct Drills {
    /// SIGKILL the last node at this time; it starts again `restart_after` later.
    pub kill_node_at: Option<Duration>,
    pub restart_after: Duration,
    /// Each node in turn: SIGTERM, wait for its exit, start it, wait until ready, wait
    /// `rolling_pause` (Kubernetes' `minReadySeconds`: the clients it lost settle on the
    /// others before the next node goes).
    pub rolling_restart_at: Option<Duration>,
    pub rolling_pause: Duration,
    /// Restart one node (SIGTERM, start, ready) every this long, the nodes in turn: a
    /// soak's steady stream of deploys.
    pub restart_node_every: Option<Duration>,
    /// Restart the spawned redis-server (SIGTERM, start again at once).
    pub restart_redis_at: Option<Duration>,
    /// Restart PostgreSQL with this command (`sh -c`), which the operator gives, or
    /// (`None`) the PostgreSQL this run started for its nodes.
    pub restart_postgres: Option<(Duration, Option<String>)>,
    /// How long after a drill's last action its window stays open: the time the
    /// cluster is given to recover before the phase's criteria apply again.
    pub recovery_window: Duration,
}

impl Default for Drills {
    fn default() -> Self {
        Drills {
            kill_node_at: None,
            restart_after: Duration::from_secs(5),
            rolling_restart_at: None,
            rolling_pause: Duration::from_secs(5),
            restart_node_every: None,
            restart_redis_at: None,
            restart_postgres: None,
            recovery_window: Duration::from_secs(10),
        }
    }
}

/// One kind of drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    KillNode,
    RollingRestart,
    RestartRedis,
    RestartPostgres,
    /// The n-th periodic restart (of node n mod the node count).
    RestartNode(usize),
}

impl Drills {
    /// Whether any drill is asked for (the clients then reconnect after a close).
    pub fn any(&self) -> bool {
        self.restart_node_every.is_some() || !self.planned(Duration::MAX).is_empty()
    }

    /// Whether a drill restarts Redis (which the run must have started).
    pub fn restarts_redis(&self) -> bool {
        self.restart_redis_at.is_some()
    }

    /// The drills in the order they start, within a schedule of `duration`.
    fn planned(&self, duration: Duration) -> Vec<(Duration, Kind)> {
        let mut out: Vec<(Duration, Kind)> = [
            (self.kill_node_at, Kind::KillNode),
            (self.rolling_restart_at, Kind::RollingRestart),
            (self.restart_redis_at, Kind::RestartRedis),
            (
                self.restart_postgres.as_ref().map(|(at, _)| *at),
                Kind::RestartPostgres,
            ),
        ]
        .into_iter()
        .filter_map(|(at, kind)| Some((at?, kind)))
        .collect();
        if let Some(every) = self.restart_node_every.filter(|d| !d.is_zero()) {
            let periodic = (1..)
                .map(|n: u32| (every * n, Kind::RestartNode(n as usize - 1)))
                .take_while(|(at, _)| *at < duration);
            out.extend(periodic);
        }
        out.sort_by_key(|(at, _)| *at);
        out
    }
}

/// Something a drill did, in seconds from the schedule's start.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub at_s: f64,
    pub what: String,
}

/// What the drills did: their steps, their windows (seconds from the schedule's
/// start), and the actions that failed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timeline {
    pub steps: Vec<Step>,
    pub windows_s: Vec<(f64, f64)>,
    pub failures: Vec<String>,
}

/// Runs the drills against `cluster` from the schedule's start (`start_ms`, Unix ms),
/// telling the workers about each window.
pub(super) async fn run(
    drills: &Drills,
    cluster: &mut Cluster,
    workers: &Commander,
    start_ms: f64,
    duration: Duration,
    observer: &dyn Observer,
) -> Timeline {
    let mut run = Run {
        clock: Clock::new(),
        start_ms,
        workers,
        observer,
        timeline: Timeline::default(),
    };
    for (at, kind) in drills.planned(duration) {
        let due = run.clock.instant(start_ms + at.as_secs_f64() * 1000.0);
        tokio::time::sleep_until(due.into()).await;
        let from = run.clock.now_ms();
        run.window(from, None).await;
        match kind {
            Kind::KillNode => run.kill_node(cluster, drills.restart_after).await,
            Kind::RollingRestart => run.rolling_restart(cluster, drills.rolling_pause).await,
            Kind::RestartRedis => run.restart_redis(cluster).await,
            Kind::RestartNode(n) => {
                run.restart_node(cluster, n % cluster.nodes.len()).await;
            }
            Kind::RestartPostgres => {
                let given = drills
                    .restart_postgres
                    .as_ref()
                    .and_then(|(_, c)| c.clone());
                match given.or_else(|| cluster.postgres_restart_command()) {
                    Some(command) => run.restart_postgres(&command).await,
                    None => {
                        run.failed("no PostgreSQL to restart: pass --restart-postgres-cmd".into())
                    }
                }
            }
        }
        tokio::time::sleep(drills.recovery_window).await;
        let to = run.clock.now_ms();
        run.window(from, Some(to)).await;
        let secs = |ms: f64| (ms - start_ms) / 1000.0;
        run.timeline.windows_s.push((secs(from), secs(to)));
    }
    run.timeline
}

/// A drill run in progress.
struct Run<'a> {
    clock: Clock,
    start_ms: f64,
    workers: &'a Commander,
    observer: &'a dyn Observer,
    timeline: Timeline,
}

/// How long a node may take to drain and exit on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl Run<'_> {
    async fn window(&mut self, from: f64, to: Option<f64>) {
        let cmd = Command::Window {
            from_unix_ms: from,
            to_unix_ms: to,
        };
        if let Err(e) = self.workers.send(&cmd).await {
            self.failed(format!("telling the workers about the drill window: {e}"));
        }
    }

    fn step(&mut self, what: String) {
        self.observer.update(Update::Drill(&what));
        let at_s = (self.clock.now_ms() - self.start_ms) / 1000.0;
        self.timeline.steps.push(Step { at_s, what });
    }

    fn failed(&mut self, what: String) {
        self.step(format!("FAILED: {what}"));
        self.timeline.failures.push(what);
    }

    /// SIGKILL the last node, wait `restart_after`, start it again.
    async fn kill_node(&mut self, cluster: &mut Cluster, restart_after: Duration) {
        let i = cluster.nodes.len() - 1;
        cluster.kill_node(i, self.observer).await;
        self.step(format!("node {i} killed (SIGKILL)"));
        tokio::time::sleep(restart_after).await;
        self.start_again(cluster, i).await;
    }

    /// Each node in turn: SIGTERM (it drains), wait for the exit, start, wait until
    /// ready, then `pause` — the next node only once this one serves again.
    async fn rolling_restart(&mut self, cluster: &mut Cluster, pause: Duration) {
        for i in 0..cluster.nodes.len() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            if !self.restart_node(cluster, i).await {
                return;
            }
        }
    }

    /// One node: SIGTERM (it drains), wait for the exit, start, wait until ready.
    async fn restart_node(&mut self, cluster: &mut Cluster, i: usize) -> bool {
        let took = cluster.terminate_node(i, STOP_TIMEOUT, self.observer).await;
        self.step(format!(
            "node {i} stopped (SIGTERM), exited after {:.1} s",
            took.as_secs_f64()
        ));
        self.start_again(cluster, i).await
    }

    async fn start_again(&mut self, cluster: &mut Cluster, i: usize) -> bool {
        match cluster.start_node(i).await {
            Ok(()) => {
                self.step(format!("node {i} started again and ready"));
                true
            }
            Err(e) => {
                self.failed(format!("starting node {i} again: {e}"));
                false
            }
        }
    }

    async fn restart_redis(&mut self, cluster: &mut Cluster) {
        match cluster.restart_redis(self.observer).await {
            Ok(gone) => self.step(format!(
                "redis-server restarted (SIGTERM, started again): down {:.1} s",
                gone.as_secs_f64()
            )),
            Err(e) => self.failed(format!("restarting redis-server: {e}")),
        }
    }
}

/// How long the PostgreSQL restart command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Run<'_> {
    /// Runs the operator's restart command (`sh -c`), bounded by [`COMMAND_TIMEOUT`].
    async fn restart_postgres(&mut self, command: &str) {
        let started = std::time::Instant::now();
        let run = tokio::process::Command::new("sh")
            .args(["-c", command])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => self.step(format!(
                "PostgreSQL restarted (`{command}`): {:.1} s",
                started.elapsed().as_secs_f64()
            )),
            Ok(Ok(out)) => self.failed(format!(
                "`{command}` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(Err(e)) => self.failed(format!("cannot run `{command}`: {e}")),
            Err(_) => self.failed(format!(
                "`{command}` did not finish within {COMMAND_TIMEOUT:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drills_run_in_the_order_they_start() {
        let none = Drills::default();
        assert!(!none.any());
        let d = Drills {
            kill_node_at: Some(Duration::from_secs(20)),
            rolling_restart_at: Some(Duration::from_secs(5)),
            restart_redis_at: Some(Duration::from_secs(40)),
            ..Drills::default()
        };
        assert!(d.any() && d.restarts_redis());
        let kinds: Vec<Kind> = d
            .planned(Duration::MAX)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            kinds,
            [Kind::RollingRestart, Kind::KillNode, Kind::RestartRedis]
        );
        let soak = Drills {
            restart_node_every: Some(Duration::from_secs(600)),
            ..Drills::default()
        };
        assert!(soak.any());
        let hour: Vec<(u64, Kind)> = soak
            .planned(Duration::from_secs(3600))
            .into_iter()
            .map(|(at, k)| (at.as_secs(), k))
            .collect();
        assert_eq!(hour.len(), 5, "at 10, 20, 30, 40, 50 min: {hour:?}");
        assert_eq!(hour[4], (3000, Kind::RestartNode(4)));
    }
}
