//! Multi-region, simulated on this machine (docs/scaling/multi-region.md): regions are
//! groups of real nodes with their own redis-server, and the link between two regions is
//! a TCP proxy that delays each direction by [`ONE_WAY`] (tests/it/common/link.rs) and
//! can be cut. `rtctl loadtest` (rooms of 10 over the nodes given, WebSocket) measures each
//! layout:
//!
//! - the chosen design, independent regional clusters: in-region latency does not see the
//!   link; members homed in the other region pay it on their own connection (twice per
//!   delivery, sender and receiver); cutting the link or losing the other region costs the
//!   in-region clients nothing;
//! - the alternative, one cluster spanning both regions on one Redis: every cross-node
//!   delivery crosses the link (twice between two nodes of the far region), and cutting the
//!   link loses messages between the regions although every client stays connected.
//!
//! Short runs here; `MULTI_REGION_LONG=1` runs the long form the document's table comes from
//! (2,000 clients, 400 messages/s, 30 s per run). Each run's figures are printed.

use crate::common::link::Link;
use crate::common::node::NodeProcess;
use crate::common::redis::RedisServer;
use crate::loadtest::{histogram, rtctl_loadtest};
use serde_json::Value;
use std::time::Duration;

/// One-way delay of the link between the regions (a ~100 ms round trip, as between
/// Europe and the US east coast).
const ONE_WAY: Duration = Duration::from_millis(50);

struct Sizes {
    clients: u64,
    rate: u64,
    seconds: u64,
}

fn sizes() -> Sizes {
    if std::env::var_os("MULTI_REGION_LONG").is_some() {
        Sizes {
            clients: 2000,
            rate: 400,
            seconds: 30,
        }
    } else {
        Sizes {
            clients: 200,
            rate: 100,
            seconds: 6,
        }
    }
}

const SECRET: &str = "multi-region-secret";

async fn node(id: &str, redis_url: &str) -> NodeProcess {
    NodeProcess::start(
        id,
        &["--loadtest-namespace", "--redis-url", redis_url],
        &[("NEXTAUTH_SECRET", SECRET), ("RT_SERVICE_TOKEN", "unused")],
    )
    .await
}

/// A loadtest of the rooms scenario against `urls`: exit code and report.
async fn load(urls: Vec<String>) -> (i32, Value) {
    let s = sizes();
    let (clients, rate, duration) = (
        s.clients.to_string(),
        s.rate.to_string(),
        format!("{}s", s.seconds),
    );
    let url = urls.join(",");
    let args = [
        "--url",
        &url,
        "--scenario",
        "rooms",
        "--room-size",
        "10",
        "--clients",
        &clients,
        "--ramp",
        "1000",
        "--rate",
        &rate,
        "--duration",
        &duration,
        "--token-secret",
        SECRET,
    ];
    rtctl_loadtest(&args, Duration::from_secs(300)).await
}

/// When a failure is made during a run: halfway through its schedule.
fn halfway() -> Duration {
    Duration::from_secs(2) + Duration::from_secs(sizes().seconds) / 2
}

/// p50, p99 of the message latency (ms), lost deliveries and clients held, printed as a row.
fn row(name: &str, report: &Value) -> (f64, f64, u64, u64) {
    let h = histogram(report, "message_latency");
    let (p50, p99) = (h["p50"].as_f64().unwrap(), h["p99"].as_f64().unwrap());
    let lost = report["lost"].as_u64().unwrap();
    let held = report["counters"]["held"].as_u64().unwrap();
    println!(
        "| {name} | {p50:.1} | {p99:.1} | {} | {lost} | {held}/{} |",
        report["counters"]["received"], report["counters"]["clients"]
    );
    (p50, p99, lost, held)
}

fn urls(nodes: &[&NodeProcess]) -> Vec<String> {
    nodes.iter().map(|n| n.url()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regional_clusters_keep_in_region_latency_and_survive_the_link_and_the_other_region() {
    let one_way = ONE_WAY.as_secs_f64() * 1000.0;
    let clients = sizes().clients;
    let mut redis_a = RedisServer::start();
    let redis_b = RedisServer::start();
    let a = [
        node("a1", &redis_a.url()).await,
        node("a2", &redis_a.url()).await,
    ];
    let b = [
        node("b1", &redis_b.url()).await,
        node("b2", &redis_b.url()).await,
    ];
    // Clients in region B whose home region is A reach A's nodes across the link.
    let far = [
        Link::start(a[0].addr, ONE_WAY).await,
        Link::start(a[1].addr, ONE_WAY).await,
    ];
    let far_urls: Vec<String> = far.iter().map(Link::url).collect();
    println!("| run | p50 ms | p99 ms | received | lost | held |\n|---|---|---|---|---|---|");

    let (_, report) = load(urls(&[&a[0], &a[1]])).await;
    let (_, p99, lost, _) = row("region A, its own clients", &report);
    assert!(
        p99 < one_way && lost == 0,
        "in-region traffic must not cross the link: {report:#}"
    );
    let (_, report) = load(urls(&[&b[0], &b[1]])).await;
    let (_, p99, lost, _) = row("region B, its own clients", &report);
    assert!(p99 < one_way && lost == 0, "{report:#}");
    let (_, report) = load(far_urls.clone()).await;
    let (p50, _, lost, _) = row("region A, clients across the link", &report);
    assert!(
        p50 >= 2.0 * one_way && lost == 0,
        "sender and receiver each cross it: {report:#}"
    );

    // The link fails halfway through: A's own clients lose nothing; the far ones drop.
    let near = tokio::spawn(load(urls(&[&a[0], &a[1]])));
    let across = tokio::spawn(load(far_urls.clone()));
    tokio::time::sleep(halfway()).await;
    for link in &far {
        link.cut().await;
    }
    let (code, report) = near.await.unwrap();
    let (_, _, lost, held) = row("region A's own clients, link cut", &report);
    assert!(code == 0 && lost == 0 && held == clients, "{report:#}");
    let (code, report) = across.await.unwrap();
    let (_, _, _, held) = row("clients across the link, link cut", &report);
    assert!(
        code != 0 && held < clients,
        "the far clients lose their region: {report:#}"
    );

    // Region A fails halfway through a run in region B: B's clients lose nothing.
    let run_b = tokio::spawn(load(urls(&[&b[0], &b[1]])));
    tokio::time::sleep(halfway()).await;
    drop(a);
    redis_a.stop();
    let (code, report) = run_b.await.unwrap();
    let (_, _, lost, held) = row("region B while region A fails", &report);
    assert!(code == 0 && lost == 0 && held == clients, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spanning_regions_pays_the_link_on_every_cross_node_delivery() {
    let one_way = ONE_WAY.as_secs_f64() * 1000.0;
    let redis = RedisServer::start();
    let redis_addr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    // One Redis, in region A; region B's nodes reach it across the link.
    let links = [
        Link::start(redis_addr, ONE_WAY).await,
        Link::start(redis_addr, ONE_WAY).await,
    ];
    let a1 = node("a1", &redis.url()).await;
    let b1 = node("b1", &links[0].redis_url()).await;
    let b2 = node("b2", &links[1].redis_url()).await;
    println!("| run | p50 ms | p99 ms | received | lost | held |\n|---|---|---|---|---|---|");

    let (_, report) = load(urls(&[&a1, &b1])).await;
    let (_, p99, lost, _) = row("spanning: nodes in A and B", &report);
    assert!(
        p99 >= one_way && lost == 0,
        "A↔B deliveries cross the link once: {report:#}"
    );
    let (_, report) = load(urls(&[&b1, &b2])).await;
    let (_, p99, lost, _) = row("spanning: two nodes in B", &report);
    assert!(
        p99 >= 2.0 * one_way && lost == 0,
        "B↔B deliveries go to A and back: {report:#}"
    );

    // The link fails halfway: every client stays connected, messages between the regions
    // are lost.
    let run = tokio::spawn(load(urls(&[&a1, &b1])));
    tokio::time::sleep(halfway()).await;
    links[0].cut().await;
    let (code, report) = run.await.unwrap();
    let (_, _, lost, _) = row("spanning: link cut", &report);
    assert!(code != 0 && lost > 0, "{report:#}");
}
