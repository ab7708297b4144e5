//! Hostile input against a running node, each with honest clients beside it that must
//! keep their latency bar, and the node's memory checked where the attack holds
//! resources:
//! - slowloris: thousands of connections trickling a request's headers (and silent
//!   ones) are dropped at the header-read timeout;
//! - a thousand Engine.IO sessions that never CONNECT to a namespace are closed by the
//!   connect timeout, a thousand polling sessions never polled again by the heartbeat;
//! - one address opening more sessions than `--max-connections-per-ip` is refused (429,
//!   Engine.IO code 4), others are not; `X-Forwarded-For` counts only from a trusted
//!   proxy;
//! - one socket flooding events is refused past its event budget (its acks say
//!   `rate_limited`) and disconnected after the stated number of refusals, while
//!   another socket on the same server is served;
//! - a reader that stops reading is closed once its outbound queue passes the limit
//!   (16 MiB by default; 1 MiB here), while its room's other members get every message.
//!
//! Malformed packets, binary framing violations and oversized payloads close only the
//! offending connection: `socketio.rs` and `engine.rs`; forged, expired and
//! wrong-secret tokens: `auth.rs` and `domain.rs`; random frames: `fuzz.rs`.

use crate::common::node::NodeProcess;
use crate::common::raw::{self, eio_path, parse_open, wait_until, HttpConn, Ws, QUICK};
use crate::common::{fast_options, TestServer};
use futures_util::future::join_all;
use realtime::server::EventBudget;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `n` honest polling handshakes, one after another, each answered within 500 ms.
async fn assert_honest_clients_served(addr: SocketAddr, n: usize) {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        raw::polling_handshake(addr).await;
        worst = worst.max(started.elapsed());
    }
    assert!(
        worst < Duration::from_millis(500),
        "an honest handshake took {worst:?}"
    );
}

/// With `what` open on `node` (whose RSS was `before`): they were open at once, held
/// under 64 MiB, honest clients were served meanwhile, and all are gone within 8 s.
async fn assert_reaped(node: &NodeProcess, before: u64, what: &str) {
    let peak = engine_sessions(node.addr).await;
    let held = node.rss_bytes().saturating_sub(before);
    assert_honest_clients_served(node.addr, 20).await;
    until_no_sessions(node.addr, Duration::from_secs(8), what).await;
    assert!(
        peak >= 900.0,
        "{what}: the sessions were open at once: {peak}"
    );
    assert!(
        held < 64 << 20,
        "{what}: 1,000 sessions held {} MiB",
        held >> 20
    );
}

/// The node's Engine.IO sessions now: `realtime_engine_sessions` summed over transports.
async fn engine_sessions(addr: SocketAddr) -> f64 {
    let res = raw::get(addr, "/metrics").await;
    res.text()
        .lines()
        .filter(|l| l.starts_with("realtime_engine_sessions{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 before the close is fine
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_dropped_at_the_header_read_timeout() {
    let node = NodeProcess::start("slowloris", &["--header-read-timeout", "1500"], &[]).await;
    let addr = node.addr;
    let before = node.rss_bytes();
    // 2,000 trickling a header byte every 500 ms, 200 opened and left silent.
    let mut trickling = Vec::new();
    for _ in 0..20 {
        let opened = (0..100).map(|_| TcpStream::connect(addr));
        for s in join_all(opened).await {
            let mut s = s.expect("connect");
            s.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
            trickling.push(s);
        }
    }
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for s in &mut trickling {
                let _ = s.write_all(b"a").await;
            }
        }
        trickling
    });
    // Honest clients meanwhile.
    assert_honest_clients_served(addr, 50).await;
    let during = node.rss_bytes();
    let mut trickling = trickle.await.unwrap();
    // Past the timeout (1.5 s) every one of them is gone.
    let checks = trickling
        .iter_mut()
        .chain(silent.iter_mut())
        .map(|s| closed_by_server(s, Duration::from_millis(500)));
    let open = join_all(checks)
        .await
        .into_iter()
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 0, "{open} of 2,200 slow connections still open");
    let growth = during.saturating_sub(before);
    assert!(
        growth < 64 << 20,
        "RSS grew {} MiB holding 2,200 slow connections",
        growth >> 20
    );
    assert_honest_clients_served(addr, 20).await;
}

/// Waits (up to `within`) until the node has no Engine.IO session left.
async fn until_no_sessions(addr: SocketAddr, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let open = engine_sessions(addr).await;
        if open == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {open} sessions still open after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_that_never_connect_are_closed_at_the_connect_timeout() {
    // Pings far apart: only the connect timeout (1 s) can end these sessions soon.
    let args = [
        "--connect-timeout",
        "1000",
        "--ping-interval",
        "20000",
        "--ping-timeout",
        "20000",
    ];
    let node = NodeProcess::start("never-connect", &args, &[]).await;
    let addr = node.addr;
    let before = node.rss_bytes();
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let opening = (0..100).map(|_| Ws::open(addr));
        sockets.extend(join_all(opening).await.into_iter().map(|(ws, _)| ws));
    }
    assert_reaped(&node, before, "never connected").await;
    for ws in &mut sockets {
        assert!(ws.recv(QUICK).await.is_none(), "nothing but the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_polling_sessions_are_reaped_after_ping_interval_and_timeout() {
    let args = ["--ping-interval", "300", "--ping-timeout", "300"];
    let node = NodeProcess::start("abandoned-polls", &args, &[]).await;
    let addr = node.addr;
    let before = node.rss_bytes();
    // 1,000 handshakes that connect to "/" and are never polled again.
    for _ in 0..10 {
        let abandon = (0..100).map(|_| async move {
            let sid = raw::polling_sid(addr).await;
            raw::post(addr, &raw::poll_path(&sid), b"40").await
        });
        for res in join_all(abandon).await {
            assert_eq!(res.status, 200);
        }
    }
    assert_reaped(&node, before, "abandoned polls").await;
}

/// A connection from source address `source` (127.0.0.x).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind((source, 0).into())
        .expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

/// A polling handshake from `source`, with `headers`: its status and body.
async fn handshake_from(
    source: [u8; 4],
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut conn = HttpConn::from_stream(connect_from(source, addr).await);
    conn.send("GET", &eio_path("EIO=4&transport=polling"), headers, b"")
        .await
        .unwrap();
    let res = conn.read_response().await.unwrap();
    let body = if res.status == 200 {
        parse_open(res.text())
    } else {
        res.json()
    };
    (res.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_sessions_and_forwarded_for_counts_only_from_trusted_proxies()
{
    let mut options = fast_options();
    options.engine.max_sessions_per_ip = 5;
    options.engine.trusted_proxies =
        vec![realtime::transport::ip_limit::Cidr::parse("127.0.0.2").unwrap()];
    // Quick heartbeats reap the sessions of this test once it stops polling.
    let server = TestServer::start_with(options).await;
    let addr = server.addr;
    let mut sids = Vec::new();
    for _ in 0..5 {
        let (status, open) = handshake_from([127, 0, 0, 1], addr, &[]).await;
        assert_eq!(status, 200);
        sids.push(open["sid"].as_str().unwrap().to_owned());
    }
    let (status, body) = handshake_from([127, 0, 0, 1], addr, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"code": 4, "message": "Too many connections from this address"})
    );
    // Another address is not affected; a forged X-Forwarded-For from an untrusted peer
    // counts as the peer.
    assert_eq!(handshake_from([127, 0, 0, 3], addr, &[]).await.0, 200);
    let forged = [("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(handshake_from([127, 0, 0, 1], addr, &forged).await.0, 429);
    // Through the trusted proxy, each forwarded client has its own five.
    for _ in 0..5 {
        assert_eq!(handshake_from([127, 0, 0, 2], addr, &forged).await.0, 200);
    }
    assert_eq!(handshake_from([127, 0, 0, 2], addr, &forged).await.0, 429);
    let other = [("X-Forwarded-For", "203.0.113.10")];
    assert_eq!(handshake_from([127, 0, 0, 2], addr, &other).await.0, 200);
    // A closed session gives its place back.
    let res = raw::post(addr, &raw::poll_path(&sids[0]), b"1").await;
    assert_eq!(res.status, 200);
    let io = server.io.clone();
    let before = io.connection_count();
    wait_until(QUICK, "the closed session is gone", || {
        io.connection_count() < before
    })
    .await;
    let mut admitted = false;
    let deadline = Instant::now() + QUICK;
    while !admitted && Instant::now() < deadline {
        admitted = handshake_from([127, 0, 0, 1], addr, &[]).await.0 == 200;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the freed place was not given back");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_flooding_events_is_refused_then_disconnected_and_others_are_served() {
    let mut options = fast_options();
    options.engine.ping_timeout = Duration::from_secs(5);
    options.event_budget = Some(EventBudget {
        events: 20,
        per: Duration::from_secs(10),
        disconnect_after: 30,
    });
    let server = TestServer::start_with(options).await;
    let (mut flood, _) = Ws::open(server.addr).await;
    flood.send_text("40").await;
    assert!(flood.recv_text(QUICK).await.starts_with("40"));
    let (mut honest, _) = Ws::open(server.addr).await;
    honest.send_text("40").await;
    assert!(honest.recv_text(QUICK).await.starts_with("40"));
    // 60 echo events with acks at once: 20 answered, then refusals, then the end.
    for id in 0..60 {
        flood.send_text(&format!("42{id}[\"echo\",{id}]")).await;
    }
    let (mut answered, mut refused, mut disconnected) = (0, 0, false);
    while let Some(m) = flood.recv(QUICK).await {
        let text = m.to_text().unwrap_or_default().to_owned();
        if text == "41" {
            disconnected = true;
            break;
        }
        if text.contains("rate_limited") {
            refused += 1;
        } else if text.starts_with("43") {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "within the budget");
    assert_eq!(refused, 30, "each refused event's ack says rate_limited");
    assert!(disconnected, "disconnected after 30 refusals");
    // The other socket was never affected.
    let started = Instant::now();
    honest.send_text("421[\"echo\",\"hi\"]").await;
    assert_eq!(honest.recv_text(QUICK).await, "431[\"hi\"]");
    assert!(started.elapsed() < Duration::from_millis(500));
    server.stop().await;
}

/// Joins `room` on a fresh socket of `/` (ack awaited).
async fn joined(addr: SocketAddr, room: &str) -> Ws {
    let (mut ws, _) = Ws::open(addr).await;
    ws.send_text("40").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40"));
    ws.send_text(&format!("420[\"join\",\"{room}\"]")).await;
    assert_eq!(ws.recv_text(QUICK).await, "430[true]");
    ws
}

/// Heartbeats far apart (a reader that stops reading must not time out first) and an
/// outbound queue of `max_queued_bytes` per session.
fn quiet_queue_options(max_queued_bytes: usize) -> realtime::server::ServerOptions {
    let mut options = fast_options();
    options.engine.ping_timeout = Duration::from_secs(30);
    options.engine.ping_interval = Duration::from_secs(30);
    options.engine.max_queued_bytes = max_queued_bytes;
    options
}

/// A reader that stops reading for a while loses nothing. 30 MB to the room is more than
/// the loopback socket's buffers hold, so its packets queue in its session, the first of
/// them cut mid-frame by a short write; once it reads again, every packet arrives whole
/// and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_pauses_gets_every_packet_whole_and_in_order_when_it_reads_again() {
    let server = TestServer::start_with(quiet_queue_options(256 << 20)).await;
    let addr = server.addr;
    let mut paused = joined(addr, "r").await;
    let mut honest = joined(addr, "r").await;
    let (mut sender, _) = Ws::open(addr).await;
    sender.send_text("40").await;
    assert!(sender.recv_text(QUICK).await.starts_with("40"));
    let big = "y".repeat(100_000);
    let packet = |i: usize| format!("42[\"big\",\"{big}\",{i}]");
    for i in 0..300 {
        sender
            .send_text(&format!("42[\"to-room\",\"r\",\"big\",\"{big}\",{i}]"))
            .await;
        assert_eq!(honest.recv_text(QUICK).await, packet(i));
    }
    for i in 0..300 {
        assert!(
            paused.recv_text(QUICK).await == packet(i),
            "packet {i} arrives whole, in order"
        );
    }
    assert_eq!(server.io.connection_count(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_closed_at_its_queue_limit_and_the_room_goes_on() {
    let server = TestServer::start_with(quiet_queue_options(1 << 20)).await;
    let addr = server.addr;
    let _slow = joined(addr, "r").await; // never read again
    let mut honest = joined(addr, "r").await;
    let (mut sender, _) = Ws::open(addr).await;
    sender.send_text("40").await;
    assert!(sender.recv_text(QUICK).await.starts_with("40"));
    // 40 MB to the room: far past what the kernel buffers and the 1 MiB queue hold.
    let big = "x".repeat(100_000);
    let io = server.io.clone();
    for i in 0..400 {
        sender
            .send_text(&format!("42[\"to-room\",\"r\",\"big\",\"{big}\",{i}]"))
            .await;
        let got = honest.recv_text(QUICK).await;
        assert!(
            got.ends_with(&format!(",{i}]")),
            "the honest reader gets message {i}"
        );
    }
    wait_until(QUICK, "the slow reader's session is closed", || {
        io.connection_count() == 2
    })
    .await;
    server.stop().await;
}
