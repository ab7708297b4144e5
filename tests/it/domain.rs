//! Issue 3 end to end: the product as `realtime-server` runs it (`app::build` from a
//! `Config` parsed from argv, then the library's lifecycle `App::serve`), driven by the
//! real npm socket.io-client with a NextAuth v4 session cookie minted by next-auth's own
//! `encode` (tests/interop/chat-flow.mjs): rooms, messages, history, notifications pushed
//! by the HTTP API, error acks, the rate limit, refused handshakes and API errors. Against
//! both backends:
//!
//! - `domain::sqlite::*`: the embedded default, a SQLite file in a temp dir and no Redis;
//! - `domain::postgres::*`: PostgreSQL 15 (a fresh database, `--db-auto-migrate`) and a
//!   real redis-server, which must then hold the rate-limit window.
//!
//! One test per backend and transport (`websocket`, `polling`). A PostgreSQL outage test
//! (`domain::postgres_outage_*`) drives a raw WebSocket client from Rust.
//!
//! Needs `node`, `npm ci --prefix tests/interop`, redis-server and PostgreSQL 15; a missing
//! one panics with an install hint, never a silent skip.

use crate::common::app::{parse_config, random, Served, TempDir};
use crate::common::nodejs::{interop_dir, require_node};
use crate::common::postgres::{fresh_database, PgServer};
use crate::common::raw::{self, Ws};
use crate::common::redis::RedisServer;
use realtime::auth::{mint, session_claims, TokenFormat};
use realtime::config::Config;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::Message;

/// Upper bound for one chat-flow run; the script times itself out after 15 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(25);

/// The secrets a test server runs with.
struct Secrets {
    auth: String,
    service: String,
}

impl Secrets {
    fn new() -> Secrets {
        Secrets {
            auth: random("nextauth"),
            service: random("service"),
        }
    }
}

/// Parses `realtime-server` flags: the test's secrets, fast heartbeats, the rate
/// limit, then `extra`. `with_redis: false` clears any Redis setting the environment
/// (REDIS_URL, REDIS_HOST) would add, so the embedded default really runs without Redis.
fn config(secrets: &Secrets, extra: &[&str], with_redis: bool) -> Config {
    let mut argv = vec![
        "realtime-server",
        "--listen",
        "127.0.0.1:0",
        "--env",
        "development",
        "--auth-secret",
        &secrets.auth,
        "--service-token",
        &secrets.service,
        "--ping-interval",
        "500",
        "--ping-timeout",
        "2000",
        "--connect-timeout",
        "5000",
        "--rate-limit",
        "message:send=10/60",
        "--log-level",
        "warn",
    ];
    argv.extend_from_slice(extra);
    let config = parse_config(&argv, with_redis);
    assert!(!config.auth_secret.generated && !config.service_token.generated);
    assert_eq!(config.redis.url().is_some(), with_redis, "Redis configured");
    config
}

/// Runs `node chat-flow.mjs <url> <secret> <service token> <transport>`; requires exit
/// status 0 and panics with the script's whole output otherwise.
async fn chat_flow(server: &Served, secrets: &Secrets, transport: &str) {
    require_node(&["socket.io-client", "next-auth"]);
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(interop_dir().join("chat-flow.mjs"))
        .args([&server.url(), &secrets.auth, &secrets.service, transport])
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn node chat-flow.mjs: {e}"));
    let label = format!(
        "node chat-flow.mjs {} <secret> <token> {transport}",
        server.url()
    );
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{label}: wait failed: {e}"),
        Err(_) => panic!("{label}: still running after {SCRIPT_TIMEOUT:?} (killed)"),
    };
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{label}: failed with {}\n--- script output ---\n{transcript}---------------------",
        out.status
    );
    println!("{transcript}{label}: passed in {:?}", started.elapsed());
}

/// The embedded default: a SQLite file in a temp dir, no Redis, migrated at start.
async fn sqlite(transport: &str) {
    let dir = TempDir::new("domain");
    let file = dir.0.join("realtime.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let secrets = Secrets::new();
    let config = config(&secrets, &["--database-url", &url], false);
    let server = Served::start(&config).await;
    assert_eq!(server.state.store.backend(), "sqlite");
    chat_flow(&server, &secrets, transport).await;
    server.stop().await;
    assert!(file.is_file(), "the SQLite database is {}", file.display());
}

/// PostgreSQL (a fresh database in the shared test server) and a real redis-server.
async fn postgres(transport: &str) {
    let redis = RedisServer::start();
    let url = fresh_database().await;
    let secrets = Secrets::new();
    let redis_url = redis.url();
    let config = config(
        &secrets,
        &[
            "--database-url",
            &url,
            "--db-auto-migrate",
            "--redis-url",
            &redis_url,
        ],
        true,
    );
    let server = Served::start(&config).await;
    assert_eq!(server.state.store.backend(), "postgres");
    chat_flow(&server, &secrets, transport).await;
    server.stop().await;

    // The rate limit lived in Redis (rate-limiter-flexible's key layout), not in process.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis-server");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("socket_rl:alice-{transport}-*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        1,
        "alice's rate-limit window in Redis: {keys:?}"
    );
    let used: i64 = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(used >= 10, "{} = {used}, expected at least 10", keys[0]);
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket() {
        super::sqlite("websocket").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling() {
        super::sqlite("polling").await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket() {
        super::postgres("websocket").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling() {
        super::postgres("polling").await;
    }
}

// ---- PostgreSQL outage ------------------------------------------------------------------

/// A Socket.IO client on `/chat` over a raw WebSocket: answers pings, matches acks.
struct RawChat {
    ws: Ws,
    next_id: u64,
}

impl RawChat {
    async fn connect(addr: SocketAddr, cookie: &str) -> RawChat {
        let ws = Ws::try_connect(
            addr,
            &raw::eio_path("EIO=4&transport=websocket"),
            &[("cookie", cookie)],
        )
        .await
        .unwrap_or_else(|e| panic!("websocket upgrade: {e}"));
        let mut chat = RawChat { ws, next_id: 1 };
        let open = chat.packet("0", raw::QUICK).await;
        assert!(open.contains("\"sid\""), "open packet {open:?}");
        chat.ws.send_text("40/chat,").await;
        let connected = chat.packet("4", raw::QUICK).await;
        assert!(
            connected.starts_with("40/chat,{\"sid\":"),
            "expected CONNECT to /chat, got {connected:?}"
        );
        chat
    }

    /// The next packet starting with `prefix`, answering pings on the way; panics on a
    /// disconnect or after `within`.
    async fn packet(&mut self, prefix: &str, within: Duration) -> String {
        let wait = async {
            loop {
                let text = match self.ws.recv(within + Duration::from_secs(1)).await {
                    Some(Message::Text(t)) => t.as_str().to_owned(),
                    Some(other) => panic!("unexpected frame {other:?}"),
                    None => panic!("the server closed the WebSocket (waiting for {prefix:?})"),
                };
                if text == "2" {
                    self.ws.send_text("3").await;
                } else if text.starts_with("41/chat") || text.starts_with('1') {
                    panic!("the server disconnected the socket: {text:?}");
                } else if text.starts_with(prefix) {
                    return text;
                }
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("no packet {prefix:?} within {within:?}"))
    }

    /// Reads for `d`, answering pings; panics on a disconnect. Returns the pings answered.
    async fn idle(&mut self, d: Duration) -> u32 {
        let mut pings = 0;
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.recv(d + raw::QUICK)).await {
            match next {
                Some(Message::Text(t)) if t.as_str() == "2" => {
                    self.ws.send_text("3").await;
                    pings += 1;
                }
                Some(Message::Text(t))
                    if t.as_str().starts_with("41/chat") || t.as_str().starts_with('1') =>
                {
                    panic!("the server disconnected the socket: {t:?}")
                }
                Some(_) => {}
                None => panic!("the server closed the WebSocket"),
            }
        }
        pings
    }

    /// Emits `event` with `arg` and an ack id; returns the ack's argument and how long it took.
    async fn call(&mut self, event: &str, arg: Value, within: Duration) -> (Value, Duration) {
        let id = self.next_id;
        self.next_id += 1;
        let started = Instant::now();
        self.ws
            .send_text(&format!("42/chat,{id}{}", json!([event, arg])))
            .await;
        let ack = self.packet(&format!("43/chat,{id}["), within).await;
        let args: Vec<Value> = serde_json::from_str(&ack[format!("43/chat,{id}").len()..])
            .unwrap_or_else(|e| panic!("ack {ack:?}: {e}"));
        assert_eq!(args.len(), 1, "ack {ack:?}");
        (args.into_iter().next().unwrap(), started.elapsed())
    }
}

/// Stop PostgreSQL under a connected socket: `message:send` acks `db_unavailable` within a
/// few seconds (the acquire timeout), other calls and the HTTP API say so too, the socket
/// stays connected through it (heartbeats included), and once the database is back the
/// same socket sends again and nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_acks_db_unavailable_and_recovers() {
    let pg = PgServer::start();
    let db = pg.create_database().await;
    let url = pg.url_for(&db);
    let secrets = Secrets::new();
    let config = config(
        &secrets,
        &["--database-url", &url, "--db-auto-migrate"],
        false,
    );
    let acquire = config.store.acquire_timeout();
    let server = Served::start(&config).await;
    let claims = session_claims(
        "alice",
        Some("Alice"),
        None,
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    let token = mint(&secrets.auth, TokenFormat::V4, &claims);
    let mut alice =
        RawChat::connect(server.addr, &format!("next-auth.session-token={token}")).await;

    let (opened, _) = alice
        .call("room:open", json!({"peerId": "bob"}), raw::QUICK)
        .await;
    let room_id = opened["roomId"]
        .as_i64()
        .unwrap_or_else(|| panic!("room:open -> {opened}"));
    let (before, _) = alice
        .call(
            "message:send",
            json!({"roomId": room_id, "text": "before"}),
            raw::QUICK,
        )
        .await;
    assert!(before["id"].is_i64(), "message:send -> {before}");

    tokio::task::block_in_place(|| pg.stop());
    let bound = acquire + Duration::from_secs(3);
    let (ack, took) = alice
        .call(
            "message:send",
            json!({"roomId": room_id, "text": "during"}),
            bound,
        )
        .await;
    assert_eq!(
        ack["error"], "db_unavailable",
        "message:send during the outage -> {ack}"
    );
    assert!(ack["message"].is_string(), "{ack}");
    assert!(
        took <= bound,
        "the db_unavailable ack took {took:?} (bound {bound:?})"
    );
    println!("message:send acked db_unavailable after {took:?}");
    let (ack, _) = alice
        .call("message:history", json!({"roomId": room_id}), bound)
        .await;
    assert_eq!(
        ack["error"], "db_unavailable",
        "message:history during the outage -> {ack}"
    );

    let api = raw::request(
        server.addr,
        "POST",
        "/api/notifications",
        &[
            ("Authorization", &format!("Bearer {}", secrets.service)),
            ("Content-Type", "application/json"),
        ],
        json!({"userId": "alice", "type": "t", "title": "t"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(
        api.status,
        503,
        "POST /api/notifications during the outage: {}",
        api.text()
    );
    assert_eq!(api.json()["error"], "db_unavailable", "{}", api.text());

    // Several heartbeats pass while the database is down; the socket answers them.
    let pings = alice.idle(Duration::from_millis(1_500)).await;
    assert!(pings >= 2, "{pings} pings in 1.5 s at a 500 ms interval");

    tokio::task::block_in_place(|| pg.restart());
    // Wait for the pool to reconnect with a call the rate limit does not charge, then the
    // same socket sends again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ack, _) = alice
            .call("message:history", json!({"roomId": room_id}), bound)
            .await;
        if ack["messages"].is_array() {
            break;
        }
        assert_eq!(
            ack["error"], "db_unavailable",
            "message:history after the restart -> {ack}"
        );
        assert!(
            Instant::now() < deadline,
            "still db_unavailable 10 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (after, _) = alice
        .call(
            "message:send",
            json!({"roomId": room_id, "text": "after"}),
            raw::QUICK,
        )
        .await;
    assert!(
        after["id"].is_i64(),
        "message:send after the outage -> {after}"
    );
    let (history, _) = alice
        .call("message:history", json!({"roomId": room_id}), raw::QUICK)
        .await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("message:history -> {history}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        texts,
        ["after", "before"],
        "history after the outage: {history}"
    );
    assert_eq!(history["messages"][0]["id"], after["id"]);
    alice.ws.close().await;
    server.stop().await;
}
