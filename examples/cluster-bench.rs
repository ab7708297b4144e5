//! Cross-node delivery benchmark: what the Redis adapter adds to a broadcast.
//!
//! ```text
//! redis-server --port 6390 --save '' &
//! cargo run --release --example cluster-bench -- redis://127.0.0.1:6390 [rate] [seconds]
//! ```
//!
//! Two nodes in this process, each with its own Redis connections (so everything between
//! them crosses Redis over loopback) and one WebSocket client on node A in room `R`.
//! Node B (cross-node) or node A itself (single node) emits `{"t": <µs>}` to `R` at
//! `rate` messages/s; the client notes the delay. Then node B publishes as fast as it
//! can for one second, to see how many messages/s one Redis connection carries.

use futures_util::{SinkExt, StreamExt};
use realtime::cluster::driver::{LiveDriver, RedisDriver};
use realtime::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
use realtime::server::{Io, ServerOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

async fn node(url: &str) -> (Io, Arc<LiveDriver>, std::net::SocketAddr) {
    let driver = LiveDriver::connect(url, Duration::from_secs(1))
        .await
        .expect("redis");
    let io = Io::builder(ServerOptions::default())
        .adapter(Arc::new(RedisAdapterFactory::new(
            driver.clone(),
            RedisAdapterOptions::default(),
        )))
        .namespace("/", |ns| {
            ns.on("join", |s, e, ack| async move {
                if let Some(r) = e.args().first().and_then(|v| v.as_str()) {
                    s.join(r.to_owned());
                }
                if let Some(ack) = ack {
                    ack.send(json!(true));
                }
            });
        })
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(realtime::server::run(
        io.clone(),
        listener,
        std::future::pending(),
    ));
    (io, driver, addr)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);

    let (io_a, _da, addr_a) = node(&url).await;
    let (io_b, db, _) = node(&url).await;
    while db.num_sub("socket.io-request#/#".into()).await.unwrap_or(0) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr_a}/socket.io/?EIO=4&transport=websocket"
    ))
    .await
    .expect("connect");
    ws.next().await; // open
    ws.send(Message::text("40")).await.unwrap();
    ws.next().await; // connect
    ws.send(Message::text(r#"421["join","R"]"#)).await.unwrap();
    ws.next().await; // ack

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                if t.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                } else if let Some(i) = t.as_str().find("\"t\":") {
                    let rest = &t.as_str()[i + 4..];
                    let end = rest.find('}').unwrap_or(rest.len());
                    if let Ok(sent) = rest[..end].parse::<u64>() {
                        let _ = tx.send(now_us().saturating_sub(sent));
                    }
                }
            }
        }
    });

    let ns_a = io_a.of("/").unwrap();
    let ns_b = io_b.of("/").unwrap();
    println!("rate {rate} msg/s for {secs} s per run, loopback Redis at {url}");
    for (label, ns) in [("single node", &ns_a), ("cross-node", &ns_b)] {
        let total = rate * secs;
        let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let start = Instant::now();
        for i in 0..total {
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
            ns.to("R").emit("tick", json!({ "t": now_us() }));
        }
        let mut lat = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(5);
        while (lat.len() as u64) < total && Instant::now() < deadline {
            if let Ok(Some(us)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
            {
                lat.push(us);
            }
        }
        lat.sort_unstable();
        println!(
            "{label:>12}: {} of {total} received, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0)
        );
        while rx.try_recv().is_ok() {}
    }

    // Throughput: node B publishes as fast as it can for one second.
    let before = db.stats().published;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            ns_b.to("R").emit("tick", json!({ "t": now_us() }));
        }
        sent += 1000;
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut received = 0u64;
    while rx.try_recv().is_ok() {
        received += 1;
    }
    let s = db.stats();
    println!(
        "throughput: {sent} emitted in 1 s, {} published by one connection ({} dropped, {} failed), {received} delivered across nodes; subscriber reconnects: {}",
        s.published - before,
        s.dropped,
        s.publish_failures,
        s.reconnects
    );
}
