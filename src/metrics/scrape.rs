//! The scrape: the process-wide registry, then the gauges of "things that are", read from
//! one server's state at scrape time, in the Prometheus text format.

use super::labels::{
    BuildLabels, NamespaceLabels, NamespaceTransportLabels, PoolLabels, PoolStateLabels,
    TransportLabels,
};
use super::process;
use super::registry::METRICS;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What one server knows at scrape time, beyond the process-wide counters. Transports
/// are given by name (the `transport` label value).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// This node's id (for `realtime_build_info`).
    pub node: String,
    /// Sockets now, by namespace and transport.
    pub connections: Vec<(String, &'static str, i64)>,
    /// Engine.IO sessions now, by transport.
    pub sessions: Vec<(&'static str, i64)>,
    /// Rooms with members, by namespace.
    pub rooms: Vec<(String, i64)>,
    /// Database pools: (pool, in use, idle, max).
    pub pools: Vec<(&'static str, i64, i64, i64)>,
}

/// Renders `/metrics`: the process-wide registry, then this server's snapshot and the
/// process statistics, in the Prometheus text format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = prometheus_text::encode(&mut out, &METRICS.registry);
    let _ = prometheus_text::encode(&mut out, &scrape_registry(snapshot));
    out
}

/// A registry built for one scrape and dropped after it. The registration order is the
/// order of the text.
fn scrape_registry(s: &Snapshot) -> Registry {
    let mut r = Registry::default();
    build_info(&mut r, &s.node);
    connections(&mut r, &s.connections);
    sessions(&mut r, &s.sessions);
    rooms(&mut r, &s.rooms);
    pools(&mut r, &s.pools);
    process::register(&mut r);
    r
}

fn build_info(r: &mut Registry, node: &str) {
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            node: node.to_owned(),
        })
        .set(1);
    r.register(
        "realtime_build_info",
        "Always 1; the labels say which version runs under which node id.",
        build,
    );
}

fn connections(r: &mut Registry, now: &[(String, &'static str, i64)]) {
    let connections: Family<NamespaceTransportLabels, Gauge> = Family::default();
    for (ns, transport, n) in now {
        connections
            .get_or_create(&NamespaceTransportLabels {
                namespace: ns.as_str().into(),
                transport,
            })
            .set(*n);
    }
    r.register(
        "realtime_connections",
        "Sockets connected now, by namespace and current transport.",
        connections,
    );
}

fn sessions(r: &mut Registry, now: &[(&'static str, i64)]) {
    let sessions: Family<TransportLabels, Gauge> = Family::default();
    for (transport, n) in now {
        sessions
            .get_or_create(&TransportLabels { transport })
            .set(*n);
    }
    r.register(
        "realtime_engine_sessions",
        "Engine.IO sessions (client connections) open now, by current transport.",
        sessions,
    );
}

fn rooms(r: &mut Registry, now: &[(String, i64)]) {
    let rooms: Family<NamespaceLabels, Gauge> = Family::default();
    for (ns, n) in now {
        rooms
            .get_or_create(&NamespaceLabels {
                namespace: ns.as_str().into(),
            })
            .set(*n);
    }
    r.register(
        "realtime_rooms",
        "Rooms with at least one member on this node (own-id rooms excluded), by namespace.",
        rooms,
    );
}

fn pools(r: &mut Registry, now: &[(&'static str, i64, i64, i64)]) {
    let pool_conns: Family<PoolStateLabels, Gauge> = Family::default();
    let pool_max: Family<PoolLabels, Gauge> = Family::default();
    for (pool, in_use, idle, max) in now {
        for (state, n) in [("in_use", in_use), ("idle", idle)] {
            pool_conns
                .get_or_create(&PoolStateLabels { pool, state })
                .set(*n);
        }
        pool_max.get_or_create(&PoolLabels { pool }).set(*max);
    }
    r.register(
        "realtime_db_pool_connections",
        "Database pool connections now, by pool and state (in_use, idle).",
        pool_conns,
    );
    r.register(
        "realtime_db_pool_max_connections",
        "The configured size limit of each database pool.",
        pool_max,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_build_info_and_no_openmetrics_eof() {
        let out = render(&Snapshot {
            node: "n1".into(),
            connections: vec![("/chat".into(), "websocket", 2)],
            ..Snapshot::default()
        });
        assert!(out.contains("realtime_build_info{version=\""), "{out}");
        assert!(out.contains("node=\"n1\"} 1\n"), "{out}");
        assert!(
            out.contains("realtime_connections{namespace=\"/chat\",transport=\"websocket\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE realtime_socket_connects_total counter\n"),
            "{out}"
        );
        assert!(!out.contains("# EOF"));
    }
}
