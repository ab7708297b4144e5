//! The Socket.IO Admin UI's protocol on real nodes, driven by the real socket.io-client as
//! the UI page drives it (tests/interop/admin-ui.mjs): login, sessions shared through
//! Redis, `config`, `server_stats` from every node, and the commands acting across the
//! cluster — or ignored when read-only.

use crate::common::app::random;
use crate::common::node::NodeProcess;
use crate::common::nodejs::{interop_dir, require_node};
use crate::common::redis::RedisServer;
use std::time::Duration;

/// The package's own test vector: bcrypt of "changeit".
const HASH: &str = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";
const PASSWORD: &str = "changeit";

async fn cluster(extra: &[&str], secret: &str, redis: &RedisServer) -> Vec<NodeProcess> {
    let url = redis.url();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--admin-ui",
        "--admin-ui-username",
        "admin",
        "--admin-ui-password-hash",
        HASH,
    ];
    args.extend(extra);
    let envs = [("NEXTAUTH_SECRET", secret)];
    vec![
        NodeProcess::start("admin-a", &args, &envs).await,
        NodeProcess::start("admin-b", &args, &envs).await,
    ]
}

async fn script(nodes: &[NodeProcess], secret: &str, features: &str, mode: Mode) -> String {
    let urls: Vec<String> = nodes.iter().map(NodeProcess::url).collect();
    script_at(&urls, &nodes[0], secret, features, mode).await
}

/// Runs admin-ui.mjs against `urls` (the UI logs in on the first); `first` is shown when
/// it fails.
async fn script_at(
    urls: &[String],
    first: &NodeProcess,
    secret: &str,
    features: &str,
    mode: Mode,
) -> String {
    let run = tokio::process::Command::new("node")
        .arg(interop_dir().join("admin-ui.mjs"))
        .arg(urls.join(","))
        .env("NEXTAUTH_SECRET", secret)
        .env("ADMIN_USER", "admin")
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("ADMIN_EXPECT_FEATURES", features)
        .env(
            "ADMIN_READONLY",
            if mode == Mode::Readonly { "1" } else { "0" },
        )
        .env(
            "ADMIN_DEV",
            if mode == Mode::Development { "1" } else { "0" },
        )
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("admin-ui.mjs: no exit within 60 s")
        .expect("run node admin-ui.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "admin-ui.mjs failed ({}):\n{stdout}{}\nnode a:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        first.log()
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_protocol_works_across_a_cluster() {
    require_node(&["socket.io-client", "next-auth"]);
    let redis = RedisServer::start();
    let secret = random("secret");
    let nodes = cluster(&[], &secret, &redis).await;
    let out = script(
        &nodes,
        &secret,
        "EMIT,JOIN,LEAVE,DISCONNECT,MJOIN,MLEAVE,MDISCONNECT,AGGREGATED_EVENTS",
        Mode::Production,
    )
    .await;
    for line in out
        .lines()
        .filter(|l| l.contains("] stats ") || l.contains("] summary "))
    {
        println!("{line}");
    }
    for id in ["admin-a", "admin-b"] {
        assert!(out.contains(&format!("\"serverId\":\"{id}\"")), "{out}");
    }
    // The session the UI got is in Redis under the package's key, with its lifetime.
    let mut redis_cli = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("socket.io-admin#*")
        .query(&mut redis_cli)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query(&mut redis_cli)
        .unwrap();
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_admin_ui_ignores_commands() {
    require_node(&["socket.io-client", "next-auth"]);
    let redis = RedisServer::start();
    let secret = random("secret");
    let nodes = cluster(&["--admin-ui-readonly"], &secret, &redis).await;
    script(&nodes, &secret, "AGGREGATED_EVENTS", Mode::Readonly).await;
}

/// Development mode: the live events and the cluster-wide socket list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_streams_every_socket_across_the_cluster() {
    require_node(&["socket.io-client", "next-auth"]);
    let redis = RedisServer::start();
    let secret = random("secret");
    let nodes = cluster(&["--admin-ui-mode", "development"], &secret, &redis).await;
    let out = script(
        &nodes,
        &secret,
        "EMIT,JOIN,LEAVE,DISCONNECT,MJOIN,MLEAVE,MDISCONNECT,AGGREGATED_EVENTS,ALL_EVENTS",
        Mode::Development,
    )
    .await;
    assert!(out.contains("] live "), "{out}");
}

/// A mixed cluster: two of our nodes and a Node server running the real `instrument()`
/// (tests/interop/admin-ui-node-peer.mjs) on one Redis. The UI logs in on ours; its
/// session is good on the Node server (the package's RedisStore reads our key); every UI
/// sees all three servers' stats; the commands act on sockets held by the Node server;
/// in development mode the Node server's live events and sockets reach our UI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_cluster_with_node_s_instrument_is_one_admin_ui() {
    require_node(&[
        "socket.io-client",
        "next-auth",
        "@socket.io/admin-ui",
        "socket.io",
        "redis",
    ]);
    for (mode, features) in [
        (
            Mode::Production,
            "EMIT,JOIN,LEAVE,DISCONNECT,MJOIN,MLEAVE,MDISCONNECT,AGGREGATED_EVENTS",
        ),
        (
            Mode::Development,
            "EMIT,JOIN,LEAVE,DISCONNECT,MJOIN,MLEAVE,MDISCONNECT,AGGREGATED_EVENTS,ALL_EVENTS",
        ),
    ] {
        let redis = RedisServer::start();
        let secret = random("secret");
        let mode_name = if mode == Mode::Development {
            "development"
        } else {
            "production"
        };
        let nodes = cluster(&["--admin-ui-mode", mode_name], &secret, &redis).await;
        let port = crate::common::free_port();
        let _peer = crate::common::nodejs::NodeScript::start(
            "admin-ui-node-peer.mjs",
            &[&port.to_string(), &redis.url(), HASH, mode_name],
            "listening",
            &["@socket.io/admin-ui", "socket.io", "redis"],
        )
        .await;
        let mut urls: Vec<String> = nodes.iter().map(NodeProcess::url).collect();
        urls.push(format!("http://127.0.0.1:{port}"));
        let out = script_at(&urls, &nodes[0], &secret, features, mode).await;
        for id in ["admin-a", "admin-b", "node-peer"] {
            assert!(
                out.contains(&format!("\"serverId\":\"{id}\"")),
                "{mode_name}: {out}"
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Production,
    Readonly,
    Development,
}

const CHROMIUM_HINT: &str =
    "install Chromium: `apt-get install -y chromium` (scripts/test does this), or set CHROMIUM";

/// `rtctl admin-ui` serving the package's page; killed when dropped.
struct PageServer {
    url: String,
    _child: tokio::process::Child,
}

async fn page_server(port: u16) -> PageServer {
    use tokio::io::AsyncBufReadExt;
    let dist = interop_dir().join("node_modules/@socket.io/admin-ui/ui/dist");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args([
            "admin-ui",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--dir",
        ])
        .arg(&dist)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rtctl admin-ui");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("rtctl admin-ui says where it serves within 10 s")
        .unwrap()
        .unwrap_or_default();
    assert!(first.starts_with("Admin UI page on http://"), "{first}");
    PageServer {
        url: format!("http://127.0.0.1:{port}/"),
        _child: child,
    }
}

/// The official page in a real headless Chromium (tests/interop/admin-ui-browser.mjs),
/// served by `rtctl admin-ui` and logged in to one of our nodes, in development mode: on
/// a cluster of two of our nodes, then on a mixed one (the same plus a Node server
/// running `instrument()`), the Servers page lists every server and the Sockets page a
/// socket held by another server than the one the page logged in to. The screenshots are
/// kept in target/admin-ui-screenshots/<cluster>/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_page_shows_the_cluster_in_a_browser() {
    require_node(&[
        "puppeteer-core",
        "@socket.io/admin-ui",
        "socket.io-client",
        "next-auth",
    ]);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} not found: {CHROMIUM_HINT}"
    );
    for mixed in [false, true] {
        let redis = RedisServer::start();
        let secret = random("secret");
        let port = crate::common::free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let nodes = cluster(
            &[
                "--admin-ui-mode",
                "development",
                "--allowed-origins",
                &origin,
            ],
            &secret,
            &redis,
        )
        .await;
        let mut urls: Vec<String> = nodes.iter().map(NodeProcess::url).collect();
        let mut servers = String::from("admin-a,admin-b");
        let peer_port = crate::common::free_port();
        let _peer = if mixed {
            urls.push(format!("http://127.0.0.1:{peer_port}"));
            servers.push_str(",node-peer");
            Some(
                crate::common::nodejs::NodeScript::start(
                    "admin-ui-node-peer.mjs",
                    &[&peer_port.to_string(), &redis.url(), HASH, "development"],
                    "listening",
                    &["@socket.io/admin-ui", "socket.io", "redis"],
                )
                .await,
            )
        } else {
            None
        };
        let page = page_server(port).await;
        let name = if mixed { "mixed" } else { "ours" };
        let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/admin-ui-screenshots")
            .join(name);
        let run = tokio::process::Command::new("node")
            .arg(interop_dir().join("admin-ui-browser.mjs"))
            .arg(&page.url)
            .arg(urls.join(","))
            .arg(&shots)
            .env("NEXTAUTH_SECRET", &secret)
            .env("ADMIN_USER", "admin")
            .env("ADMIN_PASSWORD", PASSWORD)
            .env("CHROMIUM", &chromium)
            .env("EXPECT_SERVERS", &servers)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(90), run)
            .await
            .expect("admin-ui-browser.mjs: no exit within 90 s")
            .expect("run node admin-ui-browser.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "admin-ui-browser.mjs ({name}) failed ({}):\n{stdout}{}\nnode a:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            nodes[0].log()
        );
        for shot in ["servers.png", "sockets.png"] {
            let len = std::fs::metadata(shots.join(shot))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(len > 10_000, "{name}/{shot}: {len} bytes");
        }
        println!("{name}:\n{stdout}");
    }
}
fn rtctl_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rtctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `rtctl admin-ui --hash-password` makes a hash the nodes take, and a node refuses to
/// start an Admin UI nobody has to log in to unless told so.
#[test]
fn passwords_are_hashed_for_the_nodes_and_a_login_is_required() {
    let out = rtctl_with_stdin(&["admin-ui", "--hash-password"], "s3cret pass\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$2b$10$") && hash.len() == 60, "{hash}");
    assert!(bcrypt::verify("s3cret pass", &hash).unwrap());
    let empty = rtctl_with_stdin(&["admin-ui", "--hash-password"], "");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no password on stdin"));

    let open = std::process::Command::new(env!("CARGO_BIN_EXE_realtime-server"))
        .args(["--listen", "127.0.0.1:0", "--admin-ui"])
        .env_remove("ADMIN_UI_USERNAME")
        .env_remove("ADMIN_UI_PASSWORD_HASH")
        .output()
        .unwrap();
    assert!(!open.status.success());
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(
        err.contains("--admin-ui needs a login") && err.contains("--admin-ui-no-auth"),
        "{err}"
    );
}
