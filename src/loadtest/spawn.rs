//! `--spawn-nodes M`: M local nodes (this executable's `serve`, with the `/bench`
//! namespace) on free loopback ports, plus a local `redis-server` to join them when
//! M > 1 and no Redis URL is given. Their database ([`Database`]): the one given; else,
//! when the run stores chat messages (whose 1:1 rooms both members' nodes must see), a
//! local PostgreSQL this run starts ([`super::postgres`]) when the machine has one, or
//! else one SQLite file they share (WAL lets several processes write it; the first node
//! creates the schema before the others start); else a SQLite file per node. Measured:
//! with a shared file, two processes' INSERTs wait on each other's write lock (phase 2:
//! API p99 338 ms, chat message p99 269–481 ms), which is why chat runs on PostgreSQL.
//! Everything is stopped when the run ends, on error or Ctrl-C ([`Cluster`]'s drop kills
//! what a graceful stop did not reach).

use super::observe::{Observer, Update};
use super::postgres::{LocalPostgres, PostgresError};
use crate::client::http::HttpConn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Why the local nodes (or their Redis) could not be started; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("creating {}: {error}", dir.display())]
    TempDir { dir: PathBuf, error: std::io::Error },
    #[error("binding a free port: {0}")]
    FreePort(std::io::Error),
    #[error(
        "cannot start redis-server (install it: apt-get install redis-server), or pass \
         REDIS_URL: {0}"
    )]
    RedisServer(std::io::Error),
    #[error("redis-server did not start listening: nothing listening on {addr} after {timeout:?}")]
    RedisNotListening { addr: SocketAddr, timeout: Duration },
    #[error("cannot find this executable to run nodes: {0}")]
    Exe(std::io::Error),
    #[error("cannot start node {node} ({exe}): {error}")]
    Node {
        node: usize,
        exe: String,
        error: std::io::Error,
    },
    #[error("starting the nodes' PostgreSQL: {0}")]
    Postgres(#[from] PostgresError),
    #[error("node {node} on {addr} did not become ready: not ready after {timeout:?} ({last})")]
    NotReady {
        node: usize,
        addr: SocketAddr,
        timeout: Duration,
        last: String,
    },
}

pub struct Cluster {
    pub nodes: Vec<SocketAddr>,
    pub redis_url: Option<String>,
    /// Where the nodes store.
    pub database: Database,
    /// The database every node uses, when they share one (PostgreSQL, or the chat
    /// scenario's SQLite file): where the stored messages are checked.
    pub shared_database_url: Option<String>,
    /// Node `i` is `procs[i]`; Redis, when this run started it, is last.
    procs: Vec<Proc>,
    /// The PostgreSQL this run started, stopped after the nodes.
    postgres: Option<LocalPostgres>,
    dir: PathBuf,
}

/// A process this run started, with what it takes to start it again (drills restart
/// nodes and Redis on the same address).
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    addr: SocketAddr,
    redis: bool,
    /// `None` while it is stopped.
    child: Option<Child>,
}

impl Proc {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdout(Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches only `rtctl
            // loadtest`, which stops the nodes first and Redis last.
            .process_group(0)
            .kill_on_drop(true);
        if self.redis {
            cmd.stderr(Stdio::null());
        } else {
            cmd.stderr(Stdio::inherit())
                .env_remove("REDIS_URL")
                .env_remove("REDIS_HOST")
                .env_remove("DATABASE_URL")
                .env_remove("CONNECTION_STATE_RECOVERY")
                .env_remove("ADAPTER");
        }
        cmd
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        self.child = Some(self.command().spawn()?);
        Ok(())
    }

    /// Sends `signal` and waits up to `timeout` for the exit (then SIGKILL); how long
    /// it took to exit.
    async fn stop(&mut self, signal: i32, timeout: Duration, observer: &dyn Observer) -> Duration {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        if let Some(pid) = child.id() {
            // SAFETY: signalling a child process we started and have not yet reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
        if tokio::time::timeout(timeout, child.wait()).await.is_err() {
            observer.update(Update::Warning(&format!(
                "{} did not stop within {timeout:?}; killing it",
                self.name
            )));
            let _ = child.kill().await;
        }
        started.elapsed()
    }
}

/// A free loopback port (bound then released: another process could take it in between,
/// which start-up would then report).
fn free_port() -> Result<u16, SpawnError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(SpawnError::FreePort)?;
    Ok(l.local_addr().map_err(SpawnError::FreePort)?.port())
}

/// What the spawned nodes run with, beyond what every loadtest node gets.
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// `--connection-state-recovery`.
    pub recovery: bool,
    /// `--adapter` (with Redis).
    pub adapter: Option<String>,
    pub database: Database,
}

/// Where the spawned nodes store.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Database {
    /// A SQLite file per node: nothing is shared (the rooms and notifications
    /// workloads store notifications only, each on the node the API call reached).
    #[default]
    SqlitePerNode,
    /// One SQLite file all nodes share (chat, on a machine without PostgreSQL).
    SharedSqlite,
    /// A PostgreSQL this run starts with the binaries in this directory.
    LocalPostgres(PathBuf),
    /// The database given (`--database-url`), migrated by the nodes.
    Given(String),
}

impl Database {
    /// What the report says the nodes stored into.
    pub fn describe(&self) -> &'static str {
        match self {
            Database::SqlitePerNode => "SQLite (a file per node)",
            Database::SharedSqlite => "SQLite (one file, shared)",
            Database::LocalPostgres(_) => "PostgreSQL (local, started by this run)",
            Database::Given(url) if url.starts_with("postgres") => "PostgreSQL (shared)",
            Database::Given(_) => "the given database (shared)",
        }
    }
}

/// The secrets and the database the nodes share.
struct Shared<'a> {
    secret: &'a str,
    service_token: &'a str,
    settings: &'a NodeSettings,
    /// The URL every node uses, when they share a database.
    database_url: Option<String>,
}

/// Starts `count` nodes (and Redis when needed).
pub async fn start(
    count: usize,
    secret: &str,
    service_token: &str,
    redis_url: Option<String>,
    settings: &NodeSettings,
) -> Result<Cluster, SpawnError> {
    let dir = std::env::temp_dir().join(format!(
        "rtctl-loadtest-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    if let Err(error) = std::fs::create_dir_all(&dir) {
        return Err(SpawnError::TempDir { dir, error });
    }
    let mut cluster = Cluster {
        nodes: Vec::new(),
        redis_url,
        database: settings.database.clone(),
        shared_database_url: None,
        procs: Vec::new(),
        postgres: None,
        dir,
    };
    cluster.shared_database_url = match &settings.database {
        Database::SqlitePerNode => None,
        Database::SharedSqlite => Some(sqlite_url(&cluster.dir.join("loadtest.db"))),
        Database::Given(url) => Some(url.clone()),
        Database::LocalPostgres(bin) => {
            let bin = bin.clone();
            let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(&bin))
                .await
                .expect("starting PostgreSQL does not panic")?;
            let url = pg.url();
            cluster.postgres = Some(pg);
            Some(url)
        }
    };
    let redis = if count > 1 && cluster.redis_url.is_none() {
        let redis = start_redis().await?;
        cluster.redis_url = Some(format!("redis://{}", redis.addr));
        Some(redis)
    } else {
        None
    };
    let exe = std::env::current_exe().map_err(SpawnError::Exe)?;
    let shared = Shared {
        secret,
        service_token,
        settings,
        database_url: cluster.shared_database_url.clone(),
    };
    let threads = node_worker_threads(count);
    for i in 0..count {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut node = Proc {
            name: format!("node {i}"),
            program: exe.clone(),
            args: cluster.node_args(i, addr, &shared, threads),
            addr,
            redis: false,
            child: None,
        };
        node.spawn().map_err(|error| SpawnError::Node {
            node: i,
            exe: exe.display().to_string(),
            error,
        })?;
        cluster.procs.push(node);
        // One at a time: the first creates the SQLite schema, the others find it.
        cluster.wait_node(i).await?;
        cluster.nodes.push(addr);
    }
    cluster.procs.extend(redis);
    Ok(cluster)
}

/// A local `redis-server` on a free port, without persistence.
async fn start_redis() -> Result<Proc, SpawnError> {
    let port = free_port()?;
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxclients",
        "10000",
    ];
    let mut redis = Proc {
        name: "redis-server".into(),
        program: "redis-server".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        addr: ([127, 0, 0, 1], port).into(),
        redis: true,
        child: None,
    };
    redis.spawn().map_err(SpawnError::RedisServer)?;
    wait_tcp(redis.addr, Duration::from_secs(10)).await?;
    Ok(redis)
}

/// Task threads for each of `nodes` spawned nodes: one each when they are at least as
/// many as the cores (on 2 cores a one-thread node spent 20–23 % less CPU per delivery
/// than a multi-threaded one, docs/scaling/benchmarks.md), else one per core (0).
fn node_worker_threads(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if nodes >= cores {
        1
    } else {
        0
    }
}

impl Cluster {
    /// Node `i`'s `serve` arguments.
    fn node_args(
        &self,
        i: usize,
        addr: SocketAddr,
        shared: &Shared<'_>,
        threads: usize,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            addr.to_string(),
            "--loadtest-namespace".into(),
            "--auth-secret".into(),
            shared.secret.into(),
            "--service-token".into(),
            shared.service_token.into(),
            "--database-url".into(),
            self.database_url(i, shared),
            "--node-id".into(),
            format!("loadtest-{i}"),
            "--log-level".into(),
            "warn".into(),
            // The loadtest's senders are not people: no per-user rate limit, no
            // per-socket event budget.
            "--rate-limit".into(),
            "message:send=1000000000/1".into(),
            "--socket-event-budget".into(),
            "0".into(),
            "--worker-threads".into(),
            threads.to_string(),
        ];
        if let Some(url) = &self.redis_url {
            args.extend(["--redis-url".into(), url.clone()]);
        }
        if matches!(
            shared.settings.database,
            Database::Given(_) | Database::LocalPostgres(_)
        ) {
            args.push("--db-auto-migrate".into());
        }
        if shared.settings.recovery {
            args.push("--connection-state-recovery".into());
        }
        if let Some(adapter) = &shared.settings.adapter {
            args.extend(["--adapter".into(), adapter.clone()]);
        }
        args
    }

    /// Node `i`'s database: the one they share, or a SQLite file of its own.
    fn database_url(&self, i: usize, shared: &Shared<'_>) -> String {
        match &shared.database_url {
            Some(url) => url.clone(),
            None => sqlite_url(&self.dir.join(format!("loadtest-{i}.db"))),
        }
    }

    /// Drills: the command that restarts the PostgreSQL this run started, if it did.
    pub fn postgres_restart_command(&self) -> Option<String> {
        self.postgres.as_ref().map(LocalPostgres::restart_command)
    }

    /// Waits until node `i` is ready.
    async fn wait_node(&self, i: usize) -> Result<(), SpawnError> {
        let addr = self.procs[i].addr;
        let timeout = Duration::from_secs(30);
        wait_ready(addr, timeout)
            .await
            .map_err(|last| SpawnError::NotReady {
                node: i,
                addr,
                timeout,
                last,
            })
    }

    /// The redis-server this run started, if it started one (its CPU is measured).
    pub fn redis_pid(&self) -> Option<u32> {
        self.redis().and_then(|r| r.child.as_ref()?.id())
    }

    fn redis(&self) -> Option<&Proc> {
        self.procs.iter().find(|p| p.redis)
    }

    /// Whether this run started Redis (so a drill may restart it).
    pub fn has_redis(&self) -> bool {
        self.redis().is_some()
    }

    /// Drills: kills node `i` at once (SIGKILL: no drain, its clients just lose the
    /// connection).
    pub async fn kill_node(&mut self, i: usize, observer: &dyn Observer) {
        self.procs[i]
            .stop(libc::SIGKILL, Duration::from_secs(10), observer)
            .await;
    }

    /// Drills: stops node `i` gracefully (SIGTERM: readiness 503, drain, exit), as a
    /// deploy does; how long it took to exit (SIGKILL after `timeout`).
    pub async fn terminate_node(
        &mut self,
        i: usize,
        timeout: Duration,
        observer: &dyn Observer,
    ) -> Duration {
        self.procs[i].stop(libc::SIGTERM, timeout, observer).await
    }

    /// Drills: starts stopped node `i` again on its address and waits until it is ready.
    pub async fn start_node(&mut self, i: usize) -> Result<(), SpawnError> {
        let exe = self.procs[i].program.display().to_string();
        self.procs[i].spawn().map_err(|error| SpawnError::Node {
            node: i,
            exe,
            error,
        })?;
        self.wait_node(i).await
    }

    /// Drills: restarts the Redis this run started (SIGTERM, then start it again on the
    /// same port at once, as a service manager's restart does); how long Redis was gone.
    pub async fn restart_redis(&mut self, observer: &dyn Observer) -> Result<Duration, SpawnError> {
        let started = Instant::now();
        let Some(redis) = self.procs.iter_mut().find(|p| p.redis) else {
            return Ok(Duration::ZERO);
        };
        redis
            .stop(libc::SIGTERM, Duration::from_secs(10), observer)
            .await;
        redis.spawn().map_err(SpawnError::RedisServer)?;
        wait_tcp(redis.addr, Duration::from_secs(10)).await?;
        Ok(started.elapsed())
    }

    /// Stops the nodes (SIGTERM, then SIGKILL after 10 s), then Redis, and removes the
    /// temporary database.
    pub async fn stop(mut self, observer: &dyn Observer) {
        let (mut redis, mut nodes): (Vec<_>, Vec<_>) = std::mem::take(&mut self.procs)
            .into_iter()
            .partition(|p| p.redis);
        // Nodes first (they talk to Redis while draining), Redis last.
        terminate(&mut nodes, observer).await;
        terminate(&mut redis, observer).await;
        if let Some(pg) = self.postgres.take() {
            let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
        }
    }
}

fn sqlite_url(file: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", file.display())
}

/// SIGTERM to all at once, then wait for each (SIGKILL after 10 s).
async fn terminate(procs: &mut [Proc], observer: &dyn Observer) {
    let stops = procs
        .iter_mut()
        .map(|p| p.stop(libc::SIGTERM, Duration::from_secs(10), observer));
    futures_util::future::join_all(stops).await;
}

async fn wait_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), SpawnError> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(SpawnError::RedisNotListening { addr, timeout })
}

/// Waits until `GET /api/health/ready` answers 200; else the last thing it said.
async fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    let mut last = String::from("not listening");
    while Instant::now() < until {
        if let Ok(mut conn) = HttpConn::open(addr, None, &addr.to_string()).await {
            match conn
                .request(
                    http::Method::GET,
                    "/api/health/ready",
                    &[],
                    bytes::Bytes::new(),
                )
                .await
            {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Children left here are killed by `kill_on_drop`.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
