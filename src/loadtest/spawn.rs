//! `--spawn-nodes M`: M local nodes (this executable's `serve`, with the `/bench`
//! namespace) on free loopback ports, plus a local `redis-server` to join them when
//! M > 1 and no Redis URL is given. Each node has its own fresh SQLite file, except for
//! the chat scenario, whose 1:1 rooms must be seen by both members' nodes: there they
//! share one (WAL lets several processes write it; the first node creates the schema
//! before the others start). Measured: with a shared file, two processes' notification
//! INSERTs wait on each other's write lock (phase 2: API p99 338 ms, some inserts > 1 s);
//! with a file per node the API path is not serialized across nodes.
//! Everything is stopped when the run ends, on error or Ctrl-C ([`Cluster`]'s drop kills
//! what a graceful stop did not reach).

use super::observe::{Observer, Update};
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
    children: Vec<(String, Child)>,
    dir: PathBuf,
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
}

/// Starts `count` nodes (and Redis when needed).
pub async fn start(
    count: usize,
    secret: &str,
    service_token: &str,
    redis_url: Option<String>,
    shared_database: bool,
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
        children: Vec::new(),
        dir,
    };
    if count > 1 && cluster.redis_url.is_none() {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args([
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
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches only `rtctl
            // loadtest`, which stops the nodes first and Redis last.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(SpawnError::RedisServer)?;
        cluster.children.push(("redis-server".into(), child));
        wait_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).await?;
        cluster.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    }
    let exe = std::env::current_exe().map_err(SpawnError::Exe)?;
    for i in 0..count {
        let db = if shared_database {
            cluster.dir.join("loadtest.db")
        } else {
            cluster.dir.join(format!("loadtest-{i}.db"))
        };
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .args(["--listen", &addr.to_string()])
            .arg("--loadtest-namespace")
            .args(["--auth-secret", secret, "--service-token", service_token])
            .args([
                "--database-url",
                &format!("sqlite://{}?mode=rwc", db.display()),
            ])
            .args(["--node-id", &format!("loadtest-{i}")])
            .args(["--log-level", "warn"])
            // The loadtest's chat senders are not people: no per-user rate limit.
            .args(["--rate-limit", "message:send=1000000000/1"])
            .env_remove("REDIS_URL")
            .env_remove("REDIS_HOST")
            .env_remove("DATABASE_URL")
            .env_remove("CONNECTION_STATE_RECOVERY")
            .env_remove("ADAPTER")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(url) = &cluster.redis_url {
            cmd.args(["--redis-url", url]);
        }
        if settings.recovery {
            cmd.arg("--connection-state-recovery");
        }
        if let Some(adapter) = &settings.adapter {
            cmd.args(["--adapter", adapter]);
        }
        let child = cmd.spawn().map_err(|error| SpawnError::Node {
            node: i,
            exe: exe.display().to_string(),
            error,
        })?;
        cluster.children.push((format!("node {i}"), child));
        // One at a time: the first creates the SQLite schema, the others find it.
        let timeout = Duration::from_secs(30);
        if let Err(last) = wait_ready(addr, timeout).await {
            return Err(SpawnError::NotReady {
                node: i,
                addr,
                timeout,
                last,
            });
        }
        cluster.nodes.push(addr);
    }
    Ok(cluster)
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

impl Cluster {
    /// The redis-server this run started, if it started one (its CPU is measured).
    pub fn redis_pid(&self) -> Option<u32> {
        self.children
            .iter()
            .find(|(name, _)| name == "redis-server")
            .and_then(|(_, child)| child.id())
    }

    /// Stops the nodes (SIGTERM, then SIGKILL after 10 s), then Redis, and removes the
    /// temporary database.
    pub async fn stop(mut self, observer: &dyn Observer) {
        let (redis, nodes): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|(name, _)| name == "redis-server");
        // Nodes first (they talk to Redis while draining), Redis last.
        terminate(nodes, observer).await;
        terminate(redis, observer).await;
    }
}

/// SIGTERM to all, then wait for each (SIGKILL after 10 s).
async fn terminate(mut children: Vec<(String, Child)>, observer: &dyn Observer) {
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            // SAFETY: signalling a child process we started and have not yet reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for (name, child) in &mut children {
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            observer.update(Update::Warning(&format!(
                "{name} did not stop within 10 s; killing it"
            )));
            let _ = child.kill().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Children left here are killed by `kill_on_drop`.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
