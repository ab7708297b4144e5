//! TLS to Redis and PostgreSQL, end to end, against real servers that speak nothing else:
//! a throwaway CA and server certificate made with `openssl` in a temp dir, a
//! `redis-server` listening on a TLS port only (`--port 0`), and a PostgreSQL 15 with
//! `ssl=on` whose pg_hba accepts TCP clients only over TLS.
//!
//! - two `realtime-server` nodes (`app::build` from parsed flags) on
//!   `rediss://… --redis-ca-cert ca.pem` and `postgres://…?sslmode=verify-full&sslrootcert=ca.pem`:
//!   both healthy; a notification posted to node 1 reaches a client of node 2 through the
//!   Redis adapter (node 1 publishes, node 2's dedicated subscriber receives); presence and
//!   node registrations sit in that Redis; PostgreSQL lists the app's sessions as SSL;
//! - a wrong CA (or none: the system roots do not know the test CA) is refused at start,
//!   and the error names the dependency and the setting to fix; `#insecure` is the
//!   documented way around verification.
//!
//! Needs `openssl`, redis-server (built with TLS, as Debian's is) and PostgreSQL 15; a
//! missing one panics with an install hint, never a silent skip.

use crate::common::app::{parse_config, random, Served, TempDir};
use crate::common::postgres::PgServer;
use crate::common::raw::{self, Ws, QUICK};
use crate::common::redis::RedisServer;
use realtime::auth::{mint, session_claims, TokenFormat};
use realtime::config::Config;
use realtime::redis_client::RedisArgs;
use serde_json::{json, Value};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::Message;

const OPENSSL_HINT: &str = "install it with `apt-get install -y openssl` (scripts/test does this)";

/// A CA, a server certificate it signed (for 127.0.0.1 and localhost), and a second CA
/// that signed nothing here.
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): {OPENSSL_HINT}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn generate() -> Pki {
        let dir = TempDir::new("tls");
        let p = dir.path().to_owned();
        for (name, cn) in [("ca", "rt-test-ca"), ("other-ca", "rt-other-ca")] {
            openssl(
                &p,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-subj",
                    &format!("/CN={cn}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        openssl(
            &p,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            p.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &p,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        // redis-server (run as us) must read the key; PostgreSQL gets its own 0600 copy.
        Pki {
            ca: p.join("ca.pem"),
            other_ca: p.join("other-ca.pem"),
            cert: p.join("server.pem"),
            key: p.join("server.key"),
            _dir: dir,
        }
    }
}

/// Both TLS servers, and a database of the PostgreSQL one.
struct Servers {
    pki: Pki,
    redis: RedisServer,
    pg: PgServer,
    db: String,
}

impl Servers {
    async fn start() -> Servers {
        let pki = Pki::generate();
        let redis = RedisServer::start_tls(&pki.cert, &pki.key, &pki.ca);
        let (cert, key) = (pki.cert.clone(), pki.key.clone());
        let pg = tokio::task::spawn_blocking(move || PgServer::start_tls(&cert, &key))
            .await
            .unwrap();
        let db = pg.create_database().await;
        Servers { pki, redis, pg, db }
    }

    /// The database URL, verifying the server against `ca` (host name included).
    fn pg_url(&self, ca: &Path) -> String {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.pg.url_for(&self.db),
            ca.display()
        )
    }
}

/// `realtime-server` flags for one node: shared secrets, then `extra`.
fn node_config(node: &str, secret: &str, service: &str, extra: &[&str]) -> Config {
    let mut argv = vec![
        "realtime-server",
        "--listen",
        "127.0.0.1:0",
        "--node-id",
        node,
        "--auth-secret",
        secret,
        "--service-token",
        service,
        "--ping-interval",
        "500",
        "--ping-timeout",
        "2000",
        "--redis-timeout",
        "2000",
        "--log-level",
        "warn",
    ];
    argv.extend_from_slice(extra);
    parse_config(&argv, true)
}

async fn health(addr: std::net::SocketAddr) -> (u16, Value) {
    let res = raw::get(addr, "/api/health").await;
    let body = serde_json::from_str(res.text()).unwrap_or_else(|e| panic!("{e}: {}", res.text()));
    (res.status, body)
}

/// A raw Socket.IO client of `/notifications` over WebSocket, logged in as `user`.
async fn notifications_client(addr: std::net::SocketAddr, secret: &str, user: &str) -> Ws {
    let claims = session_claims(
        user,
        Some("Tls"),
        None,
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    let cookie = format!(
        "next-auth.session-token={}",
        mint(secret, TokenFormat::V4, &claims)
    );
    let mut ws = Ws::try_connect(
        addr,
        &raw::eio_path("EIO=4&transport=websocket"),
        &[("cookie", &cookie)],
    )
    .await
    .unwrap_or_else(|e| panic!("websocket upgrade: {e}"));
    next_text(&mut ws, "0").await;
    ws.send_text("40/notifications,").await;
    let connected = next_text(&mut ws, "40/notifications").await;
    assert!(connected.contains("\"sid\""), "CONNECT reply {connected:?}");
    ws
}

/// The next text frame starting with `prefix`, answering pings; panics after `QUICK`.
async fn next_text(ws: &mut Ws, prefix: &str) -> String {
    let deadline = Instant::now() + QUICK;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no packet {prefix:?} within {QUICK:?}");
        match ws.recv(left).await {
            Some(Message::Text(t)) if t.as_str() == "2" => ws.send_text("3").await,
            Some(Message::Text(t)) if t.as_str().starts_with(prefix) => return t.as_str().into(),
            Some(_) => {}
            None => panic!("connection closed while waiting for {prefix:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_run_on_tls_redis_and_verified_postgres() {
    let servers = Servers::start().await;
    let ca = servers.pki.ca.to_str().unwrap().to_owned();
    let redis_url = servers.redis.url();
    assert!(redis_url.starts_with("rediss://"), "{redis_url}");
    let pg_url = servers.pg_url(&servers.pki.ca);

    // Neither server speaks plaintext, so whatever works below went over TLS.
    let plain_pg = format!("{}?sslmode=disable", servers.pg.url_for(&servers.db));
    let refused = sqlx::PgConnection::connect(&plain_pg).await.err();
    let refused = refused.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused.contains("no encryption"),
        "plaintext PostgreSQL: {refused:?}"
    );
    let plain_redis = RedisArgs::at_url(format!("redis://127.0.0.1:{}", servers.redis.port));
    assert!(
        plain_redis.connect().await.is_err(),
        "plaintext Redis was accepted"
    );

    let (secret, service) = (random("s"), random("svc"));
    let tls = [
        "--database-url",
        &pg_url,
        "--db-auto-migrate",
        "--redis-url",
        &redis_url,
        "--redis-ca-cert",
        &ca,
    ];
    let n1 = Served::start(&node_config("tls-n1", &secret, &service, &tls)).await;
    let n2 = Served::start(&node_config("tls-n2", &secret, &service, &tls)).await;
    for node in [&n1, &n2] {
        let (status, body) = health(node.addr).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["services"]["database"]["status"], "up", "{body}");
        assert_eq!(body["services"]["redis"]["status"], "up", "{body}");
    }

    // The test's own look into Redis, over TLS with the same settings as the nodes.
    let conn = RedisArgs {
        redis_ca_cert: Some(servers.pki.ca.clone()),
        ..RedisArgs::at_url(redis_url.clone())
    }
    .connect()
    .await
    .expect("connect over TLS with the CA")
    .expect("configured");

    // Each node's subscriber (its own pub/sub connection) subscribes in the background
    // after start; Redis keeps nothing for a subscriber that is not there yet. It
    // subscribes a namespace's patterns, then its request channel: once both nodes are
    // on that channel, both listen to `/notifications` broadcasts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = conn.clone();
        let (_, listening): (String, u32) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("socket.io-request#/notifications#")
            .query_async(&mut c)
            .await
            .unwrap();
        if listening >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{listening} node(s) subscribed to /notifications within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A notification posted to node 1 reaches bob's socket on node 2: node 1 stores it
    // (PostgreSQL), publishes it (Redis adapter), node 2's subscriber delivers it.
    let mut bob = notifications_client(n2.addr, &secret, "bob").await;
    let title = random("over TLS");
    let body = json!({"userId": "bob", "type": "tls", "title": title}).to_string();
    let auth = format!("Bearer {service}");
    let res = raw::request(
        n1.addr,
        "POST",
        "/api/notifications",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let pushed = next_text(&mut bob, "42/notifications,[\"notification:new\"").await;
    assert!(pushed.contains(&title), "{pushed}");
    assert!(pushed.contains("\"unreadCount\":1"), "{pushed}");

    // Presence and node registrations are in the TLS Redis.
    let deadline = Instant::now() + QUICK;
    loop {
        let mut c = conn.clone();
        let bob_online: Option<f64> = redis::cmd("ZSCORE")
            .arg("rt:presence:users")
            .arg("bob")
            .query_async(&mut c)
            .await
            .unwrap();
        let nodes: Vec<String> = redis::cmd("ZRANGE")
            .arg("rt:presence:nodes")
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .unwrap();
        if bob_online.is_some()
            && nodes.contains(&"tls-n1".into())
            && nodes.contains(&"tls-n2".into())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "presence in Redis: bob {bob_online:?}, nodes {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // PostgreSQL's own view: every session of the app is encrypted.
    let sessions = "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
                    JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'realtime'";
    let counts = tokio::task::block_in_place(|| servers.pg.psql("postgres", sessions));
    let (ssl, all) = counts.split_once('|').unwrap_or_else(|| panic!("{counts}"));
    assert!(all.parse::<u32>().unwrap() >= 2, "app sessions: {counts}");
    assert_eq!(ssl, all, "SSL sessions | all sessions of the app: {counts}");

    n1.stop().await;
    n2.stop().await;
}

/// `app::build`'s error, which must exist, with its causes (as the binaries print it).
async fn startup_error(config: &Config) -> String {
    match realtime::app::build(config).await {
        Ok(_) => panic!("the server started"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_with_an_error_saying_what_to_fix() {
    let servers = Servers::start().await;
    let (ca, other_ca) = (
        servers.pki.ca.to_str().unwrap().to_owned(),
        servers.pki.other_ca.to_str().unwrap().to_owned(),
    );
    let redis_url = servers.redis.url();
    let (secret, service) = (random("s"), random("svc"));
    let good_pg = servers.pg_url(&servers.pki.ca);

    // Redis: the CA that did not sign the server's certificate, then none at all (the
    // system roots do not know the test CA).
    for extra in [&["--redis-ca-cert", other_ca.as_str()][..], &[]] {
        let mut argv = vec!["--database-url", &good_pg, "--redis-url", &redis_url];
        argv.extend_from_slice(extra);
        let error = startup_error(&node_config("bad-ca", &secret, &service, &argv)).await;
        println!("Redis, {extra:?}: {error}");
        assert!(
            error.contains("cannot connect to Redis at rediss://127.0.0.1"),
            "{error}"
        );
        assert!(error.contains("invalid peer certificate"), "{error}");
        assert!(error.contains("set REDIS_CA_CERT"), "{error}");
    }

    // PostgreSQL: sslrootcert names the other CA; Redis is fine.
    let bad_pg = servers.pg_url(&servers.pki.other_ca);
    let argv = [
        "--database-url",
        &bad_pg,
        "--redis-url",
        &redis_url,
        "--redis-ca-cert",
        &ca,
    ];
    let error = startup_error(&node_config("bad-ca", &secret, &service, &argv)).await;
    println!("PostgreSQL, other CA: {error}");
    assert!(error.contains("cannot open the database"), "{error}");
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(error.contains("sslrootcert"), "{error}");

    // `#insecure` (the redis crate's syntax) skips verification: the escape hatch for a
    // provider whose CA cannot be had.
    let insecure = RedisArgs::at_url(format!("{redis_url}/#insecure"));
    let mut conn = insecure
        .connect()
        .await
        .expect("#insecure connects without the CA")
        .expect("configured");
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}
