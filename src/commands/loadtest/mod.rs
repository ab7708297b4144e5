//! `rtctl loadtest`: drive one or more nodes with many Socket.IO clients and judge the
//! phase 1–3 success criteria. The run is the library's ([`crate::loadtest`]); this is
//! the command line, the terminal display ([`progress`]), the report on stdout (and in
//! `--report`), and the exit code of the verdict.

mod progress;
mod worker;

use crate::client::backoff::Reconnection;
use crate::client::Transport;
use crate::commands::Exit;
use crate::loadtest::drill::Drills;
use crate::loadtest::gate::Gate;
use crate::loadtest::junit;
use crate::loadtest::{Options, Scenario, Verdict};
use crate::node_addr::NodeUrl;
use anyhow::Context as _;
use progress::TerminalProgress;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Each message carries its intended send time; latency is measured from it to every receiver
(open model: no coordinated omission). Clients are sharded over worker processes (this
executable, re-run) of at most 18,000 sockets each; the report merges their histograms.
Gates fix the workload and criteria (explicit flags may only make it heavier):
  phase1: 1,000 clients, 100 msg/s, 20 API req/s, message p99 < 100 ms, API p99 < 500 ms
  phase2: 10,000 clients, 1,000 msg/s, 50 API req/s, p99 < 50 ms, API p99 < 200 ms
  phase3: 100,000 clients, 2,000 msg/s, 100 API req/s, p99 < 20 ms, API p99 < 100 ms
  and for all: >= 99.9% of clients held to the end, no message or notification lost;
  10% of the clients and messages are stored /chat 1:1 messages (--chat-share), their
  p99 judged apart, every acked one in the database exactly once at the end. Spawned
  nodes then share a PostgreSQL the run starts when one is installed (else --database-url
  or one SQLite file); the report says which store and adapter they ran on.
Without --gate a run is judged on held clients and loss, plus --max-p99 / --max-api-p99.
Drills (--kill-node-at, --rolling-restart, --restart-redis-at) act on the spawned nodes;
clients that lose their node reconnect (socket.io-client's backoff), rotating through the
node list. Latency and API criteria are then judged outside the drill windows (drill start
to --recovery-window after its last action), loss on acknowledged messages, and the
drills must bring every client back with a reconnect p99 under 5 s.
Exit codes: 0 all criteria hold, 1 a criterion failed, 2 the run could not be made."
)]
pub struct LoadtestCommand {
    #[command(subcommand)]
    pub sub: Option<worker::LoadtestSub>,

    /// Nodes to connect to, comma-separated (http://host:port).
    #[arg(long, value_delimiter = ',', value_name = "URL", value_parser = NodeUrl::parse)]
    pub url: Vec<NodeUrl>,

    /// Start M local nodes (and redis-server when M > 1 and no REDIS_URL) for the run.
    #[arg(long, value_name = "M", default_value_t = 0)]
    pub spawn_nodes: usize,

    /// Concurrent clients [default: 1000, or the gate's].
    #[arg(long, value_name = "N")]
    pub clients: Option<u64>,

    /// Clients connected per second (`500` or `500/s`).
    #[arg(long, value_name = "R/s", default_value = "1000", value_parser = parse_rate)]
    pub ramp: f64,

    /// How long the message schedule runs once all are connected (`30s`, `2m`).
    #[arg(long, value_name = "D", default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    #[arg(long, value_enum, default_value_t = Scenario::Mixed)]
    pub scenario: Scenario,

    /// Mixed scenario: the share of clients and of the message rate in stored /chat 1:1
    /// rooms (`10%` or `0.1`) [default: 0, or the gate's 10%].
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    pub chat_share: Option<f64>,

    /// Members per /bench room (chat rooms are 1:1: always 2).
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub room_size: u64,

    /// Room messages per second, all rooms together [default: 100, or the gate's].
    #[arg(long, value_name = "MSGS/s", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// POST /api/notifications per second [default: 20, or the gate's].
    #[arg(long, value_name = "REQ/s", value_parser = parse_rate)]
    pub api_rate: Option<f64>,

    #[arg(long, value_enum, default_value_t = TransportArg::Websocket)]
    pub transport: TransportArg,

    /// The servers' NEXTAUTH_SECRET, to mint client tokens (generated with --spawn-nodes).
    #[arg(
        long,
        env = "NEXTAUTH_SECRET",
        hide_env_values = true,
        value_name = "S"
    )]
    pub token_secret: Option<String>,

    /// The servers' RT_SERVICE_TOKEN, for the API (generated with --spawn-nodes).
    #[arg(
        long,
        env = "RT_SERVICE_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub service_token: Option<String>,

    /// Fix the workload and criteria of a phase and judge them.
    #[arg(long, value_enum)]
    pub gate: Option<Gate>,

    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<std::path::PathBuf>,

    /// Write the criteria as JUnit XML to this file, one test case per criterion (a
    /// failure says actual vs target), for CI systems' test reports.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<std::path::PathBuf>,

    /// Workers, comma-separated: a number of local processes [default: as few as the
    /// open-files limit allows], and/or `HOST:PORT` of `rtctl loadtest worker --listen`
    /// on other machines (then no local ones unless a number is given too).
    #[arg(long, value_name = "W|HOST:PORT", value_delimiter = ',', value_parser = parse_worker)]
    pub workers: Vec<WorkerSpec>,

    /// The key the remote workers were started with (their `--key`).
    #[arg(long, env = "LOADTEST_WORKER_KEY", hide_env_values = true)]
    pub worker_key: Option<String>,

    /// Redis for spawned nodes (default: a local redis-server when M > 1).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis_url: Option<String>,

    /// Without --gate: fail (exit 1) when the message latency p99 is not below MS.
    #[arg(long, value_name = "MS", conflicts_with = "gate")]
    pub max_p99: Option<f64>,

    /// Without --gate: fail (exit 1) when the API response p99 is not below MS.
    #[arg(long, value_name = "MS", conflicts_with = "gate")]
    pub max_api_p99: Option<f64>,

    /// Seconds one client may take to connect and join.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub connect_timeout: u64,

    /// Drop the transport of R random clients per second during the schedule (`50` or
    /// `50/s`); they reconnect as socket.io-client does (backoff 1 s–5 s, ±50 %) and ask
    /// to recover their session. WebSocket and a scenario with room messages only.
    #[arg(long, value_name = "R/s", default_value = "0", value_parser = parse_rate)]
    pub churn: f64,

    /// Run the spawned nodes with connection state recovery (`--connection-state-recovery`
    /// of `serve`). With --url, the nodes' own setting decides.
    #[arg(long, requires = "spawn_nodes")]
    pub recovery: bool,

    /// The spawned nodes' cluster adapter (`--adapter` of `serve`): `redis` (pub/sub, the
    /// default), `redis-streams` (streams: recovery works on any node) or `redis-sharded`
    /// (sharded pub/sub: room traffic reaches only the nodes with the room).
    #[arg(long, requires = "spawn_nodes", value_parser = ["redis", "redis-streams", "redis-sharded"])]
    pub adapter: Option<String>,

    /// Drill: SIGKILL the last spawned node T into the schedule (`15s`); it starts again
    /// after --restart-after. Its clients reconnect to the other nodes.
    #[arg(long, value_name = "T", requires = "spawn_nodes", value_parser = parse_duration)]
    pub kill_node_at: Option<Duration>,

    /// How long a node killed by --kill-node-at stays down.
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    pub restart_after: Duration,

    /// Drill: restart every spawned node in turn, T into the schedule (default 5s): SIGTERM
    /// (readiness 503, drain, exit), start again, wait until ready, next node.
    #[arg(long, value_name = "T", requires = "spawn_nodes", num_args = 0..=1,
          default_missing_value = "5s", value_parser = parse_duration)]
    pub rolling_restart: Option<Duration>,

    /// In --rolling-restart, the pause after a node is ready before the next one stops
    /// (Kubernetes' minReadySeconds).
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    pub rolling_pause: Duration,

    /// Drill for soaks: restart one spawned node every D (SIGTERM, start, ready), the
    /// nodes in turn.
    #[arg(long, value_name = "D", requires = "spawn_nodes", value_parser = parse_duration)]
    pub restart_node_every: Option<Duration>,

    /// Read each node's resident memory every D during the schedule and report the
    /// slope of each node once warm (a soak's memory check).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub sample_rss_every: Option<Duration>,

    /// Measure these server processes on this machine from /proc (comma-separated
    /// pids): CPU median, user vs kernel time, CPU per delivery, context switches, RSS
    /// growth per connection — alike for any server (ours, Node, socketioxide).
    #[arg(long, value_name = "PID[,PID…]", value_delimiter = ',')]
    pub watch_pid: Vec<u32>,

    /// With --sample-rss-every: how long after its (re)start a node's memory is left out
    /// of the slope.
    #[arg(long, value_name = "D", default_value = "5m", value_parser = parse_duration)]
    pub rss_warm_up: Duration,

    /// Drill: restart PostgreSQL T into the schedule: the one this run started for its
    /// nodes, or by running --restart-postgres-cmd.
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub restart_postgres_at: Option<Duration>,

    /// The command that restarts the nodes' PostgreSQL (run with `sh -c`, e.g.
    /// `pg_ctl -D /var/lib/postgresql/data restart -m fast`).
    #[arg(long, value_name = "CMD", requires = "restart_postgres_at")]
    pub restart_postgres_cmd: Option<String>,

    /// The database the spawned nodes share (PostgreSQL; they migrate it). Without it
    /// each node has a SQLite file (the chat scenario: one file they share).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Drill: restart the spawned redis-server T into the schedule (SIGTERM, started
    /// again at once on the same port).
    #[arg(long, value_name = "T", requires = "spawn_nodes", value_parser = parse_duration)]
    pub restart_redis_at: Option<Duration>,

    /// How long after a drill's last action the cluster has to recover: what is sent
    /// from the drill's start to the end of this window is measured apart, and the
    /// criteria are judged on the rest.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    pub recovery_window: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportArg {
    Websocket,
    Polling,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s");
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a rate (e.g. 100 or 100/s)")),
    }
}

/// A share: `10%` or `0.1`, from 0 to 1.
fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a share (e.g. 10% or 0.1, at most 100%)"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 30s, 2m, 500ms)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl LoadtestCommand {
    /// The run's settings: the gate's workload, made heavier (never lighter) by flags.
    pub fn options(&self) -> Result<Options, Exit> {
        let usage = |m: String| Exit::new(2, m);
        if self.room_size < 2 {
            return Err(usage(
                "--room-size must be at least 2 (a room needs a receiver)".into(),
            ));
        }
        let (mut clients, mut rate, mut api_rate) = (1000, 100.0, 20.0);
        if let Some(g) = self.gate {
            let c = g.criteria();
            let weaker = |what: &str, given: f64, need: f64| -> Result<(), Exit> {
                if given < need {
                    Err(usage(format!(
                        "--gate {} needs {what} >= {need}, got {given}: flags may not weaken a gate",
                        g.as_str()
                    )))
                } else {
                    Ok(())
                }
            };
            weaker(
                "--clients",
                self.clients.unwrap_or(c.clients) as f64,
                c.clients as f64,
            )?;
            weaker(
                "--rate",
                self.rate.unwrap_or(c.messages_per_s),
                c.messages_per_s,
            )?;
            weaker(
                "--api-rate",
                self.api_rate.unwrap_or(c.api_per_s),
                c.api_per_s,
            )?;
            weaker("--room-size", self.room_size as f64, 10.0)?;
            weaker(
                "--chat-share",
                self.chat_share.unwrap_or(c.chat_share),
                c.chat_share,
            )?;
            if self.scenario != Scenario::Mixed {
                return Err(usage(format!(
                    "--gate {} runs the mixed scenario (rooms + notifications), not {}",
                    g.as_str(),
                    self.scenario.as_str()
                )));
            }
            (clients, rate, api_rate) = (c.clients, c.messages_per_s, c.api_per_s);
        }
        let clients = self.clients.unwrap_or(clients);
        if clients == 0 {
            return Err(usage("--clients must be at least 1".into()));
        }
        if self.spawn_nodes == 0 && self.url.is_empty() {
            return Err(usage("pass --url URL[,URL…] or --spawn-nodes M".into()));
        }
        self.check_churn().map_err(usage)?;
        let drills = self.drills().map_err(usage)?;
        Ok(Options {
            urls: self.url.clone(),
            spawn_nodes: self.spawn_nodes,
            clients,
            ramp: self.ramp.max(1.0),
            duration: self.duration,
            scenario: self.scenario,
            room_size: if self.scenario == Scenario::Chat {
                2
            } else {
                self.room_size
            },
            rate: self.rate.unwrap_or(rate),
            api_rate: self.api_rate.unwrap_or(api_rate),
            transport: match self.transport {
                TransportArg::Websocket => Transport::Websocket,
                TransportArg::Polling => Transport::Polling,
            },
            token_secret: self.token_secret.clone().filter(|s| !s.is_empty()),
            service_token: self.service_token.clone().filter(|s| !s.is_empty()),
            gate: self.gate,
            workers: self.local_workers()?,
            remote_workers: self
                .workers
                .iter()
                .filter_map(|w| match w {
                    WorkerSpec::Remote(addr) => Some(addr.clone()),
                    WorkerSpec::Local(_) => None,
                })
                .collect(),
            worker_key: self.worker_key.clone().filter(|k| !k.is_empty()),
            redis_url: self.redis_url.clone().filter(|s| !s.is_empty()),
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            max_p99_ms: self.max_p99,
            max_api_p99_ms: self.max_api_p99,
            churn: self.churn,
            reconnection: Reconnection::default(),
            recovery: self.recovery,
            adapter: self.adapter.clone(),
            drills,
            database_url: self.database_url.clone().filter(|s| !s.is_empty()),
            rss_sampling: self.sample_rss_every.map(|every| (every, self.rss_warm_up)),
            watch_pids: self.watch_pid.clone(),
            chat_share: self.chat_share.unwrap_or(match self.gate {
                Some(g) => g.criteria().chat_share,
                None => 0.0,
            }),
        })
    }

    /// The drills asked for; each must start within the schedule.
    fn drills(&self) -> Result<Drills, String> {
        let drills = Drills {
            kill_node_at: self.kill_node_at,
            restart_after: self.restart_after,
            rolling_restart_at: self.rolling_restart,
            rolling_pause: self.rolling_pause,
            restart_node_every: self.restart_node_every,
            restart_postgres: self
                .restart_postgres_at
                .map(|at| (at, self.restart_postgres_cmd.clone())),
            restart_redis_at: self.restart_redis_at,
            recovery_window: self.recovery_window,
        };
        for (flag, at) in [
            ("--kill-node-at", self.kill_node_at),
            ("--rolling-restart", self.rolling_restart),
            ("--restart-redis-at", self.restart_redis_at),
            ("--restart-postgres-at", self.restart_postgres_at),
        ] {
            if at.is_some_and(|at| at >= self.duration) {
                return Err(format!(
                    "{flag} must fall within the schedule (--duration {:?})",
                    self.duration
                ));
            }
        }
        if drills.any() && self.transport != TransportArg::Websocket {
            return Err("drills need --transport websocket (as --churn does)".into());
        }
        if drills.restarts_redis() && (self.spawn_nodes < 2 || self.redis_url.is_some()) {
            return Err(
                "--restart-redis-at restarts the Redis this run starts: --spawn-nodes 2 or \
                 more, without --redis-url"
                    .into(),
            );
        }
        Ok(drills)
    }

    /// `--churn` needs clients in rooms (it drops room members) and WebSocket: a dropped
    /// long-polling client is only noticed at the ping timeout, after it came back.
    fn check_churn(&self) -> Result<(), String> {
        if self.churn <= 0.0 {
            return Ok(());
        }
        if !self.scenario.messages() {
            return Err(format!(
                "--churn drops clients in rooms: the {} scenario has none (use rooms, mixed \
                 or chat)",
                self.scenario.as_str()
            ));
        }
        if self.transport != TransportArg::Websocket {
            return Err(
                "--churn needs --transport websocket: a dropped long-polling client \
                        is only noticed at the server's ping timeout"
                    .into(),
            );
        }
        Ok(())
    }

    /// Writes `--junit`'s file, when asked for.
    fn write_junit(&self, xml: impl FnOnce() -> String) -> anyhow::Result<()> {
        if let Some(path) = &self.junit {
            std::fs::write(path, xml())
                .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
        }
        Ok(())
    }

    /// The number of local worker processes `--workers` gave, if any.
    fn local_workers(&self) -> Result<Option<usize>, Exit> {
        let numbers: Vec<usize> = self
            .workers
            .iter()
            .filter_map(|w| match w {
                WorkerSpec::Local(n) => Some(*n),
                WorkerSpec::Remote(_) => None,
            })
            .collect();
        match numbers.as_slice() {
            [] => Ok(None),
            [n] => Ok(Some(*n)),
            _ => Err(Exit::new(
                2,
                "--workers takes one number (of local workers) beside any HOST:PORT",
            )),
        }
    }

    /// Exit codes: 0 the criteria hold, 1 one failed (after the report), 2 no run.
    pub async fn run(self) -> anyhow::Result<()> {
        if let Some(sub) = self.sub {
            return sub.run().await;
        }
        let name = self.gate.map_or("loadtest", Gate::as_str);
        let opts = match self.options() {
            Ok(opts) => opts,
            Err(e) => {
                self.write_junit(|| junit::render_error(name, &e.to_string()))?;
                return Err(e.into());
            }
        };
        let progress = Arc::new(TerminalProgress::new());
        let outcome =
            crate::loadtest::run(opts, crate::app::shutdown_signal(), progress.clone()).await;
        progress.clear();
        let verdict = match outcome {
            Ok(verdict) => verdict,
            Err(e) => {
                self.write_junit(|| junit::render_error(name, &e.to_string()))?;
                return Err(Exit::new(2, e.to_string()).into());
            }
        };
        print!("{}", verdict.report().render());
        if let Some(path) = &self.report {
            let text = serde_json::to_string_pretty(&verdict.report().to_json())?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        self.write_junit(|| {
            junit::render(&junit::Suite {
                name,
                checks: &verdict.report().checks,
                seconds: verdict.report().run_seconds,
            })
        })?;
        match verdict {
            Verdict::Met(_) => {
                println!("{name}: all criteria hold");
                Ok(())
            }
            Verdict::Failed(_) => {
                let failed = verdict.failed_criteria().join(", ");
                Err(Exit::new(1, format!("{name}: criteria failed: {failed}")).into())
            }
        }
    }
}

/// One entry of `--workers`: a number of local worker processes, or a remote worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerSpec {
    Local(usize),
    Remote(String),
}

fn parse_worker(s: &str) -> Result<WorkerSpec, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n == 0 {
            Err("a number of local workers is at least 1".into())
        } else {
            Ok(WorkerSpec::Local(n))
        };
    }
    crate::node_addr::NodeAddr::parse(s)
        .map(|_| WorkerSpec::Remote(s.to_owned()))
        .map_err(|e| {
            format!("{s:?} is neither a number of local workers nor HOST:PORT of `rtctl loadtest worker` ({e})")
        })
}

/// The hidden `rtctl loadtest-worker`: one worker process of a load test (JSON lines on
/// stdin/stdout; started by `rtctl loadtest`, not by people).
#[derive(clap::Args, Debug)]
pub struct LoadtestWorkerCommand {}

impl LoadtestWorkerCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        Ok(crate::loadtest::worker::main().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cmd: LoadtestCommand,
    }

    fn options(argv: &[&str]) -> Result<Options, String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.cmd.options().map_err(|e| e.message)
    }

    #[test]
    fn workers_are_a_local_count_and_remote_addresses() {
        let url = ["--url", "http://127.0.0.1:1"];
        let with = |w: &str| options(&[url[0], url[1], "--workers", w]);
        let o = with("3").unwrap();
        assert_eq!((o.workers, o.remote_workers.len()), (Some(3), 0));
        let o = with("10.0.0.5:7070,lg2:7070").unwrap();
        assert_eq!(o.workers, None);
        assert_eq!(o.remote_workers, ["10.0.0.5:7070", "lg2:7070"]);
        let o = with("2,10.0.0.5:7070").unwrap();
        assert_eq!((o.workers, o.remote_workers.len()), (Some(2), 1));
        assert!(with("0").unwrap_err().contains("at least 1"));
        assert!(with("lg2")
            .unwrap_err()
            .contains("neither a number of local workers nor HOST:PORT"));
        assert!(with("2,3").unwrap_err().contains("one number"));
    }

    #[test]
    fn a_gate_sets_the_workload_and_flags_cannot_weaken_it() {
        let o = options(&["--spawn-nodes", "2", "--gate", "phase2"]).unwrap();
        assert_eq!((o.clients, o.rate, o.api_rate), (10_000, 1000.0, 50.0));
        assert_eq!(o.chat_share, 0.1, "a tenth on stored /chat");
        let o = options(&["--spawn-nodes", "2", "--chat-share", "25%"]).unwrap();
        assert_eq!(o.chat_share, 0.25);
        let o = options(&["--spawn-nodes", "2"]).unwrap();
        assert_eq!(o.chat_share, 0.0, "no chat share without a gate");
        let o = options(&[
            "--spawn-nodes",
            "2",
            "--gate",
            "phase1",
            "--clients",
            "2000",
        ])
        .unwrap();
        assert_eq!(o.clients, 2000);
        for (argv, needle) in [
            (&["--gate", "phase1", "--clients", "500"][..], "--clients"),
            (&["--gate", "phase1", "--rate", "10/s"][..], "--rate"),
            (&["--gate", "phase1", "--api-rate", "1"][..], "--api-rate"),
            (&["--gate", "phase1", "--room-size", "5"][..], "--room-size"),
            (&["--gate", "phase1", "--scenario", "rooms"][..], "mixed"),
            (
                &["--gate", "phase1", "--chat-share", "5%"][..],
                "--chat-share",
            ),
        ] {
            let mut a = vec!["--spawn-nodes", "1"];
            a.extend_from_slice(argv);
            let err = options(&a).unwrap_err();
            assert!(err.contains(needle), "{argv:?} -> {err}");
        }
        assert!(options(&["--clients", "10"]).unwrap_err().contains("--url"));
    }

    #[test]
    fn rates_and_durations_parse() {
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_share("150%").unwrap_err().contains("at most 100%"));
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn churn_takes_a_rate_and_needs_rooms_and_websocket() {
        let o = options(&["--spawn-nodes", "1", "--churn", "50/s", "--recovery"]).unwrap();
        assert_eq!((o.churn, o.recovery), (50.0, true));
        assert_eq!(
            options(&["--url", "http://127.0.0.1:1", "--churn", "20"])
                .unwrap()
                .churn,
            20.0
        );
        let o = options(&["--url", "http://127.0.0.1:1"]).unwrap();
        assert_eq!((o.churn, o.recovery), (0.0, false));
        for (argv, needle) in [
            (&["--churn", "often"][..], "not a rate"),
            (&["--churn=-5"][..], "not a rate"),
            (
                &["--churn", "5", "--scenario", "notifications"][..],
                "rooms",
            ),
            (&["--churn", "5", "--transport", "polling"][..], "websocket"),
        ] {
            let mut a = vec!["--spawn-nodes", "1"];
            a.extend_from_slice(argv);
            let err = options(&a).unwrap_err();
            assert!(err.contains(needle), "{argv:?} -> {err}");
        }
        // The nodes of --url decide for themselves.
        let err = options(&["--url", "http://127.0.0.1:1", "--recovery"]).unwrap_err();
        assert!(err.contains("--spawn-nodes"), "{err}");
    }
}
