//! A real `realtime-server` process (the binary cargo built for this test run) on a free
//! loopback port, as an operator runs it: what the end-to-end tests put behind nginx or
//! under Prometheus. Its log goes to a file in a temp dir, shown when it fails to start.
//! Killed when dropped.

#![allow(dead_code)]

use super::app::TempDir;
use super::free_port;
use super::raw::HttpConn;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NodeProcess {
    pub id: String,
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

impl NodeProcess {
    /// Starts `realtime-server --listen 127.0.0.1:<free> --node-id <id> <args>` with
    /// `envs`, and waits (20 s at most) until `/api/health/ready` answers 200.
    pub async fn start(id: &str, args: &[&str], envs: &[(&str, &str)]) -> NodeProcess {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(addr, id, args, envs).await
    }

    /// [`NodeProcess::start`] on a given address (a node started again where a killed
    /// one was).
    pub async fn start_on(
        addr: SocketAddr,
        id: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> NodeProcess {
        let dir = TempDir::new(&format!("node-{id}"));
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        // A node given no database gets its own SQLite file, never the default one in the
        // working directory, which concurrent tests' nodes would share (and lock).
        let given_db =
            args.contains(&"--database-url") || envs.iter().any(|(k, _)| *k == "DATABASE_URL");
        let own_db = (!given_db).then(|| ["--database-url".to_owned(), dir.sqlite_url()]);
        let child = Command::new(env!("CARGO_BIN_EXE_realtime-server"))
            .args(["--listen", &addr.to_string(), "--node-id", id])
            .args(["--log-format", "json"])
            .args(own_db.iter().flatten())
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn realtime-server");
        let mut node = NodeProcess {
            id: id.to_owned(),
            addr,
            child,
            dir,
        };
        node.wait_ready(Duration::from_secs(20)).await;
        node
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, from `/proc/<pid>/status` (bytes).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc status")
            * 1024
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, as a rolling deploy stops a node, and its exit status once it is gone
    /// (within 20 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "realtime-server {} still running 20 s after SIGTERM:\n{}",
                self.id,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "realtime-server {} exited ({status}) before it was ready:\n{}",
                    self.id,
                    self.log()
                );
            }
            if ready(self.addr).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "realtime-server {} not ready on {} within {within:?}:\n{}",
                self.id,
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `GET /api/health/ready` answered 200 (any failure to connect is "not yet").
async fn ready(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut conn = HttpConn::open(addr).await.ok()?;
        conn.send("GET", "/api/health/ready", &[], b"").await.ok()?;
        conn.read_response().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(res)) if res.status == 200
    )
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
