//! The health probe: asks nodes' `GET /api/health` from outside and judges the answers
//! (what `rtctl health` shows). The endpoints it asks are the server's, in
//! the server's `observability` module; this is the other side of that wire.
//!
//! The nodes are asked concurrently, each within one timeout, over plain HTTP/1.1 (the
//! nodes' own ports; TLS ends at nginx, which balances and would hide which node
//! answered). A node that does not answer is a report marked `unreachable`, not an
//! error: the point is to see the whole cluster at once. [`render`] turns the reports
//! into a table or JSON.

pub mod render;

use crate::client::http::{HttpConn, HttpError, Response};
use crate::client::ClientError;
use crate::node_addr::NodeUrl;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Where a node's health report is unless its URL names a path.
pub const HEALTH_PATH: &str = "/api/health";

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

/// One node's probe, under the URL that was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReport {
    pub url: String,
    pub probe: Probe,
}

/// The cluster at a glance: what decides `rtctl health`'s exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    /// Every node answered healthy.
    Healthy,
    /// Some node answered unhealthy or draining, or some (not all) did not answer.
    Unhealthy,
    /// No node answered at all.
    Unreachable,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Healthy => "healthy",
            Overall::Unhealthy => "unhealthy",
            Overall::Unreachable => "unreachable",
        }
    }
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

    /// The health report's JSON, or `null` when there is none.
    pub fn body(&self) -> &Value {
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
}

/// Asks one node, within `timeout` for everything (resolve, connect, request, body).
pub async fn probe(url: &NodeUrl, timeout: Duration) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok(res)) => Probe::Answered {
            http_status: res.status,
            body: serde_json::from_slice(&res.body).ok(),
            latency: started.elapsed(),
        },
        Ok(Err(e)) => Probe::Unreachable(unreachable_because(e)),
        Err(_) => Probe::Unreachable(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// One GET on a fresh connection (the shared HTTP client).
async fn get(url: &NodeUrl) -> Result<Response, ClientError> {
    let mut conn = HttpConn::open_node(url.addr()).await?;
    let headers = [
        (http::header::ACCEPT, "application/json".to_owned()),
        (
            http::header::USER_AGENT,
            concat!("rtctl/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
    ];
    conn.request(
        http::Method::GET,
        url.path_or(HEALTH_PATH),
        &headers,
        bytes::Bytes::new(),
    )
    .await
}

/// The probe's words for a failed exchange: which step failed, short.
fn unreachable_because(e: ClientError) -> String {
    match e {
        ClientError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            "connection refused".to_owned()
        }
        ClientError::Connect { source, .. } => format!("cannot connect: {source}"),
        ClientError::Resolve { error, .. } => format!("cannot connect: {error}"),
        ClientError::Http(HttpError::Handshake(e)) => format!("HTTP handshake failed: {e}"),
        ClientError::Http(HttpError::NoAnswer(e)) => format!("no HTTP answer: {e}"),
        ClientError::Http(HttpError::Body(e)) => format!("answer cut short: {e}"),
        other => other.to_string(),
    }
}

/// Asks every node concurrently; `answered` is called as each one is done (for a
/// progress display).
pub async fn check_all(
    urls: &[NodeUrl],
    timeout: Duration,
    answered: &(dyn Fn() + Sync),
) -> Vec<NodeReport> {
    futures_util::future::join_all(urls.iter().map(|u| async move {
        let probe = probe(u, timeout).await;
        answered();
        NodeReport {
            url: format!("http://{}{}", u.addr(), u.path_or(HEALTH_PATH)),
            probe,
        }
    }))
    .await
}

/// All healthy, none answering, or something in between.
pub fn overall(reports: &[NodeReport]) -> Overall {
    if reports.iter().all(NodeReport::is_healthy) {
        Overall::Healthy
    } else if reports
        .iter()
        .all(|r| matches!(r.probe, Probe::Unreachable(_)))
    {
        Overall::Unreachable
    } else {
        Overall::Unhealthy
    }
}

/// `url: problem` for each node that is not healthy.
pub fn problems(reports: &[NodeReport]) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| r.problem().map(|p| format!("{}: {p}", r.url)))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn answered(status: u16, body: Value) -> Probe {
        Probe::Answered {
            http_status: status,
            body: Some(body),
            latency: Duration::from_micros(1234),
        }
    }

    pub(crate) fn healthy() -> NodeReport {
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

    pub(crate) fn redis_down() -> NodeReport {
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

    pub(crate) fn refused() -> NodeReport {
        NodeReport {
            url: "http://10.0.0.3:3001/api/health".into(),
            probe: Probe::Unreachable("connection refused".into()),
        }
    }

    #[test]
    fn the_overall_status_and_problems() {
        assert_eq!(
            overall(&[healthy(), redis_down(), refused()]),
            Overall::Unhealthy
        );
        assert_eq!(overall(&[healthy(), healthy()]), Overall::Healthy);
        assert_eq!(overall(&[refused()]), Overall::Unreachable);
        assert_eq!(
            problems(&[healthy(), redis_down(), refused()]),
            [
                "http://10.0.0.2:3001/api/health: redis: no answer within 500 ms",
                "http://10.0.0.3:3001/api/health: connection refused"
            ]
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

    /// The probe goes through the shared HTTP client and still says "connection
    /// refused" in those words (the command's one-line error depends on it).
    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_a_short_reason() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = NodeUrl::parse(&format!("127.0.0.1:{port}")).unwrap();
        let reports = check_all(&[url], Duration::from_secs(5), &|| {}).await;
        assert_eq!(
            reports[0],
            NodeReport {
                url: format!("http://127.0.0.1:{port}/api/health"),
                probe: Probe::Unreachable("connection refused".into()),
            }
        );
    }
}
