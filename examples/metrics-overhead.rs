//! What recording Prometheus metrics costs a busy node (issue 5: under 3 % of throughput
//! at 10k connections).
//!
//! This process runs a Socket.IO server (the library's `Io` with the default in-process
//! adapter) and starts a second copy of itself holding N WebSocket clients connected to
//! `/` (a second process, so that server and clients each stay under the 20k open-files
//! limit). The workload is fixed: B broadcasts of a ~100-byte event to every client, at
//! most W broadcasts ahead of what the clients have received (the client process reports
//! its count every 10 ms). A round's throughput is B × N delivered messages divided by the
//! time until the last one arrived. Rounds alternate metrics on / off in ABBA order
//! (on-off, off-on, …) by flipping `realtime::metrics::set_enabled` — the same switch
//! `--metrics-enabled` sets — so drift on a shared machine hits both sides alike, and the
//! counters are checked to move with recording on and stay still with it off.
//!
//! ```text
//! cargo build --release --example metrics-overhead
//! target/release/examples/metrics-overhead [--clients 10000] [--pairs 5] [--broadcasts 100] [--window 16]
//! ```
//!
//! Prints one line per round (throughput, and the server process's CPU time per message,
//! which other load on the machine disturbs less than wall-clock throughput), then the
//! medians, `overhead_percent` = (1 − on/off) × 100, the median of the per-pair ratios,
//! and the CPU-per-message overhead.

use futures_util::{SinkExt, StreamExt};
use realtime::metrics::NamespaceLabels;
use realtime::server::{Io, ServerOptions};
use serde_json::json;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    clients: usize,
    pairs: usize,
    broadcasts: usize,
    window: usize,
    /// Set in the client process: the server's port.
    client_of: Option<u16>,
}

fn parse_args() -> Args {
    let mut args = Args {
        clients: 10_000,
        pairs: 5,
        broadcasts: 100,
        window: 16,
        client_of: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || -> usize {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--clients" => args.clients = number(),
            "--pairs" => args.pairs = number(),
            "--broadcasts" => args.broadcasts = number(),
            "--window" => args.window = number(),
            "--client-of" => args.client_of = Some(number() as u16),
            other => {
                panic!("unknown flag {other} (use --clients, --pairs, --broadcasts, --window)")
            }
        }
    }
    assert!(args.clients > 0 && args.broadcasts > 0 && args.window > 0 && args.pairs > 0);
    args
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.client_of {
        Some(port) => rt.block_on(client_process(port, args.clients)),
        None => rt.block_on(server_process(args)),
    }
}

// ---- the client process ------------------------------------------------------------------

/// Connects `n` clients, prints `connected <n>` once all are in `/`, then `count <total>`
/// (ticks received by all clients) every 10 ms; exits when stdin closes.
async fn client_process(port: u16, n: usize) {
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(1024);
    let mut ready = 0;
    for i in 0..n {
        tokio::spawn(client(port, received.clone(), ready_tx.clone()));
        // Keep the listen backlog from overflowing.
        if i % 500 == 499 {
            while ready + 250 < i + 1 {
                ready_rx.recv().await;
                ready += 1;
            }
        }
    }
    while ready < n {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .expect("clients did not all connect within 60 s");
        ready += 1;
    }
    println!("connected {n}");
    std::thread::spawn(|| {
        use std::io::Read as _;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "count {}", received.load(Ordering::Relaxed));
        let _ = out.flush();
    }
}

/// One client: connect to `/`, answer pings, count every `tick` event.
async fn client(port: u16, received: Arc<AtomicU64>, ready: tokio::sync::mpsc::Sender<()>) {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp connect");
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket handshake");
    while let Some(msg) = ws.next().await {
        let Message::Text(t) = msg.expect("websocket read") else {
            continue;
        };
        let t = t.as_str();
        if t.starts_with("42[\"tick\"") {
            received.fetch_add(1, Ordering::Relaxed);
        } else if t == "2" {
            ws.send(Message::text("3")).await.unwrap();
        } else if t.starts_with('0') {
            ws.send(Message::text("40")).await.unwrap();
        } else if t.starts_with("40") {
            let _ = ready.send(()).await;
        } else if t.starts_with("44") {
            panic!("connection refused by the server: {t}");
        }
    }
    panic!("the server closed a client connection");
}

// ---- the server process ------------------------------------------------------------------

/// `realtime_events_sent_total{namespace="/"}` in this process.
fn events_sent() -> u64 {
    realtime::metrics::global()
        .events_sent
        .get_or_create(&NamespaceLabels {
            namespace: "/".into(),
        })
        .get()
}

/// CPU seconds this process (the server; the clients are another process) has used:
/// utime + stime from /proc/self/stat, in clock ticks of 1/100 s.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields counted after the command name, which ends at the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    let ticks = |n: usize| fields[n - 3].parse::<f64>().unwrap();
    (ticks(14) + ticks(15)) / 100.0
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The recording hook every delivered message passes through (`bytes_sent`, once per
/// WebSocket frame), called by every core at once — the contended worst case, since all
/// threads add to the same counter — in ns per call, with recording on and off.
fn hook_cost() -> (f64, f64) {
    use realtime::protocol::engineio::TransportKind;
    const CALLS: u64 = 20_000_000;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let measure = |on: bool| {
        realtime::metrics::set_enabled(on);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for i in 0..CALLS {
                        realtime::metrics::bytes_sent(
                            TransportKind::Websocket.as_str(),
                            std::hint::black_box(100 + (i & 7) as usize),
                        );
                    }
                });
            }
        });
        // Per call as one thread sees it: wall time × threads / calls.
        t0.elapsed().as_nanos() as f64 * threads as f64 / (CALLS * threads as u64) as f64
    };
    let (on, off) = (measure(true), measure(false));
    realtime::metrics::set_enabled(true);
    (on, off)
}

/// One round's figures.
struct Round {
    /// Messages delivered per second (wall clock).
    rate: f64,
    /// Server process CPU time per delivered message.
    cpu_ns_per_message: f64,
}

async fn server_process(args: Args) {
    let io = Io::builder(ServerOptions::default())
        .namespace("/", |_| {})
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(realtime::server::run(
        io.clone(),
        listener,
        std::future::pending(),
    ));
    let ns = io.of("/").expect("namespace /");

    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--client-of",
            &port.to_string(),
            "--clients",
            &args.clients.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the client process");
    let delivered = Arc::new(AtomicU64::new(0));
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let counter = delivered.clone();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = finished.clone();
    tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) = line.strip_prefix("count ") {
                counter.store(n.parse().unwrap(), Ordering::Relaxed);
            } else if line.starts_with("connected ") {
                if let Some(tx) = connected_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        if !done.load(Ordering::Relaxed) {
            eprintln!("the client process ended before the benchmark did");
            std::process::exit(1);
        }
    });
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(180), connected_rx)
        .await
        .expect("clients not connected within 180 s")
        .unwrap();
    assert_eq!(ns.socket_count(), args.clients, "sockets in /");
    println!(
        "clients={} connected in {:.1}s; {} broadcasts per round, window {}",
        args.clients,
        started.elapsed().as_secs_f64(),
        args.broadcasts,
        args.window
    );

    let n = args.clients as u64;
    let (clients, broadcasts, window) = (args.clients, args.broadcasts as u64, args.window as u64);
    let pad = "x".repeat(64);
    // One round: B broadcasts to every client, never more than W ahead of delivery.
    let round = |on: bool| {
        let ns = ns.clone();
        let delivered = delivered.clone();
        let pad = pad.clone();
        async move {
            realtime::metrics::set_enabled(on);
            let counted_before = events_sent();
            let cpu_before = cpu_seconds();
            let base = delivered.load(Ordering::Relaxed);
            let target = base + broadcasts * n;
            let t0 = Instant::now();
            for i in 0..broadcasts {
                while (i - window.min(i)) * n > delivered.load(Ordering::Relaxed) - base {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let sent = ns.emit("tick", json!({ "seq": i, "pad": pad }));
                assert_eq!(sent, clients, "broadcast reached every socket");
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            while delivered.load(Ordering::Relaxed) < target {
                assert!(
                    Instant::now() < deadline,
                    "round not delivered within 120 s"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let elapsed = t0.elapsed();
            let cpu = cpu_seconds() - cpu_before;
            let counted = events_sent() - counted_before;
            if on {
                assert!(
                    counted >= broadcasts * n,
                    "metrics on: events_sent rose by {counted}"
                );
            } else {
                assert_eq!(counted, 0, "metrics off: events_sent must not move");
            }
            let messages = (broadcasts * n) as f64;
            Round {
                rate: messages / elapsed.as_secs_f64(),
                cpu_ns_per_message: cpu * 1e9 / messages,
            }
        }
    };

    let warm = round(true).await;
    println!("warm-up (metrics on): {:.0} msg/s", warm.rate);
    let (mut on_rounds, mut off_rounds, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..args.pairs {
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for on in order {
            let r = round(on).await;
            println!(
                "pair {pair} metrics {:<3} {:>10.0} msg/s  server CPU {:>6.0} ns/msg",
                if on { "on" } else { "off" },
                r.rate,
                r.cpu_ns_per_message
            );
            if on {
                on_rounds.push(r);
            } else {
                off_rounds.push(r);
            }
        }
        paired.push(on_rounds[pair].rate / off_rounds[pair].rate);
    }
    realtime::metrics::set_enabled(true);
    let rates = |v: &[Round]| v.iter().map(|r| r.rate).collect::<Vec<_>>();
    let cpus = |v: &[Round]| v.iter().map(|r| r.cpu_ns_per_message).collect::<Vec<_>>();
    let (on, off) = (median(&rates(&on_rounds)), median(&rates(&off_rounds)));
    let (cpu_on, cpu_off) = (median(&cpus(&on_rounds)), median(&cpus(&off_rounds)));
    let pair_ratio = median(&paired);
    println!(
        "clients={} rounds={} median_msgs_per_s_on={on:.0} off={off:.0} ratio_on_off={:.4} \
         overhead_percent={:.2} median_paired_ratio={pair_ratio:.4} ({:.2}%) \
         server_cpu_ns_per_msg_on={cpu_on:.0} off={cpu_off:.0} cpu_overhead_percent={:.2}",
        args.clients,
        on_rounds.len() + off_rounds.len(),
        on / off,
        (1.0 - on / off) * 100.0,
        (1.0 - pair_ratio) * 100.0,
        (cpu_on / cpu_off - 1.0) * 100.0,
    );
    let (hook_on, hook_off) = hook_cost();
    println!(
        "recording hook per delivered message (bytes_sent, all cores contending): \
         {hook_on:.1} ns on, {hook_off:.1} ns off = {:.2}% of the server's {cpu_on:.0} ns CPU per message",
        (hook_on - hook_off) / cpu_on * 100.0
    );
    finished.store(true, Ordering::Relaxed);
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}
