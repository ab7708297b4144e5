//! Measures the server's memory per idle WebSocket connection.
//!
//! Starts a `realtime-server` process, opens N Socket.IO connections over WebSocket (each
//! connected to a namespace and answering pings, like a browser tab left open), and
//! reports the growth of the server's resident memory divided by N.
//!
//! ```text
//! cargo build --release --bin realtime-server --example idle-connections
//! target/release/examples/idle-connections --clients 10000
//! ```

use futures_util::{SinkExt, StreamExt};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    clients: usize,
    server_bin: String,
    port: u16,
    namespace: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        clients: 10_000,
        server_bin: "target/release/realtime-server".into(),
        port: 39_501,
        namespace: "/chat".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => args.clients = value.parse().expect("--clients takes a number"),
            "--server-bin" => args.server_bin = value,
            "--port" => args.port = value.parse().expect("--port takes a number"),
            "--namespace" => args.namespace = value,
            other => {
                panic!("unknown flag {other} (use --clients, --server-bin, --port, --namespace)")
            }
        }
    }
    args
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status")
}

/// The secret the measured server verifies tokens with (every namespace authenticates).
const SECRET: &str = "idle-connections-benchmark-secret";

/// A session token for user `n`, as the Next.js app would issue (HS256 here: cheapest to mint).
fn token(n: usize) -> String {
    let claims = realtime::auth::session_claims(
        &format!("user-{n}"),
        None,
        None,
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    );
    realtime::auth::mint(SECRET, realtime::auth::TokenFormat::Hs256, &claims)
}

/// One idle client: connect, join the namespace, then answer pings until told to stop.
async fn client(port: u16, namespace: String, n: usize, ready: tokio::sync::mpsc::Sender<()>) {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp connect");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket handshake");
    let auth = serde_json::json!({ "token": token(n) });
    let connect = if namespace == "/" {
        format!("40{auth}")
    } else {
        format!("40{namespace},{auth}")
    };
    let mut connected = false;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        match t.as_str() {
            s if s.starts_with('0') => ws.send(Message::text(connect.clone())).await.unwrap(),
            "2" => ws.send(Message::text("3")).await.unwrap(),
            s if s.starts_with("40") && !connected => {
                connected = true;
                let _ = ready.send(()).await;
            }
            s if s.starts_with("44") => panic!("connection refused by the server: {s}"),
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let mut server = tokio::process::Command::new(&args.server_bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{}", args.port),
            "--auth-secret",
            SECRET,
        ])
        .env("DATABASE_URL", "sqlite::memory:")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it with `cargo build --release`",
                args.server_bin
            )
        });
    let pid = server.id().expect("server pid");
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", args.port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warm up allocator and runtime with a few connections, so the baseline is fair.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    for _ in 0..10 {
        tokio::spawn(client(
            args.port,
            args.namespace.clone(),
            usize::MAX,
            tx.clone(),
        ));
    }
    for _ in 0..10 {
        rx.recv().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let started = Instant::now();
    let mut ready = 0;
    for i in 0..args.clients {
        tokio::spawn(client(args.port, args.namespace.clone(), i, tx.clone()));
        // Keep the listen backlog from overflowing.
        if i % 500 == 499 {
            while ready < i + 1 - 250 {
                rx.recv().await;
                ready += 1;
            }
        }
    }
    while ready < args.clients {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("clients did not all connect within 30 s");
        ready += 1;
    }
    let ramp = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / args.clients as f64;
    println!(
        "clients={} ramp={:.1}s server_rss_before={}KiB server_rss_after={}KiB bytes_per_idle_connection={:.0}",
        args.clients,
        ramp.as_secs_f64(),
        before,
        after,
        per_conn
    );
    // SIGTERM, so the server drains like in production (and profilers can write out).
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .is_err()
    {
        let _ = server.kill().await;
    }
}
