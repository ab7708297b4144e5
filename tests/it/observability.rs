//! Issue 5 end to end: `/metrics`, `/api/health` (+ `/live`, `/ready`) and JSON logs, on
//! the product as `realtime-server` runs it (`app::build` + `App::serve`, or the real
//! binary for logs), with real clients and real dependencies:
//!
//! - metrics move with real traffic (a raw WebSocket client connecting to `/chat`,
//!   emitting, disconnecting) and the scrape passes `promtool check metrics`;
//! - health reflects real outages: a killed redis-server, a stopped PostgreSQL, and
//!   recovers when they come back; the embedded default reports Redis `not_configured`;
//! - readiness turns 503 during the drain delay, before connections are closed;
//! - `--log-format json` writes one JSON object per line, with a debug line per connect
//!   and disconnect, and never the session token.
//!
//! Counters are process-wide and other tests run in parallel in this binary, so counter
//! assertions are "rose by at least"; gauges are read from each server's own state and
//! are asserted exactly. Needs `promtool` (Debian `prometheus`), redis-server and
//! PostgreSQL 15: a missing one panics with an install hint, never a silent skip.

use crate::common::app::{parse_config, random, Served, TempDir};
use crate::common::postgres::PgServer;
use crate::common::raw;
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use realtime::auth::{mint, session_claims, TokenFormat};
use realtime::config::Config;
use serde_json::{json, Value};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;

const PROMTOOL_HINT: &str =
    "install promtool with `apt-get install -y prometheus` (scripts/test does this)";

// ---- harness ---------------------------------------------------------------------------

/// `realtime-server` flags: random secrets, fast heartbeats, then `extra`. Redis only
/// when `extra` names it (whatever the environment says).
fn config(secret: &str, extra: &[&str]) -> Config {
    let service = random("service");
    let mut argv = vec![
        "realtime-server",
        "--listen",
        "127.0.0.1:0",
        "--auth-secret",
        secret,
        "--service-token",
        &service,
        "--ping-interval",
        "500",
        "--ping-timeout",
        "2000",
        "--log-level",
        "warn",
    ];
    argv.extend_from_slice(extra);
    parse_config(&argv, extra.contains(&"--redis-url"))
}

/// The application served on a loopback port, as `realtime-server` serves it.
/// A NextAuth v4 session cookie for `user`.
fn session_cookie(secret: &str, user: &str) -> (String, String) {
    let claims = session_claims(
        user,
        Some("Obs"),
        None,
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    let token = mint(secret, TokenFormat::V4, &claims);
    (format!("next-auth.session-token={token}"), token)
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let res = raw::get(addr, path).await;
    let ct = res.header("content-type").unwrap_or_default().to_owned();
    (res.status, ct, res.text().to_owned())
}

pub(crate) async fn health(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = http_get(addr, path).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

/// Samples of a scrape: `name{labels}` → value (labels exactly as exposed).
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("sample {l:?}"));
            (
                k.to_owned(),
                v.parse().unwrap_or_else(|_| panic!("value {l:?}")),
            )
        })
        .collect()
}

/// The value of the sample `series` (exact name and labels), or 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(k, _)| k == series)
        .map(|(_, v)| v)
        .unwrap_or(0.0)
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, ct, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    body
}

/// Runs `promtool check metrics` on a scrape; panics with its complaints.
fn promtool_check(scrape: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): {PROMTOOL_HINT}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- scrape ---\n{scrape}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- metrics -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_real_traffic_and_pass_promtool() {
    let dir = TempDir::new("obs");
    let secret = random("nextauth");
    let node = random("obs-node");
    let url = dir.sqlite_url();
    let config = config(&secret, &["--database-url", &url, "--node-id", &node]);
    let server = Served::start(&config).await;
    let addr = server.addr;

    let chat_ws = r#"realtime_connections{namespace="/chat",transport="websocket"}"#;
    let sessions_ws = r#"realtime_engine_sessions{transport="websocket"}"#;
    let connects = r#"realtime_socket_connects_total{namespace="/chat"}"#;
    let room_open = r#"realtime_events_received_total{namespace="/chat",event="room:open"}"#;
    let send = r#"realtime_events_received_total{namespace="/chat",event="message:send"}"#;
    let join = r#"realtime_events_received_total{namespace="/chat",event="room:join"}"#;
    let other = r#"realtime_events_received_total{namespace="/chat",event="other"}"#;
    let broadcasts = r#"realtime_broadcasts_total{namespace="/chat"}"#;
    let sent = r#"realtime_events_sent_total{namespace="/chat"}"#;
    let handled = r#"realtime_event_handler_duration_seconds_count{namespace="/chat"}"#;
    let bytes_in = r#"realtime_received_bytes_total{transport="websocket"}"#;
    let bytes_out = r#"realtime_sent_bytes_total{transport="websocket"}"#;
    let inserts =
        r#"realtime_db_query_duration_seconds_count{operation="insert_message",pool="primary"}"#;
    let gone = r#"realtime_socket_disconnects_total{namespace="/chat",reason="transport close"}"#;
    let lived = r#"realtime_connection_duration_seconds_count{namespace="/chat"}"#;

    let before = scrape(addr).await;
    assert_eq!(value(&before, chat_ws), 0.0, "{before}");
    assert!(
        before.contains(&format!(
            "realtime_build_info{{version=\"{}\",node=\"{node}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{before}"
    );
    assert!(value(&before, "process_resident_memory_bytes") > 0.0);
    assert!(value(&before, "process_open_fds") > 0.0);
    assert!(value(&before, "process_start_time_seconds") > 1.6e9);
    assert_eq!(
        value(
            &before,
            r#"realtime_db_pool_max_connections{pool="primary"}"#
        ),
        f64::from(config.store.db_pool_size)
    );

    let (cookie, _) = session_cookie(&secret, "obs-alice");
    let mut alice = SioClient::connect_with_cookie(addr, &cookie, "/chat").await;
    let (cookie, _) = session_cookie(&secret, "obs-bob");
    let mut bob = SioClient::connect_with_cookie(addr, &cookie, "/chat").await;
    let connected = scrape(addr).await;
    assert_eq!(value(&connected, chat_ws), 2.0, "{connected}");
    assert_eq!(value(&connected, sessions_ws), 2.0, "{connected}");
    assert!(value(&connected, connects) >= value(&before, connects) + 2.0);

    let opened = alice.call("room:open", json!({"peerId": "obs-bob"})).await;
    let room_id = opened["roomId"]
        .as_i64()
        .unwrap_or_else(|| panic!("room:open -> {opened}"));
    let joined = bob.call("room:join", json!({"roomId": room_id})).await;
    assert_eq!(joined["ok"], true, "room:join -> {joined}");
    let message = alice
        .call("message:send", json!({"roomId": room_id, "text": "hi"}))
        .await;
    assert!(message["id"].is_i64(), "message:send -> {message}");
    bob.packet("42/chat,[\"message:new\"").await;
    alice
        .ws
        .send_text(r#"42/chat,["an-event-nobody-knows",1]"#)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let after = scrape(addr).await;
    for (series, at_least) in [
        (room_open, 1.0),
        (join, 1.0),
        (send, 1.0),
        (broadcasts, 1.0),
        (other, 1.0),
        (sent, 1.0),
        (handled, 2.0),
        (bytes_in, 40.0),
        (bytes_out, 40.0),
        (inserts, 1.0),
    ] {
        assert!(
            value(&after, series) >= value(&before, series) + at_least,
            "{series}: {} -> {}",
            value(&before, series),
            value(&after, series)
        );
    }
    assert!(
        value(&after, r#"realtime_rooms{namespace="/chat"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        !after.contains("obs-alice"),
        "a user id leaked into a label"
    );
    assert!(
        !after.contains("an-event-nobody-knows"),
        "an unknown event became a label"
    );
    promtool_check(&after);

    alice.ws.close().await;
    bob.ws.close().await;
    let deadline = Instant::now() + raw::QUICK;
    let closed = loop {
        let s = scrape(addr).await;
        if value(&s, chat_ws) == 0.0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(value(&closed, chat_ws), 0.0, "{closed}");
    assert!(
        value(&closed, gone) >= value(&before, gone) + 2.0,
        "{closed}"
    );
    assert!(
        value(&closed, lived) >= value(&before, lived) + 2.0,
        "{closed}"
    );
    promtool_check(&closed);
    server.stop().await;
}

// ---- health --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_is_healthy_without_redis() {
    let dir = TempDir::new("obs");
    let url = dir.sqlite_url();
    let config = config(
        &random("s"),
        &["--database-url", &url, "--node-id", "solo-1"],
    );
    let server = Served::start(&config).await;
    let (status, body) = health(server.addr, "/api/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["node"], "solo-1");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        body["uptime_s"].is_u64() && body["connections"] == 0,
        "{body}"
    );
    assert_eq!(body["services"]["database"]["status"], "up", "{body}");
    assert!(
        body["services"]["database"]["latency_ms"].is_number(),
        "{body}"
    );
    assert_eq!(
        body["services"]["redis"]["status"], "not_configured",
        "{body}"
    );
    let (status, ready) = health(server.addr, "/api/health/ready").await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &json!("ready")),
        "{ready}"
    );
    let (status, live) = health(server.addr, "/api/health/live").await;
    assert_eq!((status, &live["status"]), (200, &json!("alive")), "{live}");
    let res = raw::post(server.addr, "/api/health", b"{}").await;
    assert_eq!(res.status, 405);
    server.stop().await;
}

/// Polls `/api/health` until `want` holds (returns the body), panicking after `within`.
async fn health_until(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    want: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = health(addr, "/api/health").await;
        if want(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {status} {body} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflects_redis_and_postgres_outages() {
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let db = pg.create_database().await;
    let pg_url = pg.url_for(&db);
    let mut redis = RedisServer::start();
    let redis_url = redis.url();
    let timeout_ms = 500u64;
    let config = config(
        &random("s"),
        &[
            "--database-url",
            &pg_url,
            "--db-auto-migrate",
            "--redis-url",
            &redis_url,
            "--health-timeout",
            &timeout_ms.to_string(),
        ],
    );
    let server = Served::start(&config).await;
    let addr = server.addr;
    // Each check answers within its timeout; allow the HTTP round trip and a busy CI.
    let bound = Duration::from_millis(timeout_ms) + Duration::from_millis(1500);

    let (status, body) = health(addr, "/api/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["services"]["database"]["status"], "up", "{body}");
    assert_eq!(body["services"]["redis"]["status"], "up", "{body}");
    assert!(
        body["services"]["redis"]["latency_ms"].is_number(),
        "{body}"
    );

    // Redis down: 503 naming redis, within the timeout.
    redis.stop();
    let started = Instant::now();
    let (status, body) = health(addr, "/api/health").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["failed"], json!(["redis"]), "{body}");
    assert_eq!(body["services"]["redis"]["status"], "down", "{body}");
    assert!(body["services"]["redis"]["error"].is_string(), "{body}");
    assert_eq!(body["services"]["database"]["status"], "up", "{body}");
    assert!(took < bound, "/api/health took {took:?} with Redis down");
    let (status, ready) = health(addr, "/api/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["failed"]["redis"].is_string(), "{ready}");
    let (status, _) = health(addr, "/api/health/live").await;
    assert_eq!(status, 200, "liveness does not depend on Redis");

    // Redis back: healthy again (the connection manager reconnects).
    let port = redis.port;
    drop(redis);
    let redis = RedisServer::start_on(port);
    health_until(addr, Duration::from_secs(15), "Redis restarted", |s, _| {
        s == 200
    })
    .await;

    // PostgreSQL down: 503 naming the database, within the timeout.
    tokio::task::block_in_place(|| pg.stop());
    let started = Instant::now();
    let (status, body) = health(addr, "/api/health").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failed"], json!(["database"]), "{body}");
    assert_eq!(body["services"]["database"]["status"], "down", "{body}");
    assert_eq!(body["services"]["redis"]["status"], "up", "{body}");
    assert!(
        took < bound,
        "/api/health took {took:?} with PostgreSQL down"
    );
    let scrape_started = Instant::now();
    let during = scrape(addr).await;
    assert!(
        scrape_started.elapsed() < bound,
        "/metrics must not wait for the database"
    );
    promtool_check(&during);

    // PostgreSQL back: healthy again.
    tokio::task::block_in_place(|| pg.restart());
    let body = health_until(
        addr,
        Duration::from_secs(20),
        "PostgreSQL restarted",
        |s, _| s == 200,
    )
    .await;
    assert_eq!(body["status"], "healthy", "{body}");
    server.stop().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_during_the_drain_before_connections_close() {
    let dir = TempDir::new("obs");
    let url = dir.sqlite_url();
    let secret = random("s");
    let delay = Duration::from_millis(1500);
    let config = config(&secret, &["--database-url", &url, "--drain-delay", "1500"]);
    let mut server = Served::start(&config).await;
    let addr = server.addr;
    let (cookie, _) = session_cookie(&secret, "obs-drain");
    let mut chat = SioClient::connect_with_cookie(addr, &cookie, "/chat").await;
    let (status, _) = health(addr, "/api/health/ready").await;
    assert_eq!(status, 200);

    let shutdown_at = Instant::now();
    server.begin_stop();
    let deadline = Instant::now() + raw::QUICK;
    let ready = loop {
        let (status, body) = health(addr, "/api/health/ready").await;
        if status == 503 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let not_ready_after = shutdown_at.elapsed();
    assert_eq!(ready.0, 503, "readiness during the drain: {}", ready.1);
    assert_eq!(ready.1["reason"], "draining", "{}", ready.1);
    assert!(
        not_ready_after < delay,
        "readiness flipped only after {not_ready_after:?}"
    );
    // Still serving: the client is connected, liveness and new requests are answered.
    let (status, _) = health(addr, "/api/health/live").await;
    assert_eq!(status, 200);
    let (status, body) = health(addr, "/api/health").await;
    assert_eq!(
        (status, &body["status"]),
        (503, &json!("draining")),
        "{body}"
    );
    let echo = chat.call("room:open", json!({"peerId": "obs-peer"})).await;
    assert!(
        echo["roomId"].is_i64(),
        "served during the drain delay: {echo}"
    );

    // Then connections are closed, not before the delay.
    let closed = loop {
        match chat.ws.recv(delay + raw::QUICK).await {
            None => break shutdown_at.elapsed(),
            Some(Message::Text(t)) if t.as_str() == "2" => chat.ws.send_text("3").await,
            Some(_) => {}
        }
    };
    assert!(
        closed >= delay,
        "connections closed after {closed:?}, before the {delay:?} drain delay"
    );
    server.stop().await;
}

// ---- logs ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_never_carry_tokens() {
    let dir = TempDir::new("obs");
    let secret = random("nextauth");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_realtime-server"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--log-level", "debug", "--database-url", &dir.sqlite_url()])
        .args(["--auth-secret", &secret, "--service-token", &random("svc")])
        .args(["--node-id", "json-logs-1"])
        .env_remove("RUST_LOG")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn realtime-server");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log: Vec<String> = Vec::new();

    // The "listening" line says where: parse it as JSON like every other line.
    let addr: SocketAddr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
            log.push(line);
            if v["message"] == "realtime server listening" {
                return v["address"].as_str().unwrap().parse().unwrap();
            }
        }
        panic!(
            "realtime-server exited before listening:\n{}",
            log.join("\n")
        );
    })
    .await
    .expect("realtime-server did not log that it listens");

    let (cookie, token) = session_cookie(&secret, "obs-logger");
    let mut chat = SioClient::connect_with_cookie(addr, &cookie, "/chat").await;
    let opened = chat.call("room:open", json!({"peerId": "obs-peer"})).await;
    let room_id = opened["roomId"].as_i64().unwrap();
    let body = "a message body that must never reach the log";
    let sent = chat
        .call("message:send", json!({"roomId": room_id, "text": body}))
        .await;
    assert!(sent["id"].is_i64(), "{sent}");
    chat.ws.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("realtime-server did not exit after SIGTERM");
    log.extend(rest);
    let exit = child.wait().await.unwrap();
    assert!(exit.success(), "exit {exit}");

    let mut events = Vec::new();
    for line in &log {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            !line.contains(&token),
            "the session token was logged: {line}"
        );
        assert!(
            !line.contains(&secret),
            "the auth secret was logged: {line}"
        );
        assert!(!line.contains(body), "a message body was logged: {line}");
        events.push(v);
    }
    let connected = events
        .iter()
        .find(|v| v["message"] == "socket connected")
        .unwrap_or_else(|| panic!("no connect line in\n{}", log.join("\n")));
    assert_eq!(connected["level"], "DEBUG");
    assert_eq!(connected["nsp"], "/chat");
    assert_eq!(connected["transport"], "websocket");
    let gone = events
        .iter()
        .find(|v| v["message"] == "socket disconnected")
        .unwrap_or_else(|| panic!("no disconnect line in\n{}", log.join("\n")));
    assert_eq!(gone["nsp"], "/chat");
    assert_eq!(gone["transport"], "websocket");
    assert_eq!(gone["reason"], "transport close");
    assert!(gone["duration_ms"].is_u64(), "{gone}");
}

/// `--metrics-enabled false` (or `METRICS_ENABLED=false`) on the real binary: /metrics
/// answers 404 saying why, the rest keeps working; `true` (the default) serves the scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_switched_off_answer_404_with_the_reason() {
    use crate::common::node::NodeProcess;
    let db = TempDir::new("metrics-off");
    let url = db.sqlite_url();
    let base = ["--database-url", url.as_str(), "--log-level", "warn"];
    let with = |extra: &'static [&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let off_flag =
        NodeProcess::start("off-flag", &with(&["--metrics-enabled", "false"]), &[]).await;
    let off_env = NodeProcess::start("off-env", &base, &[("METRICS_ENABLED", "false")]).await;
    let on = NodeProcess::start("on", &with(&["--metrics-enabled", "true"]), &[]).await;
    for node in [&off_flag, &off_env] {
        let res = raw::get(node.addr, "/metrics").await;
        assert_eq!(res.status, 404, "{}: {}", node.id, res.text());
        assert!(
            res.text().contains("metrics are disabled on this node"),
            "{}: {}",
            node.id,
            res.text()
        );
        let (status, live) = health(node.addr, "/api/health/live").await;
        assert_eq!(status, 200, "{live}");
    }
    let res = raw::get(on.addr, "/metrics").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(
        res.text().contains("realtime_build_info{"),
        "{}",
        res.text()
    );
}

/// A fresh node exports every counter whose labels come from a fixed set at 0, each label
/// value its own series — so a dashboard shows 0 (not "No data") and `rate()` sees the
/// first failure — before anything has happened.
#[tokio::test]
async fn a_fresh_node_exports_its_failure_counters_at_zero() {
    let dir = TempDir::new("zero");
    let addr: SocketAddr = format!("127.0.0.1:{}", crate::common::free_port())
        .parse()
        .unwrap();
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_realtime-server"))
        .env_clear()
        .args(["--listen", &addr.to_string(), "--log-level", "warn"])
        .args(["--database-url", &dir.sqlite_url()])
        .args([
            "--auth-secret",
            &random("secret"),
            "--service-token",
            &random("svc"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn realtime-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err()
        || raw::get(addr, "/api/health/ready").await.status != 200
    {
        assert!(Instant::now() < deadline, "the node never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = scrape(addr).await;
    let all = samples(&text);
    // (family, series expected at least, a series that must be there)
    let families = [
        (
            "realtime_socket_disconnects_total{",
            18,
            r#"realtime_socket_disconnects_total{namespace="/chat",reason="ping timeout"}"#,
        ),
        (
            "realtime_engine_request_errors_total{",
            8,
            r#"realtime_engine_request_errors_total{reason="unknown_sid"}"#,
        ),
        (
            "realtime_auth_failures_total{",
            18,
            r#"realtime_auth_failures_total{namespace="/chat",reason="expired"}"#,
        ),
        (
            "realtime_rate_limit_rejections_total{",
            9,
            r#"realtime_rate_limit_rejections_total{class="message:send"}"#,
        ),
        (
            "realtime_redis_errors_total{",
            5,
            r#"realtime_redis_errors_total{component="presence"}"#,
        ),
        (
            "realtime_db_errors_total{",
            11,
            r#"realtime_db_errors_total{operation="insert_message",pool="primary"}"#,
        ),
        (
            "realtime_cache_requests_total{",
            2,
            r#"realtime_cache_requests_total{cache="unread_count",result="miss"}"#,
        ),
    ];
    for (family, at_least, example) in families {
        let series: Vec<&(String, f64)> =
            all.iter().filter(|(k, _)| k.starts_with(family)).collect();
        assert!(series.len() >= at_least, "{family}: {series:?}");
        assert!(
            series.iter().all(|(_, v)| *v == 0.0),
            "{family}: {series:?}"
        );
        assert!(all.iter().any(|(k, _)| k == example), "{example} missing");
    }
}
