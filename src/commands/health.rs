//! `rtctl health URL…`: every node's `GET /api/health` in one table (or JSON).
//!
//! The nodes are asked concurrently, each within `--timeout`, over plain HTTP/1.1 (the
//! nodes' own ports; TLS ends at nginx, which balances and would hide which node
//! answered). A node that does not answer is a row marked `unreachable`, not an abort:
//! the point of the command is to see the whole cluster at once.

use super::Exit;
use bytes::Bytes;
use comfy_table::{presets, Cell, CellAlignment, Table};
use http_body_util::{BodyExt as _, Empty};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const EXIT_CODES: &str = "\
Exit codes:
  0  every node answered and is healthy
  1  some node is unhealthy, draining, or unreachable (while others answer)
  2  no node could be reached at all, or a usage error";

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct HealthCommand {
    /// A node: `http://HOST:PORT` (the path defaults to `/api/health`) or `HOST:PORT`.
    #[arg(required = true, value_name = "URL", value_parser = NodeUrl::parse)]
    pub urls: Vec<NodeUrl>,

    /// `table` for people, `json` for machines.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,

    /// Milliseconds each node has to connect and answer.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Where one node's health report is.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeUrl {
    /// `host:port` as given (with brackets for IPv6), for the `Host` header.
    authority: String,
    host: String,
    port: u16,
    path: String,
}

impl NodeUrl {
    pub fn parse(s: &str) -> Result<NodeUrl, String> {
        let rest = match s.split_once("://") {
            None => s,
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!(
                    "{s:?}: https is not supported; ask each node on its own http:// port \
                     (TLS ends at nginx, which would hide which node answers)"
                ))
            }
            Some((scheme, _)) => return Err(format!("{s:?}: unsupported scheme {scheme:?}")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path {
            "" | "/" => "/api/health",
            p => p,
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.contains(']') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{s:?}: bad port {p:?}"))?;
                (h, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
        if !valid {
            return Err(format!("{s:?}: no valid host"));
        }
        Ok(NodeUrl {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

impl std::fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// What one node said, or why it said nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// An HTTP answer: its status, the JSON body (when it was JSON), the round trip.
    Answered {
        http_status: u16,
        body: Option<Value>,
        latency: Duration,
    },
    /// No HTTP answer: refused, timed out, reset, not HTTP.
    Unreachable(String),
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReport {
    pub url: String,
    pub probe: Probe,
}

impl NodeReport {
    /// `healthy`, `unhealthy`, `draining` or `unreachable`.
    pub fn status(&self) -> &str {
        match &self.probe {
            Probe::Unreachable(_) => "unreachable",
            Probe::Answered {
                http_status, body, ..
            } => match body.as_ref().and_then(|b| b["status"].as_str()) {
                Some("healthy") if *http_status == 200 => "healthy",
                Some("draining") => "draining",
                _ => "unhealthy",
            },
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.status() == "healthy"
    }

    fn body(&self) -> &Value {
        static NULL: Value = Value::Null;
        match &self.probe {
            Probe::Answered { body: Some(b), .. } => b,
            _ => &NULL,
        }
    }

    /// Why the node is not healthy, in one line (`None` when it is).
    pub fn problem(&self) -> Option<String> {
        match &self.probe {
            Probe::Unreachable(why) => Some(why.clone()),
            Probe::Answered {
                http_status, body, ..
            } => {
                if self.is_healthy() {
                    return None;
                }
                let Some(body) = body.as_ref().filter(|b| b["status"].is_string()) else {
                    return Some(format!("HTTP {http_status}, not a health report"));
                };
                let failed: Vec<String> = body["services"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, c)| c["status"] == "down")
                    .map(|(name, c)| format!("{name}: {}", c["error"].as_str().unwrap_or("down")))
                    .collect();
                Some(if failed.is_empty() {
                    format!(
                        "{} (HTTP {http_status})",
                        body["status"].as_str().unwrap_or("?")
                    )
                } else {
                    failed.join("; ")
                })
            }
        }
    }

    fn to_json(&self) -> Value {
        let body = self.body();
        let (http_status, latency_ms) = match &self.probe {
            Probe::Answered {
                http_status,
                latency,
                ..
            } => (json!(http_status), json!(millis(*latency))),
            Probe::Unreachable(_) => (Value::Null, Value::Null),
        };
        json!({
            "url": self.url,
            "status": self.status(),
            "healthy": self.is_healthy(),
            "http_status": http_status,
            "latency_ms": latency_ms,
            "node": body["node"],
            "version": body["version"],
            "uptime_s": body["uptime_s"],
            "connections": body["connections"],
            "services": body["services"],
            "error": self.problem(),
        })
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// Asks one node, within `timeout` for everything (connect, request, whole body).
pub async fn probe(url: &NodeUrl, timeout: Duration) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok((http_status, bytes))) => Probe::Answered {
            http_status,
            body: serde_json::from_slice(&bytes).ok(),
            latency: started.elapsed(),
        },
        Ok(Err(why)) => Probe::Unreachable(why),
        Err(_) => Probe::Unreachable(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// One HTTP/1.1 GET on a fresh connection: the status and the body.
async fn get(url: &NodeUrl) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => format!("cannot connect: {e}"),
        })?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(url.path.as_str())
        .header(http::header::HOST, url.authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("rtctl/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let result = async {
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("no HTTP answer: {e}"))?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("answer cut short: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    drop(sender);
    conn.abort();
    result
}

/// Asks every node concurrently. Shows a spinner on stderr when that takes more than a
/// second and stderr is a terminal.
pub async fn check_all(urls: &[NodeUrl], timeout: Duration) -> Vec<NodeReport> {
    let bar = indicatif::ProgressBar::hidden();
    bar.set_length(urls.len() as u64);
    let all = futures_util::future::join_all(urls.iter().map(|u| {
        let bar = bar.clone();
        async move {
            let probe = probe(u, timeout).await;
            bar.inc(1);
            NodeReport {
                url: u.to_string(),
                probe,
            }
        }
    }));
    super::spinner_after_a_second(&bar, "{spinner} checking nodes: {pos}/{len} answered", all).await
}

/// The report for people.
pub fn table(reports: &[NodeReport]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "URL",
        "NODE",
        "STATUS",
        "VERSION",
        "UPTIME",
        "CONNECTIONS",
        "DATABASE",
        "REDIS",
        "LATENCY",
    ]);
    for r in reports {
        let b = r.body();
        let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
        let latency = match &r.probe {
            Probe::Answered { latency, .. } => format!("{} ms", millis(*latency)),
            Probe::Unreachable(why) => why.clone(),
        };
        let mut database = service(&b["services"]["database"]);
        if b["services"]["database_replica"].is_object() {
            database = format!(
                "{database}, replica {}",
                service(&b["services"]["database_replica"])
            );
        }
        t.add_row(vec![
            Cell::new(&r.url),
            Cell::new(text(&b["node"])),
            Cell::new(r.status()),
            Cell::new(text(&b["version"])),
            Cell::new(
                b["uptime_s"]
                    .as_u64()
                    .map(uptime)
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(
                b["connections"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(database),
            Cell::new(service(&b["services"]["redis"])),
            Cell::new(latency),
        ]);
    }
    t.to_string()
}

/// A dependency's check in a few words: `up 1.2 ms`, `down: …`, `not configured`.
fn service(v: &Value) -> String {
    match v["status"].as_str() {
        Some("up") => match v["latency_ms"].as_f64() {
            Some(ms) => format!("up {ms} ms"),
            None => "up".into(),
        },
        Some("down") => {
            let error = v["error"].as_str().unwrap_or("");
            let mut short: String = error.chars().take(60).collect();
            if short.len() < error.len() {
                short.push('…');
            }
            format!("down: {short}")
        }
        Some("not_configured") => "not configured".into(),
        Some(other) => other.into(),
        None => "-".into(),
    }
}

/// `42s`, `5m 12s`, `3h 04m`, `2d 07h`.
pub(crate) fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The report for machines.
pub fn to_json(reports: &[NodeReport]) -> Value {
    let count = |s: &str| reports.iter().filter(|r| r.status() == s).count();
    json!({
        "status": overall(reports),
        "healthy": count("healthy"),
        "unhealthy": reports.len() - count("healthy") - count("unreachable"),
        "unreachable": count("unreachable"),
        "nodes": reports.iter().map(NodeReport::to_json).collect::<Vec<_>>(),
    })
}

/// `healthy` (all are), `unreachable` (none answered) or `unhealthy`.
fn overall(reports: &[NodeReport]) -> &'static str {
    if reports.iter().all(NodeReport::is_healthy) {
        "healthy"
    } else if reports
        .iter()
        .all(|r| matches!(r.probe, Probe::Unreachable(_)))
    {
        "unreachable"
    } else {
        "unhealthy"
    }
}

/// The exit outcome of a report: `Ok` when all are healthy, else an [`Exit`] with code 2
/// when no node answered and 1 otherwise, and one line naming what is wrong.
pub fn outcome(reports: &[NodeReport]) -> Result<(), Exit> {
    let problems: Vec<String> = reports
        .iter()
        .filter_map(|r| r.problem().map(|p| format!("{}: {p}", r.url)))
        .collect();
    match overall(reports) {
        "healthy" => Ok(()),
        "unreachable" => Err(Exit::new(2, problems.join("; "))),
        _ => Err(Exit::new(
            1,
            format!(
                "{} of {} nodes not healthy: {}",
                problems.len(),
                reports.len(),
                problems.join("; ")
            ),
        )),
    }
}

impl HealthCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let reports = check_all(&self.urls, Duration::from_millis(self.timeout)).await;
        let text = if self.format == "json" {
            let mut s = serde_json::to_string_pretty(&to_json(&reports))?;
            s.push('\n');
            s
        } else {
            table(&reports) + "\n"
        };
        super::gen::write_output(None, &text)?;
        outcome(&reports)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, body: Value) -> Probe {
        Probe::Answered {
            http_status: status,
            body: Some(body),
            latency: Duration::from_micros(1234),
        }
    }

    fn healthy() -> NodeReport {
        NodeReport {
            url: "http://10.0.0.1:3001/api/health".into(),
            probe: answered(
                200,
                json!({
                    "status": "healthy", "node": "n1", "version": "0.1.0", "uptime_s": 3725,
                    "connections": 12, "draining": false,
                    "services": {
                        "database": {"status": "up", "latency_ms": 0.42},
                        "redis": {"status": "not_configured"},
                    },
                }),
            ),
        }
    }

    fn redis_down() -> NodeReport {
        NodeReport {
            url: "http://10.0.0.2:3001/api/health".into(),
            probe: answered(
                503,
                json!({
                    "status": "unhealthy", "node": "n2", "version": "0.1.0", "uptime_s": 5,
                    "connections": 0, "draining": false, "failed": ["redis"],
                    "services": {
                        "database": {"status": "up", "latency_ms": 1.5},
                        "redis": {"status": "down", "error": "no answer within 500 ms"},
                    },
                }),
            ),
        }
    }

    fn refused() -> NodeReport {
        NodeReport {
            url: "http://10.0.0.3:3001/api/health".into(),
            probe: Probe::Unreachable("connection refused".into()),
        }
    }

    #[test]
    fn urls_default_to_the_health_path() {
        let u = NodeUrl::parse("127.0.0.1:3001").unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:3001/api/health");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 3001));
        let u = NodeUrl::parse("http://node-a/").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/api/health"));
        let u = NodeUrl::parse("http://[::1]:9/api/health/ready").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.path, "/api/health/ready");
        for bad in ["https://a:1", "ftp://a", "a:0", "a:x", "http://:1", "a b:1"] {
            assert!(NodeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_has_a_row_per_node() {
        let t = table(&[healthy(), redis_down(), refused()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 7, "{t}");
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
            assert!(lines[1].contains(h), "{t}");
        }
        let row = |n: usize| -> Vec<&str> {
            lines[n]
                .trim_matches('│')
                .split('┆')
                .map(str::trim)
                .collect()
        };
        assert_eq!(
            row(3),
            [
                "http://10.0.0.1:3001/api/health",
                "n1",
                "healthy",
                "0.1.0",
                "1h 02m",
                "12",
                "up 0.42 ms",
                "not configured",
                "1.2 ms"
            ],
            "{t}"
        );
        assert_eq!(row(4)[2], "unhealthy");
        assert_eq!(row(4)[7], "down: no answer within 500 ms");
        assert_eq!(
            row(5)[1..],
            [
                "-",
                "unreachable",
                "-",
                "-",
                "-",
                "-",
                "-",
                "connection refused"
            ],
            "{t}"
        );
    }

    #[test]
    fn json_and_exit_codes() {
        let all = [healthy(), redis_down(), refused()];
        let v = to_json(&all);
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(
            (
                v["healthy"].as_u64(),
                v["unhealthy"].as_u64(),
                v["unreachable"].as_u64()
            ),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(v["nodes"][1]["error"], "redis: no answer within 500 ms");
        assert_eq!(v["nodes"][2]["http_status"], Value::Null);
        assert_eq!(v["nodes"][0]["latency_ms"], 1.2);
        assert_eq!(outcome(&all).unwrap_err().code, 1);
        assert!(outcome(&[healthy(), healthy()]).is_ok());
        let gone = outcome(&[refused()]).unwrap_err();
        assert_eq!(gone.code, 2);
        assert_eq!(
            gone.message,
            "http://10.0.0.3:3001/api/health: connection refused"
        );
        let not_health = NodeReport {
            url: "u".into(),
            probe: Probe::Answered {
                http_status: 404,
                body: None,
                latency: Duration::ZERO,
            },
        };
        assert_eq!(not_health.status(), "unhealthy");
        assert_eq!(
            not_health.problem().unwrap(),
            "HTTP 404, not a health report"
        );
    }

    #[test]
    fn uptimes_read_well() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(312), "5m 12s");
        assert_eq!(uptime(3 * 3600 + 240), "3h 04m");
        assert_eq!(uptime(2 * 86400 + 7 * 3600), "2d 07h");
    }
}
