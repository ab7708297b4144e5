//! `rtctl gen`: the real tools accept what we generate, and real clients work through it.

use crate::common::app::random;
use crate::common::free_port;
use crate::common::nginx::{nginx_paths, Nginx, NGINX_HINT};
use crate::common::node::NodeProcess;
use crate::common::nodejs::{interop_dir, require_node};
use crate::common::postgres::fresh_database;
use crate::common::raw;
use crate::common::redis::RedisServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
        vec![
            "--chat-upstream".into(),
            "10.0.0.1:3001,10.0.0.2:3001".into(),
            "--notifications-upstream".into(),
            "10.0.0.3:3001".into(),
            "--sticky".into(),
            "ip_hash".into(),
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

/// The sum of every sample of `metric` (all label sets) in a Prometheus text scrape.
fn metric_sum(scrape: &str, metric: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The sample `metric{labels}` exactly as exposed, or 0 when absent.
fn metric_value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

async fn scrape(node: &NodeProcess) -> String {
    let res = raw::get(node.addr, "/metrics").await;
    assert_eq!(res.status, 200, "{}: {}", node.id, res.text());
    res.text().to_owned()
}

/// Runs `node nginx-cluster.mjs <url> <transport>` with the nodes' secret; requires exit
/// status 0 and returns its stdout (panics with the whole output otherwise).
async fn nginx_cluster_script(url: &str, transport: &str, secret: &str) -> String {
    require_node(&["next-auth", "socket.io-client"]);
    let dir = interop_dir();
    let child = tokio::process::Command::new("node")
        .arg(dir.join("nginx-cluster.mjs"))
        .args([url, transport])
        .env("NEXTAUTH_SECRET", secret)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn node nginx-cluster.mjs: {e}"));
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("nginx-cluster.mjs {transport}: no exit within 60 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nginx-cluster.mjs {transport} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Issue 6 end to end: three `realtime-server` processes (the built binary) on one
/// redis-server and one PostgreSQL, behind the nginx config `rtctl gen nginx` writes,
/// running on a real nginx. The real socket.io-client (tests/interop/nginx-cluster.mjs)
/// connects through nginx with polling only, WebSocket only, and polling → WebSocket;
/// each run puts an alice and a bob socket on every node (chosen by source address, which
/// `hash $remote_addr consistent` maps to a node) and every socket's message reaches the
/// five others on all nodes. The nodes' own counters then confirm it independently: each
/// node accepted the script's sockets, and no node ever saw an unknown session id (what a
/// non-sticky balancer causes with polling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_the_generated_nginx_serve_real_clients() {
    let redis = RedisServer::start();
    let database = fresh_database().await;
    let secret = random("secret");
    let envs = [("NEXTAUTH_SECRET", secret.as_str())];
    let redis_url = redis.url();
    let common = [
        "--redis-url",
        redis_url.as_str(),
        "--database-url",
        database.as_str(),
        "--ping-interval",
        "700",
        "--ping-timeout",
        "3000",
        "--rate-limit",
        "message:send=1000/60",
        "--presence-heartbeat",
        "1000",
    ];
    // The first node migrates the database; the others start once it is ready.
    let mut nodes = Vec::new();
    for (i, id) in ["node-a", "node-b", "node-c"].iter().enumerate() {
        let mut args = common.to_vec();
        if i == 0 {
            args.push("--db-auto-migrate");
        }
        nodes.push(NodeProcess::start(id, &args, &envs).await);
    }
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
        "700",
        "--ping-timeout",
        "3000",
        "-o",
        conf.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _nginx = Nginx::start(&conf, &dir, port);
    let url = format!("http://127.0.0.1:{port}");

    for transport in ["polling", "websocket", "default"] {
        let mut before = Vec::new();
        for n in &nodes {
            before.push(metric_sum(
                &scrape(n).await,
                "realtime_socket_connects_total",
            ));
        }
        let stdout = nginx_cluster_script(&url, transport, &secret).await;
        let summary: serde_json::Value = stdout
            .lines()
            .find_map(|l| l.split_once("] summary ").map(|(_, j)| j))
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_else(|| panic!("no summary line from nginx-cluster.mjs:\n{stdout}"));
        // Every node id the script saw behind nginx is one of ours, and all three were seen.
        let seen = summary["nodes"].as_object().unwrap();
        let mut seen_ids: Vec<&str> = seen.keys().map(String::as_str).collect();
        seen_ids.sort();
        assert_eq!(seen_ids, ["node-a", "node-b", "node-c"], "{stdout}");
        assert_eq!(summary["sent"], 36, "{stdout}");
        for (n, before) in nodes.iter().zip(before) {
            let scrape = scrape(n).await;
            let connects = metric_sum(&scrape, "realtime_socket_connects_total") - before;
            assert!(
                connects >= 2.0,
                "{transport}: node {} accepted {connects} sockets, the script put 2 there:\n{stdout}",
                n.id
            );
            let unknown = metric_value(
                &scrape,
                r#"realtime_engine_request_errors_total{reason="unknown_sid"}"#,
            );
            assert_eq!(
                unknown, 0.0,
                "{transport}: node {} refused {unknown} requests for an unknown session: \
                 nginx sent a session's request to the wrong node",
                n.id
            );
        }
        println!("{transport}: {summary}");
    }
    let access = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    assert!(
        !access.contains("\" 400 "),
        "nginx logged 400 responses (Session ID unknown?):\n{access}"
    );
    drop(nodes);
}

/// `rtctl gen migrations --format <format> [extra…] -o <out>`, which must succeed.
fn gen_migrations(format: &str, extra: &[&str], out: &Path) {
    let mut args = vec!["gen", "migrations", "--format", format];
    args.extend_from_slice(extra);
    args.extend(["-o", out.to_str().unwrap()]);
    let run = rtctl(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn gen_migrations_writes_sqlx_and_prisma_layouts() {
    let dir = tmpdir("migrations");
    gen_migrations("sqlx", &[], &dir.join("sqlx"));
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
            "0004_idx_chat_rooms_users.sql",
            "0005_idx_chat_rooms_user2.sql"
        ]
    );
    gen_migrations(
        "prisma",
        &["--timestamp", "20260102030405"],
        &dir.join("app"),
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

/// A connection to a new database in the shared PostgreSQL that already holds the base
/// schema (`migrations/postgres/0001_create_tables.sql`, applied as plain SQL).
async fn database_with_base_schema() -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let url = fresh_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("migrations/postgres/0001_create_tables.sql"),
    )
    .unwrap();
    sqlx::raw_sql(&base).execute(&mut conn).await.unwrap();
    conn
}

/// Every SR-2 index exists on its table, with its columns and uniqueness, and is valid
/// (`indisvalid`: a failed `CREATE INDEX CONCURRENTLY` leaves an invalid index behind).
async fn assert_indexes(conn: &mut sqlx::PgConnection, how: &str) {
    use realtime::commands::gen::migrations::INDEXES;
    let names: Vec<&str> = INDEXES.iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        [
            "idx_notifications_user_status",
            "idx_messages_room_created",
            "idx_chat_rooms_users",
            "idx_chat_rooms_user2"
        ]
    );
    for spec in INDEXES {
        let row: Option<(String, String, bool, bool, bool)> = sqlx::query_as(
            "SELECT x.tablename::text, x.indexdef, i.indisvalid, i.indisready, i.indisunique
             FROM pg_indexes x
             JOIN pg_class c ON c.relname = x.indexname
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = x.schemaname
             JOIN pg_index i ON i.indexrelid = c.oid
             WHERE x.schemaname = current_schema() AND x.indexname = $1",
        )
        .bind(spec.name)
        .fetch_optional(&mut *conn)
        .await
        .unwrap();
        let (table, def, valid, ready, unique) =
            row.unwrap_or_else(|| panic!("{how}: index {} was not created", spec.name));
        assert_eq!(table, spec.table, "{how}: {def}");
        assert!(
            valid && ready,
            "{how}: index {} is INVALID: {def}",
            spec.name
        );
        assert_eq!(unique, spec.unique, "{how}: {def}");
        let expected = format!("USING btree ({})", spec.columns);
        assert!(
            def.ends_with(&expected),
            "{how}: {def} is not on ({expected})"
        );
    }
}

/// `rtctl gen migrations --format sqlx` next to a user's existing first migration, run by
/// sqlx's own `Migrator` (what `sqlx migrate run` does: `-- no-transaction` honoured,
/// checksums recorded), twice: the second run has nothing to do.
#[tokio::test]
async fn generated_sqlx_migrations_apply_to_postgres() {
    let dir = tmpdir("migrations-sqlx-pg");
    gen_migrations("sqlx", &[], &dir);
    // The user's existing migrations: the base schema as version 1.
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("migrations/postgres/0001_create_tables.sql"),
        dir.join("0001_create_tables.sql"),
    )
    .unwrap();
    let url = fresh_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    let kinds: Vec<(i64, bool)> = migrator.iter().map(|m| (m.version, m.no_tx)).collect();
    assert_eq!(
        kinds,
        [(1, false), (2, true), (3, true), (4, true), (5, true)],
        "versions and no-transaction flags as sqlx reads them"
    );
    migrator
        .run(&pool)
        .await
        .unwrap_or_else(|e| panic!("sqlx migrate: {e}"));
    migrator
        .run(&pool)
        .await
        .unwrap_or_else(|e| panic!("sqlx migrate, second run: {e}"));
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        applied,
        [(1, true), (2, true), (3, true), (4, true), (5, true)]
    );
    let mut conn = pool.acquire().await.unwrap();
    assert_indexes(&mut conn, "sqlx").await;
    drop(conn);
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rtctl gen migrations --format prisma` applied as `prisma migrate deploy` applies a
/// migration: each `prisma/migrations/<timestamp>_<name>/migration.sql`, in directory
/// order, sent whole as one simple-protocol script outside any explicit transaction.
/// (Prisma's own bookkeeping table is not involved: only what the SQL does is tested.)
#[tokio::test]
async fn generated_prisma_migrations_apply_to_postgres() {
    let dir = tmpdir("migrations-prisma-pg");
    gen_migrations("prisma", &[], &dir);
    let mut migrations: Vec<PathBuf> = std::fs::read_dir(dir.join("prisma/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    migrations.sort();
    assert_eq!(migrations.len(), 4, "{migrations:?}");
    let mut conn = database_with_base_schema().await;
    for m in &migrations {
        let sql = std::fs::read_to_string(m.join("migration.sql")).unwrap();
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", m.display()));
    }
    assert_indexes(&mut conn, "prisma").await;
    // A second deploy of the same files (e.g. after a failed run) is harmless.
    for m in &migrations {
        let sql = std::fs::read_to_string(m.join("migration.sql")).unwrap();
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
