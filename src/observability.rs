//! `GET /api/health`, `/api/health/live`, `/api/health/ready` and `GET /metrics`.
//!
//! - **live**: the process answers HTTP. Nothing else is checked: a liveness probe that
//!   fails because the *database* is down makes Kubernetes restart every node at once,
//!   which cures nothing.
//! - **ready**: the dependencies answer and the node is not draining. Load balancers and
//!   Kubernetes send new clients only to ready nodes. On shutdown readiness turns 503
//!   first and the node keeps serving for `--drain-delay`, so nginx / the endpoints
//!   controller notice before connections are closed (see `server::run_with_routes`).
//! - **health**: the full report a person or `rtctl health` reads: each dependency with
//!   its latency, or what failed and why.
//!
//! Every dependency check has its own timeout (`--health-timeout`) and they run in
//! parallel, so a saturated pool or a dead Redis answers "down" within the timeout
//! instead of hanging the probe. A dependency that is not configured (the embedded
//! default has no Redis) is reported as `not_configured`, which is healthy.

use crate::redis_client::{RedisConn, RedisTarget};
use crate::server::Io;
use crate::store::{Store, StoreError};
use crate::transport::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// The result of checking one dependency.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Answered within the latency; `about` adds what else the check learned (Redis:
    /// the role and address of the server this node talks to).
    Up {
        latency: Duration,
        about: Vec<(&'static str, String)>,
    },
    Down(String),
    NotConfigured,
}

impl Check {
    pub fn up(latency: Duration) -> Check {
        Check::Up {
            latency,
            about: Vec::new(),
        }
    }

    pub fn is_ok(&self) -> bool {
        !matches!(self, Check::Down(_))
    }

    fn to_json(&self) -> Value {
        match self {
            Check::Up { latency, about } => {
                let mut v = json!({
                    "status": "up",
                    "latency_ms": (latency.as_secs_f64() * 1e6).round() / 1e3,
                });
                for (k, text) in about {
                    v[*k] = Value::String(text.clone());
                }
                v
            }
            Check::Down(error) => json!({ "status": "down", "error": error }),
            Check::NotConfigured => json!({ "status": "not_configured" }),
        }
    }
}

/// Redis answers `ROLE` as a master. Behind Sentinel, a node still talking to a
/// demoted master (a replica now: writes fail) is down until it follows the failover,
/// and says so; the answer names the address, so an operator sees where each node is.
async fn redis_check(conn: &RedisConn, timeout: Duration) -> Check {
    if matches!(conn.target(), RedisTarget::Cluster(_)) {
        return cluster_check(conn, timeout).await;
    }
    let started = Instant::now();
    let check = match ask::<redis::Value>(conn, timeout, redis::cmd("ROLE")).await {
        Ok(reply) => match role_of(&reply).as_deref() {
            Some("master") => {
                return Check::Up {
                    latency: started.elapsed(),
                    about: vec![("role", "master".into()), ("address", conn.address())],
                }
            }
            other => Check::Down(format!(
                "{} is not a master (ROLE says {}): writes fail until this node follows the failover",
                conn.address(),
                other.unwrap_or("nothing readable")
            )),
        },
        Err(down) => Check::Down(down),
    };
    crate::metrics::redis_error("health");
    check
}

/// A Redis Cluster answers `CLUSTER INFO` with `cluster_state:ok`: every slot has a
/// master. While a dead master's replica has not taken over, the state is `fail` and
/// the keys of its slots cannot be written: down, and said why.
async fn cluster_check(conn: &RedisConn, timeout: Duration) -> Check {
    let started = Instant::now();
    let mut info = redis::cmd("CLUSTER");
    info.arg("INFO");
    let check = match ask::<String>(conn, timeout, info).await {
        Ok(info) => match cluster_state(&info) {
            Some("ok") => {
                return Check::Up {
                    latency: started.elapsed(),
                    about: vec![("role", "cluster".into()), ("address", conn.address())],
                }
            }
            state => Check::Down(format!(
                "the Redis Cluster reports cluster_state:{} ({}): keys of slots without a \
                 master cannot be written until a replica takes over",
                state.unwrap_or("?"),
                conn.address()
            )),
        },
        Err(down) => Check::Down(down),
    };
    crate::metrics::redis_error("health");
    check
}

/// The answer to `cmd`, or why Redis gave none in time (a down check's message).
async fn ask<T: redis::FromRedisValue>(
    conn: &RedisConn,
    timeout: Duration,
    cmd: redis::Cmd,
) -> Result<T, String> {
    let mut c = conn.clone();
    match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut c)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("redis error at {}: {e}", conn.address())),
        Err(_) => Err(format!(
            "no answer within {} ms from {}",
            timeout.as_millis(),
            conn.address()
        )),
    }
}

/// `cluster_state` of a `CLUSTER INFO` reply.
fn cluster_state(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_state:"))
        .map(str::trim)
}

/// The first element of a `ROLE` reply: `master`, `slave` or `sentinel`.
fn role_of(reply: &redis::Value) -> Option<String> {
    match reply {
        redis::Value::Array(items) => match items.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The observability endpoints of one server.
pub struct Endpoints {
    io: Io,
    store: Store,
    redis: Option<RedisConn>,
    node: String,
    started: Instant,
    timeout: Duration,
}

impl Endpoints {
    pub fn new(
        io: Io,
        store: Store,
        redis: Option<RedisConn>,
        node: String,
        timeout: Duration,
    ) -> Self {
        Endpoints {
            io,
            store,
            redis,
            node,
            started: Instant::now(),
            timeout,
        }
    }

    /// Answers `/metrics` and `/api/health*`; `None` for any other path.
    pub async fn handle(&self, method: &Method, path: &str) -> Option<Response<Body>> {
        let known = matches!(
            path,
            "/metrics" | "/api/health" | "/api/health/live" | "/api/health/ready"
        );
        if !known {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            let body = json!({ "error": "method_not_allowed", "message": "use GET" });
            return Some(json_response(StatusCode::METHOD_NOT_ALLOWED, &body));
        }
        Some(match path {
            "/metrics" => self.metrics(),
            "/api/health/live" => json_response(
                StatusCode::OK,
                &json!({ "status": "alive", "node": self.node, "uptime_s": self.uptime_s() }),
            ),
            "/api/health/ready" => self.ready().await,
            _ => self.health().await,
        })
    }

    fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The Prometheus scrape.
    pub fn metrics(&self) -> Response<Body> {
        if !crate::metrics::enabled() {
            // 404, not an empty 200: Prometheus then shows the target down with this
            // reason, instead of a healthy target whose series all vanished.
            let mut res = Response::new(Full::new(Bytes::from_static(
                b"metrics are disabled on this node (--metrics-enabled false / \
                  METRICS_ENABLED=false); restart it with metrics enabled to scrape it\n",
            )));
            *res.status_mut() = StatusCode::NOT_FOUND;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return res;
        }
        let text = crate::metrics::render(&self.snapshot());
        let mut res = Response::new(Full::new(Bytes::from(text)));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        res
    }

    /// What this server has now, for the scrape.
    pub fn snapshot(&self) -> crate::metrics::Snapshot {
        use crate::protocol::engineio::TransportKind;
        let kinds = [TransportKind::Polling, TransportKind::Websocket];
        let mut snap = crate::metrics::Snapshot {
            node: self.node.clone(),
            ..Default::default()
        };
        let mut names: Vec<_> = self.io.namespaces();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for ns in names {
            let mut by_transport = [0i64; 2];
            for s in ns.sockets() {
                by_transport[(s.transport() == TransportKind::Websocket) as usize] += 1;
            }
            for (t, n) in kinds.iter().zip(by_transport) {
                snap.connections.push((ns.name.clone(), t.as_str(), n));
            }
            snap.rooms.push((ns.name.clone(), ns.room_count() as i64));
        }
        let mut sessions = [0i64; 2];
        for s in self.io.engine().sessions() {
            sessions[(s.transport() == TransportKind::Websocket) as usize] += 1;
        }
        snap.sessions = kinds
            .map(TransportKind::as_str)
            .into_iter()
            .zip(sessions)
            .collect();
        let stats = self.store.pool_stats();
        let pools = std::iter::once(("primary", stats.primary))
            .chain(stats.replica.map(|r| ("replica", r)));
        for (pool, p) in pools {
            let idle = p.idle as i64;
            let size = i64::from(p.size);
            snap.pools
                .push((pool, (size - idle).max(0), idle, i64::from(p.max)));
        }
        snap
    }

    /// Checks every dependency in parallel, each within the timeout.
    pub async fn check(&self) -> Vec<(&'static str, Check)> {
        let timeout = self.timeout;
        let primary = async {
            match self.store.ping_primary(timeout).await {
                Ok(d) => Check::up(d),
                Err(e) => Check::Down(store_failure(&e, timeout)),
            }
        };
        let replica = async {
            match self.store.ping_replica(timeout).await {
                Ok(Some(d)) => Check::up(d),
                Ok(None) => Check::NotConfigured,
                Err(e) => Check::Down(store_failure(&e, timeout)),
            }
        };
        let redis = async {
            match &self.redis {
                Some(conn) => redis_check(conn, timeout).await,
                None => Check::NotConfigured,
            }
        };
        let (primary, replica, redis) = tokio::join!(primary, replica, redis);
        let mut checks = vec![("database", primary)];
        if replica != Check::NotConfigured {
            checks.push(("database_replica", replica));
        }
        checks.push(("redis", redis));
        checks
    }

    /// `GET /api/health`: 200 healthy, or 503 naming what failed (or that it drains).
    pub async fn health(&self) -> Response<Body> {
        let checks = self.check().await;
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(_, c)| !c.is_ok())
            .map(|(name, _)| *name)
            .collect();
        let draining = self.io.is_shutting_down();
        let status = if !failed.is_empty() {
            "unhealthy"
        } else if draining {
            "draining"
        } else {
            "healthy"
        };
        let services: Map<String, Value> = checks
            .iter()
            .map(|(name, c)| (name.to_string(), c.to_json()))
            .collect();
        let mut body = json!({
            "status": status,
            "node": self.node,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.uptime_s(),
            "connections": self.io.connection_count(),
            "draining": draining,
            "services": services,
        });
        if !failed.is_empty() {
            body["failed"] = json!(failed);
            tracing::warn!(failed = ?failed, "health check: dependencies down");
        }
        let code = if status == "healthy" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(code, &body)
    }

    /// `GET /api/health/ready`: 200 when dependencies answer and the node is not draining.
    pub async fn ready(&self) -> Response<Body> {
        if self.io.is_shutting_down() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "status": "not_ready", "reason": "draining", "node": self.node }),
            );
        }
        let checks = self.check().await;
        let failed: Map<String, Value> = checks
            .iter()
            .filter_map(|(name, c)| match c {
                Check::Down(e) => Some((name.to_string(), json!(e))),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            json_response(
                StatusCode::OK,
                &json!({ "status": "ready", "node": self.node }),
            )
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "status": "not_ready", "reason": "dependencies", "failed": failed, "node": self.node }),
            )
        }
    }
}

/// Why the database check failed, in words safe to show (no SQL, no URL).
fn store_failure(e: &StoreError, timeout: Duration) -> String {
    use std::error::Error as _;
    match e {
        StoreError::Unavailable(None) => {
            format!("no answer within {} ms", timeout.as_millis())
        }
        e => match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut res = crate::handlers::api::json_response(status, value);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
