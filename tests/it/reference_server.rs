//! The Node reference server (`tests/interop/reference-server.mjs`), the yardstick of the
//! loadtest: real `node` processes, the real npm socket.io-client (`bench-flow.mjs`) and, for
//! the cluster, a real `redis-server`. Tokens are minted by this crate exactly as `rtctl token`
//! mints them, so a pass also proves the Node server accepts our tokens.

use crate::common::nodejs::{interop_dir, require_node};
use crate::common::redis::RedisServer;
use crate::interop::NodeClient;
use realtime::auth::{mint, session_claims, TokenFormat};
use std::process::Stdio;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a reference server may take to print `listening <port>`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Secrets of one test: the NextAuth secret and the API's service token.
struct Secrets {
    auth: String,
    service: String,
}

impl Secrets {
    fn new() -> Self {
        Secrets {
            auth: format!("ref-secret-{:016x}", rand::random::<u64>()),
            service: format!("ref-service-{:016x}", rand::random::<u64>()),
        }
    }

    /// A NextAuth v4 session token for `user`, as `rtctl token --user <user>` makes it.
    fn token(&self, user: &str) -> String {
        let claims = session_claims(
            user,
            None,
            None,
            SystemTime::now(),
            Duration::from_secs(600),
        );
        mint(&self.auth, TokenFormat::V4, &claims)
    }
}

/// What reference-server.mjs imports (and, with `--redis`, also `redis` and the adapter).
const REFERENCE_PACKAGES: [&str; 2] = ["socket.io", "next-auth"];

/// A running `node reference-server.mjs`, killed when dropped.
struct ReferenceServer {
    child: Child,
    port: u16,
}

impl ReferenceServer {
    /// Starts one on a free port (`--port 0`); the secrets go through the environment.
    async fn start(secrets: &Secrets, redis: Option<&str>) -> Self {
        require_node(&REFERENCE_PACKAGES);
        if redis.is_some() {
            require_node(&["redis", "@socket.io/redis-adapter"]);
        }
        let mut cmd = Command::new("node");
        cmd.arg(interop_dir().join("reference-server.mjs"))
            .args(["--port", "0"])
            .env("NEXTAUTH_SECRET", &secrets.auth)
            .env("RT_SERVICE_TOKEN", &secrets.service)
            .current_dir(interop_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = redis {
            cmd.args(["--redis", url]);
        }
        let mut child = cmd.spawn().expect("spawn node reference-server.mjs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = line.strip_prefix("listening ") {
                    return port.trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await;
        let Ok(Some(port)) = port else {
            let status = child.try_wait();
            panic!("reference-server.mjs did not print `listening <port>` within {START_TIMEOUT:?} (status {status:?}; its stderr is above)");
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ReferenceServer { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, and it must exit 0 within 10 s (its graceful close).
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill(1)");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("reference-server.mjs exits within 10 s of SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "reference-server.mjs exited with {status}"
        );
    }
}

/// Runs bench-flow.mjs: A on `url`, B on `url_b`, the API call on `url`.
async fn bench_flow(secrets: &Secrets, url: &str, url_b: &str, transport: &str) {
    let token_a = secrets.token("bench-user-a");
    let token_b = secrets.token("bench-user-b");
    NodeClient::spawn_with_env(
        "bench-flow.mjs",
        url,
        transport,
        &[
            ("BENCH_TOKEN_A", &token_a),
            ("BENCH_TOKEN_B", &token_b),
            ("BENCH_USER_B", "bench-user-b"),
            ("BENCH_URL_B", url_b),
            ("RT_SERVICE_TOKEN", &secrets.service),
        ],
    )
    .finish()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_speaks_the_bench_protocol() {
    let secrets = Secrets::new();
    let server = ReferenceServer::start(&secrets, None).await;
    let url = server.url();
    bench_flow(&secrets, &url, &url, "websocket").await;
    bench_flow(&secrets, &url, &url, "polling").await;
    server.stop().await;
}

/// `rtctl loadtest --transport polling` holds its sessions on Node's server past Node's
/// 5 s keep-alive timeout: each client sends about once in 12 s, so most POSTs follow a
/// pause in which Node closed the connection the last one used. Before the writer pooled
/// its connections, such a POST failed ("HTTP: channel closed") and dropped the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_polling_loadtest_holds_its_sessions_past_nodes_keep_alive_timeout() {
    let secrets = Secrets::new();
    let server = ReferenceServer::start(&secrets, None).await;
    let url = server.url();
    let args = [
        [
            "--url",
            &url,
            "--transport",
            "polling",
            "--scenario",
            "rooms",
        ]
        .as_slice(),
        &["--clients", "40", "--room-size", "10", "--ramp", "400"],
        &["--rate", "3", "--duration", "12s", "--api-rate", "0"],
        &[
            "--token-secret",
            &secrets.auth,
            "--service-token",
            &secrets.service,
        ],
    ]
    .concat();
    let (code, report) = crate::loadtest::rtctl_loadtest(&args, Duration::from_secs(120)).await;
    let c = &report["counters"];
    assert_eq!(c["held"], 40, "{report:#}");
    assert_eq!(c["dropped"], 0, "{report:#}");
    assert_eq!(c["send_failed"], 0, "{report:#}");
    assert_eq!(c["messages_sent"], 36, "{report:#}");
    assert_eq!(c["received"], c["expected"], "{report:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_redis_deliver_across_nodes() {
    let redis = RedisServer::start();
    let secrets = Secrets::new();
    let first = ReferenceServer::start(&secrets, Some(&redis.url())).await;
    let second = ReferenceServer::start(&secrets, Some(&redis.url())).await;
    bench_flow(&secrets, &first.url(), &second.url(), "websocket").await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn refuses_to_start_without_a_secret() {
    require_node(&REFERENCE_PACKAGES);
    let out = Command::new("node")
        .arg(interop_dir().join("reference-server.mjs"))
        .args(["--port", "0", "--service-token", "t"])
        .env_remove("NEXTAUTH_SECRET")
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("exits at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NEXTAUTH_SECRET"), "{stderr}");
}
