//! `rtctl gen`: the real tools accept what we generate, and real clients work through it.

use crate::common::TestServer;
use crate::interop::NodeClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NGINX_HINT: &str = "install nginx: `apt-get install -y nginx` (scripts/test does this)";

fn rtctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(args)
        .output()
        .expect("run rtctl")
}

fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rt-gen-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// nginx's own check (`nginx -t`), with pid and logs kept in `dir`.
fn nginx_check(conf: &Path, dir: &Path) -> std::process::Output {
    Command::new("nginx")
        .arg("-t")
        .args(nginx_paths(conf, dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run nginx ({e}): {NGINX_HINT}"))
}

fn nginx_paths(conf: &Path, dir: &Path) -> Vec<String> {
    vec![
        "-c".into(),
        conf.display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
        "-g".into(),
        format!("pid {};", dir.join("nginx.pid").display()),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn nginx_accepts_every_generated_config() {
    let dir = tmpdir("nginx-t");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let variants: Vec<Vec<String>> = vec![
        vec!["--upstream".into(), "127.0.0.1:3001".into()],
        vec![
            "--upstream".into(),
            "10.0.0.1:3001,10.0.0.2:3001,10.0.0.3:3001".into(),
            "--sticky".into(),
            "ip_hash".into(),
            "--connections".into(),
            "100000".into(),
        ],
        vec![
            "--upstream".into(),
            "app1:3001".into(),
            "--upstream".into(),
            "app2:3001".into(),
            "--listen".into(),
            "8443".into(),
            "--server-name".into(),
            "socket.example.com".into(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
    ];
    for (i, v) in variants.iter().enumerate() {
        let conf = dir.join(format!("nginx-{i}.conf"));
        let mut args = vec!["gen", "nginx", "-o", conf.to_str().unwrap()];
        args.extend(v.iter().map(String::as_str));
        let out = rtctl(&args);
        assert!(
            out.status.success(),
            "rtctl gen nginx {v:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Names that do not resolve here (app1) would fail `nginx -t`; map them to loopback.
        let text = std::fs::read_to_string(&conf)
            .unwrap()
            .replace("app1:", "127.0.0.1:")
            .replace("app2:", "127.0.0.2:");
        std::fs::write(&conf, text).unwrap();
        let check = nginx_check(&conf, &dir);
        assert!(
            check.status.success(),
            "nginx -t refused variant {v:?}:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real nginx running a generated config; stopped on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(conf: &Path, dir: &Path, port: u16) -> Self {
        let child = Command::new("nginx")
            .args(nginx_paths(conf, dir).iter().take(4))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx ({e}): {NGINX_HINT}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_clients_work_through_the_generated_nginx() {
    let nodes = [
        TestServer::start().await,
        TestServer::start().await,
        TestServer::start().await,
    ];
    let upstreams: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let dir = tmpdir("nginx-e2e");
    let conf = dir.join("nginx.conf");
    let port = free_port();
    let out = rtctl(&[
        "gen",
        "nginx",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        &upstreams.join(","),
        "--connections",
        "1000",
        "--ping-interval",
        "300",
        "--ping-timeout",
        "200",
        "-o",
        conf.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Access logs stay in the test's directory.
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "http {",
        &format!(
            "http {{\n    access_log {};",
            dir.join("access.log").display()
        ),
    );
    std::fs::write(&conf, text).unwrap();
    let _nginx = Nginx::start(&conf, &dir, port);
    let url = format!("http://127.0.0.1:{port}");
    // Polling only: every request of a session must reach the node that holds it
    // (a miss would be "Session ID unknown"); then websocket, and polling → websocket.
    for transport in ["polling", "websocket", "default"] {
        NodeClient::spawn("multiplex.mjs", &url, transport)
            .finish()
            .await;
    }
    NodeClient::spawn("upgrade.mjs", &url, "default")
        .finish()
        .await;
    for n in nodes {
        n.stop().await;
    }
}

#[test]
fn gen_migrations_writes_sqlx_and_prisma_layouts() {
    let dir = tmpdir("migrations");
    let out = rtctl(&[
        "gen",
        "migrations",
        "--format",
        "sqlx",
        "-o",
        dir.join("sqlx").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.join("sqlx"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0002_idx_notifications_user_status.sql",
            "0003_idx_messages_room_created.sql",
            "0004_idx_chat_rooms_users.sql"
        ]
    );
    let out = rtctl(&[
        "gen",
        "migrations",
        "--format",
        "prisma",
        "--timestamp",
        "20260102030405",
        "-o",
        dir.join("app").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql =
        std::fs::read_to_string(dir.join(
            "app/prisma/migrations/20260102030405_idx_notifications_user_status/migration.sql",
        ))
        .unwrap();
    assert!(
        sql.contains(r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_notifications_user_status""#)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
