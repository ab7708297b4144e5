//! Redis behind Sentinel, on loopback: a master, a replica and three Sentinels
//! (`redis-server --sentinel`, the same binary Debian's `redis-sentinel` runs), with
//! timings short enough for a test: a master that stops answering is declared down
//! after 1 s and replaced by its replica within a few seconds. Stopped when dropped.

use super::free_port;
use super::redis::RedisServer;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The master's name in Sentinel.
pub const MASTER: &str = "mymaster";

pub struct SentinelSet {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

struct Sentinel {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl SentinelSet {
    /// Starts all five and waits until the Sentinels agree on the master and know its
    /// replica (so a failover can happen).
    pub async fn start() -> SentinelSet {
        let master = RedisServer::start();
        let replica = RedisServer::start_replica_of(master.port);
        let sentinels = (0..3).map(|_| Sentinel::start(master.port)).collect();
        let set = SentinelSet {
            master,
            replica,
            sentinels,
        };
        set.wait_until_failover_is_possible().await;
        set
    }

    /// `host:port,host:port,host:port` for `--redis-sentinels`.
    pub fn addresses(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        list.join(",")
    }

    /// The port of the server the Sentinels call master now.
    pub async fn master_port(&self) -> Option<u16> {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[0].port)).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let (_, port): (String, String) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query_async(&mut conn)
            .await
            .ok()?;
        port.parse().ok()
    }

    async fn wait_until_failover_is_possible(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let link_up = match self.replica.query(&["INFO", "replication"]).await {
                Ok(redis::Value::BulkString(b)) => {
                    String::from_utf8_lossy(&b).contains("master_link_status:up")
                }
                Ok(redis::Value::VerbatimString { text, .. }) => {
                    text.contains("master_link_status:up")
                }
                _ => false,
            };
            if link_up && self.sentinels_see_everyone().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Sentinels never saw the replica and each other within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every Sentinel knows the replica and the two other Sentinels.
    async fn sentinels_see_everyone(&self) -> bool {
        for s in &self.sentinels {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}", s.port)) else {
                return false;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let master: redis::RedisResult<Vec<String>> = redis::cmd("SENTINEL")
                .arg("master")
                .arg(MASTER)
                .query_async(&mut conn)
                .await;
            let Ok(fields) = master else { return false };
            let field = |name: &str| {
                fields
                    .iter()
                    .position(|f| f == name)
                    .and_then(|i| fields.get(i + 1))
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            if field("num-slaves") < 1 || field("num-other-sentinels") < 2 {
                return false;
            }
        }
        true
    }
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("rt-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server --sentinel ({e}): install it with `apt-get install -y redis-server` (scripts/test does this)")
            });
        Sentinel { port, child, dir }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
