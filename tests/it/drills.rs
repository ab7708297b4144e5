//! `rtctl loadtest` drills end to end, in their short CI form: three spawned nodes, the
//! Redis and the PostgreSQL the run starts, 300 clients sending throughout (a tenth of
//! them in stored /chat rooms, as the gates run), and one failure each — a node killed
//! with SIGKILL, a rolling restart (SIGTERM, drain, start, next), a Redis restart, a
//! PostgreSQL restart. Each run must bring every disconnected client back (p99 < 5 s),
//! lose no acknowledged message and find every acknowledged chat message in the database
//! exactly once; the Redis restart on the classic pub/sub adapter must fail on exactly
//! the loss, since pub/sub drops what is published while a subscriber reconnects.
//!
//! The long forms (1,000+ clients, phase gates) are in docs/scaling/phase2.md.

use crate::loadtest::{counter, failed_checks, histogram, rtctl_loadtest};
use serde_json::Value;
use std::time::Duration;

/// Runs `rtctl loadtest --spawn-nodes 3` for 14 s with the drill flags in `drill` (and
/// the gates' 10 % chat share unless they give one): the exit code and the JSON report.
async fn drill(drill: &[&str]) -> (i32, Value) {
    let mut args = vec!["--spawn-nodes", "3", "--clients", "300", "--ramp", "600"];
    args.extend(["--duration", "14s", "--rate", "60", "--api-rate", "10"]);
    args.extend(["--recovery-window", "4s"]);
    if !drill.contains(&"--chat-share") {
        args.extend(["--chat-share", "10%"]);
    }
    args.extend(drill);
    rtctl_loadtest(&args, Duration::from_secs(150)).await
}

/// The drill's steps, as the report lists them.
fn steps(report: &Value) -> Vec<String> {
    report["drills"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no drill steps: {report:#}"))
        .iter()
        .map(|s| s["what"].as_str().unwrap().to_owned())
        .collect()
}

/// What every drill run must show: all clients held, none away, nothing acknowledged
/// lost or doubled.
fn assert_clean(code: i32, report: &Value) {
    assert_eq!(failed_checks(report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    let settings = &report["settings"];
    assert_eq!(settings["store"], "PostgreSQL (local, started by this run)");
    assert_stored_once(report);
    assert_eq!(counter(report, "held"), 300);
    assert_eq!(counter(report, "away_at_end"), 0);
    assert_eq!(counter(report, "lost_acked"), 0, "{report:#}");
    assert_eq!(counter(report, "duplicates"), 0);
    assert_eq!(counter(report, "notifications_duplicated"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_clients_move_to_the_others_and_nothing_acked_is_lost() {
    let (code, report) = drill(&["--kill-node-at", "3s", "--restart-after", "2s"]).await;
    assert_clean(code, &report);
    assert_eq!(
        steps(&report),
        ["node 2 killed (SIGKILL)", "node 2 started again and ready"]
    );
    // A third of the clients were on the killed node; each came back.
    let gone = counter(&report, "disconnects");
    assert!(
        (80..=120).contains(&gone),
        "{gone} disconnected: {report:#}"
    );
    assert!(counter(&report, "reconnects") >= gone);
    assert_eq!(histogram(&report, "reconnect")["count"], gone);
    assert!(histogram(&report, "message_latency_in_drills")["count"].as_u64() > Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_moves_every_client_and_loses_nothing_acked() {
    let (code, report) = drill(&["--rolling-restart", "2s", "--rolling-pause", "1s"]).await;
    assert_clean(code, &report);
    let steps = steps(&report);
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert!(
        steps[0].starts_with("node 0 stopped (SIGTERM)"),
        "{steps:?}"
    );
    assert_eq!(steps[5], "node 2 started again and ready");
    // Every node was drained once: every client lost its node at least once.
    assert!(counter(&report, "disconnects") >= 300, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_adapter_loses_nothing_through_a_redis_restart() {
    let flags = ["--restart-redis-at", "3s", "--adapter", "redis-streams"];
    let (code, report) = drill(&flags).await;
    assert_clean(code, &report);
    assert_eq!(report["lost"], 0, "{report:#}");
    assert!(steps(&report)[0].starts_with("redis-server restarted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pub_sub_adapter_loses_acked_messages_in_a_redis_restart_and_the_drill_says_so() {
    let (code, report) = drill(&["--restart-redis-at", "3s", "--adapter", "redis"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(failed_checks(&report), ["acked message loss"]);
    assert!(counter(&report, "lost_acked") > 0, "{report:#}");
    // The clients themselves stayed connected: the loss is between the nodes.
    assert_eq!(counter(&report, "disconnects"), 0);
}

/// Every chat message whose sender had its ack is in the database exactly once.
fn assert_stored_once(report: &Value) {
    let stored = &report["stored"];
    assert!(stored["acked"].as_u64() > Some(0), "{report:#}");
    assert_eq!(stored["acked"], stored["stored_once"], "{report:#}");
    assert_eq!(stored["missing"], 0);
    assert_eq!(stored["duplicated"], 0);
}

/// Half the messages on stored /chat, the PostgreSQL the run started restarted under
/// load (`pg_ctl restart -m fast`): sends during the restart are refused or go
/// unanswered (the client knows to retry), and every message acknowledged is in the
/// database exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_keeps_every_acked_chat_message_stored_exactly_once() {
    let flags = ["--chat-share", "50%", "--restart-postgres-at", "3s"];
    let (code, report) = drill(&flags).await;
    assert_clean(code, &report);
    assert!(
        steps(&report)[0].starts_with("PostgreSQL restarted"),
        "{report:#}"
    );
    assert!(report["stored"]["acked"].as_u64() > Some(250), "{report:#}");
}

/// A PostgreSQL the operator runs: restarted with the command they give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_by_the_operator_s_command_keeps_acked_chat_messages_too() {
    let server = crate::common::postgres::PgServer::start();
    let database = server.create_database().await;
    let url = server.url_for(&database);
    let restart = server.restart_command();
    let flags = ["--scenario", "chat", "--database-url", &url];
    let flags = [&flags[..], &["--restart-postgres-at", "3s"]].concat();
    let flags = [&flags[..], &["--restart-postgres-cmd", &restart]].concat();
    let (code, report) = drill(&flags).await;
    assert_eq!(failed_checks(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["settings"]["store"], "PostgreSQL (shared)");
    assert_stored_once(&report);
    assert!(report["stored"]["acked"].as_u64() > Some(500), "{report:#}");
}
