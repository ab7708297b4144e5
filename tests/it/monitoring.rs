//! `rtctl gen grafana`, `rtctl gen prometheus` and `rtctl health`, proven with the real
//! tools and a live node:
//!
//! - `promtool check config` accepts the generated prometheus.yml (its rule_files
//!   resolve) and `promtool check rules` the rules, for every phase;
//! - every metric name in the dashboard's and the rules' expressions is one a running
//!   server exposes after real traffic (histograms as `_bucket/_sum/_count`, counters
//!   with `_total`), so no panel or alert silently watches nothing;
//! - the dashboard is valid JSON that asks for its datasource through `${datasource}`
//!   everywhere, with no `__inputs`;
//! - a real Prometheus server runs the generated prometheus.yml against a running
//!   `realtime-server` process: the target is up, a product metric follows a client, and
//!   every generated rule evaluates on the live series without error;
//! - `rtctl health` (the real binary): exit 0 and the table/JSON shapes against a live
//!   node, exit 2 and one clear line against a dead port, 1 when one of two nodes is
//!   unreachable, and 1 when a node's Redis is stopped.
//!
//! Needs `promtool` and `prometheus` (Debian `prometheus`) and redis-server: a missing one panics with an
//! install hint, never a silent skip.

use crate::common::app::{parse_config, random, Served, TempDir};
use crate::common::free_port;
use crate::common::raw::{self, Ws};
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use realtime::config::Config;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PROMTOOL_HINT: &str =
    "install promtool with `apt-get install -y prometheus` (scripts/test does this)";

// ---- harness ---------------------------------------------------------------------------

async fn rtctl(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(args)
        .output()
        .await
        .expect("run rtctl")
}

fn promtool(args: &[&str]) -> Output {
    std::process::Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): {PROMTOOL_HINT}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `realtime-server` flags with random secrets, then `extra`. Redis only when `extra`
/// names it (whatever the environment says).
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
        "--log-level",
        "warn",
    ];
    argv.extend_from_slice(extra);
    parse_config(&argv, extra.contains(&"--redis-url"))
}

// ---- generated files -------------------------------------------------------------------

/// `rtctl gen prometheus` into a fresh directory; returns it.
async fn gen_prometheus(extra: &[&str]) -> TempDir {
    let dir = TempDir::new("prom");
    let out = dir.path().to_str().unwrap().to_owned();
    let mut args = vec!["gen", "prometheus", "-o", &out];
    args.extend_from_slice(extra);
    let res = rtctl(&args).await;
    assert!(
        res.status.success(),
        "rtctl {args:?}: {}",
        text(&res.stderr)
    );
    dir
}

async fn gen_grafana(extra: &[&str]) -> TempDir {
    let dir = TempDir::new("grafana");
    let out = dir.path().to_str().unwrap().to_owned();
    let mut args = vec!["gen", "grafana", "-o", &out];
    args.extend_from_slice(extra);
    let res = rtctl(&args).await;
    assert!(
        res.status.success(),
        "rtctl {args:?}: {}",
        text(&res.stderr)
    );
    dir
}

#[tokio::test]
async fn promtool_accepts_the_generated_config_and_rules() {
    for phase in ["1", "2", "3"] {
        let dir = gen_prometheus(&[
            "--target",
            "127.0.0.1:3001,10.0.0.2:3001",
            "--target",
            "node-c.internal:3001",
            "--phase",
            phase,
        ])
        .await;
        let config = dir.path().join("prometheus.yml");
        let rules = dir.path().join("rules/realtime.rules.yml");
        let out = promtool(&["check", "config", config.to_str().unwrap()]);
        let said = text(&out.stdout) + &text(&out.stderr);
        assert!(out.status.success(), "phase {phase}: {said}");
        // The rule_files entry resolved (relative to prometheus.yml) and was checked too.
        assert!(said.contains("1 rule files found"), "{said}");
        let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "phase {phase}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let rules_text = std::fs::read_to_string(&rules).unwrap();
        let target = ["0.1", "0.05", "0.02"][phase.parse::<usize>().unwrap() - 1];
        assert!(
            rules_text.contains(&format!("p99_5m > {target}\n")),
            "{rules_text}"
        );
    }
}

/// The alerts fire when they should: `promtool test rules` on synthetic series.
#[tokio::test]
async fn the_alerts_fire_on_synthetic_series() {
    let dir = gen_prometheus(&["--target", "127.0.0.1:3001"]).await;
    let tests = dir.path().join("rules/realtime.test.yml");
    std::fs::write(
        &tests,
        r#"rule_files:
  - realtime.rules.yml
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'up{job="realtime", instance="n1:3001"}'
        values: '0x10'
      - series: 'realtime_db_pool_connections{job="realtime", instance="n1:3001", pool="primary", state="in_use"}'
        values: '19x40'
      - series: 'realtime_db_pool_max_connections{job="realtime", instance="n1:3001", pool="primary"}'
        values: '20x40'
      - series: 'realtime_event_handler_duration_seconds_bucket{job="realtime", instance="n1:3001", namespace="/chat", le="0.05"}'
        values: '0+1x40'
      - series: 'realtime_event_handler_duration_seconds_bucket{job="realtime", instance="n1:3001", namespace="/chat", le="0.25"}'
        values: '0+10x40'
      - series: 'realtime_event_handler_duration_seconds_bucket{job="realtime", instance="n1:3001", namespace="/chat", le="+Inf"}'
        values: '0+10x40'
    alert_rule_test:
      - eval_time: 2m
        alertname: RealtimeNodeDown
        exp_alerts:
          - exp_labels: {severity: critical, job: realtime, instance: "n1:3001"}
            exp_annotations:
              summary: "realtime node n1:3001 is down"
              description: "Prometheus could not scrape n1:3001 for 1 minute. Its clients reconnect to the other nodes; check the process and /api/health/live."
      - eval_time: 9m
        alertname: RealtimeDbPoolSaturated
        exp_alerts:
          - exp_labels: {severity: warning, job: realtime, instance: "n1:3001", pool: primary}
            exp_annotations:
              summary: "Database pool primary on n1:3001 is 95% in use"
              description: "Queries are waiting for a connection. Raise --db-pool-size (within PostgreSQL's max_connections), add a read replica, or look for slow queries."
      - eval_time: 9m
        alertname: RealtimeEventLatencyHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: realtime, namespace: /chat}
            exp_annotations:
              summary: "p99 event handler latency on /chat is 247.8ms"
              description: "The phase 1 target is p99 < 100 ms. Look at the database query latency and pool saturation first, then CPU."
      - eval_time: 9m
        alertname: RealtimeRateLimitSpike
        exp_alerts: []
"#,
    )
    .unwrap();
    let out = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Every JSON object with a `datasource` key, with where it is.
fn datasources<'a>(v: &'a Value, at: String, found: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "datasource" {
                    found.push((at.clone(), child));
                }
                datasources(child, format!("{at}.{k}"), found);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                datasources(child, format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_dashboard_asks_for_its_datasource_and_provisioning_points_at_it() {
    let dir = gen_grafana(&[
        "--prometheus-url",
        "http://prometheus.internal:9090",
        "--dashboards-path",
        "/etc/dashboards/realtime",
    ])
    .await;
    let raw = std::fs::read_to_string(dir.path().join("dashboards/realtime.json")).unwrap();
    let dash: Value = serde_json::from_str(&raw).expect("the dashboard is JSON");
    assert!(dash.get("__inputs").is_none() && !raw.contains("__inputs"));
    assert!(
        !raw.contains("${DS_"),
        "an export-style datasource input leaked"
    );
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(
        (&ds["type"], &ds["query"]),
        (&json!("datasource"), &json!("prometheus"))
    );

    let mut found = Vec::new();
    datasources(&dash, String::new(), &mut found);
    assert!(found.len() > 40, "{} datasource references", found.len());
    for (at, d) in &found {
        assert_eq!(
            *d,
            &json!({"type": "prometheus", "uid": "${datasource}"}),
            "{at}"
        );
    }
    let panels = dash["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Connections",
        "Connect rate",
        "Disconnects by reason",
        "Events received",
        "Events sent",
        "Event handler latency",
        "Ack timeouts",
        "Rate-limit rejections",
        "Broadcasts",
        "Rooms",
        "Cluster nodes",
        "Adapter messages",
        "Redis errors",
        "Pool connections",
        "Query latency",
        "Database errors",
        "Cache hit ratio",
        "CPU",
        "Memory",
        "File descriptors",
        "Build info",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    // Panel ids are unique, and no two panels overlap on the grid.
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len());
    let cells: Vec<(u64, u64, u64, u64)> = panels
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap();
            (n("x"), n("y"), n("w"), n("h"))
        })
        .collect();
    for (i, a) in cells.iter().enumerate() {
        assert!(a.0 + a.2 <= 24, "panel {i} is wider than the grid");
        for b in &cells[i + 1..] {
            let apart =
                a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "panels overlap: {a:?} {b:?}");
        }
    }

    let ds_yaml =
        std::fs::read_to_string(dir.path().join("provisioning/datasources/realtime.yaml")).unwrap();
    for needle in [
        "apiVersion: 1\n",
        "    type: prometheus\n",
        "    url: \"http://prometheus.internal:9090\"\n",
    ] {
        assert!(ds_yaml.contains(needle), "{needle:?} in\n{ds_yaml}");
    }
    let provider =
        std::fs::read_to_string(dir.path().join("provisioning/dashboards/realtime.yaml")).unwrap();
    for needle in [
        "apiVersion: 1\n",
        "    type: file\n",
        "      path: \"/etc/dashboards/realtime\"\n",
    ] {
        assert!(provider.contains(needle), "{needle:?} in\n{provider}");
    }
}

/// Metric names in a PromQL expression: identifiers that are not functions, keywords,
/// label names or strings. Recording rule names (with `:`) are returned too.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop string literals and `[5m]` ranges first.
    let mut cleaned = String::new();
    let mut in_str = false;
    let mut in_range = false;
    let mut prev = ' ';
    for c in expr.chars() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '[' if !in_str => in_range = true,
            ']' if !in_str => in_range = false,
            _ if in_str || in_range => {}
            _ => cleaned.push(c),
        }
        prev = c;
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut depth_braces = 0;
    // `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`, `group_left (...)` list labels.
    let mut label_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let next = chars.get(j).copied().unwrap_or(' ');
            let keyword = matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if keyword {
                label_list = next == '(';
            } else if next == '(' || depth_braces > 0 || label_list {
                // A function call, a label matcher, or a label in a by() list.
            } else if !matches!(
                word.as_str(),
                "and" | "or" | "unless" | "bool" | "offset"
                    // Aggregations, whose `by (…)` may stand before the parenthesis.
                    | "sum" | "min" | "max" | "avg" | "group" | "count" | "stddev" | "stdvar"
                    | "topk" | "bottomk" | "quantile" | "count_values"
            ) {
                names.insert(word);
            }
            continue;
        }
        match c {
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            ')' => label_list = false,
            _ => {}
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (namespace, le) (max without (x) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))) / ignoring (state) b_total and on (instance) c:rec:p99 > 3 * time() - d"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c:rec:p99", "d"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
}

/// Series names a scrape can have: the declared families (with `_bucket/_sum/_count` for
/// histograms) and the sample names.
fn exposed_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            } else {
                names.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Metric names with at least one sample in a scrape.
fn sampled_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_dashboard_and_rules_exists_in_a_live_scrape() {
    let dir = TempDir::new("scrape");
    let secret = random("nextauth");
    let url = dir.sqlite_url();
    let mut redis = RedisServer::start();
    let redis_url = redis.url();
    let server = Served::start(&config(
        &secret,
        &[
            "--database-url",
            &url,
            "--redis-url",
            &redis_url,
            "--rate-limit",
            "message:send=1/60",
            "--health-timeout",
            "500",
        ],
    ))
    .await;
    let addr = server.addr;

    // Traffic that moves every kind of series: two users, a room, a message and one
    // over the rate limit, an unknown event, the unread cache (a miss then a hit), a
    // refused sign-in, a refused Engine.IO request, a disconnect, a failing query (its
    // table dropped under the server) and a Redis outage seen by the health check.
    let mut alice = SioClient::connect(addr, &secret, "mon-alice", "/chat").await;
    let mut bob = SioClient::connect(addr, &secret, "mon-bob", "/chat").await;
    let opened = alice.call("room:open", json!({"peerId": "mon-bob"})).await;
    let room_id = opened["roomId"]
        .as_i64()
        .unwrap_or_else(|| panic!("{opened}"));
    bob.call("room:join", json!({"roomId": room_id})).await;
    let sent = alice
        .call("message:send", json!({"roomId": room_id, "text": "hi"}))
        .await;
    assert!(sent["id"].is_i64(), "{sent}");
    bob.packet("42/chat,[\"message:new\"").await;
    let limited = alice
        .call("message:send", json!({"roomId": room_id, "text": "again"}))
        .await;
    assert_eq!(limited["error"], "rate_limited", "{limited}");
    alice.ws.send_text(r#"42/chat,["nobody-knows",1]"#).await;
    let mut inbox = SioClient::connect(addr, &secret, "mon-alice", "/notifications").await;
    inbox.call("notifications:unread_count", json!({})).await;
    inbox.call("notifications:unread_count", json!({})).await;
    let mut stranger = Ws::connect(addr, &raw::eio_path("EIO=4&transport=websocket")).await;
    stranger.send_text("40/chat,").await;
    loop {
        match stranger.recv(raw::QUICK).await {
            Some(Message::Text(t)) if t.as_str().starts_with("44/chat,") => break,
            Some(_) => {}
            None => panic!("no CONNECT_ERROR for a client without a session"),
        }
    }
    let refused = raw::get(addr, &raw::poll_path("no-such-session")).await;
    assert_eq!(refused.status, 400);
    bob.ws.close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE notifications")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let failed = inbox.call("notifications:list", json!({})).await;
    assert_eq!(failed["error"], "internal", "{failed}");
    tokio::task::block_in_place(|| redis.stop());
    assert_eq!(raw::get(addr, "/api/health").await.status, 503);

    let deadline = Instant::now() + raw::QUICK;
    let scrape = loop {
        let s = raw::get(addr, "/metrics").await.text().to_owned();
        let gone = s.contains("realtime_socket_disconnects_total{");
        if gone || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(stranger);
    alice.ws.close().await;
    inbox.ws.close().await;
    server.stop().await;

    let exposed = exposed_names(&scrape);
    let sampled = sampled_names(&scrape);
    // The Redis adapter's own series: the message to the room went out through Redis
    // (and, pub/sub being what it is, came back to this node).
    for series in [
        "realtime_cluster_messages_published_total{type=\"broadcast\"}",
        "realtime_cluster_messages_received_total{type=\"broadcast\"}",
    ] {
        let value: f64 = scrape
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{scrape}"));
        assert!(value >= 1.0, "{series} = {value}");
    }
    for series in [
        "realtime_cluster_request_duration_seconds_count{type=\"fetch_sockets\"}",
        "realtime_cluster_request_timeouts_total{type=\"server_side_emit\"}",
    ] {
        assert!(scrape.contains(series), "no {series} in\n{scrape}");
    }
    // The core series carry samples after that traffic (not only a declaration).
    for name in [
        "realtime_connections",
        "realtime_socket_connects_total",
        "realtime_events_received_total",
        "realtime_event_handler_duration_seconds_bucket",
        "realtime_db_query_duration_seconds_bucket",
        "realtime_db_pool_connections",
        "realtime_db_pool_max_connections",
        "realtime_build_info",
        "realtime_rate_limit_rejections_total",
        "realtime_db_errors_total",
        "realtime_auth_failures_total",
        "realtime_engine_request_errors_total",
        "realtime_cache_requests_total",
        "realtime_redis_errors_total",
        "realtime_socket_disconnects_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(sampled.contains(name), "no sample of {name} in\n{scrape}");
    }

    // The dashboard: panel targets and template variable queries.
    let gdir = gen_grafana(&[]).await;
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(gdir.path().join("dashboards/realtime.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            // label_values(metric{…}, label): the metric is the first argument.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .map(|(m, _)| m.to_owned())
                .unwrap_or_else(|| panic!("variable query {q:?}"));
            exprs.push(inner);
        }
    }
    let mut dash_names = BTreeSet::new();
    for e in &exprs {
        dash_names.extend(metric_names(e));
    }

    // The rules: recording rules may be used by later rules; `up` is Prometheus' own.
    let pdir = gen_prometheus(&["--target", "127.0.0.1:3001"]).await;
    let rules = std::fs::read_to_string(pdir.path().join("rules/realtime.rules.yml")).unwrap();
    let mut recorded = BTreeSet::new();
    let mut rule_names = BTreeSet::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(r) = t.strip_prefix("- record: ") {
            recorded.insert(r.to_owned());
        } else if let Some(e) = t.strip_prefix("expr: ") {
            let mut expr = e.to_owned();
            if expr == "|" {
                expr.clear();
                while let Some(next) = lines.peek() {
                    let indent = next.len() - next.trim_start().len();
                    if next.trim().is_empty() || indent <= line.len() - t.len() {
                        break;
                    }
                    expr.push(' ');
                    expr.push_str(next.trim());
                    lines.next();
                }
            }
            rule_names.extend(metric_names(&expr));
        }
    }
    assert!(!recorded.is_empty());

    let mut missing = Vec::new();
    for (source, names) in [("dashboard", &dash_names), ("rules", &rule_names)] {
        assert!(names.len() > 8, "{source}: only {names:?}");
        for name in names {
            let known = exposed.contains(name)
                || (source == "rules" && (recorded.contains(name) || name == "up"));
            if !known {
                missing.push(format!("{source}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used but not exposed by a live node: {missing:?}\nexposed: {exposed:?}"
    );
    // What the brief asks the dashboard and the alerts to watch, by name.
    for name in [
        "realtime_event_handler_duration_seconds_bucket",
        "realtime_cluster_messages_published_total",
        "realtime_cluster_nodes",
        "realtime_redis_errors_total",
        "realtime_db_query_duration_seconds_bucket",
        "realtime_cache_requests_total",
        "realtime_rate_limit_rejections_total",
        "process_open_fds",
        "realtime_build_info",
    ] {
        assert!(
            dash_names.contains(name),
            "the dashboard does not use {name}"
        );
    }
    for name in [
        "realtime_event_handler_duration_seconds_bucket",
        "realtime_redis_errors_total",
        "realtime_db_pool_connections",
        "realtime_db_pool_max_connections",
        "realtime_rate_limit_rejections_total",
        "up",
    ] {
        assert!(rule_names.contains(name), "the rules do not use {name}");
    }
}

// ---- a real Prometheus ------------------------------------------------------------------

const PROMETHEUS_HINT: &str = "install the Prometheus server with `apt-get install -y prometheus` \
     (Debian's package ships `prometheus` and `promtool`; scripts/test installs it)";

/// `q` percent-encoded for a URL query string.
fn query_escape(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus server (Debian's `prometheus` binary) on a free loopback port with
/// its storage in a temp dir; killed when dropped.
struct Prometheus {
    addr: SocketAddr,
    child: std::process::Child,
    dir: TempDir,
}

impl Prometheus {
    fn start(config: &std::path::Path) -> Prometheus {
        let dir = TempDir::new("prometheus-data");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run prometheus ({e}): {PROMETHEUS_HINT}"));
        Prometheus { addr, child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on the HTTP API: the JSON body when it answers 200 with
    /// `"status":"success"`, `None` while it is not up yet.
    async fn api(&mut self, path: &str) -> Option<Value> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
        let attempt = async {
            let mut conn = raw::HttpConn::open(self.addr).await.ok()?;
            conn.send("GET", path, &[], b"").await.ok()?;
            conn.read_response().await.ok()
        };
        let res = tokio::time::timeout(Duration::from_secs(3), attempt)
            .await
            .ok()
            .flatten()?;
        let body: Value = serde_json::from_str(res.text()).ok()?;
        (res.status == 200 && body["status"] == "success").then_some(body)
    }

    /// Polls instant query `q` until `accept` takes its result vector (30 s at most);
    /// returns that vector.
    async fn query_until(&mut self, q: &str, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", query_escape(q));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            if let Some(body) = self.api(&path).await {
                let result = body["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if accept(&result) {
                    return result;
                }
                last = Some(result);
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: {q} never gave the expected result within 30 s; last: {last:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an instant-vector sample (`"value": [time, "1"]`).
fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Issue 5's "done when": a real Prometheus, configured by the unmodified file
/// `rtctl gen prometheus` writes (only the target and a 1 s interval given as flags),
/// scrapes a running `realtime-server` process: `up` is 1, a product metric follows a real
/// client (connections 0 → 1), and every generated alert rule evaluates without error on
/// the live series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_running_node() {
    use crate::common::node::NodeProcess;
    let db = TempDir::new("prom-node-db");
    let secret = random("secret");
    let node = NodeProcess::start(
        "node-prom",
        &["--database-url", &db.sqlite_url(), "--log-level", "warn"],
        &[("NEXTAUTH_SECRET", secret.as_str())],
    )
    .await;
    let target = node.addr.to_string();
    let generated = gen_prometheus(&["--target", &target, "--scrape-interval", "1s"]).await;
    let mut prometheus = Prometheus::start(&generated.path().join("prometheus.yml"));

    let up = prometheus
        .query_until(r#"up{job="realtime"}"#, |r| {
            r.len() == 1 && sample_value(&r[0]) == 1.0
        })
        .await;
    assert_eq!(up[0]["metric"]["instance"], target.as_str(), "{up:?}");

    let connections = r#"sum(realtime_connections{job="realtime",namespace="/chat"})"#;
    // Before any client: no /chat series, or 0.
    prometheus
        .query_until(connections, |r| {
            r.is_empty() || (r.len() == 1 && sample_value(&r[0]) == 0.0)
        })
        .await;
    let chat = SioClient::connect(node.addr, &secret, "prom-user", "/chat").await;
    prometheus
        .query_until(connections, |r| r.len() == 1 && sample_value(&r[0]) == 1.0)
        .await;
    let info = prometheus
        .query_until(r#"realtime_build_info{job="realtime"}"#, |r| r.len() == 1)
        .await;
    assert_eq!(info[0]["metric"]["node"], "node-prom", "{info:?}");

    // The generated rules were loaded, and each has been evaluated without error.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = prometheus.api("/api/v1/rules").await;
        let all: Vec<Value> = rules
            .iter()
            .flat_map(|b| b["data"]["groups"].as_array().cloned().unwrap_or_default())
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let bad: Vec<&Value> = all.iter().filter(|r| r["health"] == "err").collect();
        assert!(bad.is_empty(), "rules failing on live data: {bad:#?}");
        if !all.is_empty() && all.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated within 30 s: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(chat);
    drop(prometheus);
    drop(node);
}

// ---- rtctl health ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_of_a_live_node_dead_ports_and_a_mix() {
    let dir = TempDir::new("health");
    let url = dir.sqlite_url();
    let node = random("mon-node");
    let server = Served::start(&config(
        &random("s"),
        &["--database-url", &url, "--node-id", &node],
    ))
    .await;
    let live = server.url();

    // A live, healthy node: exit 0, one table row.
    let out = rtctl(&["health", &live]).await;
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    for h in [
        "URL",
        "NODE",
        "STATUS",
        "VERSION",
        "UPTIME",
        "CONNECTIONS",
        "DATABASE",
        "REDIS",
        "LATENCY",
    ] {
        assert!(lines[1].contains(h), "{table}");
    }
    let row: Vec<&str> = lines[3]
        .trim_matches('│')
        .split('┆')
        .map(str::trim)
        .collect();
    assert_eq!(row[0], format!("{live}/api/health"));
    assert_eq!(row[1], node);
    assert_eq!(row[2], "healthy");
    assert_eq!(row[3], env!("CARGO_PKG_VERSION"));
    assert!(row[4].ends_with('s'), "uptime {:?}", row[4]);
    assert_eq!(row[5], "0");
    assert!(
        row[6].starts_with("up ") && row[6].ends_with(" ms"),
        "{table}"
    );
    assert_eq!(row[7], "not configured");
    assert!(row[8].ends_with(" ms"), "{table}");

    // The same as JSON.
    let out = rtctl(&["health", &live, "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        (
            &v["status"],
            &v["healthy"],
            &v["unhealthy"],
            &v["unreachable"]
        ),
        (&json!("healthy"), &json!(1), &json!(0), &json!(0)),
        "{v}"
    );
    let n = &v["nodes"][0];
    assert_eq!(n["node"], json!(node));
    assert_eq!(n["status"], "healthy");
    assert_eq!(n["http_status"], 200);
    assert_eq!(n["connections"], 0);
    assert_eq!(n["error"], Value::Null);
    assert!(n["latency_ms"].is_number() && n["uptime_s"].is_u64(), "{n}");
    assert_eq!(n["services"]["database"]["status"], "up");
    assert_eq!(n["services"]["redis"]["status"], "not_configured");

    // A dead port: exit 2, one clear line, and still a row saying so.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = rtctl(&["health", &dead]).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err.trim_end(),
        format!("error: http://{dead}/api/health: connection refused")
    );
    assert!(text(&out.stdout).contains("unreachable"));

    // One of two unreachable: unhealthy, exit 1; JSON says which.
    let out = rtctl(&[
        "health",
        &live,
        &dead,
        "--format",
        "json",
        "--timeout",
        "2000",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(v["nodes"][0]["status"], "healthy");
    assert_eq!(v["nodes"][1]["status"], "unreachable");
    assert_eq!(v["nodes"][1]["error"], "connection refused");
    assert!(text(&out.stderr).contains("1 of 2 nodes not healthy"));

    // Usage errors are 2 too.
    let out = rtctl(&["health", "https://example.com"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = rtctl(&["health"]).await;
    assert_eq!(out.status.code(), Some(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_1_when_a_nodes_redis_is_stopped() {
    let dir = TempDir::new("redis");
    let url = dir.sqlite_url();
    let mut redis = RedisServer::start();
    let redis_url = redis.url();
    let server = Served::start(&config(
        &random("s"),
        &[
            "--database-url",
            &url,
            "--redis-url",
            &redis_url,
            "--health-timeout",
            "500",
        ],
    ))
    .await;
    let live = server.url();
    let out = rtctl(&["health", &live, "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"][0]["services"]["redis"]["status"], "up", "{v}");

    tokio::task::block_in_place(|| redis.stop());
    let out = rtctl(&["health", &live, "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = &v["nodes"][0];
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(n["status"], "unhealthy", "{n}");
    assert_eq!(n["http_status"], 503, "{n}");
    assert_eq!(n["services"]["redis"]["status"], "down", "{n}");
    assert!(n["error"].as_str().unwrap().starts_with("redis: "), "{n}");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("1 of 1 nodes not healthy") && err.contains("redis: "),
        "{err}"
    );

    let out = rtctl(&["health", &live]).await;
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert!(
        table.contains("unhealthy") && table.contains("down: "),
        "{table}"
    );
    server.stop().await;
}

// ---- the alerts in a drill ---------------------------------------------------------------

/// `q` over the last `span` at `step`, from Prometheus's range API: each sample's value
/// in order ("_" where the series had none, promtool's notation for a gap).
async fn recorded(prometheus: &mut Prometheus, q: &str, span: Duration, step: u64) -> Vec<String> {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = end - span.as_secs();
    let path = format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
        query_escape(q)
    );
    let body = prometheus.api(&path).await.expect("query_range answers");
    let values = body["data"]["result"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut by_time = std::collections::BTreeMap::new();
    for v in &values {
        let t = v[0].as_f64().unwrap_or_default() as u64;
        by_time.insert(t, v[1].as_str().unwrap_or("_").to_owned());
    }
    (0..=span.as_secs() / step)
        .map(|k| {
            by_time
                .get(&(start + k * step))
                .cloned()
                .unwrap_or_else(|| "_".into())
        })
        .collect()
}

/// A node killed under a real Prometheus: `RealtimeNodeDown` fires for it once it has
/// been down a minute, and resolves when it is back. Then the `up` series Prometheus
/// recorded during the drill is replayed through `promtool test rules`: the alert fires
/// at the same point of the recorded series and not after the node came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_down_alert_fires_on_a_kill_and_resolves_after_and_promtool_agrees() {
    use crate::common::node::NodeProcess;
    let (db_a, db_b) = (TempDir::new("alert-a-db"), TempDir::new("alert-b-db"));
    let (url_a, url_b) = (db_a.sqlite_url(), db_b.sqlite_url());
    let args_a = ["--database-url", url_a.as_str(), "--log-level", "warn"];
    let args_b = ["--database-url", url_b.as_str(), "--log-level", "warn"];
    let a = NodeProcess::start("alert-a", &args_a, &[]).await;
    let b = NodeProcess::start("alert-b", &args_b, &[]).await;
    let (target_a, addr_b) = (a.addr.to_string(), b.addr);
    let targets = format!("{target_a},{addr_b}");
    let generated = gen_prometheus(&["--target", &targets, "--scrape-interval", "1s"]).await;
    let mut prometheus = Prometheus::start(&generated.path().join("prometheus.yml"));
    prometheus
        .query_until(r#"sum(up{job="realtime"})"#, |r| {
            r.len() == 1 && sample_value(&r[0]) == 2.0
        })
        .await;

    let started = Instant::now();
    drop(b); // SIGKILL
    let firing = format!(
        r#"ALERTS{{alertname="RealtimeNodeDown",alertstate="firing",instance="{addr_b}"}}"#
    );
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let r = prometheus.query_until(&firing, |_| true).await;
        if !r.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RealtimeNodeDown never fired:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let fired_after = started.elapsed();
    assert!(
        fired_after >= Duration::from_secs(60),
        "fired after {fired_after:?}: before its minute"
    );
    // The other node was never reported down.
    let other = format!(r#"ALERTS{{alertname="RealtimeNodeDown",instance="{target_a}"}}"#);
    assert!(prometheus.query_until(&other, |_| true).await.is_empty());

    // A few seconds more down, so the recorded series holds a whole firing minute.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let back = NodeProcess::start_on(addr_b, "alert-b", &args_b, &[]).await;
    prometheus.query_until(&firing, <[Value]>::is_empty).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The drill as Prometheus recorded it, replayed through promtool.
    let span = started.elapsed() + Duration::from_secs(10);
    let step = 1;
    let up = recorded(
        &mut prometheus,
        &format!(r#"up{{instance="{addr_b}"}}"#),
        span,
        step,
    )
    .await;
    let first_down = up
        .iter()
        .position(|v| v == "0")
        .expect("the kill is in the series");
    let back_at = first_down
        + up[first_down..]
            .iter()
            .position(|v| v == "1")
            .expect("the restart too");
    assert!(
        back_at - first_down > 60 / step as usize + 1,
        "down long enough: {up:?}"
    );
    let eval = |k: usize| format!("{}s", k as u64 * step);
    let tests = generated.path().join("rules/drill.test.yml");
    std::fs::write(
        &tests,
        format!(
            r#"rule_files:
  - realtime.rules.yml
evaluation_interval: {step}s
tests:
  - interval: {step}s
    input_series:
      - series: 'up{{job="realtime", instance="{addr_b}"}}'
        values: '{values}'
    alert_rule_test:
      - eval_time: {before}
        alertname: RealtimeNodeDown
        exp_alerts: []
      - eval_time: {firing}
        alertname: RealtimeNodeDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: realtime, instance: "{addr_b}"}}
            exp_annotations:
              summary: "realtime node {addr_b} is down"
              description: "Prometheus could not scrape {addr_b} for 1 minute. Its clients reconnect to the other nodes; check the process and /api/health/live."
      - eval_time: {after}
        alertname: RealtimeNodeDown
        exp_alerts: []
"#,
            values = up.join(" "),
            before = eval(first_down + 60 / step as usize - 2),
            firing = eval(back_at - 1),
            after = eval(up.len() - 1),
        ),
    )
    .unwrap();
    let out = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}\nrecorded: {up:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    drop(back);
    drop(a);
}
