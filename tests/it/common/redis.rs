//! A real `redis-server` on a free loopback port, stopped when dropped; plain TCP, or
//! TLS only ([`RedisServer::start_tls`]).

use super::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
    tls: bool,
}

impl RedisServer {
    /// Starts redis-server; panics with an install hint when it is missing.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts (or restarts) on a given port.
    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, &["--port", &port.to_string()])
    }

    /// A replica of the server on `master_port` (both on loopback).
    pub fn start_replica_of(master_port: u16) -> Self {
        let port = free_port();
        let (port_s, master_s) = (port.to_string(), master_port.to_string());
        Self::spawn(
            port,
            &["--port", &port_s, "--replicaof", "127.0.0.1", &master_s],
        )
    }

    /// A Redis Cluster node (not yet in a cluster: `redis_cluster` makes one), its bus
    /// on another free port, a dead peer noticed after 1 s.
    pub fn start_cluster_node() -> Self {
        let port = free_port();
        let (port_s, bus_s) = (port.to_string(), free_port().to_string());
        Self::spawn(
            port,
            &[
                "--port",
                &port_s,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--cluster-port",
                &bus_s,
                // Replicas sync at once (not 5 s later), so a drill can kill a master
                // as soon as its replica is in sync.
                "--repl-diskless-sync-delay",
                "0",
            ],
        )
    }

    /// TLS only (`--port 0 --tls-port P`): `cert`/`key` are the server's, clients are
    /// not asked for certificates. Debian's redis-server is built with TLS.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        let port = free_port();
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
        let (cert, key, ca) = (path(cert), path(key), path(ca));
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ];
        Self::spawn(port, &args)
    }

    /// `redis-cli`-style command on this server (plain TCP), its reply as text.
    pub async fn query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await
    }

    fn spawn(port: u16, listen: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("rt-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(listen)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server` (scripts/test does this)")
            });
        let server = RedisServer {
            port,
            child: Some(child),
            dir,
            tls: listen.contains(&"--tls-port"),
        };
        server.wait_ready();
        server
    }

    /// Until PING answers PONG, or, over TLS, until the port accepts (the handshake is
    /// what the tests themselves check).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                if self.tls {
                    return;
                }
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer PING on port {} within 10 s",
            self.port
        );
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://…` over TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Whether [`RedisServer::stop`] killed it.
    pub fn is_stopped(&self) -> bool {
        self.child.is_none()
    }

    /// Kills the server (an outage); `start_on(self.port)` brings one back.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
