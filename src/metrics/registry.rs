//! The process-wide registry: every counter and histogram of "things that happen",
//! registered once, the first time anything records or scrapes.

use super::cluster::ClusterMetrics;
use super::histogram::{connection_histogram, fast_histogram, query_histogram, HistogramFamily};
use super::labels::{
    CacheLabels, ClassLabels, ComponentLabels, NamespaceEventLabels, NamespaceLabels,
    NamespaceReasonLabels, NamespaceResultLabels, QueryLabels, ReasonLabels, TransportLabels,
    KNOWN_EVENTS, REDIS_COMPONENTS, TRANSPORTS,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};
use std::sync::LazyLock;

/// Everything counted in this process. Fields are public so a caller with an unusual
/// need can record directly; the functions of this module cover the usual ones.
pub struct Metrics {
    pub(super) registry: Registry,
    pub socket_connects: Family<NamespaceLabels, Counter>,
    pub socket_disconnects: Family<NamespaceReasonLabels, Counter>,
    /// How long a socket stayed in its namespace. Deliberately without a user label:
    /// the requirements sketch a `user_id` label here, but every user would become a
    /// separate time series (100k users → 100k × 15 bucket series, kept for weeks) — the
    /// classic cardinality explosion. "How long does user X stay" is a question for the
    /// logs (the disconnect line carries the socket id) or the database, not Prometheus.
    pub connection_duration: HistogramFamily<NamespaceLabels>,
    pub engine_errors: Family<ReasonLabels, Counter>,
    pub auth_failures: Family<NamespaceReasonLabels, Counter>,
    pub events_received: Family<NamespaceEventLabels, Counter>,
    pub events_sent: Family<NamespaceLabels, Counter>,
    pub received_bytes: Family<TransportLabels, Counter>,
    pub sent_bytes: Family<TransportLabels, Counter>,
    pub handler_duration: HistogramFamily<NamespaceLabels>,
    pub ack_timeouts: Family<NamespaceLabels, Counter>,
    pub broadcasts: Family<NamespaceLabels, Counter>,
    pub recoveries: Family<NamespaceResultLabels, Counter>,
    pub rate_limited: Family<ClassLabels, Counter>,
    pub query_duration: HistogramFamily<QueryLabels>,
    pub db_errors: Family<QueryLabels, Counter>,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub redis_errors: Family<ComponentLabels, Counter>,
    pub redis_master_switches: Counter,
    pub cluster: ClusterMetrics,
    /// Pre-resolved per-transport byte counters, in the order of [`TRANSPORTS`].
    pub(super) bytes_in: [Counter; TRANSPORTS.len()],
    pub(super) bytes_out: [Counter; TRANSPORTS.len()],
}

pub(super) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Registers `metric` under `name` and gives it back: a metric is a shared handle, so the
/// registry keeps one clone for the scrape and the caller the other for recording.
pub(super) fn register<M: Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// Each transport's counter of `family`, created at zero, in the order of [`TRANSPORTS`].
fn per_transport(family: &Family<TransportLabels, Counter>) -> [Counter; TRANSPORTS.len()] {
    TRANSPORTS.map(|transport| family.get_or_create_owned(&TransportLabels { transport }))
}

impl Metrics {
    /// Registers every metric. The registration order is the order of the scrape's text.
    /// The series whose label values this module knows (rate-limited event classes,
    /// Redis components) exist at zero from the start; the layers that know the others
    /// declare theirs (`hooks::declare_*`).
    fn new() -> Metrics {
        let metrics = Self::registered();
        for class in KNOWN_EVENTS.iter().copied().chain(["other"]) {
            let _ = metrics
                .rate_limited
                .get_or_create_owned(&ClassLabels { class });
        }
        for component in REDIS_COMPONENTS {
            let _ = metrics
                .redis_errors
                .get_or_create_owned(&ComponentLabels { component });
        }
        metrics
    }

    fn registered() -> Metrics {
        let mut r = Registry::default();
        let received_bytes: Family<TransportLabels, Counter> = register(
            &mut r,
            "realtime_received_bytes",
            "Bytes of Engine.IO payload received from clients, by transport.",
            Family::default(),
        );
        let sent_bytes: Family<TransportLabels, Counter> = register(
            &mut r,
            "realtime_sent_bytes",
            "Bytes of Engine.IO payload written to clients, by transport.",
            Family::default(),
        );
        let bytes_in = per_transport(&received_bytes);
        let bytes_out = per_transport(&sent_bytes);
        let cluster = ClusterMetrics::register(&mut r);
        Metrics {
            socket_connects: register(
                &mut r,
                "realtime_socket_connects",
                "Sockets that connected to a namespace.",
                Family::default(),
            ),
            socket_disconnects: register(
                &mut r,
                "realtime_socket_disconnects",
                "Sockets that left a namespace, by Socket.IO disconnect reason.",
                Family::default(),
            ),
            connection_duration: register(
                &mut r,
                "realtime_connection_duration_seconds",
                "How long sockets stayed connected (handshake to disconnect), by namespace.",
                HistogramFamily::new_with_constructor(connection_histogram as fn() -> _),
            ),
            engine_errors: register(
                &mut r,
                "realtime_engine_request_errors",
                "Engine.IO requests refused (bad handshake, unknown session, CORS, draining), by reason.",
                Family::default(),
            ),
            auth_failures: register(
                &mut r,
                "realtime_auth_failures",
                "Namespace connections refused by authentication, by reason.",
                Family::default(),
            ),
            events_received: register(
                &mut r,
                "realtime_events_received",
                "Socket.IO events received from clients, by namespace and event (known events only; others are \"other\").",
                Family::default(),
            ),
            events_sent: register(
                &mut r,
                "realtime_events_sent",
                "Socket.IO events queued to clients (a broadcast counts once per receiver), by namespace.",
                Family::default(),
            ),
            received_bytes,
            sent_bytes,
            handler_duration: register(
                &mut r,
                "realtime_event_handler_duration_seconds",
                "Time from an event's arrival until its handler finished, by namespace.",
                HistogramFamily::new_with_constructor(fast_histogram as fn() -> _),
            ),
            ack_timeouts: register(
                &mut r,
                "realtime_ack_timeouts",
                "Server emits whose acknowledgement did not arrive in time, by namespace.",
                Family::default(),
            ),
            broadcasts: register(
                &mut r,
                "realtime_broadcasts",
                "Broadcast emits (to a room, several rooms or a namespace), by namespace.",
                Family::default(),
            ),
            recoveries: register(
                &mut r,
                "realtime_connection_recoveries",
                "Connects that asked to recover a session (connection state recovery), by namespace and result: recovered, or not_recovered (a fresh socket).",
                Family::default(),
            ),
            rate_limited: register(
                &mut r,
                "realtime_rate_limit_rejections",
                "Requests refused by a rate limit, by event class.",
                Family::default(),
            ),
            query_duration: register(
                &mut r,
                "realtime_db_query_duration_seconds",
                "Database query time including the wait for a pooled connection, by operation and pool.",
                HistogramFamily::new_with_constructor(query_histogram as fn() -> _),
            ),
            db_errors: register(
                &mut r,
                "realtime_db_errors",
                "Database queries that failed, by operation and pool.",
                Family::default(),
            ),
            cache_requests: register(
                &mut r,
                "realtime_cache_requests",
                "Cache lookups, by cache and result (hit or miss).",
                Family::default(),
            ),
            redis_errors: register(
                &mut r,
                "realtime_redis_errors",
                "Redis commands that failed, by component.",
                Family::default(),
            ),
            redis_master_switches: register(
                &mut r,
                "realtime_redis_master_switches",
                "Times this node's Redis connections moved to a new master (Sentinel failover).",
                Counter::default(),
            ),
            cluster,
            bytes_in,
            bytes_out,
            registry: r,
        }
    }
}
